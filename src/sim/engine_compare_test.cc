// Raft and Multi-Paxos side by side, measured rather than guessed (docs/paxos.md quotes
// the numbers this prints). Both engines run with their default configuration behind
// the same interface, in a tiny lossless cluster driven exactly as the persistence
// contract says; what is counted:
//   - messages and fsyncs (Readys with state to persist) per committed write, one write
//     at a time and in batches of ten proposals between two Readys;
//   - failover: simulated milliseconds (a tick is 10 ms) from the leader's crash until a
//     new leader has a write chosen and applied, over many seeds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <string>

#include "consensus/paxos/paxos.h"
#include "consensus/raft/raft.h"

namespace synod::sim {
namespace {

using consensus::DurableState;
using consensus::Engine;
using consensus::LogIndex;
using consensus::NodeId;
using consensus::Ready;
using consensus::Role;
namespace pb = ::synod::consensuspb;

constexpr int kTickMs = 10;

class MiniCluster {
 public:
  MiniCluster(const std::string& engine, int n, uint64_t seed) : engine_(engine), seed_(seed) {
    for (int i = 1; i <= n; ++i) {
      Member& m = members_[i];
      for (int v = 1; v <= n; ++v) m.disk.snapshot.metadata.mutable_conf_state()->add_voters(v);
      Boot(i);
    }
  }

  void Crash(NodeId id) { members_.at(id).up = false; }

  // Tick every member once, then let the network settle.
  void TickAll() {
    for (auto& [id, m] : members_) {
      if (m.up) m.engine->Tick();
    }
    Settle();
  }

  void Settle() {
    for (int round = 0; round < 10000; ++round) {
      bool moved = false;
      for (auto& [id, m] : members_) moved |= Pump(id);
      if (!net_.empty()) {
        std::deque<pb::Message> batch = std::move(net_);
        net_.clear();
        for (const auto& msg : batch) {
          Member& to = members_.at(msg.to());
          if (to.up) (void)to.engine->Step(msg);
        }
        moved = true;
      }
      if (!moved) return;
    }
    ADD_FAILURE() << "did not settle";
  }

  NodeId Leader() const {
    for (const auto& [id, m] : members_) {
      if (m.up && m.engine->GetStatus().role == Role::kLeader) return id;
    }
    return consensus::kNoNode;
  }

  Engine& engine(NodeId id) { return *members_.at(id).engine; }
  LogIndex Applied(NodeId id) const { return members_.at(id).applied; }

  uint64_t messages = 0;
  uint64_t fsyncs = 0;

 private:
  struct Member {
    std::unique_ptr<Engine> engine;
    bool up = true;
    DurableState disk;
    LogIndex applied = 0;
  };

  void Boot(NodeId id) {
    Member& m = members_.at(id);
    if (engine_ == "raft") {
      consensus::raft::Config cfg;
      cfg.id = id;
      cfg.seed = seed_;
      m.engine = std::make_unique<consensus::raft::Raft>(cfg, m.disk);
    } else {
      consensus::paxos::Config cfg;
      cfg.id = id;
      cfg.seed = seed_;
      m.engine = std::make_unique<consensus::paxos::Paxos>(cfg, m.disk);
    }
  }

  bool Pump(NodeId id) {
    Member& m = members_.at(id);
    if (!m.up || !m.engine->HasReady()) return false;
    Ready rd = m.engine->TakeReady();
    if (rd.hard_state || !rd.entries.empty() || rd.snapshot) fsyncs++;
    if (!rd.entries.empty()) {
      auto& log = m.disk.entries;
      const LogIndex first = rd.entries.front().index();
      std::erase_if(log, [&](const pb::Entry& e) { return e.index() >= first; });
      for (auto& e : rd.entries) log.push_back(std::move(e));
    }
    if (rd.hard_state) m.disk.hard_state = *rd.hard_state;
    for (auto& msg : rd.messages) {
      messages++;
      net_.push_back(std::move(msg));
    }
    if (!rd.committed_entries.empty()) m.applied = rd.committed_entries.back().index();
    m.engine->Advance(rd);
    return true;
  }

  std::string engine_;
  uint64_t seed_;
  std::map<NodeId, Member> members_;
  std::deque<pb::Message> net_;
};

NodeId ElectSomeLeader(MiniCluster& c) {
  for (int i = 0; i < 200 && c.Leader() == consensus::kNoNode; ++i) c.TickAll();
  return c.Leader();
}

struct WriteCost {
  double messages = 0;
  double fsyncs = 0;
};

// Cost per committed write, `batch` proposals between two Readys.
WriteCost MeasureWrites(const std::string& engine, int nodes, int batch) {
  MiniCluster c(engine, nodes, 1);
  const NodeId leader = ElectSomeLeader(c);
  EXPECT_NE(leader, consensus::kNoNode);
  c.TickAll();
  const int rounds = 50;
  const LogIndex before = c.Applied(leader);
  c.messages = c.fsyncs = 0;
  for (int r = 0; r < rounds; ++r) {
    for (int i = 0; i < batch; ++i) EXPECT_TRUE(c.engine(leader).Propose("w").ok());
    c.Settle();
  }
  const double writes = static_cast<double>(c.Applied(leader) - before);
  EXPECT_EQ(writes, rounds * batch);
  return {c.messages / writes, c.fsyncs / writes};
}

struct Failover {
  double mean_ms = 0;
  int max_ms = 0;
};

Failover MeasureFailover(const std::string& engine, int nodes, int seeds) {
  Failover f;
  for (int seed = 1; seed <= seeds; ++seed) {
    MiniCluster c(engine, nodes, seed);
    const NodeId old = ElectSomeLeader(c);
    for (int i = 0; i < 5; ++i) c.TickAll();
    c.Crash(old);
    int ticks = 0;
    for (; ticks < 1000; ++ticks) {
      c.TickAll();
      const NodeId leader = c.Leader();
      if (leader == consensus::kNoNode) continue;
      const LogIndex applied = c.Applied(leader);
      if (!c.engine(leader).Propose("after").ok()) continue;
      c.Settle();
      if (c.Applied(leader) > applied) break;
    }
    const int ms = (ticks + 1) * kTickMs;
    f.mean_ms += ms;
    f.max_ms = std::max(f.max_ms, ms);
  }
  f.mean_ms /= seeds;
  return f;
}

TEST(EngineComparison, RaftAndMultiPaxosSideBySide) {
  std::printf("\n  %-12s %5s %22s %22s %24s\n", "engine", "nodes", "msgs/write (1, x10)",
              "fsyncs/write (1, x10)", "failover ms (mean, max)");
  for (int nodes : {3, 5}) {
    for (const std::string engine : {"raft", "multi-paxos"}) {
      const WriteCost one = MeasureWrites(engine, nodes, 1);
      const WriteCost ten = MeasureWrites(engine, nodes, 10);
      const Failover f = MeasureFailover(engine, nodes, 200);
      std::printf("  %-12s %5d %10.2f %10.2f %10.2f %10.2f %12.1f %10d\n", engine.c_str(), nodes,
                  one.messages, ten.messages, one.fsyncs, ten.fsyncs, f.mean_ms, f.max_ms);
      // Sanity: a write costs a round trip to each other member at least, and batching
      // makes it cheaper; failover takes at least one election timeout.
      EXPECT_GE(one.messages, 2.0 * (nodes - 1));
      EXPECT_LT(ten.messages, one.messages);
      EXPECT_GE(f.mean_ms, 10.0 * kTickMs);
      EXPECT_LT(f.max_ms, 1000 * kTickMs);
    }
  }
}

}  // namespace
}  // namespace synod::sim
