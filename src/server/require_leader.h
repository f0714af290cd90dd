// etcd's require-leader, for the client streams (Watch, LeaseKeepAlive, Election.Observe):
// a client that sends the metadata "hasleader: true" (etcd's clients do, for watches and
// keep-alives) asks to be refused while the member has no leader, and to have its stream
// ended once the member has long had none (Server::OnNoLeader) — rather than wait on a
// member cut off from the cluster. etcd does it for every stream, in an interceptor.
#pragma once

#include <algorithm>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "server/server.h"

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

// A server-streaming call refused at once with `status`.
template <typename Response>
class RefusedWriter final : public grpc::ServerWriteReactor<Response> {
 public:
  explicit RefusedWriter(grpc::Status status) { this->Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

// The open streams of one service whose clients require a leader, ended together when the
// member has long had none. Each is held weakly, by the state it shares with its reactor:
// a stream that ended on its own is skipped (and forgotten at the next Add).
class StreamsRequiringLeader {
 public:
  // A registry whose streams `server` ends (UNAVAILABLE, kStreamNoLeader) each time it has
  // long had no leader (Server::OnNoLeader); the server only holds it weakly.
  static std::shared_ptr<StreamsRequiringLeader> EndedWhenNoLeader(Server& server) {
    auto streams = std::make_shared<StreamsRequiringLeader>();
    server.OnNoLeader([weak = std::weak_ptr<StreamsRequiringLeader>(streams)] {
      if (auto s = weak.lock()) {
        s->EndAll(grpc::Status(grpc::StatusCode::UNAVAILABLE, kStreamNoLeader));
      }
    });
    return streams;
  }

  template <typename State>
  using End = void (*)(const std::shared_ptr<State>& stream, const grpc::Status& status);

  template <typename State>
  void Add(const std::shared_ptr<State>& stream, End<State> end) {
    std::weak_ptr<State> weak = stream;
    std::lock_guard lock(mu_);
    std::erase_if(streams_, [](const Entry& e) { return e.alive.expired(); });
    streams_.push_back(Entry{weak, [weak, end](const grpc::Status& status) {
                               if (auto s = weak.lock()) end(s, status);
                             }});
  }

  void EndAll(const grpc::Status& status) {
    std::vector<Entry> streams;
    {
      std::lock_guard lock(mu_);
      streams.swap(streams_);
    }
    for (const Entry& e : streams) e.end(status);
  }

 private:
  struct Entry {
    std::weak_ptr<void> alive;
    std::function<void(const grpc::Status&)> end;
  };
  std::mutex mu_;
  std::vector<Entry> streams_;
};

}  // namespace synod::server
