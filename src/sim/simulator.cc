#include "sim/simulator.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <optional>
#include <queue>
#include <set>
#include <sstream>
#include <vector>

#include "base/assert.h"
#include "base/rng.h"
#include "check/linearizability.h"
#include "sim/engine_factory.h"
#include "sim/invariants.h"
#include "sim/kv_requests.h"
#include "sim/sim_disk.h"
#include "sim/state_machine.h"

namespace synod::sim {

using consensus::DurableState;
using consensus::Engine;
using consensus::PlantedBug;
using consensus::ProposalId;
using consensus::Ready;
using consensus::Role;

FaultSet FaultSet::All() { return {true, true, true, true, true, true, true}; }

Result<FaultSet> FaultSet::Parse(const std::string& text) {
  if (text == "all") return All();
  FaultSet f;
  if (text == "none" || text.empty()) return f;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item == "crash")
      f.crash = true;
    else if (item == "partition")
      f.partition = true;
    else if (item == "loss")
      f.loss = true;
    else if (item == "duplicate")
      f.duplicate = true;
    else if (item == "reorder")
      f.reorder = true;
    else if (item == "membership")
      f.membership = true;
    else if (item == "transfer")
      f.transfer = true;
    else
      return Status(Code::kInvalidArgument, "unknown fault '" + item + "'");
  }
  return f;
}

std::string FaultSet::ToString() const {
  std::vector<std::string> names;
  if (crash) names.push_back("crash");
  if (partition) names.push_back("partition");
  if (loss) names.push_back("loss");
  if (duplicate) names.push_back("duplicate");
  if (reorder) names.push_back("reorder");
  if (membership) names.push_back("membership");
  if (transfer) names.push_back("transfer");
  if (names.size() == 7) return "all";
  if (names.empty()) return "none";
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ",") + n;
  return out;
}

bool PlantedBugsCompiledIn() {
#ifdef SYNOD_PLANTED_BUGS
  return true;
#else
  return false;
#endif
}

namespace {

constexpr int64_t kMs = 1000;  // simulated time is in microseconds

// A member fingerprints its state machine (for the replica agreement check) after applying
// each entry whose index is a multiple of this, and whenever its state machine reaches an
// index otherwise: a flush, a snapshot taken or installed, a restart.
constexpr LogIndex kFingerprintEvery = 8;

// ---------------------------------------------------------------------------------
// The pieces of a simulated cluster.

// A client request a member is working on; answered when its entry is applied.
struct PendingRequest {
  int client = 0;
  uint64_t op_id = 0;
  std::string key;      // reads
  ProposalId proposal;  // writes
};

struct Node {
  NodeId id = 0;
  bool up = true;
  uint64_t incarnation = 0;  // rises at each crash: events of an old life are void
  std::unique_ptr<Engine> engine;
  // What survives a crash: the log and snapshot that were fsynced, and whatever the state
  // machine had made durable.
  std::unique_ptr<SimDisk> disk;
  std::unique_ptr<StateMachine> state;
  LogIndex applied = 0;  // the last entry the engine handed over to apply
  // The engine read a snapshot whose state is not made yet (deferred snapshots).
  bool snapshot_state_wanted = false;
  std::optional<Ready> persisting;  // a Ready whose fsync is under way
  Term term = 0;
  Term checked_leader_term = 0;
  std::map<LogIndex, PendingRequest> writes;               // by proposal index
  std::map<uint64_t, PendingRequest> reads;                // by read request id
  std::multimap<LogIndex, PendingRequest> reads_to_serve;  // confirmed, waiting to apply
};

// kUnchecked: a put, a delete or a range delete on keys outside the linearizability check.
enum class OpType { kPut, kGet, kCas, kUnchecked };

struct Client {
  int id = 0;
  uint64_t op_id = 0;       // current operation (0: idle)
  size_t history_slot = 0;  // its record in the history
  OpType type = OpType::kGet;
  kvpb::Request command;  // writes
  std::string key;
  NodeId target = 1;
  std::optional<std::string> last_read;  // feeds compare-and-swap expectations
};

enum class EventKind {
  kDeliver,      // a peer message reaches a member
  kTick,         // a member's clock ticks
  kPersisted,    // a member's fsync completes
  kRequest,      // a client request reaches a member
  kReply,        // a member's answer reaches a client
  kClientStart,  // a client begins its next operation
  kClientTimeout,
  kFault,     // the fault scheduler acts
  kCompact,   // the leader proposes a compaction of the key-value history
  kCrash,     // a member crashes (scheduled: see ObserveRole)
  kRestart,   // a crashed member comes back
  kHealLink,  // a partition ends
  kLivenessPhase,
  kEnd,
};

struct Reply {
  enum class Kind { kDone, kRetry } kind = Kind::kRetry;
  NodeId leader_hint = 0;
  bool cas_ok = false;
  bool cas_read_known = false;          // a failed compare-and-swap read the key
  std::optional<std::string> cas_read;  // what it read
  std::optional<std::string> read;
};

struct Event {
  int64_t time = 0;
  uint64_t seq = 0;  // ties broken by scheduling order: determinism
  EventKind kind = EventKind::kTick;
  NodeId node = 0;
  uint64_t incarnation = 0;
  int client = 0;
  uint64_t op_id = 0;
  std::string wire;  // kDeliver: a serialized Envelope, as a transport would carry it
  Reply reply;
  NodeId link_from = 0, link_to = 0;
};

struct EventOrder {
  bool operator()(const Event* a, const Event* b) const {
    return a->time != b->time ? a->time > b->time : a->seq > b->seq;
  }
};

// ---------------------------------------------------------------------------------

class Simulation {
 public:
  explicit Simulation(const SimOptions& o)
      : opt_(o),
        rng_(o.seed),
        factory_(MakeEngineFactory(o.engine, o.planted_bug, o.seed, o.catchup_entries)),
        // Half the seeds persist as the runtime does (messages the engine allows leave
        // during the fsync; a commit-only hard state is not waited for), half hold every
        // message until its Ready is durable and fsync every hard state: both are proven,
        // and the slower one keeps the narrow interleavings (Figure 8) reachable.
        runtime_persistence_(o.seed % 2 == 0) {}

