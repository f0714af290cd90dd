// Forwarding: a follower hands a client's write (and lease keep-alives, which only the
// leader's lessor can serve) to the leader over the peer port, and relays the answer.
// The client never needs to know who leads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "synod/server.grpc.pb.h"

namespace synod::server {

class Server;

class ForwardClient {
 public:
  // `peers`: member id -> "host:port" of its peer listener.
  explicit ForwardClient(std::map<uint64_t, std::string> peers);
  // Cancels the calls under way and waits for their callbacks.
  ~ForwardClient();

  // Sends `request` to member `to`; `done` gets its outcome, or a retryable
  // "leader changed" if the member could not be reached.
  void Call(uint64_t to, const serverpb::ForwardRequest& request, std::chrono::milliseconds timeout,
            std::function<void(serverpb::Outcome)> done);
  // Asks member `to` for its membership (done gets null if it could not be reached).
  void GetMembership(uint64_t to, std::chrono::milliseconds timeout,
                     std::function<void(const serverpb::Membership*)> done);
  std::vector<uint64_t> peers() const;
  void SetPeer(uint64_t id, const std::string& address);
  void RemovePeer(uint64_t id);

 private:
  // Requests waiting for a batch to `to`, and the batches under way (at most
  // kBatchesInFlight: more requests wait and go together in the next one).
  struct Queue {
    std::vector<serverpb::ForwardRequest> requests;
    std::vector<std::function<void(serverpb::Outcome)>> callbacks;
    int in_flight = 0;
  };
  std::shared_ptr<serverpb::Forward::Stub> StubFor(uint64_t to);
  std::shared_ptr<serverpb::Forward::Stub> StubForLocked(uint64_t to);  // mu_ held
  void SendBatchLocked(uint64_t to, Queue* queue, std::chrono::milliseconds timeout);

  mutable std::mutex mu_;
  std::map<uint64_t, std::string> peers_;
  std::map<uint64_t, std::shared_ptr<serverpb::Forward::Stub>> stubs_;
  std::map<uint64_t, Queue> queues_;
  std::set<grpc::ClientContext*> active_;  // batches under way
  std::condition_variable idle_;
  bool stopping_ = false;
};

// The Forward service on the peer port.
std::unique_ptr<grpc::Service> MakeForwardService(Server* server);

}  // namespace synod::server
