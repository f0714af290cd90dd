#include "sim/invariants.h"

#include <algorithm>

namespace synod::sim {

void InvariantChecker::Fail(std::string what) {
  if (violation_.empty()) violation_ = std::move(what);
}

uint64_t InvariantChecker::Hash(const std::string& data) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

void InvariantChecker::OnLeader(NodeId node, Term term) {
  auto [it, inserted] = leader_of_term_.emplace(term, node);
  if (!inserted && it->second != node) {
    Fail("election safety: two leaders in term " + std::to_string(term) + ": node " +
         std::to_string(it->second) + " and node " + std::to_string(node));
  }
}

void InvariantChecker::Record(NodeId node, Term term, const pb::Entry& e, const char* how) {
  const Fingerprint fp{e.term(), Hash(e.data()), term};
  auto [it, inserted] = committed_.emplace(e.index(), fp);
  if (!inserted) it->second.known_committed_in = std::min(it->second.known_committed_in, term);
  if (!inserted && (it->second.term != fp.term || it->second.hash != fp.hash)) {
    Fail("state machine safety: node " + std::to_string(node) + " " + how +
         " a different entry at index " + std::to_string(e.index()) + " (term " +
         std::to_string(e.term()) + ") than was committed before (term " +
         std::to_string(it->second.term) + ")");
  }
}

void InvariantChecker::OnSnapshotInstalled(NodeId node, LogIndex index, Term term) {
  auto it = committed_.find(index);
  if (it != committed_.end() && it->second.term != term) {
    Fail("state machine safety: node " + std::to_string(node) + " installed a snapshot at index " +
         std::to_string(index) + " term " + std::to_string(term) +
         " but the committed entry there has term " + std::to_string(it->second.term));
  }
}

void InvariantChecker::OnStoreState(NodeId node, LogIndex applied_index, int64_t revision,
                                    int64_t compact_revision, uint32_t hash) {
  const StoreState state{revision, compact_revision, hash, node};
  auto [it, inserted] = stores_.emplace(applied_index, state);
  if (inserted) return;
  const StoreState& seen = it->second;
  if (seen.revision != revision || seen.compact_revision != compact_revision || seen.hash != hash) {
    auto describe = [](NodeId n, const StoreState& s) {
      return "node " + std::to_string(n) + " has revision " + std::to_string(s.revision) +
             ", compacted at " + std::to_string(s.compact_revision) + ", hash " +
             std::to_string(s.hash);
    };
    Fail("replica agreement: at applied index " + std::to_string(applied_index) + ", " +
         describe(seen.node, seen) + " but " + describe(node, state));
  }
}

void InvariantChecker::OnDurableHardState(NodeId node, const pb::HardState& before,
                                          const pb::HardState& after) {
  if (after.term() < before.term()) {
    Fail("monotonicity: node " + std::to_string(node) + " term went from " +
         std::to_string(before.term()) + " to " + std::to_string(after.term()));
  }
  if (after.term() == before.term() && before.vote() != 0 && after.vote() != before.vote()) {
    Fail("election safety: node " + std::to_string(node) + " changed its vote in term " +
         std::to_string(after.term()));
  }
  if (after.commit() < before.commit()) {
    Fail("monotonicity: node " + std::to_string(node) + " commit went from " +
         std::to_string(before.commit()) + " to " + std::to_string(after.commit()));
  }
}

void InvariantChecker::CheckLeaderCompleteness(NodeId node, Term term, LogIndex snapshot_index,
                                               const std::vector<pb::Entry>& entries) {
  for (const auto& [index, fp] : committed_) {
    if (index <= snapshot_index) continue;        // covered by the snapshot
    if (fp.known_committed_in >= term) continue;  // maybe committed after this term
    const LogIndex first = entries.empty() ? snapshot_index + 1 : entries.front().index();
    const bool present = index >= first && index - first < entries.size() &&
                         entries[index - first].term() == fp.term;
    if (!present) {
      Fail("leader completeness: node " + std::to_string(node) + " became leader of term " +
           std::to_string(term) + " without committed entry " + std::to_string(index) + " (term " +
           std::to_string(fp.term) + ")");
      return;
    }
  }
}

void InvariantChecker::CheckLogMatching(const std::map<NodeId, std::vector<pb::Entry>>& logs,
                                        bool prefixes) {
  // (index, term) identifies an entry: same data everywhere, same predecessor term.
  struct Seen {
    uint64_t hash;
    Term prev_term;
    NodeId node;
  };
  std::map<std::pair<LogIndex, Term>, Seen> seen;
  for (const auto& [node, entries] : logs) {
    for (size_t i = 0; i < entries.size(); ++i) {
      const pb::Entry& e = entries[i];
      const Term prev_term = i == 0 ? 0 : entries[i - 1].term();
      auto [it, inserted] =
          seen.emplace(std::make_pair(e.index(), e.term()), Seen{Hash(e.data()), prev_term, node});
      if (inserted) continue;
      const bool prev_known = prefixes && i > 0 && it->second.prev_term != 0;
      if (it->second.hash != Hash(e.data()) || (prev_known && it->second.prev_term != prev_term)) {
        Fail("log matching: nodes " + std::to_string(it->second.node) + " and " +
             std::to_string(node) + " disagree at or before index " + std::to_string(e.index()) +
             " term " + std::to_string(e.term()));
        return;
      }
    }
  }
}

}  // namespace synod::sim
