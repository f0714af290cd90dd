// A test harness for the Multi-Paxos engine, after raft/raft_test_harness.h: an
// in-memory cluster of N engines, each with an in-memory "disk" and a tiny state
// machine, joined by a network that the test controls.
//
// The harness is the engine's caller and keeps the persistence contract of
// consensus/api/engine.h literally: for each Ready it writes the snapshot, entries and
// hard state to the node's disk, then queues the messages on the network, then applies
// the snapshot and committed entries, then calls Advance. Messages travel only when the
// test delivers them (Stabilize, DeliverAll, Deliver).
//
// While it runs, the harness checks what every caller may rely on:
//   - a member's promise (HardState.term) never decreases, its chosen index never
//     regresses;
//   - committed entries are applied in order, and only once they are on the member's
//     disk;
//   - every member applies the same entry (index, term, data) at each index;
//   - at most one leader per ballot;
//   - a promise and an acceptance are on disk before the message that says so leaves.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "consensus/paxos/paxos.h"

namespace synod::consensus {
// Failed expectations name roles, not bytes.
inline void PrintTo(Role role, std::ostream* os) {
  static const char* const kNames[] = {"follower", "pre-candidate", "candidate", "leader"};
  *os << kNames[static_cast<int>(role)];
}
}  // namespace synod::consensus

namespace synod::consensus::paxos {

// The few internals that the public interface does not show. Tests prefer GetStatus().
class PaxosTestPeer {
 public:
  static size_t Inflight(const Paxos& p, NodeId peer) {
    return p.progress_.at(peer).inflight.size();
  }
  static int RandomizedElectionTicks(const Paxos& p) { return p.randomized_election_ticks_; }
  static int ElectionElapsed(const Paxos& p) { return p.election_elapsed_; }
  static Ballot BallotOf(const Paxos& p) { return p.ballot_; }
  static Ballot Promised(const Paxos& p) { return p.promised_; }
  static LogIndex StableIndex(const Paxos& p) { return p.log_.StableIndex(); }
  static LogIndex RecoveryLast(const Paxos& p) { return p.recovery_last_; }
  static pb::ConfState ConfAt(const Paxos& p, LogIndex slot) { return p.ConfAt(slot); }
  static const pb::Entry* EntryAt(const Paxos& p, LogIndex slot) { return p.log_.Find(slot); }
};

namespace test {

inline pb::Entry MakeEntry(LogIndex index, Term term, std::string data = "") {
  pb::Entry e;
  e.set_index(index);
  e.set_term(term);
  e.set_type(pb::ENTRY_NORMAL);
  e.set_data(std::move(data));
  return e;
}

// A log given by the term of each entry, from index 1: Log({1, 1, 2}).
inline std::vector<pb::Entry> Log(std::initializer_list<Term> terms) {
  std::vector<pb::Entry> log;
  for (Term t : terms) {
    const LogIndex i = log.size() + 1;
    log.push_back(MakeEntry(i, t, "e" + std::to_string(i) + "t" + std::to_string(t)));
  }
  return log;
}

inline pb::ConfState VotersConf(const std::vector<NodeId>& voters) {
  pb::ConfState c;
  for (NodeId v : voters) c.add_voters(v);
  return c;
}

inline pb::ConfChange Change(pb::ConfChangeType type, NodeId id) {
  pb::ConfChange cc;
  cc.set_type(type);
  cc.set_node_id(id);
  return cc;
}

// The state machine's view of a configuration change (the engine tracks its own).
inline void ApplyConfChange(pb::ConfState* conf, const pb::ConfChange& cc) {
  auto erase = [](google::protobuf::RepeatedField<uint64_t>* ids, NodeId id) {
    auto it = std::find(ids->begin(), ids->end(), id);
    if (it != ids->end()) ids->erase(it);
  };
  auto insert = [](google::protobuf::RepeatedField<uint64_t>* ids, NodeId id) {
    ids->Add(id);
    std::sort(ids->begin(), ids->end());
  };
  erase(conf->mutable_voters(), cc.node_id());
  erase(conf->mutable_learners(), cc.node_id());
  if (cc.type() == pb::CONF_ADD_VOTER) insert(conf->mutable_voters(), cc.node_id());
  if (cc.type() == pb::CONF_ADD_LEARNER) insert(conf->mutable_learners(), cc.node_id());
}

// The membership of a state machine that applied everything up to a snapshot: the
// configuration after it, with the changes it covers that take effect later.
inline pb::ConfState MembershipAt(const pb::SnapshotMetadata& meta) {
  pb::ConfState conf = meta.conf_state();
  for (const pb::PendingConfChange& p : meta.pending_conf_changes()) {
    ApplyConfChange(&conf, p.change());
  }
  return conf;
}

inline bool IsFromLeader(const pb::Message& m) {
  return m.type() == pb::MSG_ACCEPT || m.type() == pb::MSG_HEARTBEAT ||
         m.type() == pb::MSG_SNAPSHOT;
}

// One member: the engine, its disk, its state machine.
struct Node {
  Config config;
  std::unique_ptr<Paxos> raft;
  bool up = true;