  SimResult Run();

 private:
  // Scheduling.
  Event* NewEvent(int64_t delay_us, EventKind kind);
  void Trace(const std::string& line);

  // Members.
  Node& N(NodeId id) { return nodes_.at(id); }
  void StartNode(Node& n);
  void OpenStateMachine(Node& n);
  void RecordFingerprint(Node& n);
  void Crash(Node& n);
  void Restart(Node& n);
  void PumpReady(Node& n);
  bool CommittedAreDurable(const Node& n, const Ready& rd);
  void CompletePersist(Node& n);
  void ApplyCommitted(Node& n, const std::vector<pb::Entry>& entries);
  void ServeReads(Node& n);
  void MaybeSnapshot(Node& n);
  // Gives the engine a snapshot at `index` with `data`, and the disk the snapshot it returns.
  void CompactTo(Node& n, LogIndex index, std::shared_ptr<const consensus::SnapshotData> data);
  void ObserveRole(Node& n, const Ready& rd);
  std::optional<NodeId> Leader();
  std::string DescribeNode(Node& n);

  // Network.
  void Send(NodeId from, pb::Message m);
  bool LinkOpen(NodeId from, NodeId to) const { return !blocked_.count({from, to}); }
  int64_t Latency();

  // Clients.
  void ClientStart(Client& c);
  void ClientSend(Client& c, int64_t delay_us);
  void HandleRequest(Node& n, const Event& ev);
  void HandleReply(Client& c, const Event& ev);
  void AnswerClient(const PendingRequest& r, Reply reply);

  // Faults.
  void ScheduleNextFault();
  void Fault();
  void FaultPartition();
  void FaultMembership();
  void ProposeCompaction();
  void StartLivenessPhase();

  void CheckLogMatching();
  void CheckLinearizability();
  void Fail(const std::string& what);

  SimOptions opt_;
  Rng rng_;
  EngineFactory factory_;
  InvariantChecker checker_;
  int64_t now_ = 0;
  uint64_t seq_ = 0;
  std::priority_queue<Event*, std::vector<Event*>, EventOrder> queue_;
  std::deque<Event> event_pool_;
  std::vector<Event*> free_events_;

  std::map<NodeId, Node> nodes_;
  std::set<std::pair<NodeId, NodeId>> blocked_;  // one-way links cut
  std::vector<Client> clients_;
  std::vector<check::KvOperation> history_;
  uint64_t next_op_id_ = 1;
  uint64_t next_read_id_ = 1;
  bool liveness_phase_ = false;
  int64_t liveness_start_ = 0;
  uint64_t ops_ok_at_liveness_ = 0;
  bool done_ = false;

