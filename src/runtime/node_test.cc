// Real members in one process: real WAL with fsync on temporary directories, real
// threads and timers, messages passed through an in-memory transport.
#include "runtime/node.h"
#include "runtime/recording_state_machine.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <set>

namespace synod::runtime {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class MemoryTransport : public Transport {
 public:
  void Attach(NodeId id, Node* node) {
    std::lock_guard lock(mu_);
    nodes_[id] = node;
  }
  void Detach(NodeId id) {
    std::lock_guard lock(mu_);
    nodes_.erase(id);
  }
  // Messages for which `drop` answers true are lost; every message is counted by type.
  void SetDrop(std::function<bool(const pb::Message&)> drop) {
    std::lock_guard lock(mu_);
    drop_ = std::move(drop);
  }
  int Sent(pb::MessageType type) {
    std::lock_guard lock(mu_);
    return sent_[type];
  }
  void Send(pb::Envelope envelope) override {
    std::lock_guard lock(mu_);
    pb::Envelope kept = envelope;
    kept.clear_messages();
    for (const auto& m : envelope.messages()) {
      ++sent_[m.type()];
      if (!drop_ || !drop_(m)) *kept.add_messages() = m;
    }
    auto it = nodes_.find(envelope.to());
    if (it != nodes_.end()) it->second->Receive(std::move(kept));  // Receive only queues
  }