  // The disk: what survives a crash.
  pb::HardState hard_state;
  Snapshot snapshot;
  std::vector<pb::Entry> entries;  // the log after snapshot.metadata.index()

  // The state machine: the data of every applied normal entry, ';'-terminated.
  std::string state;
  pb::ConfState conf;
  LogIndex applied = 0;
  std::vector<ReadState> read_states;

  LogIndex DurableLastIndex() const {
    return entries.empty() ? snapshot.metadata.index() : entries.back().index();
  }
  const pb::Entry* DurableEntry(LogIndex index) const {
    const LogIndex first = snapshot.metadata.index() + 1;
    if (index < first || index > DurableLastIndex()) return nullptr;
    return &entries[index - first];
  }
  DurableState Durable() const { return DurableState{hard_state, snapshot, entries}; }
};

class Cluster {
 public:
  using ConfigFn = std::function<void(Config&)>;
  using Filter = std::function<bool(const pb::Message&)>;

  // A new cluster of voters 1..n, all with empty logs.
  explicit Cluster(int n, ConfigFn config_fn = nullptr) : config_fn_(std::move(config_fn)) {
    std::vector<NodeId> voters;
    for (int i = 1; i <= n; ++i) voters.push_back(static_cast<NodeId>(i));
    for (NodeId id : voters) {
      DurableState d;
      *d.snapshot.metadata.mutable_conf_state() = VotersConf(voters);
      Start(id, d);
    }
  }

  // A member about to join a running cluster: empty configuration, it waits for a leader.
  void AddMember(NodeId id) { Start(id, DurableState{}); }

  // (Re)start a member from the given disk, as if it crashed and that is what it found.
  void Start(NodeId id, const DurableState& d) {
    Node& n = nodes_[id];
    n.config = Config{};
    n.config.id = id;
    n.config.seed = 42;
    if (config_fn_) config_fn_(n.config);
    n.hard_state = d.hard_state;
    n.snapshot = d.snapshot;
    n.entries = d.entries;
    Boot(n);
  }

  // A member whose disk holds `log` and `hard_state`, in a cluster of `voters`.
  void StartWithLog(NodeId id, const std::vector<NodeId>& voters, std::vector<pb::Entry> log,
                    Term term, NodeId vote = kNoNode, LogIndex commit = 0) {
    DurableState d;
    *d.snapshot.metadata.mutable_conf_state() = VotersConf(voters);
    d.entries = std::move(log);
    d.hard_state.set_term(term);
    d.hard_state.set_vote(vote);
    d.hard_state.set_commit(commit);
    Start(id, d);
  }

  void Crash(NodeId id) { node(id).up = false; }
  void Restart(NodeId id) { Boot(node(id)); }

  // ---- the network ----------------------------------------------------------------

  void Cut(NodeId a, NodeId b) {
    cut_.insert({a, b});
    cut_.insert({b, a});
  }
  void Isolate(NodeId id) {
    for (const auto& [other, n] : nodes_) {
      if (other != id) Cut(id, other);
    }
  }
  // Cut every link between `side` and the rest.
  void Partition(const std::set<NodeId>& side) {
    for (const auto& [a, na] : nodes_) {
      for (const auto& [b, nb] : nodes_) {
        if (side.count(a) && !side.count(b)) Cut(a, b);
      }
    }
  }
  void Heal() {
    cut_.clear();
    filters_.clear();
    rewrites_.clear();
  }
  // Lose every message for which `drop` answers true, until Heal().
  void DropIf(Filter drop) { filters_.push_back(std::move(drop)); }
  // Change messages on their way, until Heal() (e.g. lose the tail of an append: what
  // arrives is still a message the sender could have sent).
  void Rewrite(std::function<void(pb::Message&)> rewrite) {
    rewrites_.push_back(std::move(rewrite));
  }

