// Server: one synod member — the consensus node, the key-value store, the peer transport
// and the client API (etcd's v3 gRPC services) in one process.
//
//   client gRPC (etcd v3 API, callback services: no thread waits on a request)
//        |  writes: Propose ---------------------------.  (a follower forwards them to
//        |  linearizable reads: ReadBarrier, then read   |   the leader: synod.serverpb.Forward)
//        v                                               v
//   kv::Store  <-- apply (StateMachine) --  runtime::Node (engine, WAL, snapshots)
//        |                                               ^
//   RevisionFeed -> watches                  peer gRPC (synod.v1.Peer streams, Forward)
//
// Leases: the leader's lessor thread promotes the store to primary, finds expired leases
// and proposes their revocation; keep-alives are served by the leader (forwarded there).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "kv/store.h"
#include "runtime/node.h"
#include "server/config.h"
#include "synod/server.pb.h"

namespace grpc {
class Server;
class Service;
}  // namespace grpc

namespace synod::transport {
class GrpcTransport;
class PeerServer;
}  // namespace synod::transport

namespace synod::server {

class ServerStateMachine;
class ForwardClient;
class Timers;
class Executor;
class RevisionWaiters;

// Tells listeners that the store's revision advanced (called after every apply that
// changed it, on the apply thread). A listener must return at once: hand the work to
// another thread. Thread-safe.
class RevisionFeed {
 public:
  using Listener = std::function<void(int64_t revision)>;
  uint64_t Subscribe(Listener listener);
  void Unsubscribe(uint64_t id);
  void Publish(int64_t revision);

 private:
  std::mutex mu_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Listener> listeners_;
};

class Server {
 public:
  // Opens (or creates) the data dir, starts the member and its listeners.
  static Status Start(ServerConfig config, std::unique_ptr<Server>* server);
  // Graceful stop: stops listening, finishes what is in flight, closes the WAL and store.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // --- For the services. Callbacks may run on any thread and must not block. ---

  using OutcomeCallback = std::function<void(serverpb::Outcome)>;
  // Replicates `command` (through the leader: a follower forwards it) and answers with
  // the outcome of applying it. Errors carry etcd's gRPC codes and messages.
  void Propose(serverpb::Command command, OutcomeCallback done);
  // A key-value request: a write is proposed; a Range is served here, after a
  // ReadBarrier unless it is serializable.
  void Serve(kvpb::Request request, OutcomeCallback done);
  // Lease keep-alive and time-to-live are the leader's (its lessor keeps the expiry
  // times): served there, forwarded from a follower.
  void LeaseKeepAlive(kvpb::LeaseKeepAliveRequest request, OutcomeCallback done);
  void LeaseTimeToLive(kvpb::LeaseTimeToLiveRequest request, OutcomeCallback done);
  // Answers OK once this member's store reflects every write acknowledged before the
  // call (a ReadIndex round): reading the store then is linearizable.
  void ReadBarrier(std::function<void(serverpb::Outcome)> done);
  // A membership change (one at a time); `context` is the serialized serverpb::Member.
  void ProposeConfChange(consensuspb::ConfChange change, OutcomeCallback done);
  void TransferLeader(uint64_t member_id);

  kv::Store& store() { return *store_; }
  RevisionFeed& revisions() { return revisions_; }
  serverpb::Membership membership() const;
  runtime::NodeStatus node_status() const;
  uint64_t member_id() const { return member_id_; }
  uint64_t cluster_id() const { return cluster_id_.load(std::memory_order_relaxed); }
  const ServerConfig& config() const { return config_; }
  // Fills the response header as etcd does: cluster and member ids, current term and,
  // unless the store already set it (the revision a request was served at), the store's
  // current revision.
  template <typename Header>
  void FillHeader(Header* header) const {
    header->set_cluster_id(cluster_id());
    header->set_member_id(member_id_);
    header->set_raft_term(term_.load(std::memory_order_relaxed));
    if (header->revision() == 0) header->set_revision(store_->Revision());
  }
  // Whether this member knows a leader now.
  bool HasLeader() const { return LeaderId() != 0; }
  // `listener` runs (on the lessor thread) each time this member has had no leader for
  // three election timeouts in a row: etcd then ends the streams of clients that require
  // a leader ("hasleader" metadata). Register before the server starts serving.
  void OnNoLeader(std::function<void()> listener);
  // Blocks until the server is asked to stop (SIGTERM handling is the caller's).
  void Wait();
  void Shutdown();

