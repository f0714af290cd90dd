// Receiving a snapshot from the leader: its chunks (MSG_SNAPSHOT) joined into one, the
// same way in both engines.
//
// Chunks are joined only from one sender, in order: two members' snapshots at the same
// index hold the same state but need not be the same bytes (e.g. physical compaction half
// done), so a chunk from another sender, or of another snapshot, starts the transfer over.
// A chunk at another offset than the next one (lost, repeated or overtaken) is not taken,
// and the sender is told where to resume.
#pragma once

#include <memory>
#include <optional>

#include "consensus/api/engine.h"

namespace synod::consensus {

class SnapshotAssembler {
 public:
  explicit SnapshotAssembler(SnapshotReceiverFactory new_receiver)
      : new_receiver_(std::move(new_receiver)) {}

  struct Outcome {
    std::optional<Snapshot> snapshot;  // the last chunk is in: the snapshot to install
    // Otherwise, the MSG_SNAPSHOT_RESPONSE to send: the offset the sender is to go on from.
    std::optional<pb::Message> reply;
  };

  // Takes one MSG_SNAPSHOT. Neither a snapshot nor a reply: the receiver failed, the
  // transfer is abandoned, and the sender's next chunk (it resends at its heartbeats)
  // starts it over.
  Outcome Take(const pb::Message& m) {
    const pb::SnapshotMetadata& meta = m.snapshot_metadata();
    if (!receiver_ || meta_.index() != meta.index() || meta_.term() != meta.term() ||
        from_ != m.from()) {
      meta_ = meta;  // a new snapshot: start over
      from_ = m.from();
      receiver_ = new_receiver_ ? new_receiver_() : std::make_unique<InMemorySnapshotReceiver>();
    }
    if (m.snapshot_offset() != receiver_->size()) return {.reply = AskFor(m, receiver_->size())};
    if (!receiver_->Append(m.snapshot_chunk()).ok()) {
      Abandon();
      return {};
    }
    if (!m.snapshot_done()) return {.reply = AskFor(m, receiver_->size())};
    Result<std::shared_ptr<const SnapshotData>> data = receiver_->Finish();
    Abandon();
    if (!data.ok()) return {};
    return {.snapshot = Snapshot{meta, std::move(data.value())}};
  }

 private:
  static pb::Message AskFor(const pb::Message& chunk, uint64_t offset) {
    pb::Message resp;
    resp.set_type(pb::MSG_SNAPSHOT_RESPONSE);
    resp.set_to(chunk.from());
    resp.set_term(chunk.term());
    *resp.mutable_snapshot_metadata() = chunk.snapshot_metadata();
    resp.set_snapshot_offset(offset);
    return resp;
  }

  void Abandon() {
    receiver_.reset();
    meta_.Clear();
    from_ = kNoNode;
  }

  const SnapshotReceiverFactory new_receiver_;
  pb::SnapshotMetadata meta_;  // the snapshot being received, and from whom
  NodeId from_ = kNoNode;
  std::unique_ptr<SnapshotReceiver> receiver_;
};

}  // namespace synod::consensus