  // Messages sent and not yet delivered (or lost).
  std::deque<pb::Message>& InFlight() { return in_flight_; }
  // Every message sent since the last ClearSent(), in order.
  const std::vector<pb::Message>& Sent() const { return sent_; }
  void ClearSent() { sent_.clear(); }
  std::vector<pb::Message> Sent(pb::MessageType type, NodeId from = kNoNode,
                                NodeId to = kNoNode) const {
    std::vector<pb::Message> out;
    for (const auto& m : sent_) {
      if (m.type() == type && (from == kNoNode || m.from() == from) &&
          (to == kNoNode || m.to() == to)) {
        out.push_back(m);
      }
    }
    return out;
  }

  // Deliver the in-flight messages for which `which` answers true (all if null); the
  // others stay in flight. Returns how many arrived.
  size_t Deliver(const Filter& which = nullptr) {
    std::deque<pb::Message> batch = std::move(in_flight_);
    in_flight_.clear();
    size_t delivered = 0;
    for (auto& m : batch) {
      if (which && !which(m)) {
        in_flight_.push_back(std::move(m));
        continue;
      }
      if (Lost(m)) continue;
      for (const auto& rewrite : rewrites_) rewrite(m);
      Status s = raft(m.to()).Step(m);
      EXPECT_TRUE(s.ok()) << s.ToString();
      ++delivered;
    }
    return delivered;
  }
  size_t DeliverAll() { return Deliver(); }

  // ---- driving --------------------------------------------------------------------

  // Hand one Ready of `id` through the persistence contract. False if it had none.
  bool Process(NodeId id) {
    Node& n = node(id);
    if (!n.up || !n.raft->HasReady()) return false;
    Advance(id, TakeAndPersist(id));
    return true;
  }
  // The same in two halves, for tests that act between them: take the Ready, persist
  // it, send its messages and apply its committed entries...
  Ready TakeAndPersist(NodeId id) {
    Node& n = node(id);
    Ready rd = n.raft->TakeReady();
    CheckCommittedAreDurable(n, rd);
    Persist(n, rd);
    for (const auto& m : rd.messages) {
      CheckPromisesAreDurable(n, m);
      sent_.push_back(m);
      in_flight_.push_back(m);
    }
    Apply(n, rd);
    if (rd.role == Role::kLeader) {
      auto [it, fresh] = leader_of_term_.try_emplace(n.raft->GetStatus().term, id);
      EXPECT_EQ(it->second, id) << "two leaders in term " << it->first;
    }
    return rd;
  }
  // ...then tell the engine.
  void Advance(NodeId id, const Ready& rd) { node(id).raft->Advance(rd); }
  void ProcessAll() {
    for (auto& [id, n] : nodes_) Process(id);
  }

  // Run Readys and deliver messages until nothing moves.
  void Stabilize() {
    for (int round = 0; round < 100000; ++round) {
      bool moved = false;
      for (auto& [id, n] : nodes_) moved |= Process(id);
      if (!in_flight_.empty()) {
        DeliverAll();
        moved = true;
      }
      if (!moved) return;
    }
    ADD_FAILURE() << "the cluster did not stabilize";
  }

  // Tick one member, without delivering anything.
  void Tick(NodeId id, int times = 1) {
    for (int i = 0; i < times; ++i) {
      if (node(id).up) raft(id).Tick();
    }
  }
  // Tick every member that is up, then let the network settle; `times` times.
  void TickAll(int times = 1) {
    for (int i = 0; i < times; ++i) {
      for (auto& [id, n] : nodes_) {
        if (n.up) n.raft->Tick();
      }
      Stabilize();
    }
  }

  // Let `id` time out and campaign until it wins (nobody else ticks). Returns the leader.
  NodeId ElectLeader(NodeId id) {
    const int ticks_max = 10 * node(id).config.election_ticks;
    for (int i = 0; i < ticks_max && RoleOf(id) != Role::kLeader; ++i) {
      Tick(id);
      Stabilize();
    }
    EXPECT_EQ(RoleOf(id), Role::kLeader) << "member " << id << " did not win its election";
    return Leader();
  }