  double loss_ = 0, duplicate_ = 0;
  // How many revisions of history compaction keeps (etcd's revision-based auto-compaction).
  int64_t compaction_retention_ = 0;
  std::deque<std::string> trace_;
  SimResult result_;
  const bool runtime_persistence_;
};

Event* Simulation::NewEvent(int64_t delay_us, EventKind kind) {
  Event* ev;
  if (!free_events_.empty()) {
    ev = free_events_.back();
    free_events_.pop_back();
    *ev = Event{};
  } else {
    event_pool_.emplace_back();
    ev = &event_pool_.back();
  }
  ev->time = now_ + std::max<int64_t>(delay_us, 0);
  ev->seq = seq_++;
  ev->kind = kind;
  queue_.push(ev);
  return ev;
}

void Simulation::Trace(const std::string& line) {
  char stamp[32];
  std::snprintf(stamp, sizeof stamp, "[%9.3fms] ", static_cast<double>(now_) / kMs);
  std::string full = stamp + line;
  if (opt_.trace) std::printf("%s\n", full.c_str());
  trace_.push_back(std::move(full));
  if (trace_.size() > 60) trace_.pop_front();
}

void Simulation::Fail(const std::string& what) {
  if (!result_.ok) return;
  result_.ok = false;
  result_.violation = what;
  Trace("VIOLATION: " + what);
  done_ = true;
}

// ---------------------------------------------------------------------------------
// Members: start, crash, restart, and the persist → send → apply → advance loop.

void Simulation::StartNode(Node& n) {
  // The log comes back from its encoded records, as the WAL reads it at a restart.
  auto durable = n.disk->Recover();
  if (!durable.ok()) {
    Fail("node " + std::to_string(n.id) + ": " + durable.status().message());
    return;
  }
  OpenStateMachine(n);
  if (!result_.ok) {
    n.up = false;
    return;
  }
  // As the node runtime does: what the state machine applied is committed.
  consensus::RaiseCommitToApplied(durable.value(), n.state->AppliedIndex());
  n.engine = factory_(n.id, durable.value(), n.incarnation);
  n.applied = n.disk->snapshot_index();
  n.term = n.disk->hard_state().term();
  n.up = true;
  Event* tick = NewEvent(static_cast<int64_t>(rng_.Below(opt_.tick_ms * kMs)), EventKind::kTick);
  tick->node = n.id;
  tick->incarnation = n.incarnation;
}

// Opens the member's state machine as the node runtime does at a start: one that lost writes
// the snapshot covers (or was caught in the middle of an install) starts again from the
// snapshot; the log replays the rest (entries it already holds are skipped).
void Simulation::OpenStateMachine(Node& n) {
  if (Status s = n.state->Open(n.disk->snapshot()); !s.ok()) {
    Fail("node " + std::to_string(n.id) + ": the state machine does not open: " + s.message());
    return;
  }
  RecordFingerprint(n);
}

void Simulation::RecordFingerprint(Node& n) {
  auto fp = n.state->Fingerprint();
  if (!fp.ok()) {
    Fail("node " + std::to_string(n.id) +
         ": the state machine cannot be read: " + fp.status().message());
    return;
  }
  checker_.OnStoreState(n.id, n.state->AppliedIndex(), fp.value().revision,
                        fp.value().compact_revision, fp.value().hash);
  result_.stats.fingerprints++;
}

void Simulation::Crash(Node& n) {
  // Everything not fsynced is gone: the Ready being persisted, the engine's memory, the
  // state machine's unflushed writes (the log replays them), pending requests.
  n.up = false;
  n.incarnation++;
  n.persisting.reset();
  n.engine.reset();
  n.snapshot_state_wanted = false;
  n.state->Crash();
  n.writes.clear();
  n.reads.clear();
  n.reads_to_serve.clear();
  result_.stats.crashes++;
  Trace("crash n" + std::to_string(n.id));
}

void Simulation::Restart(Node& n) {
  if (n.up) return;
  StartNode(n);
  if (!n.up) return;
  Trace("restart n" + std::to_string(n.id) + " (term " + std::to_string(n.term) + ", log " +
        std::to_string(n.disk->snapshot_index()) + "+" + std::to_string(n.disk->entries().size()) +
        ", state machine at " + std::to_string(n.state->AppliedIndex()) + ")");
  PumpReady(n);
}

void Simulation::PumpReady(Node& n) {
  while (n.up && !n.persisting && n.engine->HasReady() && !done_) {
    Ready rd = n.engine->TakeReady();
    ObserveRole(n, rd);
    if (!CommittedAreDurable(n, rd)) return;
    const bool ack_before_fsync = opt_.planted_bug == PlantedBug::kAckBeforeFsync;
    if (ack_before_fsync) {
      for (auto& m : rd.messages) Send(n.id, std::move(m));  // planted: before the fsync
      rd.messages.clear();
    }
    // The contract's exception: messages that may leave during the fsync.
    std::vector<consensus::pb::Message> after_fsync;
    for (auto& m : rd.messages) {
      if (runtime_persistence_ && n.engine->MaySendBeforeDurable(m)) {
        Send(n.id, std::move(m));
      } else {
        after_fsync.push_back(std::move(m));
      }
    }
    rd.messages = std::move(after_fsync);
    // A hard state that only advanced the commit index is not waited for; modelled by its
    // worst case: it never reaches the disk.
    if (runtime_persistence_ && rd.hard_state && rd.entries.empty() && !rd.snapshot &&
        consensus::OnlyCommitAdvanced(*rd.hard_state, n.disk->hard_state())) {
      rd.hard_state.reset();
    }
    const bool needs_fsync = rd.hard_state || !rd.entries.empty() || rd.snapshot;
    n.persisting = std::move(rd);
    if (!needs_fsync) {
      CompletePersist(n);
      continue;
    }
    // An fsync takes 0.1 to 2 ms; a crash before it completes loses the whole batch.
    Event* ev = NewEvent(static_cast<int64_t>(rng_.Between(100, 2000)), EventKind::kPersisted);
    ev->node = n.id;
    ev->incarnation = n.incarnation;
    return;
  }
}

bool Simulation::CommittedAreDurable(const Node& n, const Ready& rd) {
  // The engine contract the runtime relies on to apply a Ready's committed entries while
  // it persists the Ready: without a snapshot, they are durable here already.
  if (rd.snapshot) return true;
  for (const auto& e : rd.committed_entries) {
    if (e.index() <= n.disk->snapshot_index()) continue;  // compacted: durable in the snapshot
    const pb::Entry* durable = n.disk->EntryAt(e.index());
    if (durable == nullptr || durable->term() != e.term()) {
      Fail("node " + std::to_string(n.id) + " was handed entry " + std::to_string(e.index()) +
           " to apply before it was durable there");
      return false;
    }
  }
  return true;
}

void Simulation::ObserveRole(Node& n, const Ready& rd) {
  if (rd.hard_state) n.term = rd.hard_state->term();
  if (rd.role == Role::kLeader && n.checked_leader_term < n.term) {
    checker_.OnLeader(n.id, n.term);
    result_.stats.leaders_elected++;
    Trace("n" + std::to_string(n.id) + " becomes leader of term " + std::to_string(n.term));
    // Now and then a new leader dies within milliseconds, before its first entries
    // reach anyone: the ingredients of the paper's Figure 8.
    if (opt_.faults.crash && !liveness_phase_ && rng_.Chance(0.15)) {
      Event* ev = NewEvent(static_cast<int64_t>(rng_.Between(0, 6000)), EventKind::kCrash);
      ev->node = n.id;
      ev->incarnation = n.incarnation;
    }
  }
}

void Simulation::CompletePersist(Node& n) {
  Ready rd = std::move(*n.persisting);
  n.persisting.reset();
  SimDisk& disk = *n.disk;
  if (rd.snapshot) disk.InstallSnapshot(*rd.snapshot);
  disk.Append(std::move(rd.entries));
  if (rd.hard_state) {
    checker_.OnDurableHardState(n.id, disk.hard_state(), *rd.hard_state);
    // Every entry this member now durably calls committed joins the committed record,
    // before anyone applies it: a leader elected without it is caught at once.
    for (LogIndex i = std::max(disk.hard_state().commit(), disk.snapshot_index()) + 1;
         i <= rd.hard_state->commit() && disk.EntryAt(i) != nullptr; ++i) {
      checker_.OnCommitted(n.id, rd.hard_state->term(), *disk.EntryAt(i));
    }
    disk.SetHardState(*rd.hard_state);
  }
  // Durable: now the messages may promise it.
  for (auto& m : rd.messages) Send(n.id, std::move(m));
  if (rd.snapshot) {
    const auto& meta = rd.snapshot->metadata;
    checker_.OnSnapshotInstalled(n.id, meta.index(), meta.term());
    if (Status s = n.state->Install(rd.snapshot->ReadAll().value(), meta.index()); !s.ok()) {
      Fail("node " + std::to_string(n.id) + ": the leader's snapshot at " +
           std::to_string(meta.index()) + " does not install: " + s.message());
      return;
    }
    RecordFingerprint(n);
    n.applied = meta.index();
    result_.stats.snapshots_sent++;
    Trace("n" + std::to_string(n.id) + " installs snapshot at " + std::to_string(meta.index()));
    // Requests whose entries the snapshot covers cannot be matched any more: their
    // clients time out (the outcome is unknown to them).
    n.writes.erase(n.writes.begin(), n.writes.upper_bound(meta.index()));
  }
  ApplyCommitted(n, rd.committed_entries);
  for (const auto& rs : rd.read_states) {
    auto it = n.reads.find(rs.request_id);
    if (it == n.reads.end()) continue;
    n.reads_to_serve.emplace(rs.index, it->second);
    n.reads.erase(it);
  }
  ServeReads(n);
  if (rd.role == Role::kLeader && n.checked_leader_term < n.term) {
    n.checked_leader_term = n.term;
    checker_.CheckLeaderCompleteness(n.id, n.term, disk.snapshot_index(), disk.entries());
  }
  n.engine->Advance(rd);
  MaybeSnapshot(n);
  if (!checker_.ok()) Fail(checker_.violation());
}

void Simulation::ApplyCommitted(Node& n, const std::vector<pb::Entry>& entries) {
  if (entries.empty()) return;
  StateMachine& state = *n.state;
  for (const auto& e : entries) {
    checker_.OnApplied(n.id, n.term, e);
    SYNOD_ASSERT(e.index() == n.applied + 1 || !checker_.ok(), "entries are applied in order");
    n.applied = e.index();
    // After a restart the state machine may hold entries the engine hands over again: they
    // are skipped, as the node runtime skips them.
    std::optional<kv::ApplyResult> applied;
    if (e.index() > state.AppliedIndex()) {
      auto r = state.Apply(e, static_cast<uint64_t>(now_ / kMs));
      if (!r.ok()) {
        Fail("node " + std::to_string(n.id) + ": the state machine failed applying entry " +
             std::to_string(e.index()) + ": " + r.status().message());
        return;
      }
      applied = std::move(r.value());
      if (e.index() % kFingerprintEvery == 0) RecordFingerprint(n);
    }
    if (e.type() == pb::ENTRY_CONF_CHANGE) {
      pb::ConfChange cc;
      cc.ParseFromString(e.data());
      Trace("n" + std::to_string(n.id) + " applies membership change " +
            pb::ConfChangeType_Name(cc.type()) + " n" + std::to_string(cc.node_id()));
    }
    auto it = n.writes.find(e.index());
    if (it == n.writes.end()) continue;
    const PendingRequest request = it->second;
    n.writes.erase(it);
    Reply reply;
    if (request.proposal.term != e.term()) {
      AnswerClient(request, reply);  // another entry took that index: lost, retry
      continue;
    }
    if (!applied) continue;  // applied in an earlier life: the answer is lost (time out)
    if (!applied->status.ok()) {
      Fail("node " + std::to_string(n.id) + ": a client's request at " + std::to_string(e.index()) +
           " failed: " + applied->status.message());
      return;
    }
    reply.kind = Reply::Kind::kDone;
    if (applied->response.has_txn()) {
      const CasOutcome cas = CasOutcomeOf(applied->response);
      reply.cas_ok = cas.succeeded;
      reply.cas_read_known = !cas.succeeded;
      reply.cas_read = cas.read;
    }
    AnswerClient(request, reply);
  }
  result_.stats.committed = std::max(result_.stats.committed, n.applied);
  // Now and then the state machine's writes reach its disk, as when RocksDB flushes a full
  // memtable: a crash loses only what came after (and a restart must find that state).
  const bool flush = rng_.Chance(0.02);
  if (Status s = state.AfterApply(flush); !s.ok()) {
    Fail("node " + std::to_string(n.id) + ": the state machine failed: " + s.message());
    return;
  }
  if (flush) RecordFingerprint(n);
}

void Simulation::ServeReads(Node& n) {
  while (!n.reads_to_serve.empty() && n.reads_to_serve.begin()->first <= n.state->AppliedIndex()) {
    const PendingRequest r = n.reads_to_serve.begin()->second;
    n.reads_to_serve.erase(n.reads_to_serve.begin());
    auto read = n.state->Get(r.key);
    if (!read.ok()) {
      Fail("node " + std::to_string(n.id) + ": a read of " + r.key +
           " failed: " + read.status().message());
      return;
    }
    Reply reply;
    reply.kind = Reply::Kind::kDone;
    reply.read = read.value();
    AnswerClient(r, reply);
  }
}

void Simulation::MaybeSnapshot(Node& n) {
  const LogIndex base = n.disk->snapshot_index();
  const bool state_wanted = n.snapshot_state_wanted;
  if (!state_wanted && n.applied < base + static_cast<LogIndex>(opt_.snapshot_every)) return;
  if (n.state->AppliedIndex() != n.applied) return;  // still replaying what it holds
  if (opt_.deferred_snapshots && !state_wanted) {
    // The store makes what it applied durable; the snapshot is its index, term and
    // membership, and its state is made when the engine reads it (below).
    if (n.applied == base) return;
    auto persisted = n.state->Persist();
    if (!persisted.ok()) {
      Fail("node " + std::to_string(n.id) +
           ": the state machine cannot persist its state: " + persisted.status().message());
      return;
    }
    RecordFingerprint(n);  // the state a member installing this snapshot must reach
    CompactTo(n, persisted.value(),
              std::make_shared<const consensus::DeferredSnapshotData>(
                  [this, id = n.id] { N(id).snapshot_state_wanted = true; }));
    return;
  }
  // The whole state, as bytes: every snapshot without deferred snapshots, else the state a
  // member far behind needs (the pinned state: the engine takes it as the data of the
  // snapshot it holds; after a restart, the state now, as a newer snapshot).
  n.snapshot_state_wanted = false;
  LogIndex index = 0;
  auto data = n.state->Snapshot(&index);
  if (!data.ok()) {
    Fail("node " + std::to_string(n.id) +
         ": the state machine cannot take a snapshot: " + data.status().message());
    return;
  }
  RecordFingerprint(n);  // the state a member installing this snapshot must reach
  CompactTo(n, index,
            std::make_shared<const consensus::InMemorySnapshotData>(std::move(data.value())));
}

void Simulation::CompactTo(Node& n, LogIndex index,
                           std::shared_ptr<const consensus::SnapshotData> data) {
  pb::SnapshotMetadata at;
  at.set_index(index);
  consensus::Snapshot snap{at, std::move(data)};
  auto meta = n.engine->Compact(snap);
  if (!meta.ok()) return;  // e.g. not yet durable, or being sent; the engine asks again
  // The snapshot file is written and fsynced, then the log prefix it covers dropped.
  snap.metadata = meta.value();
  n.disk->Compact(std::move(snap));
}

std::string Simulation::DescribeNode(Node& n) {
  std::string out = "n" + std::to_string(n.id) + (n.up ? "" : " (down)");
  if (!n.up) return out;
  const auto s = n.engine->GetStatus();
  out += ": " + std::string(consensus::RoleName(s.role)) + " term " + std::to_string(s.term) +
         " leader n" + std::to_string(s.leader) + " commit " + std::to_string(s.commit) +
         " applied " + std::to_string(n.applied) + " log " + std::to_string(s.first_index) + ".." +
         std::to_string(s.last_index) + " voters {";
  for (NodeId v : s.conf_state.voters()) out += " n" + std::to_string(v);
  out += " } learners {";
  for (NodeId v : s.conf_state.learners()) out += " n" + std::to_string(v);
  out += " }";
  for (const auto& [id, p] : s.peers) {
    out += " | n" + std::to_string(id) + " match " + std::to_string(p.match) + " next " +
           std::to_string(p.next) + " " + p.state;
  }
  return out;
}

std::optional<NodeId> Simulation::Leader() {
  std::optional<NodeId> best;
  Term best_term = 0;
  for (auto& [id, n] : nodes_) {
    if (!n.up) continue;
    auto s = n.engine->GetStatus();
    if (s.role == Role::kLeader && s.term >= best_term) {
      best = id;
      best_term = s.term;
    }
  }
  return best;
}

// ---------------------------------------------------------------------------------
// Network.

int64_t Simulation::Latency() {
  if (!opt_.faults.reorder) return 1000;  // 1 ms, FIFO
  // Mostly 0.5-3 ms; now and then a long delay that lets a message arrive very late.
  if (rng_.Chance(0.01)) return static_cast<int64_t>(rng_.Between(50, 400)) * kMs;
  return static_cast<int64_t>(rng_.Between(500, 3000));
}

void Simulation::Send(NodeId from, pb::Message m) {
  result_.stats.messages_sent++;
  const NodeId to = m.to();
  if (!nodes_.count(to) || !LinkOpen(from, to) || rng_.Chance(loss_)) {
    result_.stats.messages_dropped++;
    return;
  }
  // Messages cross the simulated network in their wire form, inside the Envelope that
  // names the group, so the encoding is exercised as it will be between real nodes.
  pb::Envelope envelope;
  envelope.set_group_id(1);
  envelope.set_from(from);
  envelope.set_to(to);
  *envelope.add_messages() = std::move(m);
  std::string wire = envelope.SerializeAsString();
  const int copies = rng_.Chance(duplicate_) ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    Event* ev = NewEvent(Latency(), EventKind::kDeliver);
    ev->node = to;
    ev->link_from = from;
    ev->wire = i + 1 < copies ? wire : std::move(wire);
  }
}

