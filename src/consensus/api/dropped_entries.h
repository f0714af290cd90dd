// DroppedEntries: log entries an engine no longer needs, freed a bounded number at a time.
//
// A snapshot compacts the whole log before it at once: with --snapshot-count 100000 that is
// 100k entries, and destroying them took the loop thread that serves every request 8-24 ms
// (measured). A log hands the entries it drops to a DroppedEntries instead, which takes
// them in O(entries kept) and frees them in steps (FreeSome) as the engine goes on.
// Deterministic like the rest of an engine: it only defers destructors.
#pragma once

#include <algorithm>
#include <cstddef>
#include <deque>

#include "synod/consensus.pb.h"

namespace synod::consensus {

namespace pb = ::synod::consensuspb;

class DroppedEntries {
 public:
  // Entries freed per FreeSome call: about 0.2-0.5 ms of the loop's time.
  static constexpr size_t kFreePerStep = 2048;

  // Removes entries[0, n) from `entries`, moving the smaller side: when fewer entries stay
  // than go (the usual case: a log is compacted up to its applied index), the ones that
  // stay move to a new container and the old one is kept whole; otherwise the dropped ones
  // move out. Either way no entry's contents are freed here (a moved-from entry owns
  // nothing), and the dropped ones are freed later, by FreeSome.
  void DropFront(std::deque<pb::Entry>& entries, size_t n) {
    n = std::min(n, entries.size());
    if (n == 0) return;
    const auto keep_from = entries.begin() + static_cast<std::ptrdiff_t>(n);
    std::deque<pb::Entry> dropped;
    if (entries.size() - n > n) {
      dropped.assign(std::make_move_iterator(entries.begin()), std::make_move_iterator(keep_from));
      entries.erase(entries.begin(), keep_from);
    } else {
      std::deque<pb::Entry> kept(std::make_move_iterator(keep_from),
                                 std::make_move_iterator(entries.end()));
      entries.swap(kept);
      dropped = std::move(kept);
    }
    pending_ += dropped.size();
    batches_.push_back(std::move(dropped));
  }

  // Frees up to kFreePerStep of the dropped entries.
  void FreeSome() {
    size_t budget = kFreePerStep;
    while (budget > 0 && !batches_.empty()) {
      std::deque<pb::Entry>& batch = batches_.front();
      const size_t k = std::min(budget, batch.size());
      batch.erase(batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(k));
      budget -= k;
      pending_ -= k;
      if (batch.empty()) batches_.pop_front();
    }
  }

  // Dropped entries (and moved-from husks of the kept ones) not yet freed.
  size_t pending() const { return pending_; }

 private:
  std::deque<std::deque<pb::Entry>> batches_;
  size_t pending_ = 0;
};

}  // namespace synod::consensus