  // The same with every clock running (members with lease reads on refuse to vote in
  // their first election timeout): tick everyone until someone leads, then have the
  // leadership transferred to `id` if needed.
  NodeId ElectLeaderInLockstep(NodeId id) {
    const int ticks_max = 10 * node(id).config.election_ticks;
    for (int i = 0; i < ticks_max && Leader() == kNoNode; ++i) TickAll();
    if (const NodeId leader = Leader(); leader != kNoNode && leader != id) {
      EXPECT_TRUE(raft(leader).TransferLeader(id).ok());
      Stabilize();
    }
    EXPECT_EQ(RoleOf(id), Role::kLeader) << "member " << id << " did not become leader";
    return Leader();
  }

  // The leader with the highest term among the members that are up.
  NodeId Leader() const {
    NodeId leader = kNoNode;
    Term term = 0;
    for (const auto& [id, n] : nodes_) {
      if (!n.up) continue;
      EngineStatus s = n.raft->GetStatus();
      if (s.role == Role::kLeader && (leader == kNoNode || s.term > term)) {
        leader = id;
        term = s.term;
      }
    }
    return leader;
  }

  Result<ProposalId> Propose(NodeId id, std::string data) {
    return raft(id).Propose(std::move(data));
  }
  Result<ProposalId> ProposeConfChange(NodeId id, const pb::ConfChange& cc) {
    return raft(id).ProposeConfChange(cc);
  }

  // The application snapshots its state at its applied index and tells the engine,
  // which completes the metadata (term, membership); both are then stored together.
  Status Compact(NodeId id) {
    Node& n = node(id);
    pb::SnapshotMetadata at;
    at.set_index(n.applied);
    Snapshot snap = Snapshot::InMemory(at, n.state);
    Result<pb::SnapshotMetadata> meta = n.raft->Compact(snap);
    if (!meta.ok()) return meta.status();
    EXPECT_EQ(meta.value().index(), n.applied);
    EXPECT_EQ(meta.value().term(), n.DurableEntry(n.applied)->term());
    EXPECT_EQ(MembershipAt(meta.value()).SerializeAsString(), n.conf.SerializeAsString())
        << "the engine and the state machine disagree on the membership";
    const auto held = n.raft->LatestSnapshot();
    EXPECT_EQ(held.metadata.SerializeAsString(), meta.value().SerializeAsString())
        << "the snapshot the engine holds is the one it was given, completed";
    EXPECT_EQ(held.data, snap.data) << "the engine shares the data, it does not copy it";
    std::erase_if(n.entries, [&](const pb::Entry& e) { return e.index() <= n.applied; });
    snap.metadata = meta.value();
    n.snapshot = std::move(snap);
    return Status::Ok();
  }

  // ---- inspection -----------------------------------------------------------------

  Node& node(NodeId id) {
    auto it = nodes_.find(id);
    EXPECT_NE(it, nodes_.end()) << "no member " << id;
    return it->second;
  }
  Paxos& raft(NodeId id) { return *node(id).raft; }
  EngineStatus GetStatus(NodeId id) { return raft(id).GetStatus(); }
  Role RoleOf(NodeId id) { return GetStatus(id).role; }
  Term TermOf(NodeId id) { return GetStatus(id).term; }
  LogIndex CommitOf(NodeId id) { return GetStatus(id).commit; }
  LogIndex LastIndexOf(NodeId id) { return GetStatus(id).last_index; }

  // The (index, term) pairs of a member's durable log after its snapshot.
  std::vector<std::pair<LogIndex, Term>> DurableLog(NodeId id) {
    std::vector<std::pair<LogIndex, Term>> out;
    for (const auto& e : node(id).entries) out.emplace_back(e.index(), e.term());
    return out;
  }
  std::vector<Term> DurableTerms(NodeId id) {
    std::vector<Term> out;
    for (const auto& e : node(id).entries) out.push_back(e.term());
    return out;
  }

  const std::map<NodeId, Node>& nodes() const { return nodes_; }

 private:
  void Boot(Node& n) {
    n.raft = std::make_unique<Paxos>(n.config, n.Durable());
    n.up = true;
    n.state = n.snapshot.ReadAll().value();
    n.conf = MembershipAt(n.snapshot.metadata);
    n.applied = n.snapshot.metadata.index();
    n.read_states.clear();
  }

  bool Lost(const pb::Message& m) const {
    if (cut_.count({m.from(), m.to()})) return true;
    auto it = nodes_.find(m.to());
    if (it == nodes_.end() || !it->second.up) return true;
    for (const auto& drop : filters_) {
      if (drop(m)) return true;
    }
    return false;
  }