// ---------------------------------------------------------------------------------
// Clients: each runs one operation at a time: put, get (ReadIndex) or compare-and-swap
// on a few keys, retrying on redirects until answered or timed out.

void Simulation::ClientStart(Client& c) {
  c.op_id = next_op_id_++;
  c.key = "k" + std::to_string(rng_.Below(opt_.keys));
  const uint64_t dice = rng_.Below(20);
  const std::string value = "c" + std::to_string(c.id) + "-" + std::to_string(c.op_id);
  if (dice >= 18) {
    // Outside the checked keys: puts and deletes, single and ranged.
    c.type = OpType::kUnchecked;
    c.key = "d" + std::to_string(rng_.Below(opt_.keys));
    const uint64_t which = rng_.Below(4);
    c.command = which < 2    ? PutRequest(c.key, value)
                : which == 2 ? DeleteRequest(c.key, "")
                             : DeleteRequest("d", "e");
    c.history_slot = SIZE_MAX;
  } else {
    check::KvOperation op;
    op.client = c.id;
    op.key = c.key;
    op.call_time = now_;
    op.completed = false;
    if (dice < 8) {
      c.type = OpType::kGet;
      op.kind = check::OpKind::kGet;
    } else if (dice < 15) {
      c.type = OpType::kPut;
      c.command = PutRequest(c.key, value);
      op.kind = check::OpKind::kPut;
      op.value = value;
    } else {
      c.type = OpType::kCas;
      c.command = CasRequest(c.key, c.last_read, value, rng_.Chance(0.5));
      op.kind = check::OpKind::kCas;
      op.value = value;
      op.expected = c.last_read;
    }
    c.history_slot = history_.size();
    history_.push_back(std::move(op));
  }
  Event* timeout = NewEvent(1500 * kMs, EventKind::kClientTimeout);
  timeout->client = c.id;
  timeout->op_id = c.op_id;
  ClientSend(c, 0);
}

