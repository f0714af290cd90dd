// Protocol invariants, checked while the simulation runs. Each returns a description of
// the first violation it sees; an empty string means all is well.
//
//   election safety      at most one leader per term (§5.2)
//   log matching         entries with the same index and term hold the same data, and
//                        the logs agree on every entry before them (§5.3)
//   state machine safety every member applies the same entry at each index, and an
//                        entry once applied (committed) never changes (§5.4.3)
//   leader completeness  a new leader's durable log holds every committed entry (§5.4)
//   monotonicity         a member's durable term and commit index never decrease
//   replica agreement    members whose key-value stores have applied the same index hold
//                        the same revision, compaction revision and live keys
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "consensus/api/engine.h"

namespace synod::sim {

using consensus::LogIndex;
using consensus::NodeId;
using consensus::Term;
namespace pb = ::synod::consensuspb;

class InvariantChecker {
 public:
  void OnLeader(NodeId node, Term term);
  // A member in term `term` durably recorded `entry` as committed, or applied it. The
  // entry was then committed in `term` or earlier, so every leader of a later term must
  // hold it (a leader of an earlier term may still be elected: it is stale, not wrong).
  void OnCommitted(NodeId node, Term term, const pb::Entry& entry) {
    Record(node, term, entry, "committed");
  }
  void OnApplied(NodeId node, Term term, const pb::Entry& entry) {
    Record(node, term, entry, "applied");
  }
  void OnSnapshotInstalled(NodeId node, LogIndex index, Term term);
  // A member's key-value store has applied every entry up to `applied_index` (and none
  // after): its revision, compaction revision and the hash of its live keys.
  void OnStoreState(NodeId node, LogIndex applied_index, int64_t revision, int64_t compact_revision,
                    uint32_t hash);
  void OnDurableHardState(NodeId node, const pb::HardState& before, const pb::HardState& after);
  // The durable log of a member that has just become leader of `term`.
  void CheckLeaderCompleteness(NodeId node, Term term, LogIndex snapshot_index,
                               const std::vector<pb::Entry>& durable_entries);
  // Log matching over the durable logs of all members; `prefixes`: also the entries
  // before a shared (index, term) (Raft's property, not Multi-Paxos's).
  void CheckLogMatching(const std::map<NodeId, std::vector<pb::Entry>>& logs, bool prefixes = true);

  const std::string& violation() const { return violation_; }
  bool ok() const { return violation_.empty(); }
  LogIndex highest_committed() const { return committed_.empty() ? 0 : committed_.rbegin()->first; }

 private:
  void Fail(std::string what);
  void Record(NodeId node, Term term, const pb::Entry& entry, const char* how);
  static uint64_t Hash(const std::string& data);

  struct Fingerprint {
    Term term = 0;
    uint64_t hash = 0;
    Term known_committed_in = 0;  // earliest term in which some member knew it committed
  };
  std::map<Term, NodeId> leader_of_term_;
  std::map<LogIndex, Fingerprint> committed_;  // every entry any member applied
  struct StoreState {
    int64_t revision = 0;
    int64_t compact_revision = 0;
    uint32_t hash = 0;
    NodeId node = 0;  // the first member seen in this state
  };
  std::map<LogIndex, StoreState> stores_;  // by applied index
  std::string violation_;
};

}  // namespace synod::sim
