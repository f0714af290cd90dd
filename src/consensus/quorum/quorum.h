// Majority quorum arithmetic, shared by every engine.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <vector>

#include "consensus/api/engine.h"

namespace synod::consensus::quorum {

inline size_t MajorityOf(size_t voters) { return voters / 2 + 1; }

// The largest index that a majority of `voters` has reached, given each voter's index.
inline LogIndex CommittedIndex(const std::vector<NodeId>& voters,
                               const std::function<LogIndex(NodeId)>& index_of) {
  if (voters.empty()) return 0;
  std::vector<LogIndex> indexes;
  indexes.reserve(voters.size());
  for (NodeId v : voters) indexes.push_back(index_of(v));
  std::sort(indexes.begin(), indexes.end(), std::greater<>());
  return indexes[MajorityOf(voters.size()) - 1];
}

enum class VoteOutcome { kPending, kWon, kLost };

// `votes` maps a voter to its answer (true: granted). Each voter counts once: the map
// is keyed by voter, so a duplicated response cannot be counted twice.
inline VoteOutcome Tally(const std::vector<NodeId>& voters, const std::map<NodeId, bool>& votes) {
  size_t granted = 0, rejected = 0;
  for (NodeId v : voters) {
    auto it = votes.find(v);
    if (it == votes.end()) continue;
    (it->second ? granted : rejected)++;
  }
  const size_t majority = MajorityOf(voters.size());
  if (granted >= majority) return VoteOutcome::kWon;
  if (rejected > voters.size() - majority) return VoteOutcome::kLost;
  return VoteOutcome::kPending;
}

// True if `acked(v)` holds for a majority of `voters`.
inline bool HasQuorum(const std::vector<NodeId>& voters, const std::function<bool(NodeId)>& acked) {
  size_t n = 0;
  for (NodeId v : voters) n += acked(v) ? 1 : 0;
  return !voters.empty() && n >= MajorityOf(voters.size());
}

}  // namespace synod::consensus::quorum