void Simulation::ClientSend(Client& c, int64_t delay_us) {
  Event* ev = NewEvent(delay_us + 500, EventKind::kRequest);
  ev->node = c.target;
  ev->client = c.id;
  ev->op_id = c.op_id;
}

void Simulation::HandleRequest(Node& n, const Event& ev) {
  Client& c = clients_[ev.client];
  if (c.op_id != ev.op_id) return;
  PendingRequest req{c.id, c.op_id, c.key, {}};
  Status status;
  if (c.type == OpType::kGet) {
    const uint64_t read_id = next_read_id_++;
    status = n.engine->ReadIndex(read_id);
    if (status.ok()) n.reads[read_id] = req;
  } else {
    auto proposed = n.engine->Propose(c.command.SerializeAsString());
    status = proposed.status();
    if (proposed.ok()) {
      req.proposal = proposed.value();
      n.writes[req.proposal.index] = req;
    }
  }
  if (opt_.trace && !status.ok()) {
    Trace("n" + std::to_string(n.id) + " turns client " + std::to_string(c.id) +
          " away: " + status.message());
  }
  if (!status.ok()) {
    Reply reply;
    reply.leader_hint = n.engine->GetStatus().leader;
    AnswerClient(req, reply);
  }
  PumpReady(n);
}

