#include "cluster.h"

#include <chrono>

namespace synod::bench {

Cluster::Cluster(const std::vector<std::string>& endpoints, int conns) {
  for (int c = 0; c < conns; ++c) {
    auto conn = std::make_unique<Conn>();
    conn->endpoint = endpoints[static_cast<size_t>(c) % endpoints.size()];
    grpc::ChannelArguments args;
    // Channels with equal arguments share subchannels, hence TCP connections. A local
    // subchannel pool plus a distinct argument keeps each channel on its own socket.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("synod_bench.channel_id", c);
    args.SetMaxReceiveMessageSize(-1);
    conn->channel =
        grpc::CreateCustomChannel(conn->endpoint, grpc::InsecureChannelCredentials(), args);
    conn->kv = etcdserverpb::KV::NewStub(conn->channel);
    conn->watch = etcdserverpb::Watch::NewStub(conn->channel);
    conn->lease = etcdserverpb::Lease::NewStub(conn->channel);
    conn->lock = v3lockpb::Lock::NewStub(conn->channel);
    conns_.push_back(std::move(conn));
  }
}

grpc::Status Cluster::Connect(Nanos timeout) {
  const auto deadline = std::chrono::system_clock::now() + timeout;
  for (auto& conn : conns_) {
    if (!conn->channel->WaitForConnected(deadline)) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "cannot connect to " + conn->endpoint);
    }
  }
  return grpc::Status::OK;
}

void ResetContext(std::optional<grpc::ClientContext>& ctx, Nanos timeout) {
  ctx.emplace();
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
}

}  // namespace synod::bench
