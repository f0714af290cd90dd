// A state machine for tests of the node runtime: it remembers the commands it applied, in
// order, and snapshots them as lines of text.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "runtime/node.h"

namespace synod::runtime {

// Remembers the commands it applied, in order. Not durable: after a restart it is
// rebuilt from the member's snapshot file and log, which is what these tests check.
class RecordingStateMachine final : public StateMachine {
 public:
  std::string Apply(const pb::Entry& entry) override {
    std::lock_guard lock(mu_);
    applied_ = entry.index();
    if (entry.type() == pb::ENTRY_NORMAL && !entry.data().empty())
      commands_.push_back(entry.data());
    return "applied " + entry.data();
  }
  LogIndex AppliedIndex() const override {
    std::lock_guard lock(mu_);
    return applied_;
  }
  Result<LogIndex> Snapshot(SnapshotWriter& out) override {
    std::string bytes;
    LogIndex at = 0;
    {
      std::lock_guard lock(mu_);
      at = applied_;
      for (const auto& c : commands_) bytes += c + "\n";
    }
    if (Status s = out.Write(bytes); !s.ok()) return s;
    return at;
  }
  Status Restore(const consensus::SnapshotData& snapshot, LogIndex index) override {
    std::string data;
    if (Status s = snapshot.ReadAt(0, snapshot.size(), &data); !s.ok()) return s;
    std::lock_guard lock(mu_);
    commands_.clear();
    size_t start = 0;
    for (size_t nl; (nl = data.find('\n', start)) != std::string::npos; start = nl + 1) {
      commands_.push_back(data.substr(start, nl - start));
    }
    applied_ = index;
    restored_++;
    return Status::Ok();
  }
  std::vector<std::string> Commands() const {
    std::lock_guard lock(mu_);
    return commands_;
  }
  int restored() const {
    std::lock_guard lock(mu_);
    return restored_;
  }

 private:
  mutable std::mutex mu_;
  LogIndex applied_ = 0;
  std::vector<std::string> commands_;
  int restored_ = 0;
};

}  // namespace synod::runtime