 private:
  explicit Server(ServerConfig config);
  Status Open();
  Status StartClientServer();
  void OnMembership(const serverpb::Membership& membership);
  // Who this member is (server_membership.cc): from its data dir on a restart, from the
  // flags for a founding member, from the running cluster for a member joining it.
  Status ResumeMembership(const serverpb::Membership& stored);
  Status BootstrapMembership(serverpb::Membership* membership);
  Status JoinMembership(serverpb::Membership* membership);

 public:
  // The id a new member with these peer URLs gets (MemberAdd): Raft members get etcd's
  // kind of 64-bit id; Multi-Paxos ids are small (they are part of every ballot).
  uint64_t NewMemberId(const std::vector<std::string>& peer_urls) const;

 private:
  // Requests (server_requests.cc).
  struct Attempts;
  // Runs `attempt`, and again after a short pause while it answers a retryable error
  // (no leader yet, leader changed) if `retry`; answers "request timed out" if nothing
  // answered within RequestTimeout().
  void Attempt(std::function<void(OutcomeCallback)> attempt, bool retry, OutcomeCallback done);
  // Served by the leader, wherever it is: attempts (retried while there is no leader)
  // of ServeOnce with forwarding.
  void ServeAnywhere(std::shared_ptr<serverpb::ForwardRequest> request, OutcomeCallback done);
  // One attempt: served here if this member leads, else forwarded (if `forward`).
  void ServeOnce(const std::shared_ptr<const serverpb::ForwardRequest>& request, bool forward,
                 OutcomeCallback done);
  serverpb::Outcome ServeLease(const serverpb::ForwardRequest& request);
  std::chrono::milliseconds RequestTimeout() const;
  // The store revision a write's response reports (0: none).
  static int64_t ResponseRevision(const kvpb::Response& response);
  uint64_t LeaderId() const;

  // The leader's chores (server_lessor.cc): lease expiry, publishing this member,
  // promoting caught-up learners.
  void LessorLoop();
  void LessorStep();
  void MonitorLeader(std::chrono::steady_clock::time_point now);
  void PublishSelfIfNeeded();
  void CheckRemoved(const runtime::NodeStatus& status);
  void AutoPromoteLearners(const runtime::NodeStatus& status);

 public:
  // Serves a request a follower forwarded here (the Forward service; forward.cc).
  void ServeForwarded(serverpb::ForwardRequest request, OutcomeCallback done);

 private:
  ServerConfig config_;
  uint64_t member_id_ = 0;
  std::unique_ptr<kv::Store> store_;
  std::unique_ptr<ServerStateMachine> state_;
  std::unique_ptr<transport::GrpcTransport> transport_;
  std::unique_ptr<ForwardClient> forward_;
  std::unique_ptr<grpc::Service> forward_service_;
  std::unique_ptr<transport::PeerServer> peer_server_;
  std::unique_ptr<Timers> timers_;
  std::unique_ptr<Executor> readers_;  // serves reads off the apply thread
  // Forwarded writes waiting for this member to apply them (woken by revisions_).
  std::unique_ptr<RevisionWaiters> revision_waiters_;
  std::unique_ptr<runtime::Node> node_;
  std::atomic<runtime::Node*> node_ptr_{nullptr};  // for the peer listener's thread
  std::vector<std::unique_ptr<grpc::Service>> services_;
  std::unique_ptr<grpc::Server> client_server_;
  RevisionFeed revisions_;
  std::atomic<uint64_t> term_{0};
  std::atomic<uint64_t> cluster_id_{0};
  std::atomic<bool> is_learner_{false};
  std::atomic<bool> draining_{false};

  // Lessor thread state.
  std::set<int64_t> revoking_;  // leases whose revocation is in flight (under revoke_mu_)
  std::mutex no_leader_mu_;
  std::vector<std::function<void()>> no_leader_listeners_;   // under no_leader_mu_
  std::chrono::steady_clock::time_point no_leader_since_{};  // lessor thread; {}: a leader
  std::mutex revoke_mu_;
  std::atomic<bool> publishing_{false};
  uint64_t leaderless_since_ms_ = 0;    // lessor thread only
  uint64_t last_removal_check_ms_ = 0;  // lessor thread only
  std::atomic<bool> promoting_{false};

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread lessor_thread_;
};

}  // namespace synod::server
