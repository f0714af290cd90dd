// A state machine for tests of the node runtime: it remembers the commands it applied, in
// order, and snapshots them as lines of text.
#pragma once

#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/node.h"
#include "storage/durable_file.h"

namespace synod::runtime {

// Remembers the commands it applied, in order. By default not durable: after a restart it
// is rebuilt from the member's snapshot file and log, which is what these tests check.
// Given a file, it is durable as the server's store is: Persist writes what it applied
// there (the applied index, then one command per line), and it starts from that file.
class RecordingStateMachine final : public StateMachine {
 public:
  RecordingStateMachine() = default;
  explicit RecordingStateMachine(std::string durable_path)
      : durable_path_(std::move(durable_path)) {
    std::ifstream in(durable_path_);
    if (!in) return;
    std::string line;
    if (std::getline(in, line)) applied_ = std::stoull(line);
    while (std::getline(in, line)) commands_.push_back(line);
  }

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
      // The state of the last Persist, if kept (see StateMachine::Snapshot).
      const std::vector<std::string>& commands = pinned_ ? pinned_->second : commands_;
      at = pinned_ ? pinned_->first : applied_;
      for (const auto& c : commands) bytes += c + "\n";
    }
    if (Status s = out.Write(bytes); !s.ok()) return s;
    return at;
  }
  Status Restore(const consensus::SnapshotData& snapshot, LogIndex index) override {
    std::string data;
    if (Status s = snapshot.ReadAt(0, snapshot.size(), &data); !s.ok()) return s;
    std::lock_guard lock(mu_);
    pinned_.reset();
    commands_.clear();
    size_t start = 0;
    for (size_t nl; (nl = data.find('\n', start)) != std::string::npos; start = nl + 1) {
      commands_.push_back(data.substr(start, nl - start));
    }
    applied_ = index;
    restored_++;
    return Status::Ok();
  }
  Result<LogIndex> Persist() override {
    if (durable_path_.empty()) return StateMachine::Persist();
    std::string bytes;
    std::pair<LogIndex, std::vector<std::string>> pinned;
    {
      std::lock_guard lock(mu_);
      pinned = {applied_, commands_};
      bytes = std::to_string(applied_) + "\n";
      for (const auto& c : commands_) bytes += c + "\n";
    }
    if (Status s = storage::WriteFileDurably(durable_path_, bytes); !s.ok()) return s;
    std::lock_guard lock(mu_);
    persisted_++;
    const LogIndex at = pinned.first;
    pinned_ = std::move(pinned);
    return at;
  }
  std::vector<std::string> Commands() const {
    std::lock_guard lock(mu_);
    return commands_;
  }
  int restored() const {
    std::lock_guard lock(mu_);
    return restored_;
  }
  int persisted() const {
    std::lock_guard lock(mu_);
    return persisted_;
  }

 private:
  mutable std::mutex mu_;
  LogIndex applied_ = 0;
  std::vector<std::string> commands_;
  int restored_ = 0;
  const std::string durable_path_;  // empty: not durable
  // The state of the last Persist: what Snapshot writes until a Restore.
  std::optional<std::pair<LogIndex, std::vector<std::string>>> pinned_;
  int persisted_ = 0;
};

}  // namespace synod::runtime