 private:
  std::mutex mu_;
  std::map<NodeId, Node*> nodes_;
  std::function<bool(const pb::Message&)> drop_;
  std::map<pb::MessageType, int> sent_;
};

class Cluster {
 public:
  // durable_state: the members' state machines keep their state in files of their own
  // (RecordingStateMachine::Persist), as the server's store does.
  explicit Cluster(int size, uint64_t snapshot_entries = 10000, bool durable_state = false)
      : snapshot_entries_(snapshot_entries), durable_state_(durable_state) {
    root_ = fs::temp_directory_path() /
            ("synod-node-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    fs::remove_all(root_);
    for (int i = 1; i <= size; ++i) voters_.push_back(i);
    for (NodeId id : voters_) Start(id);
  }
  ~Cluster() {
    for (NodeId id : voters_) Stop(id);
    fs::remove_all(root_);
  }

  void Start(NodeId id) {
    Status s = TryStart(id);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  Status TryStart(NodeId id) {
    NodeOptions o;
    o.id = id;
    o.data_dir = DataDir(id);
    o.initial_voters = voters_;
    o.tick_interval = 10ms;
    o.snapshot_entries = snapshot_entries_;
    o.wal.segment_bytes = 1 << 20;
    state_[id] = durable_state_ ? std::make_unique<RecordingStateMachine>(StatePath(id))
                                : std::make_unique<RecordingStateMachine>();
    std::unique_ptr<Node> node;
    if (Status s = Node::Start(o, state_[id].get(), &transport_, &node); !s.ok()) return s;
    nodes_[id] = std::move(node);
    transport_.Attach(id, nodes_[id].get());
    return Status::Ok();
  }
  std::string DataDir(NodeId id) const { return (root_ / ("n" + std::to_string(id))).string(); }
  std::string StatePath(NodeId id) const {
    return (root_ / ("state-" + std::to_string(id))).string();
  }
  void Stop(NodeId id) {
    transport_.Detach(id);
    nodes_.erase(id);
  }

  NodeId WaitForLeader() {
    for (int i = 0; i < 500; ++i) {
      for (auto& [id, n] : nodes_) {
        if (n->GetStatus().engine.role == consensus::Role::kLeader) return id;
      }
      std::this_thread::sleep_for(10ms);
    }
    return 0;
  }

  // Proposes at the leader, retrying through leader changes, until applied there.
  std::string Put(const std::string& command) {
    for (int attempt = 0; attempt < 100; ++attempt) {
      const NodeId leader = WaitForLeader();
      if (leader == 0 || !nodes_.count(leader)) continue;
      std::promise<Result<std::string>> done;
      auto f = done.get_future();
      nodes_[leader]->Propose(command,
                              [&done](Result<std::string> r) { done.set_value(std::move(r)); });
      if (f.wait_for(5s) != std::future_status::ready) continue;
      auto r = f.get();
      if (r.ok()) return r.value();
      std::this_thread::sleep_for(20ms);
    }
    ADD_FAILURE() << "could not commit " << command;
    return "";
  }

  // Waits until every running member has applied `count` commands; returns true if so.
  bool WaitApplied(size_t count) {
    for (int i = 0; i < 1000; ++i) {
      bool all = true;
      for (auto& [id, n] : nodes_) all = all && state_[id]->Commands().size() >= count;
      if (all) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  // Waits until member `id`'s newest snapshot file is one without state (the snapshot thread
  // may still be writing it); true if it is.
  bool WaitForSnapshotWithoutState(NodeId id) {
    for (int i = 0; i < 200; ++i) {
      auto latest = LoadLatestSnapshot(DataDir(id) + "/snap");
      if (latest.ok() && latest.value().metadata.index() > 0 &&
          DeferredSnapshotData::Is(*latest.value().data)) {
        return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  // Stops every member, starts them again and puts one more command: every member must then
  // hold `before` and that command, in order.
  void ExpectEveryCommandAfterRestartingAll(std::vector<std::string> before) {
    for (NodeId id : voters_) Stop(id);
    for (NodeId id : voters_) Start(id);
    ASSERT_NE(WaitForLeader(), 0u);
    Put("after-restart");
    ASSERT_TRUE(WaitApplied(before.size() + 1));
    before.push_back("after-restart");
    for (NodeId id : voters_) EXPECT_EQ(state(id).Commands(), before) << "member " << id;
  }

  Node& node(NodeId id) { return *nodes_.at(id); }
  MemoryTransport& transport() { return transport_; }
  RecordingStateMachine& state(NodeId id) { return *state_.at(id); }

 private:
  static inline int counter_ = 0;
  uint64_t snapshot_entries_;
  bool durable_state_;
  fs::path root_;
  std::vector<NodeId> voters_;
  MemoryTransport transport_;
  std::map<NodeId, std::unique_ptr<RecordingStateMachine>> state_;
  std::map<NodeId, std::unique_ptr<Node>> nodes_;
};

std::vector<std::string> Numbered(const std::string& prefix, int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

TEST(Node, ThreeMembersElectALeaderAndApplyTheSameCommandsInOrder) {
  Cluster c(3);
  ASSERT_NE(c.WaitForLeader(), 0u);
  for (const auto& cmd : Numbered("put-", 0, 50)) EXPECT_EQ(c.Put(cmd), "applied " + cmd);
  ASSERT_TRUE(c.WaitApplied(50));
  for (NodeId id : {1, 2, 3})
    EXPECT_EQ(c.state(id).Commands(), Numbered("put-", 0, 50)) << "member " << id;
}

TEST(Node, ConcurrentProposalsShareFsyncs) {
  Cluster c(3);
  const NodeId leader = c.WaitForLeader();
  ASSERT_NE(leader, 0u);
  std::atomic<int> ok{0};
  std::promise<void> all_done;
  const int n = 400;
  for (int i = 0; i < n; ++i) {
    c.node(leader).Propose("c" + std::to_string(i), [&](Result<std::string> r) {
      if (r.ok() && ++ok == n) all_done.set_value();
    });
  }
  ASSERT_EQ(all_done.get_future().wait_for(10s), std::future_status::ready);
  const auto wal = c.node(leader).GetStatus().wal;
  // Batching: far fewer fsyncs than proposals.
  EXPECT_LT(wal.syncs, static_cast<uint64_t>(n / 2)) << "fsyncs " << wal.syncs;
}

TEST(Node, AClusterRestartedFromItsDisksHasEveryAcknowledgedCommand) {
  Cluster c(3);
  ASSERT_NE(c.WaitForLeader(), 0u);
  for (const auto& cmd : Numbered("a", 0, 30)) c.Put(cmd);
  c.ExpectEveryCommandAfterRestartingAll(Numbered("a", 0, 30));
}

TEST(Node, AMemberFarBehindCatchesUpByASnapshot) {
  Cluster c(3, /*snapshot_entries=*/20);
  ASSERT_NE(c.WaitForLeader(), 0u);
  c.Put("first");
  ASSERT_TRUE(c.WaitApplied(1));
  c.Stop(3);
  for (const auto& cmd : Numbered("b", 0, 80)) c.Put(cmd);
  c.Start(3);  // a fresh, empty state machine: the leader has compacted what it needs
  ASSERT_TRUE(c.WaitApplied(81));
  EXPECT_EQ(c.state(3).Commands(), c.state(1).Commands());
  EXPECT_GE(c.state(3).restored(), 1);
}

// Every member restarts from its own snapshot file (the state streamed into it) and the
// log after it.
TEST(Node, MembersRestartedFromTheirSnapshotFilesHaveEveryCommand) {
  Cluster c(3, /*snapshot_entries=*/20);
  ASSERT_NE(c.WaitForLeader(), 0u);
  for (const auto& cmd : Numbered("s", 0, 50)) c.Put(cmd);
  ASSERT_TRUE(c.WaitApplied(50));
  c.ExpectEveryCommandAfterRestartingAll(Numbered("s", 0, 50));
  for (NodeId id : {1, 2, 3}) {
    EXPECT_GE(c.state(id).restored(), 1) << "member " << id << " did not load its snapshot";
  }
}

// A state machine that keeps its state durably itself: its snapshots are a flush of it and
// a file without state, and a restart starts from the state machine's own storage.
TEST(Node, AStateMachineThatPersistsItsStateTakesSnapshotsWithoutWritingIt) {
  Cluster c(3, /*snapshot_entries=*/20, /*durable_state=*/true);
  ASSERT_NE(c.WaitForLeader(), 0u);
  for (const auto& cmd : Numbered("p", 0, 50)) c.Put(cmd);
  ASSERT_TRUE(c.WaitApplied(50));
  for (NodeId id : {1, 2, 3}) {
    EXPECT_GE(c.state(id).persisted(), 1) << "member " << id;
    EXPECT_TRUE(c.WaitForSnapshotWithoutState(id))
        << "member " << id << ": its newest snapshot file holds the state";
  }
  c.ExpectEveryCommandAfterRestartingAll(Numbered("p", 0, 50));
  for (NodeId id : {1, 2, 3}) {
    EXPECT_EQ(c.state(id).restored(), 0) << "member " << id << " needed no snapshot's state";
  }
}

// A member too far behind needs the state of a snapshot that has none: the leader's state
// machine writes it into a snapshot file then, and the member installs that.
TEST(Node, AMemberFarBehindGetsAStateMadeWhenItNeedsIt) {
  Cluster c(3, /*snapshot_entries=*/20, /*durable_state=*/true);
  ASSERT_NE(c.WaitForLeader(), 0u);
  c.Put("first");
  ASSERT_TRUE(c.WaitApplied(1));
  c.Stop(3);
  for (const auto& cmd : Numbered("b", 0, 80)) c.Put(cmd);
  c.Start(3);
  ASSERT_TRUE(c.WaitApplied(81));
  EXPECT_EQ(c.state(3).Commands(), c.state(1).Commands());
  EXPECT_GE(c.state(3).restored(), 1);
  // The state a member far behind needed was written into a file, at one of the others.
  int with_state = 0;
  for (NodeId id : {1, 2}) {
    for (const auto& e : fs::directory_iterator(c.DataDir(id) + "/snap")) {
      if (e.path().extension() == ".snap" && fs::file_size(e.path()) > 200) ++with_state;
    }
  }
  EXPECT_GE(with_state, 1);
}

// The log before a snapshot without state is gone: a state machine that lost its storage
// cannot be rebuilt from this member's disk, and the member says so rather than start.
TEST(Node, AMemberWhoseStateMachineLostItsStorageRefusesToStart) {
  Cluster c(3, /*snapshot_entries=*/20, /*durable_state=*/true);
  ASSERT_NE(c.WaitForLeader(), 0u);
  for (const auto& cmd : Numbered("p", 0, 50)) c.Put(cmd);
  ASSERT_TRUE(c.WaitApplied(50));
  ASSERT_TRUE(c.WaitForSnapshotWithoutState(2));
  c.Stop(2);
  fs::remove(c.StatePath(2));
  Status s = c.TryStart(2);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_NE(s.message().find("behind the newest snapshot"), std::string::npos) << s.message();
}

TEST(Node, AReadIndexCompletesOnceTheReadIsSafe) {
  Cluster c(3);
  const NodeId leader = c.WaitForLeader();
  ASSERT_NE(leader, 0u);
  c.Put("x");
  for (NodeId id : {1, 2, 3}) {
    std::promise<Status> done;
    c.node(id).ReadIndex([&done](Status s) { done.set_value(s); });
    auto f = done.get_future();
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    EXPECT_TRUE(f.get().ok());
    // Linearizable: a read served after the put's acknowledgement sees it.
    EXPECT_EQ(c.state(id).Commands().back(), "x") << "member " << id;
  }
}

// A follower of `c` once a put has committed (0 if no leader was elected).
NodeId FollowerAfterAPut(Cluster& c) {
  const NodeId leader = c.WaitForLeader();
  if (leader == 0) return 0;
  c.Put("x");
  return leader == 1 ? 2 : 1;
}

TEST(Node, ReadsThatArriveTogetherShareReadIndexRounds) {
  Cluster c(3);
  const NodeId follower = FollowerAfterAPut(c);
  ASSERT_NE(follower, 0u);
  const int before = c.transport().Sent(pb::MSG_READ_INDEX);
  constexpr int kReads = 200;
  std::atomic<int> ok{0};
  std::atomic<int> finished{0};
  std::promise<void> all_done;
  for (int i = 0; i < kReads; ++i) {
    c.node(follower).ReadIndex([&](Status s) {
      if (s.ok()) ++ok;
      if (++finished == kReads) all_done.set_value();
    });
  }
  ASSERT_EQ(all_done.get_future().wait_for(10s), std::future_status::ready);
  EXPECT_EQ(ok.load(), kReads);
  // One request per round, and a round serves every read that waited for it.
  EXPECT_LE(c.transport().Sent(pb::MSG_READ_INDEX) - before, 10);
}

TEST(Node, AReadIndexRequestLostOnTheWayIsAskedAgain) {
  Cluster c(3);
  const NodeId follower = FollowerAfterAPut(c);
  ASSERT_NE(follower, 0u);
  std::atomic<int> dropped{0};
  c.transport().SetDrop([&](const pb::Message& m) {
    return m.type() == pb::MSG_READ_INDEX && dropped++ == 0;  // the first one only
  });
  std::promise<Status> done;
  c.node(follower).ReadIndex([&done](Status s) { done.set_value(s); });
  auto f = done.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready) << "the lost request was not asked again";
  EXPECT_TRUE(f.get().ok());
  EXPECT_GE(dropped.load(), 2);
}

TEST(Node, AProposalAtAFollowerIsRefusedNamingNoOneElse) {
  Cluster c(3);
  const NodeId leader = c.WaitForLeader();
  ASSERT_NE(leader, 0u);
  const NodeId follower = leader == 1 ? 2 : 1;
  std::promise<Result<std::string>> done;
  c.node(follower).Propose("x", [&done](Result<std::string> r) { done.set_value(std::move(r)); });
  auto r = done.get_future().get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotLeader);
}

}  // namespace
}  // namespace synod::runtime
