// etcd's require-leader, for the client streams (Watch, LeaseKeepAlive): a client that
// sends the metadata "hasleader: true" (etcd's clients do, for both) asks to be refused
// while the member has no leader, and to have its stream ended once the member has long
// had none (Server::OnNoLeader) — rather than wait on a member cut off from the cluster.
#pragma once

#include <grpcpp/grpcpp.h>

namespace synod::server {

// What etcd answers (rpctypes.ErrGRPCNoLeader), with UNAVAILABLE.
inline constexpr char kStreamNoLeader[] = "etcdserver: no leader";

inline bool RequiresLeader(const grpc::CallbackServerContext& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("hasleader");
  return it != metadata.end() && it->second == "true";
}

// A bidirectional stream refused at once with `status`.
template <typename Request, typename Response>
class RefusedStream final : public grpc::ServerBidiReactor<Request, Response> {
 public:
  explicit RefusedStream(grpc::Status status) { this->Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace synod::server