void Simulation::AnswerClient(const PendingRequest& r, Reply reply) {
  Event* ev = NewEvent(500, EventKind::kReply);
  ev->client = r.client;
  ev->op_id = r.op_id;
  ev->reply = std::move(reply);
}

void Simulation::HandleReply(Client& c, const Event& ev) {
  if (c.op_id != ev.op_id) return;  // an answer to an operation given up on
  if (ev.reply.kind == Reply::Kind::kRetry) {
    const NodeId hint = ev.reply.leader_hint;
    c.target = hint != 0 && nodes_.count(hint) ? hint : 1 + rng_.Below(nodes_.size());
    ClientSend(c, hint != 0 ? 1000 : 20 * kMs);
    return;
  }
  if (c.type != OpType::kUnchecked) {
    check::KvOperation& op = history_[c.history_slot];
    op.completed = true;
    op.return_time = now_;
    if (c.type == OpType::kGet) {
      op.read = ev.reply.read;
      c.last_read = ev.reply.read;
    } else if (c.type == OpType::kCas) {
      op.cas_succeeded = ev.reply.cas_ok;
    }
    if (opt_.trace) Trace(check::FormatOperation(op));
    if (c.type == OpType::kCas && ev.reply.cas_read_known) {
      // The failed swap read the key when it was applied, inside the operation's interval:
      // that read joins the history as a get of its own.
      check::KvOperation read = op;
      read.kind = check::OpKind::kGet;
      read.value.clear();
      read.expected.reset();
      read.cas_succeeded = false;
      read.read = ev.reply.cas_read;
      c.last_read = ev.reply.cas_read;
      if (opt_.trace) Trace(check::FormatOperation(read));
      history_.push_back(std::move(read));
    }
  } else if (opt_.trace) {
    Trace("client " + std::to_string(c.id) + ": " + c.command.ShortDebugString() + " done");
  }
  result_.stats.ops_ok++;
  c.op_id = 0;
  Event* next = NewEvent(static_cast<int64_t>(rng_.Between(0, 20)) * kMs, EventKind::kClientStart);
  next->client = c.id;
}

// ---------------------------------------------------------------------------------
// Faults.

void Simulation::ScheduleNextFault() {
  NewEvent(
      static_cast<int64_t>(rng_.Between(opt_.fault_interval_ms_min, opt_.fault_interval_ms_max)) *
          kMs,
      EventKind::kFault);
}

void Simulation::Fault() {
  if (liveness_phase_) return;
  ScheduleNextFault();
  std::vector<int> kinds;  // what this run may do
  if (opt_.faults.crash) kinds.insert(kinds.end(), {0, 0, 0});
  if (opt_.faults.partition) kinds.insert(kinds.end(), {1, 1, 2});
  if (opt_.faults.membership) kinds.push_back(3);
  if (opt_.faults.transfer) kinds.push_back(4);
  if (kinds.empty()) return;
  switch (kinds[rng_.Below(kinds.size())]) {
    case 0: {  // crash one member, or now and then all of them
      std::vector<NodeId> up;
      for (auto& [id, n] : nodes_) {
        if (n.up) up.push_back(id);
      }
      if (up.empty()) break;
      // The leader is the most interesting member to lose: half the crashes pick it.
      const auto leader = Leader();
      if (leader && rng_.Chance(0.5)) {
        up = {*leader};
      } else if (!rng_.Chance(0.05)) {
        up = {up[rng_.Below(up.size())]};
      }
      for (NodeId id : up) {
        Crash(N(id));
        Event* ev =
            NewEvent(static_cast<int64_t>(rng_.Between(20, 1500)) * kMs, EventKind::kRestart);
        ev->node = id;
      }
      break;
    }
    case 1:
      FaultPartition();
      break;
    case 2: {  // heal everything
      if (!blocked_.empty()) Trace("network heals");
      blocked_.clear();
      break;
    }
    case 3:
      FaultMembership();
      break;
    case 4: {
      if (auto leader = Leader()) {
        auto voters = N(*leader).engine->GetStatus().conf_state.voters();
        const NodeId target = voters[rng_.Below(voters.size())];
        if (N(*leader).engine->TransferLeader(target).ok() && target != *leader) {
          result_.stats.transfers++;
          Trace("n" + std::to_string(*leader) + " transfers leadership to n" +
                std::to_string(target));
        }
        PumpReady(N(*leader));
      }
      break;
    }
  }
}

