#include "transport/peer_service.h"

#include <grpcpp/grpcpp.h>

namespace synod::transport {

grpc::Status PeerService::Stream(grpc::ServerContext* /*context*/,
                                 grpc::ServerReader<::synod::v1::PeerBatch>* reader,
                                 ::synod::v1::StreamAck* ack) {
  streams_++;
  ::synod::v1::PeerBatch batch;
  uint64_t batches = 0;
  // Read fails when the sender closes the stream, the connection breaks, the server
  // shuts down, or a batch does not parse; each ends this stream only.
  while (reader->Read(&batch)) {
    batches++;
    for (pb::Envelope& envelope : *batch.mutable_envelopes()) {
      if (self_ != consensus::kNoNode && envelope.to() != self_) {
        misdirected_++;
        continue;
      }
      envelopes_++;
      deliver_(std::move(envelope));
    }
  }
  ack->set_batches(batches);
  return grpc::Status::OK;
}

void PeerServer::Configure(const PeerServerOptions& options, grpc::ServerBuilder* builder) {
  builder->SetMaxReceiveMessageSize(options.message_bytes_max);
  // gRPC sets SO_REUSEPORT by default: a second process could then listen on our port
  // and be handed half the connections. One port, one member. (SO_REUSEADDR stays on:
  // a restart binds at once despite connections in TIME_WAIT.)
  builder->AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  const int ping_ms = static_cast<int>(options.ping_interval_min.count());
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, ping_ms);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
}

Status PeerServer::Start(const PeerServerOptions& options, PeerService::Deliver deliver,
                         std::unique_ptr<PeerServer>* server) {
  std::unique_ptr<PeerServer> s(new PeerServer(options.self, std::move(deliver)));
  grpc::ServerBuilder builder;
  Configure(options, &builder);
  builder.AddListeningPort(options.address, grpc::InsecureServerCredentials(), &s->port_);
  builder.RegisterService(&s->service_);
  for (grpc::Service* extra : options.extra_services) builder.RegisterService(extra);
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return Status(Code::kIoError, "cannot listen for peers on " + options.address);
  }
  *server = std::move(s);
  return Status::Ok();
}

PeerServer::~PeerServer() {
  if (server_ == nullptr) return;
  // A deadline in the past cancels the open streams instead of waiting for senders that
  // never hang up.
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
}

}  // namespace synod::transport
