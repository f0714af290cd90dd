// The interface of a consensus engine: a replicated log.
//
// An engine is a pure, deterministic state machine. It owns no thread, socket, clock,
// file or random source; its caller (the node runtime, the simulator or a test) feeds it
// inputs and acts on its outputs:
//
//   inputs   Tick()                      one unit of logical time has passed
//            Step(message)               a message from a peer arrived
//            Propose(data)               append a command to the replicated log
//            ProposeConfChange(change)   change the membership, one server at a time
//            ReadIndex(request_id)       ask for a linearizable read point
//            TransferLeader(node)        hand leadership to another voter
//            Compact(snapshot)           the application snapshotted its state
//
//   outputs  TakeReady() -> Ready        what to persist, send and apply, in that order
//            Advance(ready)              "I have acted on that Ready"
//
// The persistence contract (the one rule every caller must keep):
//   1. Write ready.snapshot (if any), then ready.entries (the first may overwrite a
//      suffix of the durable log: truncate from entries[0].index), then
//      ready.hard_state (if any); make them durable (fsync).
//   2. Only then send ready.messages. A message may promise durable state (a vote, an
//      acknowledged entry); sending it earlier can lose a committed entry or elect two
//      leaders in a term after a crash.
//   3. Apply ready.snapshot (if any) and then ready.committed_entries to the state
//      machine, in order. Serve each of ready.read_states once the applied index is at
//      least its index. The committed entries are durable already (an engine hands out
//      only entries an earlier Ready made durable): in a Ready without a snapshot they
//      may be applied, and read_states served, while steps 1 and 2 are under way.
//   4. Call Advance(ready). Step and Tick may be called while a Ready is being
//      persisted; TakeReady may not be called again until Advance. The engine does not
//      read the Ready back at Advance: the caller may move its contents out.
//
// Raft (consensus/raft) and Multi-Paxos (consensus/paxos) both implement this interface
// and contract, so storage, the state machine, the server and the simulator are
// written once.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/status.h"
#include "consensus/api/snapshot.h"
#include "synod/consensus.pb.h"

namespace synod::consensus {

namespace pb = ::synod::consensuspb;

using NodeId = uint64_t;
using Term = uint64_t;
using LogIndex = uint64_t;

constexpr NodeId kNoNode = 0;

// A proposal accepted into the leader's log. It is committed if and only if the entry
// at `index` that the caller eventually applies has this `term`; an entry with another
// term at that index means the proposal was lost (and will never be applied).
struct ProposalId {
  LogIndex index = 0;
  Term term = 0;
};

// A read request confirmed by the engine: once the local state machine has applied
// `index`, reading it is linearizable.
struct ReadState {
  uint64_t request_id = 0;
  LogIndex index = 0;
};

enum class Role { kFollower, kPreCandidate, kCandidate, kLeader };
const char* RoleName(Role role);

struct Ready {
  std::optional<pb::HardState> hard_state;   // persist if present
  std::vector<pb::Entry> entries;            // append (may truncate a suffix first)
  std::optional<Snapshot> snapshot;          // persist and install (replaces the log)
  std::vector<pb::Message> messages;         // send after the above are durable
  std::vector<pb::Entry> committed_entries;  // apply in order
  std::vector<ReadState> read_states;        // serve once applied >= index
  // Informational: the role and leader after this batch.
  Role role = Role::kFollower;
  NodeId leader = kNoNode;

