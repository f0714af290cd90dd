// The gRPC channels to the cluster under test: `--conns` channels, each forced onto
// its own TCP connection, spread round-robin over the endpoints.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "etcd/etcdserverpb/rpc.grpc.pb.h"
#include "etcd/v3lockpb/v3lock.grpc.pb.h"
#include "options.h"

namespace synod::bench {

struct Conn {
  std::string endpoint;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  std::unique_ptr<v3lockpb::Lock::Stub> lock;
};

class Cluster {
 public:
  Cluster(const std::vector<std::string>& endpoints, int conns);

  // Connects every channel; the error names the first endpoint that did not answer.
  grpc::Status Connect(Nanos timeout);

  size_t size() const { return conns_.size(); }
  // Client (or watcher) i uses connection i mod size.
  Conn& For(size_t i) { return *conns_[i % conns_.size()]; }

 private:
  std::vector<std::unique_ptr<Conn>> conns_;
};

// A fresh context with the per-RPC deadline (a ClientContext serves one call only).
void ResetContext(std::optional<grpc::ClientContext>& ctx, Nanos timeout);

}  // namespace synod::bench