  // Contract step 1: snapshot, then entries (truncating a suffix), then hard state.
  void Persist(Node& n, const Ready& rd) {
    if (rd.snapshot) {
      n.snapshot = *rd.snapshot;
      n.entries.clear();
    }
    if (!rd.entries.empty()) {
      const LogIndex first = rd.entries.front().index();
      EXPECT_LE(first, n.DurableLastIndex() + 1) << "entries leave a gap in the log";
      std::erase_if(n.entries, [&](const pb::Entry& e) { return e.index() >= first; });
      for (const auto& e : rd.entries) n.entries.push_back(e);
    }
    if (rd.hard_state) {
      EXPECT_GE(rd.hard_state->term(), n.hard_state.term()) << "promise went backwards";
      EXPECT_GE(rd.hard_state->commit(), n.hard_state.commit()) << "chosen index regressed";
      n.hard_state = *rd.hard_state;
    }
  }

  // Contract step 3's allowance: without a snapshot, committed entries are durable when
  // the Ready is taken (the runtime applies them while the Ready is being persisted).
  void CheckCommittedAreDurable(const Node& n, const Ready& rd) const {
    if (rd.snapshot) return;
    for (const auto& e : rd.committed_entries) {
      const pb::Entry* durable = n.DurableEntry(e.index());
      EXPECT_TRUE(durable != nullptr && durable->term() == e.term())
          << "entry " << e.index() << " handed out to apply before it was durable";
    }
  }

  // Contract step 2: a message may only promise what is already durable.
  void CheckPromisesAreDurable(const Node& n, const pb::Message& m) const {
    if (m.type() == pb::MSG_PROMISE) {
      EXPECT_GE(n.hard_state.term(), m.term()) << "a promise was sent before it was durable";
    }
    if (m.type() == pb::MSG_ACCEPTED && !m.reject()) {
      for (LogIndex i = n.hard_state.commit() + 1; i <= m.index(); ++i) {
        const pb::Entry* e = n.DurableEntry(i);
        EXPECT_TRUE(e != nullptr && e->ballot() == m.term())
            << "slot " << i << " acknowledged in ballot " << m.term() << " before it was durable";
      }
    }
  }

  // Contract step 3: snapshot, then committed entries, in order, once durable.
  void Apply(Node& n, const Ready& rd) {
    if (rd.snapshot) {
      n.state = rd.snapshot->ReadAll().value();
      n.conf = MembershipAt(rd.snapshot->metadata);
      n.applied = rd.snapshot->metadata.index();
    }
    for (const auto& e : rd.committed_entries) {
      EXPECT_EQ(e.index(), n.applied + 1) << "committed entries applied out of order";
      const pb::Entry* durable = n.DurableEntry(e.index());
      EXPECT_TRUE(durable != nullptr && durable->term() == e.term() && durable->data() == e.data())
          << "entry " << e.index() << " applied before it was durable";
      auto [it, fresh] = applied_everywhere_.try_emplace(e.index(), e);
      EXPECT_TRUE(it->second.term() == e.term() && it->second.data() == e.data())
          << "two members applied different entries at index " << e.index();
      n.applied = e.index();
      if (e.type() == pb::ENTRY_CONF_CHANGE) {
        pb::ConfChange cc;
        EXPECT_TRUE(cc.ParseFromString(e.data()));
        ApplyConfChange(&n.conf, cc);
      } else if (!e.data().empty()) {
        n.state += e.data() + ";";
      }
    }
    for (const auto& rs : rd.read_states) n.read_states.push_back(rs);
  }

  ConfigFn config_fn_;
  std::map<NodeId, Node> nodes_;
  std::deque<pb::Message> in_flight_;
  std::vector<pb::Message> sent_;
  std::set<std::pair<NodeId, NodeId>> cut_;
  std::vector<Filter> filters_;
  std::vector<std::function<void(pb::Message&)>> rewrites_;
  std::map<Term, NodeId> leader_of_term_;
  std::map<LogIndex, pb::Entry> applied_everywhere_;
};

// Messages of one type from `from` to `to` (kNoNode: any).
inline Cluster::Filter Is(pb::MessageType type, NodeId from = kNoNode, NodeId to = kNoNode) {
  return [=](const pb::Message& m) {
    return m.type() == type && (from == kNoNode || m.from() == from) &&
           (to == kNoNode || m.to() == to);
  };
}

}  // namespace test
}  // namespace synod::consensus::paxos