  bool empty() const {
    return !hard_state && entries.empty() && !snapshot && messages.empty() &&
           committed_entries.empty() && read_states.empty();
  }
};

// What a restarting node recovered from its disk: the engine resumes from it.
// A brand-new member of a new cluster passes a snapshot whose metadata has index 0 and
// the initial membership in conf_state; a member that is being added to a running
// cluster passes an empty conf_state and waits to hear from the leader.
struct DurableState {
  pb::HardState hard_state;
  Snapshot snapshot;               // latest snapshot (metadata, and data for followers)
  std::vector<pb::Entry> entries;  // the log after snapshot.metadata().index, in order
};

// At a restart, raises the durable commit index to what the state machine applied. The
// commit index is written without waiting for an fsync (OnlyCommitAdvanced), so it may lag
// the state machine, which applies only committed entries, each durable in the log first
// and never replaced there once committed. An engine that knew less than its state
// machine holds could not compact at the state machine's index — the only index at which
// a snapshot's state can be made after a restart — and a member waiting for that snapshot
// could wait for ever.
inline void RaiseCommitToApplied(DurableState& durable, LogIndex state_applied) {
  const LogIndex last =
      durable.entries.empty() ? durable.snapshot.metadata.index() : durable.entries.back().index();
  const LogIndex committed = std::min(state_applied, last);
  if (committed > durable.hard_state.commit()) durable.hard_state.set_commit(committed);
}

// A member's replication progress, as seen by the leader.
struct PeerStatus {
  LogIndex match = 0;
  LogIndex next = 0;
  const char* state = "";
  bool learner = false;
  bool recently_active = false;
};

struct EngineStatus {
  NodeId id = kNoNode;
  Role role = Role::kFollower;
  Term term = 0;
  NodeId leader = kNoNode;
  LogIndex commit = 0;
  LogIndex applied = 0;
  // The first index still in the log: after the snapshot, or before it by the catch-up
  // entries Raft keeps.
  LogIndex first_index = 0;
  LogIndex last_index = 0;
  pb::ConfState conf_state;
  std::map<NodeId, PeerStatus> peers;  // leader only
};

class Engine {
 public:
  virtual ~Engine() = default;

  virtual void Tick() = 0;
  virtual Status Step(const pb::Message& message) = 0;
  // Returns kNotLeader (with the leader's id in the message, if known) on a follower.
  virtual Result<ProposalId> Propose(std::string data) = 0;
  virtual Result<ProposalId> ProposeConfChange(const pb::ConfChange& change) = 0;
  virtual Status ReadIndex(uint64_t request_id) = 0;
  virtual Status TransferLeader(NodeId target) = 0;
  // The application has a snapshot of its state at snapshot.metadata.index (which it
  // has applied): the log before it may be discarded (Raft keeps its last
  // Config::catchup_entries in memory for members a little behind), and the snapshot is
  // sent to members too far behind. The engine completes the metadata (term, membership) and
  // returns it: the caller stores it with the snapshot's data.
  // At the index of the snapshot held, Compact replaces only its data (a snapshot whose
  // data could not be read, now made; ReplaceSnapshotData), unless some of it was sent.
  // The data may fail to read: the engine then sends none of it, and tries again at the
  // next heartbeat.
  virtual Result<pb::SnapshotMetadata> Compact(Snapshot snapshot) = 0;
  // The snapshot the engine holds (its metadata completed): the one Compact took, or the
  // one installed or started from. Its data is shared, not copied.
  virtual Snapshot LatestSnapshot() const = 0;

  virtual bool HasReady() const = 0;
  virtual Ready TakeReady() = 0;
  virtual void Advance(const Ready& ready) = 0;

  virtual EngineStatus GetStatus() const = 0;

  // The one exception to "messages leave once their Ready is durable": a message for
  // which this answers true (asked between TakeReady and Advance) promises nothing about
  // this member's own disk, and may be sent while the Ready is being persisted, so that
  // the leader's write and its followers' overlap. Raft: a leader's appends and
  // heartbeats (the leader counts itself towards a commit only for durable entries;
  // thesis §10.2.1). Default: none.
  virtual bool MaySendBeforeDurable(const pb::Message& message) const {
    (void)message;
    return false;
  }
};

// Whether `next` may be written without waiting for an fsync: it differs from the
// durable hard state in its commit index only (which may lag after a crash: it is
// learned again from the leader).
inline bool OnlyCommitAdvanced(const pb::HardState& next, const pb::HardState& durable) {
  return next.term() == durable.term() && next.vote() == durable.vote();
}

}  // namespace synod::consensus
