#include "server/server.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/service_type.h>

#include "base/assert.h"
#include "base/thread_name.h"
#include "kv/errors.h"
#include "kv/rocksdb_backend.h"
#include "server/forward.h"
#include "server/log.h"
#include "server/server_internal.h"
#include "server/services.h"
#include "server/state_machine.h"
#include "server/watch_hub.h"
#include "transport/grpc_transport.h"
#include "transport/peer_service.h"

namespace synod::server {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------
// RevisionFeed

uint64_t RevisionFeed::Subscribe(Listener listener) {
  std::lock_guard lock(mu_);
  listeners_[next_id_] = std::move(listener);
  return next_id_++;
}

void RevisionFeed::Unsubscribe(uint64_t id) {
  std::lock_guard lock(mu_);
  listeners_.erase(id);
}

void RevisionFeed::Publish(int64_t revision) {
  std::lock_guard lock(mu_);
  for (auto& [id, listener] : listeners_) listener(revision);
}

// ---------------------------------------------------------------------------------
// Outcomes

grpc::Status ToGrpcStatus(const serverpb::Outcome& outcome) {
  return grpc::Status(static_cast<grpc::StatusCode>(outcome.grpc_code()), outcome.message());
}

serverpb::Outcome ErrorOutcome(grpc::StatusCode code, std::string message) {
  serverpb::Outcome outcome;
  outcome.set_grpc_code(static_cast<int>(code));
  outcome.set_message(std::move(message));
  return outcome;
}

serverpb::Outcome OutcomeOf(const Status& status) {
  if (status.ok()) return serverpb::Outcome();
  return ErrorOutcome(static_cast<grpc::StatusCode>(kv::GrpcCodeOf(status)), status.message());
}

// ---------------------------------------------------------------------------------
// Start and stop

Server::Server(ServerConfig config) : config_(std::move(config)) {}

Status Server::Start(ServerConfig config, std::unique_ptr<Server>* server) {
  if (Status s = Finalize(&config); !s.ok()) return s;
  std::unique_ptr<Server> srv(new Server(std::move(config)));
  if (Status s = srv->Open(); !s.ok()) return s;
  *server = std::move(srv);
  return Status::Ok();
}

Status Server::Open() {
  const std::string member_dir = config_.data_dir + "/member";
  std::error_code ec;
  fs::create_directories(member_dir, ec);
  if (ec) return Status(Code::kIoError, "cannot create " + member_dir + ": " + ec.message());

  const std::string membership_path = member_dir + "/cluster";
  auto stored = ServerStateMachine::LoadMembership(membership_path);
  serverpb::Membership membership;
  bool join_existing = false;
  std::vector<consensus::NodeId> voters;
  if (stored.ok()) {
    if (Status s = ResumeMembership(stored.value()); !s.ok()) return s;
    membership = stored.value();
  } else if (stored.status().code() != Code::kNotFound) {
    return stored.status();
  } else if (config_.initial_cluster_state == "new") {
    if (Status s = BootstrapMembership(&membership); !s.ok()) return s;
    for (const auto& m : membership.members()) voters.push_back(m.id());
  } else {
    if (Status s = JoinMembership(&membership); !s.ok()) return s;
    join_existing = true;
  }
  config_.consensus = membership.consensus();

  // The key-value store.
  kv::StoreOptions store_options;
  store_options.request_bytes_max = config_.max_request_bytes;
  store_options.key_bytes_max = config_.max_request_bytes;
  store_options.value_bytes_max = config_.max_request_bytes;
  store_options.txn_ops_max = config_.max_txn_ops;
  store_options.range_bytes_max = config_.max_range_bytes;
  if (config_.quota_backend_bytes > 0) store_options.quota_bytes = config_.quota_backend_bytes;
  // etcd's minimum lease TTL: ceil(1.5 * election timeout) seconds.
  store_options.lease_ttl_min_s = (3 * config_.election_timeout_ms + 1999) / 2000;
  kv::RocksBackendOptions backend_options;
  // The consensus WAL is the durability point: what RocksDB loses in a crash is
  // replayed from it (or restored from the snapshot it was compacted to).
  backend_options.disable_wal = true;
  // Memory: two memtables of 16 MiB and a 16 MiB block cache bound RocksDB's share of a
  // member's resident memory; reads beyond the cache come from the kernel's page cache
  // (measured: 8 and 32 MiB caches served the same linearizable and serializable range
  // throughput over 10k keys; a full 32 MiB cache was a sixth of a member's peak).
  backend_options.write_buffer_bytes = 16ull << 20;
  backend_options.block_cache_bytes = 16ull << 20;
  auto backend = kv::OpenRocksBackend(member_dir + "/kv", backend_options);
  if (!backend.ok()) return backend.status();
  auto store = kv::Store::Open(std::move(backend.value()), store_options);
  if (!store.ok()) return store.status();
  store_ = std::move(store.value());

  // Peers: the transport sends to every other member's first peer URL.
  transport::GrpcTransportOptions topts;
  topts.self = member_id_;
  for (const auto& m : membership.members()) {
    if (m.id() == member_id_ || m.peer_urls().empty()) continue;
    auto url = ParseUrl(m.peer_urls(0));
    if (url.ok()) topts.peers[m.id()] = url.value().HostPort();
  }
  transport_ = std::make_unique<transport::GrpcTransport>(topts);
  forward_ = std::make_unique<ForwardClient>(topts.peers);

  state_ = std::make_unique<ServerStateMachine>(
      store_.get(), &revisions_, membership_path, membership,
      [this](const serverpb::Membership& m) { OnMembership(m); });
  if (!stored.ok()) {
    // A new member writes its membership down before anything else, so that a restart
    // is recognised as one.
    if (Status s = state_->SaveInitial(membership); !s.ok()) return s;
  }

  timers_ = std::make_unique<Timers>();
  readers_ = std::make_unique<Executor>(2);
  revision_waiters_ = std::make_unique<RevisionWaiters>();
  revisions_.Subscribe([w = revision_waiters_.get()](int64_t revision) { w->Reached(revision); });
  OnMembership(state_->membership());

  // The member-to-member listener: consensus streams and forwarded requests.
  forward_service_ = MakeForwardService(this);
  transport::PeerServerOptions popts;
  popts.self = member_id_;
  if (config_.listen_peer_urls.size() != 1) {
    return Status(Code::kInvalidArgument,
                  "--listen-peer-urls: synod listens on exactly one peer URL");
  }
  popts.address = ParseUrl(config_.listen_peer_urls[0]).value().HostPort();
  popts.extra_services.push_back(forward_service_.get());
  if (Status s = transport::PeerServer::Start(
          popts,
          [this](consensuspb::Envelope env) {
            if (runtime::Node* n = node_ptr_.load()) n->Receive(std::move(env));
          },
          &peer_server_);
      !s.ok()) {
    return Status(Code::kIoError, s.message() + " (--listen-peer-urls)");
  }

  // The consensus node.
  runtime::NodeOptions nopts;
  nopts.id = member_id_;
  nopts.data_dir = member_dir;
  nopts.initial_voters = voters;
  nopts.join_existing = join_existing;
  nopts.engine = config_.consensus;
  nopts.tick_interval = std::chrono::milliseconds(config_.heartbeat_interval_ms);
  nopts.raft.election_ticks =
      static_cast<int>(config_.election_timeout_ms / config_.heartbeat_interval_ms);
  nopts.raft.heartbeat_ticks = 1;
  nopts.snapshot_entries = config_.snapshot_count;
  nopts.raft.catchup_entries = config_.snapshot_catchup_entries;
  if (Status s = runtime::Node::Start(nopts, state_.get(), transport_.get(), &node_); !s.ok())
    return s;
  node_ptr_.store(node_.get());

  if (Status s = StartClientServer(); !s.ok()) return s;
  lessor_thread_ = std::thread([this] {
    NameThisThread("synod-lessor");
    LessorLoop();
  });
  return Status::Ok();
}

Status Server::StartClientServer() {
  services_.push_back(MakeKvService(this));
  services_.push_back(MakeWatchService(this));
  services_.push_back(MakeLeaseService(this));
  services_.push_back(MakeClusterService(this));
  services_.push_back(MakeMaintenanceService(this));
  services_.push_back(MakeLockService(this));
  services_.push_back(MakeElectionService(this));

  grpc::ServerBuilder builder;
  // etcd accepts messages up to --max-request-bytes plus 512 KiB of gRPC overhead; a
  // request between the two is refused by the store with "request is too large".
  builder.SetMaxReceiveMessageSize(static_cast<int>(config_.max_request_bytes + 512 * 1024));
  builder.SetMaxSendMessageSize(std::numeric_limits<int>::max());
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  std::vector<int> ports(config_.listen_client_urls.size());
  for (size_t i = 0; i < config_.listen_client_urls.size(); ++i) {
    builder.AddListeningPort(ParseUrl(config_.listen_client_urls[i]).value().HostPort(),
                             grpc::InsecureServerCredentials(), &ports[i]);
  }
  for (auto& s : services_) {
    if (s) builder.RegisterService(s.get());
  }
  client_server_ = builder.BuildAndStart();
  for (size_t i = 0; i < ports.size(); ++i) {
    if (client_server_ == nullptr || ports[i] == 0) {
      return Status(Code::kIoError, "cannot listen for clients on " +
                                        config_.listen_client_urls[i] +
                                        " (--listen-client-urls): address in use?");
    }
  }
  return Status::Ok();
}

Server::~Server() {
  Shutdown();
  // Requests still waiting are answered "server stopped" from now on; the client
  // listener stops (in-flight calls get 2 s to finish); then the member stops.
  draining_.store(true);
  if (timers_) timers_->Drain();
  if (revision_waiters_) revision_waiters_->ReleaseAll();
  for (auto& service : services_) {
    if (service) StopWatchService(service.get());  // ends watch streams: "server stopped"
  }
  if (client_server_) {
    client_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    client_server_->Wait();
  }
  services_.clear();
  if (lessor_thread_.joinable()) lessor_thread_.join();
  peer_server_.reset();  // no more envelopes or forwarded requests
  node_ptr_.store(nullptr);
  node_.reset();  // stops the loop and the WAL: what was acknowledged is durable already
  transport_.reset();
  forward_.reset();
  readers_.reset();
  timers_.reset();
  if (store_) (void)store_->Sync();
}

void Server::OnMembership(const serverpb::Membership& membership) {
  // Runs on the apply thread: keep the transport and the forwarder's addresses current.
  cluster_id_.store(membership.cluster_id());
  for (const auto& m : membership.members()) {
    if (m.id() == member_id_) is_learner_.store(m.is_learner());
  }
  std::set<uint64_t> present;
  for (const auto& m : membership.members()) {
    present.insert(m.id());
    if (m.id() == member_id_ || m.peer_urls().empty()) continue;
    auto url = ParseUrl(m.peer_urls(0));
    if (!url.ok()) continue;
    transport_->SetPeer(m.id(), url.value().HostPort());
    forward_->SetPeer(m.id(), url.value().HostPort());
  }
  for (uint64_t removed : membership.removed()) {
    transport_->RemovePeer(removed);
    forward_->RemovePeer(removed);
  }
  if (std::find(membership.removed().begin(), membership.removed().end(), member_id_) !=
      membership.removed().end()) {
    // Stop a moment later, so that the removal's own proposer hears its answer.
    LogWarn("this member has been removed from the cluster: stopping");
    timers_->After(std::chrono::milliseconds(1000), [this] { Shutdown(); });
  }
}

serverpb::Membership Server::membership() const { return state_->membership(); }

runtime::NodeStatus Server::node_status() const { return node_->GetStatus(); }

void Server::Shutdown() {
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
}

void Server::Wait() {
  std::unique_lock lock(stop_mu_);
  stop_cv_.wait(lock, [&] { return stopping_; });
}

}  // namespace synod::server
