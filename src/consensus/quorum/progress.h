// Progress: what a leader knows of one follower's log, and how it replicates to it.
//
//   kProbe      the leader does not know where the follower's log matches; it sends
//               one append at a time (per heartbeat) and backs off on rejection.
//   kReplicate  the logs match up to `match`; appends are pipelined, up to
//               `inflight_max` messages in flight, `next` advanced optimistically.
//   kSnapshot   the follower needs entries the leader compacted; a snapshot is being
//               streamed in chunks and appends wait until it is installed.
#pragma once

#include <deque>

#include "consensus/api/engine.h"

namespace synod::consensus::quorum {

enum class ProgressState { kProbe, kReplicate, kSnapshot };
inline const char* ProgressStateName(ProgressState s) {
  switch (s) {
    case ProgressState::kProbe:
      return "probe";
    case ProgressState::kReplicate:
      return "replicate";
    case ProgressState::kSnapshot:
      return "snapshot";
  }
  return "?";
}

struct Progress {
  LogIndex match = 0;
  LogIndex next = 1;
  ProgressState state = ProgressState::kProbe;
  bool probe_sent = false;        // kProbe: an append is outstanding
  std::deque<LogIndex> inflight;  // kReplicate: last index of each append in flight
  bool recently_active = false;   // heard from since the last check-quorum round
  bool learner = false;
  LogIndex pending_snapshot = 0;  // kSnapshot: index of the snapshot being sent
  uint64_t snapshot_offset = 0;   // kSnapshot: next byte the follower expects
  uint64_t lease_stamp = 0;       // newest leader tick this follower acknowledged

  bool IsPaused(size_t inflight_max) const {
    switch (state) {
      case ProgressState::kProbe:
        return probe_sent;
      case ProgressState::kReplicate:
        return inflight.size() >= inflight_max;
      case ProgressState::kSnapshot:
        return true;
    }
    return true;
  }

  // An append up to `last` was sent.
  void OnSent(LogIndex last, bool had_entries) {
    if (state == ProgressState::kReplicate) {
      if (had_entries) {
        next = last + 1;
        inflight.push_back(last);
      }
    } else if (state == ProgressState::kProbe) {
      probe_sent = true;
    }
  }

  // The follower acknowledged entries up to `index`. Returns true if `match` rose.
  bool MaybeUpdate(LogIndex index) {
    bool updated = false;
    if (index > match) {
      match = index;
      updated = true;
      probe_sent = false;
    }
    next = std::max(next, index + 1);
    while (!inflight.empty() && inflight.front() <= index) inflight.pop_front();
    return updated;
  }

  // The follower rejected an append at `rejected`; `hint` is the next index to try.
  // Returns false if the rejection is stale (an answer to an older append).
  bool MaybeDecreaseTo(LogIndex rejected, LogIndex hint) {
    if (state == ProgressState::kReplicate) {
      if (rejected <= match) return false;  // stale
      next = match + 1;
      return true;
    }
    if (next - 1 != rejected) return false;  // not the probe we sent last
    next = std::max(std::min(rejected, hint + 1), LogIndex{1});
    next = std::max(next, match + 1);
    probe_sent = false;
    return true;
  }

  void BecomeProbe() {
    if (state == ProgressState::kSnapshot) {
      next = std::max(match + 1, pending_snapshot + 1);
      pending_snapshot = 0;
    } else {
      next = match + 1;
    }
    state = ProgressState::kProbe;
    probe_sent = false;
    inflight.clear();
  }
  void BecomeReplicate() {
    state = ProgressState::kReplicate;
    next = match + 1;
    probe_sent = false;
    inflight.clear();
  }
  void BecomeSnapshot(LogIndex snapshot_index) {
    state = ProgressState::kSnapshot;
    pending_snapshot = snapshot_index;
    snapshot_offset = 0;
    probe_sent = false;
    inflight.clear();
  }
};

}  // namespace synod::consensus::quorum
