// A snapshot as an engine holds it: its metadata, and a handle on the state it carries.
//
// The state is bytes the engine never interprets: it only sends them, a chunk at a time,
// to members too far behind for the log. Where the bytes live is the caller's choice —
// in memory (tests, the simulator, a snapshot just received from the leader), or in a
// file (the node runtime: runtime/snapshot_file.h) — so that an engine holding a snapshot
// of a large store does not hold the store in memory.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/status.h"
#include "synod/consensus.pb.h"

namespace synod::consensus {

namespace pb = ::synod::consensuspb;

// The bytes of a snapshot's state. Immutable once made, so it may be shared between the
// engine (sending chunks) and the caller (writing a file, installing) on any threads.
class SnapshotData {
 public:
  virtual ~SnapshotData() = default;
  virtual uint64_t size() const = 0;
  // Appends the bytes [offset, offset + len) to *out; offset + len <= size(). An error is a
  // device failure (a file that cannot be read): the engine leaves the chunk unsent and
  // tries again at the next heartbeat.
  virtual Status ReadAt(uint64_t offset, uint64_t len, std::string* out) const = 0;
};

class InMemorySnapshotData final : public SnapshotData {
 public:
  explicit InMemorySnapshotData(std::string bytes) : bytes_(std::move(bytes)) {}
  uint64_t size() const override { return bytes_.size(); }
  Status ReadAt(uint64_t offset, uint64_t len, std::string* out) const override {
    out->append(bytes_, offset, len);
    return Status::Ok();
  }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

// The data of a snapshot whose state the state machine holds durably itself (the server's
// store: runtime/node.h), not in bytes: they are made only when a member needs them. Until
// then every read fails (kUnavailable: the engine sends nothing and reads again at its next
// heartbeat) and calls `wanted`, which asks the caller to make them: a snapshot at this
// index or a later one, given to Compact.
class DeferredSnapshotData final : public SnapshotData {
 public:
  explicit DeferredSnapshotData(std::function<void()> wanted) : wanted_(std::move(wanted)) {}
  uint64_t size() const override { return 0; }
  Status ReadAt(uint64_t, uint64_t, std::string*) const override {
    if (wanted_) wanted_();
    return Status(Code::kUnavailable, "the snapshot's state is being made");
  }
  static bool Is(const SnapshotData& data) {
    return dynamic_cast<const DeferredSnapshotData*>(&data) != nullptr;
  }

 private:
  const std::function<void()> wanted_;
};

// Where a member puts the state of a snapshot it receives from the leader, one chunk
// after the other. Where the bytes go is the caller's choice, as for SnapshotData: in
// memory by default (tests, the simulator), into a snapshot file in the node runtime
// (runtime/snapshot_file.h), so that a member receiving a snapshot of a large store does
// not hold the store in memory either.
class SnapshotReceiver {
 public:
  virtual ~SnapshotReceiver() = default;
  virtual uint64_t size() const = 0;  // bytes received so far
  // An error (a full disk) abandons the transfer: the leader starts it again.
  virtual Status Append(std::string_view chunk) = 0;
  // Every byte received, as the state of the snapshot to install. Called once, last.
  virtual Result<std::shared_ptr<const SnapshotData>> Finish() = 0;
};

// A new receiver for each transfer; an empty function means InMemorySnapshotReceiver.
using SnapshotReceiverFactory = std::function<std::unique_ptr<SnapshotReceiver>()>;

class InMemorySnapshotReceiver final : public SnapshotReceiver {
 public:
  uint64_t size() const override { return bytes_.size(); }
  Status Append(std::string_view chunk) override {
    bytes_.append(chunk);
    return Status::Ok();
  }
  Result<std::shared_ptr<const SnapshotData>> Finish() override {
    return std::shared_ptr<const SnapshotData>(
        std::make_shared<const InMemorySnapshotData>(std::move(bytes_)));
  }

 private:
  std::string bytes_;
};

inline std::shared_ptr<const SnapshotData> EmptySnapshotData() {
  static const auto* empty = new std::shared_ptr<const SnapshotData>(
      std::make_shared<const InMemorySnapshotData>(std::string()));
  return *empty;
}

struct Snapshot {
  pb::SnapshotMetadata metadata;
  std::shared_ptr<const SnapshotData> data = EmptySnapshotData();  // never null

  // A snapshot whose state is `bytes`, held in memory.
  static Snapshot InMemory(pb::SnapshotMetadata metadata, std::string bytes) {
    return Snapshot{std::move(metadata),
                    std::make_shared<const InMemorySnapshotData>(std::move(bytes))};
  }
  // The whole state as one string (tests, the simulator, small snapshots).
  Result<std::string> ReadAll() const {
    std::string out;
    out.reserve(data->size());
    if (Status s = data->ReadAt(0, data->size(), &out); !s.ok()) return s;
    return out;
  }
};

// Engine::Compact at the index of the snapshot an engine holds: the same snapshot, its state
// now at hand (the runtime makes a snapshot's state only when a member needs it, see
// runtime/node.h). The data is replaced, nothing else: unless some of the data held was
// sent already, for a member may be assembling those bytes, and another copy of the same
// state need not be the same bytes.
inline Result<pb::SnapshotMetadata> ReplaceSnapshotData(Snapshot& held, bool some_sent,
                                                        Snapshot with) {
  if (some_sent) {
    return Status(Code::kInvalidArgument, "the snapshot at " +
                                              std::to_string(held.metadata.index()) +
                                              " is being sent: its data cannot change");
  }
  held.data = with.data ? std::move(with.data) : EmptySnapshotData();
  return held.metadata;
}

}  // namespace synod::consensus