void Simulation::FaultPartition() {
  result_.stats.partitions++;
  std::vector<NodeId> ids;
  for (auto& [id, n] : nodes_) ids.push_back(id);
  if (rng_.Chance(0.3)) {
    // One-way: `from` can no longer reach `to`, but hears from it.
    const NodeId from = ids[rng_.Below(ids.size())];
    NodeId to = ids[rng_.Below(ids.size())];
    if (to == from) to = ids[(rng_.Below(ids.size() - 1) + 1 + (from - 1)) % ids.size()];
    blocked_.insert({from, to});
    Trace("link n" + std::to_string(from) + " -> n" + std::to_string(to) + " cut");
    Event* heal =
        NewEvent(static_cast<int64_t>(rng_.Between(100, 2000)) * kMs, EventKind::kHealLink);
    heal->link_from = from;
    heal->link_to = to;
    return;
  }
  // Full partition: a random side, cut both ways from the rest; half the time the
  // leader alone.
  std::set<NodeId> side;
  const auto leader = Leader();
  if (leader && rng_.Chance(0.5)) {
    side.insert(*leader);
  } else {
    for (NodeId id : ids) {
      if (rng_.Chance(0.5)) side.insert(id);
    }
  }
  for (NodeId a : ids) {
    for (NodeId b : ids) {
      if (side.count(a) != side.count(b)) blocked_.insert({a, b});
    }
  }
  std::string left, right;
  for (NodeId id : ids) (side.count(id) ? left : right) += "n" + std::to_string(id) + " ";
  Trace("partition { " + left + "} | { " + right + "}");
}

void Simulation::FaultMembership() {
  auto leader = Leader();
  if (!leader) return;
  Engine& engine = *N(*leader).engine;
  const auto conf = engine.GetStatus().conf_state;
  std::set<NodeId> voters(conf.voters().begin(), conf.voters().end());
  std::set<NodeId> learners(conf.learners().begin(), conf.learners().end());
  pb::ConfChange cc;
  // Cycle one member at a time through: voter → removed → learner → voter.
  std::vector<NodeId> outside, learner_ids(learners.begin(), learners.end());
  for (auto& [id, n] : nodes_) {
    if (!voters.count(id) && !learners.count(id)) outside.push_back(id);
  }
  if (!learner_ids.empty()) {
    cc.set_type(pb::CONF_ADD_VOTER);
    cc.set_node_id(learner_ids[rng_.Below(learner_ids.size())]);
  } else if (!outside.empty()) {
    cc.set_type(pb::CONF_ADD_LEARNER);
    cc.set_node_id(outside[rng_.Below(outside.size())]);
  } else if (voters.size() >= 3) {
    std::vector<NodeId> v(voters.begin(), voters.end());
    cc.set_type(pb::CONF_REMOVE);
    cc.set_node_id(v[rng_.Below(v.size())]);
  } else {
    return;
  }
  auto proposed = engine.ProposeConfChange(cc);
  if (proposed.ok()) {
    result_.stats.conf_changes++;
    Trace("n" + std::to_string(*leader) + " proposes " + pb::ConfChangeType_Name(cc.type()) + " n" +
          std::to_string(cc.node_id()) + " at index " + std::to_string(proposed.value().index));
  }
  PumpReady(N(*leader));
}

// etcd's revision-based auto-compaction, run by the leader: history older than the last
// `compaction_retention_` revisions is compacted through the log.
void Simulation::ProposeCompaction() {
  NewEvent(static_cast<int64_t>(rng_.Between(500, 2000)) * kMs, EventKind::kCompact);
  const auto leader = Leader();
  if (!leader) return;
  Node& n = N(*leader);
  const int64_t target = n.state->Revision() - compaction_retention_;
  if (target <= std::max<int64_t>(n.state->CompactRevision(), 1)) return;
  auto proposed = n.engine->Propose(CompactionRequest(target).SerializeAsString());
  if (proposed.ok()) {
    result_.stats.compactions++;
    Trace("n" + std::to_string(n.id) + " proposes a compaction at revision " +
          std::to_string(target) + " at index " + std::to_string(proposed.value().index));
  }
  PumpReady(n);
}

void Simulation::StartLivenessPhase() {
  liveness_phase_ = true;
  liveness_start_ = now_;
  ops_ok_at_liveness_ = result_.stats.ops_ok;
  blocked_.clear();
  loss_ = duplicate_ = 0;
  Trace("liveness phase: the network heals and every crashed member restarts");
  for (auto& [id, n] : nodes_) Restart(n);
}

// ---------------------------------------------------------------------------------
// Checks that look at the whole cluster.

void Simulation::CheckLogMatching() {
  std::map<NodeId, std::vector<pb::Entry>> logs;
  for (auto& [id, n] : nodes_) logs[id] = n.disk->entries();
  checker_.CheckLogMatching(logs, EngineHasLogMatching(opt_.engine));
  if (!checker_.ok()) Fail(checker_.violation());
}

void Simulation::CheckLinearizability() {
  auto res = check::CheckKvLinearizability(history_, 2'000'000);
  if (res.verdict == check::CheckResult::Verdict::kNotLinearizable) {
    Fail("linearizability: the history of key " + res.key + " is not linearizable\n" +
         res.explanation);
  } else if (res.verdict == check::CheckResult::Verdict::kUnknown) {
    result_.stats.linearizability_unknown = true;
  }
}

// ---------------------------------------------------------------------------------

