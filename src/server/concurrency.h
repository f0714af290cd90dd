// What the Lock and Election services share: etcd's clientv3/concurrency recipes run inside
// the server (etcd 3.4's v3lock and v3election do the same with an in-process client), as
// chains of callbacks instead of blocked goroutines. docs/locks.md tells the whole story.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <grpcpp/grpcpp.h>

#include "server/key_waiter.h"
#include "server/server.h"
#include "synod/kv.pb.h"
#include "synod/server.pb.h"

namespace synod::server {

// etcd's messages (clientv3/concurrency, v3election).
inline constexpr char kElectionNoLeader[] = "election: no leader";
inline constexpr char kElectionNotLeader[] = "election: not leader";
inline constexpr char kMissingLeaderKey[] = "\"leader\" field must be provided";
// etcd 3.5's answer (Mutex.Lock) when the waiter's key is gone by the time its turn comes.
inline constexpr char kSessionExpired[] = "mutex: session is expired";
// The TTL of the lease a Lock or Campaign without one gets (etcd's defaultSessionTTL).
inline constexpr int64_t kSessionTtlS = 60;

// A session's key suffix: the lease id as Go's fmt "%x" prints an int64.
std::string LeaseHex(int64_t lease);

// etcd's lock and election services call the server through an in-process client that keeps
// an error's message and drops its code: every error reaches the client as UNKNOWN.
grpc::Status ClientError(std::string message);
grpc::Status ClientError(const serverpb::Outcome& outcome);

// This member's header, at the revision the request was served at.
template <typename Header>
void FillHeaderFrom(const Server& server, const kvpb::ResponseHeader& served, Header* header) {
  server.FillHeader(header);
  if (served.revision() != 0) header->set_revision(served.revision());
}

// A held lock or leadership.
struct Grant {
  std::string key;
  int64_t revision = 0;  // the key's create revision: the fencing token
  int64_t lease = 0;
  kvpb::ResponseHeader header;  // of the last linearizable read that confirmed the grant
};

struct AcquireOptions {
  std::string prefix;  // "<name>/"
  int64_t lease = 0;   // 0: a new lease of kSessionTtlS, as etcd's session does
  std::string value;
  // Lock: a failed wait deletes the key (etcd's Mutex does). Campaign keeps it unless the
  // client cancelled (etcd's Election does). Cancellation always deletes it.
  bool release_on_error = false;
  // The error when the key or its lease is gone at the grant.
  std::string lost_message;
};

// One Lock or Campaign: joins the queue under the prefix, waits for its turn, confirms the
// grant with a linearizable read and the lease's time to live, and answers `done` once.
class Acquisition : public std::enable_shared_from_this<Acquisition> {
 public:
  using Done = std::function<void(grpc::Status, Grant)>;
  // `server` and `waiter` outlive every acquisition (the service owns the waiter).
  static std::shared_ptr<Acquisition> Start(Server* server, KeyWaiter* waiter,
                                            AcquireOptions options, Done done);
  // The client went away: stop waiting, delete the key, answer CANCELLED (at once when
  // waiting, else when the step in flight returns).
  void Cancel();

  Acquisition(Server* server, KeyWaiter* waiter, AcquireOptions options, Done done);

 private:
  void Begin();
  void OnLeaseGranted(const serverpb::Outcome& outcome);
  void Enter();
  void OnEntered(const serverpb::Outcome& outcome);
  void Decide(const kvpb::RangeResponse& owner);
  void Wait();
  void OnTurn(Status status);
  // The checks before a grant: the lease's time to live at the leader, and, after a wait,
  // a linearizable read of the keys under the prefix; both are asked at once, and the last
  // answer decides (OnChecked).
  void Check(bool keys_too);
  void OnCheckAnswer(serverpb::Outcome outcome, bool of_keys);
  void OnChecked();
  // Gives up: revokes the lease granted here, or deletes the key if `release` (only the
  // incarnation created at `revision_`), then answers `status`.
  void Abandon(grpc::Status status, bool release);
  void Fail(grpc::Status status) { Abandon(std::move(status), options_.release_on_error); }
  void Complete(grpc::Status status, Grant grant = {});
  bool cancelled() const;

  Server* const server_;
  KeyWaiter* const waiter_;
  const AcquireOptions options_;

  // Set by one step at a time (each step starts the next).
  int64_t lease_ = 0;
  bool own_lease_ = false;  // granted here (request without a lease)
  std::string key_;
  int64_t revision_ = 0;  // 0 until the key is known
  int64_t modified_ = 0;  // the revision of this acquisition's put of the key
  kvpb::ResponseHeader header_;

  mutable std::mutex mu_;
  Done done_;  // guarded; empty once answered
  bool cancelled_ = false;
  uint64_t wait_id_ = 0;
  // The checks in flight (guarded): when they were asked, how many answers are still to
  // come, and the answers.
  std::chrono::steady_clock::time_point checks_asked_{};
  int checks_awaited_ = 0;
  std::optional<serverpb::Outcome> keys_checked_;
  serverpb::Outcome lease_checked_;
};

}  // namespace synod::server
