// The runtime's three-member cluster with real sockets: each member has its own peer
// server on a loopback port and its own GrpcTransport, as it will in separate
// processes. Members restart on the same ports and data directories.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <future>

#include "runtime/node.h"
#include "runtime/recording_state_machine.h"
#include "transport/grpc_transport.h"
#include "transport/peer_service.h"

namespace synod::transport {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using runtime::Node;
using runtime::StateMachine;

using runtime::RecordingStateMachine;

class GrpcCluster {
 public:
  explicit GrpcCluster(uint64_t snapshot_entries = 10000) : snapshot_entries_(snapshot_entries) {
    root_ = fs::temp_directory_path() / ("synod-grpc-cluster-test-" + std::to_string(::getpid()) +
                                         "-" + std::to_string(counter_++));
    fs::remove_all(root_);
    // Listen first (port 0: the kernel picks), so every member knows every address.
    for (NodeId id : voters_) StartServer(id, 0);
    for (NodeId id : voters_) StartNode(id);
  }
  ~GrpcCluster() {
    for (NodeId id : voters_) Stop(id);
    fs::remove_all(root_);
  }

  // A member goes down: no more messages in or out, threads stopped, port closed.
  void Stop(NodeId id) {
    Member& m = members_[id];
    {
      std::lock_guard lock(mu_);
      m.receiver = nullptr;
    }
    m.node.reset();
    m.transport.reset();
    m.server.reset();
  }

  // ... and comes back on the same port and data directory.
  void Start(NodeId id) {
    StartServer(id, port_[id]);
    StartNode(id);
  }

  NodeId WaitForLeader() {
    for (int i = 0; i < 1000; ++i) {
      for (auto& [id, m] : members_) {
        if (m.node && m.node->GetStatus().engine.role == consensus::Role::kLeader) return id;
      }
      std::this_thread::sleep_for(10ms);
    }
    return 0;
  }

  std::string Put(const std::string& command) {
    for (int attempt = 0; attempt < 100; ++attempt) {
      const NodeId leader = WaitForLeader();
      if (leader == 0) continue;
      std::promise<Result<std::string>> done;
      auto f = done.get_future();
      members_[leader].node->Propose(
          command, [&done](Result<std::string> r) { done.set_value(std::move(r)); });
      if (f.wait_for(5s) != std::future_status::ready) continue;
      auto r = f.get();
      if (r.ok()) return r.value();
      std::this_thread::sleep_for(20ms);
    }
    ADD_FAILURE() << "could not commit " << command;
    return "";
  }

  bool WaitApplied(size_t count) {
    for (int i = 0; i < 1500; ++i) {
      bool all = true;
      for (auto& [id, m] : members_) all = all && (!m.node || m.state->Commands().size() >= count);
      if (all) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  RecordingStateMachine& state(NodeId id) { return *members_.at(id).state; }
  GrpcTransport& transport(NodeId id) { return *members_.at(id).transport; }
  int port(NodeId id) { return port_.at(id); }

 private:
  struct Member {
    std::unique_ptr<RecordingStateMachine> state;
    std::unique_ptr<PeerServer> server;
    std::unique_ptr<GrpcTransport> transport;
    std::unique_ptr<Node> node;
    Node* receiver = nullptr;  // under mu_: where the server delivers
  };

  void StartServer(NodeId id, int port) {
    PeerServerOptions o;
    o.self = id;
    o.address = "127.0.0.1:" + std::to_string(port);
    Status s = PeerServer::Start(
        o,
        [this, id](pb::Envelope e) {
          std::lock_guard lock(mu_);
          if (Node* n = members_[id].receiver) n->Receive(std::move(e));  // only queues
        },
        &members_[id].server);
    ASSERT_TRUE(s.ok()) << s.ToString();
    port_[id] = members_[id].server->port();
  }

  void StartNode(NodeId id) {
    Member& m = members_[id];
    GrpcTransportOptions t;
    t.self = id;
    for (NodeId peer : voters_) t.peers[peer] = "127.0.0.1:" + std::to_string(port_[peer]);
    t.backoff_initial = 20ms;
    t.backoff_max = 200ms;
    t.connect_timeout = 200ms;
    m.transport = std::make_unique<GrpcTransport>(t);

    runtime::NodeOptions o;
    o.id = id;
    o.data_dir = (root_ / ("n" + std::to_string(id))).string();
    o.initial_voters = voters_;
    o.tick_interval = 10ms;
    o.snapshot_entries = snapshot_entries_;
    o.wal.segment_bytes = 1 << 20;
    m.state = std::make_unique<RecordingStateMachine>();
    Status s = Node::Start(o, m.state.get(), m.transport.get(), &m.node);
    ASSERT_TRUE(s.ok()) << s.ToString();
    std::lock_guard lock(mu_);
    m.receiver = m.node.get();
  }

  static inline int counter_ = 0;
  const std::vector<NodeId> voters_ = {1, 2, 3};
  uint64_t snapshot_entries_;
  fs::path root_;
  std::mutex mu_;
  std::map<NodeId, Member> members_;
  std::map<NodeId, int> port_;
};

std::vector<std::string> Numbered(const std::string& prefix, int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

TEST(GrpcCluster, ElectsReplicatesAndCatchesUpARestartedMember) {
  GrpcCluster c;
  const NodeId leader = c.WaitForLeader();
  ASSERT_NE(leader, 0u);
  for (const auto& cmd : Numbered("put-", 0, 100)) EXPECT_EQ(c.Put(cmd), "applied " + cmd);
  ASSERT_TRUE(c.WaitApplied(100));
  for (NodeId id : {1, 2, 3})
    EXPECT_EQ(c.state(id).Commands(), Numbered("put-", 0, 100)) << "member " << id;

  // A follower goes down, misses 50 commands, comes back on the same port and data.
  const NodeId follower = leader == 3 ? 2 : 3;
  const int port = c.port(follower);
  c.Stop(follower);
  for (const auto& cmd : Numbered("put-", 100, 150)) c.Put(cmd);
  c.Start(follower);
  EXPECT_EQ(c.port(follower), port);
  ASSERT_TRUE(c.WaitApplied(150));
  for (NodeId id : {1, 2, 3})
    EXPECT_EQ(c.state(id).Commands(), Numbered("put-", 0, 150)) << "member " << id;

  // The leader goes down: the others elect a new one and carry on; it comes back.
  c.Stop(leader);
  for (const auto& cmd : Numbered("put-", 150, 160)) c.Put(cmd);
  c.Start(leader);
  ASSERT_TRUE(c.WaitApplied(160));
  for (NodeId id : {1, 2, 3})
    EXPECT_EQ(c.state(id).Commands(), Numbered("put-", 0, 160)) << "member " << id;
}

TEST(GrpcCluster, AMemberFarBehindCatchesUpByASnapshotOverTheWire) {
  GrpcCluster c(/*snapshot_entries=*/20);
  ASSERT_NE(c.WaitForLeader(), 0u);
  c.Put("first");
  ASSERT_TRUE(c.WaitApplied(1));
  c.Stop(3);
  for (const auto& cmd : Numbered("b", 0, 80)) c.Put(cmd);
  c.Start(3);
  ASSERT_TRUE(c.WaitApplied(81));
  EXPECT_EQ(c.state(3).Commands(), c.state(1).Commands());
}

}  // namespace
}  // namespace synod::transport