SimResult Simulation::Run() {
  loss_ = opt_.faults.loss ? 0.02 : 0;
  duplicate_ = opt_.faults.duplicate ? 0.02 : 0;
  compaction_retention_ = static_cast<int64_t>(rng_.Between(1, 30));
  StateMachineOptions state_machine_options;
  state_machine_options.kind = opt_.state_machine;
  state_machine_options.compact_step_entries = static_cast<size_t>(rng_.Between(16, 256));
  state_machine_options.snapshot_mid_compaction = opt_.snapshot_mid_compaction;
  pb::ConfState initial;
  for (int v = 1; v <= opt_.nodes; ++v) initial.add_voters(v);
  for (int i = 1; i <= opt_.nodes; ++i) {
    Node& n = nodes_[i];
    n.id = i;
    n.disk = std::make_unique<SimDisk>(initial);
    n.state = MakeStateMachine(state_machine_options);
  }
  for (auto& [id, n] : nodes_) StartNode(n);
  clients_.resize(opt_.clients);
  for (int i = 0; i < opt_.clients; ++i) {
    clients_[i].id = i;
    clients_[i].target = 1 + rng_.Below(opt_.nodes);
    Event* ev =
        NewEvent(static_cast<int64_t>(rng_.Between(100, 300)) * kMs, EventKind::kClientStart);
    ev->client = i;
  }
  ScheduleNextFault();
  NewEvent(static_cast<int64_t>(rng_.Between(500, 2000)) * kMs, EventKind::kCompact);
  NewEvent(opt_.fault_ms * kMs, EventKind::kLivenessPhase);
  NewEvent((opt_.fault_ms + opt_.liveness_ms) * kMs, EventKind::kEnd);

  while (!done_ && !queue_.empty()) {
    Event* ev = queue_.top();
    queue_.pop();
    now_ = ev->time;
    result_.stats.events++;
    switch (ev->kind) {
      case EventKind::kDeliver: {
        Node& n = N(ev->node);
        if (n.up && LinkOpen(ev->link_from, ev->node)) {
          pb::Envelope envelope;
          SYNOD_ASSERT(envelope.ParseFromString(ev->wire),
                       "the simulated network does not corrupt");
          for (const auto& m : envelope.messages()) n.engine->Step(m);
          PumpReady(n);
        }
        break;
      }
      case EventKind::kTick: {
        Node& n = N(ev->node);
        if (!n.up || n.incarnation != ev->incarnation) break;
        n.engine->Tick();
        PumpReady(n);
        Event* next = NewEvent(opt_.tick_ms * kMs, EventKind::kTick);
        next->node = n.id;
        next->incarnation = n.incarnation;
        break;
      }
      case EventKind::kPersisted: {
        Node& n = N(ev->node);
        if (n.up && n.incarnation == ev->incarnation && n.persisting) {
          CompletePersist(n);
          PumpReady(n);
        }
        break;
      }
      case EventKind::kRequest: {
        Node& n = N(ev->node);
        if (n.up) HandleRequest(n, *ev);
        break;
      }
      case EventKind::kReply:
        HandleReply(clients_[ev->client], *ev);
        break;
      case EventKind::kClientStart:
        ClientStart(clients_[ev->client]);
        break;
      case EventKind::kClientTimeout: {
        Client& c = clients_[ev->client];
        if (c.op_id != ev->op_id) break;
        result_.stats.ops_timed_out++;  // outcome unknown: stays incomplete in the history
        c.op_id = 0;
        c.target = 1 + rng_.Below(nodes_.size());
        Event* next = NewEvent(0, EventKind::kClientStart);
        next->client = c.id;
        break;
      }
      case EventKind::kFault:
        Fault();
        break;
      case EventKind::kCompact:
        ProposeCompaction();
        break;
      case EventKind::kCrash: {
        Node& n = N(ev->node);
        if (!n.up || n.incarnation != ev->incarnation || liveness_phase_) break;
        Crash(n);
        Event* restart =
            NewEvent(static_cast<int64_t>(rng_.Between(20, 800)) * kMs, EventKind::kRestart);
        restart->node = n.id;
        break;
      }
      case EventKind::kRestart:
        if (!liveness_phase_) Restart(N(ev->node));
        break;
      case EventKind::kHealLink:
        blocked_.erase({ev->link_from, ev->link_to});
        break;
      case EventKind::kLivenessPhase:
        StartLivenessPhase();
        break;
      case EventKind::kEnd:
        done_ = true;
        if (result_.stats.ops_ok == ops_ok_at_liveness_) {
          for (auto& [id, n] : nodes_) Trace(DescribeNode(n));
          Fail("liveness: no client operation completed in the " +
               std::to_string(opt_.liveness_ms) +
               " ms after the network healed and every member restarted");
        }
        break;
    }
    free_events_.push_back(ev);
    if (result_.stats.events % 2000 == 0) CheckLogMatching();
  }
  result_.stats.simulated_ms = now_ / kMs;
  if (result_.ok) CheckLogMatching();
  if (result_.ok) CheckLinearizability();
  for (const auto& line : trace_) result_.trace_tail += line + "\n";
  std::ostringstream replay;
  replay << "synod-sim --engine " << opt_.engine << " --nodes " << opt_.nodes << " --seed "
         << opt_.seed << " --faults " << opt_.faults.ToString() << " --fault-ms " << opt_.fault_ms
         << " --trace";
  if (opt_.clients != SimOptions{}.clients) replay << " --clients " << opt_.clients;
  if (opt_.keys != SimOptions{}.keys) replay << " --keys " << opt_.keys;
  if (opt_.state_machine != "kv") replay << " --state-machine " << opt_.state_machine;
  if (opt_.snapshot_mid_compaction) replay << " --snapshot-mid-compaction";
  if (opt_.deferred_snapshots) replay << " --deferred-snapshots";
  if (opt_.catchup_entries) replay << " --catchup-entries " << *opt_.catchup_entries;
  if (opt_.planted_bug != PlantedBug::kNone) {
    replay << " --planted-bug " << consensus::PlantedBugName(opt_.planted_bug);
  }
  result_.replay_command = replay.str();
  return result_;
}

}  // namespace

SimResult RunSimulation(const SimOptions& options) {
  if (options.planted_bug != PlantedBug::kNone && !PlantedBugsCompiledIn()) {
    SimResult r;
    r.ok = false;
    r.violation = "planted bugs are compiled only into test builds";
    return r;
  }
  if (options.deferred_snapshots && options.state_machine != "kv") {
    SimResult r;
    r.ok = false;
    r.violation = "deferred snapshots need the kv state machine (the toy keeps nothing on disk)";
    return r;
  }
  Simulation sim(options);
  return sim.Run();
}

}  // namespace synod::sim
