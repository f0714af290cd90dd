#include "server/state_machine.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

#include <grpcpp/support/status_code_enum.h>

#include "base/assert.h"
#include "server/server.h"
#include "server/services.h"
#include "storage/durable_file.h"

namespace synod::server {

uint64_t MonotonicMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

namespace {

constexpr char kStateSnapshotMagic[4] = {'s', 'y', 's', '2'};

// The store writes its dump through the node's snapshot writer (which makes it durable).
class SnapshotWriterSink final : public kv::SnapshotSink {
 public:
  explicit SnapshotWriterSink(runtime::SnapshotWriter& out) : out_(out) {}
  Status Write(std::string_view bytes) override { return out_.Write(bytes); }
  Status Finish() override { return Status::Ok(); }

 private:
  runtime::SnapshotWriter& out_;
};

// The store reads a dump from the first `limit` bytes of a snapshot's data, wherever it is.
class SnapshotDataSource final : public kv::SnapshotSource {
 public:
  SnapshotDataSource(const consensus::SnapshotData& data, uint64_t limit)
      : data_(data), limit_(limit) {}
  Status Read(size_t max_bytes, std::string* out) override {
    const uint64_t n = std::min<uint64_t>(max_bytes, limit_ - pos_);
    if (Status s = data_.ReadAt(pos_, n, out); !s.ok()) return s;
    pos_ += n;
    return Status::Ok();
  }
  Status Rewind() override {
    pos_ = 0;
    return Status::Ok();
  }

 private:
  const consensus::SnapshotData& data_;
  const uint64_t limit_;
  uint64_t pos_ = 0;
};

}  // namespace

ServerStateMachine::ServerStateMachine(
    kv::Store* store, RevisionFeed* revisions, std::string membership_path,
    serverpb::Membership membership, std::function<void(const serverpb::Membership&)> on_membership)
    : store_(store),
      revisions_(revisions),
      membership_path_(std::move(membership_path)),
      on_membership_(std::move(on_membership)),
      membership_(std::move(membership)) {}

Result<serverpb::Membership> ServerStateMachine::LoadMembership(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status(Code::kNotFound, path + " does not exist");
  std::stringstream buf;
  buf << in.rdbuf();
  serverpb::Membership m;
  if (!m.ParseFromString(buf.str()) || m.cluster_id() == 0) {
    return Status(Code::kCorruption, "the membership file " + path + " is corrupt");
  }
  return m;
}

serverpb::Membership ServerStateMachine::membership() const {
  std::lock_guard lock(mu_);
  return membership_;
}

Status ServerStateMachine::SaveInitial(const serverpb::Membership& membership) {
  if (Status s = storage::WriteFileDurably(membership_path_, membership.SerializeAsString());
      !s.ok())
    return s;
  std::lock_guard lock(mu_);
  membership_ = membership;
  return Status::Ok();
}

void ServerStateMachine::SaveMembership(serverpb::Membership membership) {
  Status s = storage::WriteFileDurably(membership_path_, membership.SerializeAsString());
  SYNOD_ASSERT(s.ok(), "cannot write the membership file: the member must stop");
  {
    std::lock_guard lock(mu_);
    membership_ = membership;
  }
  if (on_membership_) on_membership_(membership);
}

std::string ServerStateMachine::Apply(const consensuspb::Entry& entry) {
  serverpb::Outcome outcome =
      entry.type() == consensuspb::ENTRY_CONF_CHANGE ? ApplyConfChange(entry) : ApplyCommand(entry);
  return outcome.SerializeAsString();
}

serverpb::Outcome ServerStateMachine::ApplyConfChange(const consensuspb::Entry& entry) {
  consensuspb::ConfChange change;
  serverpb::Outcome outcome;
  if (change.ParseFromString(entry.data())) {
    serverpb::Membership m = membership();
    serverpb::Member* existing = nullptr;
    for (auto& member : *m.mutable_members()) {
      if (member.id() == change.node_id()) existing = &member;
    }
    switch (change.type()) {
      case consensuspb::CONF_ADD_VOTER:
      case consensuspb::CONF_ADD_LEARNER: {
        serverpb::Member added;
        added.ParseFromString(change.context());
        added.set_id(change.node_id());
        added.set_is_learner(change.type() == consensuspb::CONF_ADD_LEARNER);
        if (existing != nullptr) {
          // A promotion (learner -> voter) keeps what the member published.
          existing->set_is_learner(added.is_learner());
        } else {
          *m.add_members() = added;
        }
        break;
      }
      case consensuspb::CONF_REMOVE: {
        auto* members = m.mutable_members();
        for (int i = 0; i < members->size(); ++i) {
          if (members->Get(i).id() == change.node_id()) {
            members->DeleteSubrange(i, 1);
            break;
          }
        }
        m.add_removed(change.node_id());
        break;
      }
      default:
        break;
    }
    m.set_applied_index(entry.index());
    SaveMembership(std::move(m));
  }
  Status s = store_->MarkApplied(entry.index());
  SYNOD_ASSERT(s.ok(), "the key-value store failed: the member must stop");
  return outcome;
}

serverpb::Outcome ServerStateMachine::ApplyCommand(const consensuspb::Entry& entry) {
  serverpb::Outcome outcome;
  serverpb::Command command;
  if (entry.data().empty() || !command.ParseFromString(entry.data()) ||
      command.command_case() == serverpb::Command::COMMAND_NOT_SET) {
    // A leader's no-op (or bytes no member can read: every member skips them alike).
    if (!entry.data().empty()) {
      outcome = ErrorOutcome(grpc::StatusCode::INVALID_ARGUMENT, "unreadable command");
    }
    Status s = store_->MarkApplied(entry.index());
    SYNOD_ASSERT(s.ok(), "the key-value store failed: the member must stop");
    return outcome;
  }
  if (command.has_publish() || command.has_update_peer_urls()) {
    serverpb::Membership m = membership();
    for (auto& member : *m.mutable_members()) {
      if (command.has_publish() && member.id() == command.publish().id()) {
        member.set_name(command.publish().name());
        *member.mutable_client_urls() = command.publish().client_urls();
      }
      if (command.has_update_peer_urls() && member.id() == command.update_peer_urls().id()) {
        *member.mutable_peer_urls() = command.update_peer_urls().peer_urls();
      }
    }
    m.set_applied_index(entry.index());
    SaveMembership(std::move(m));
    Status s = store_->MarkApplied(entry.index());
    SYNOD_ASSERT(s.ok(), "the key-value store failed: the member must stop");
    return outcome;
  }
  const int64_t before = store_->Revision();
  auto applied = store_->Apply(entry.index(), command.kv(), MonotonicMs());
  SYNOD_ASSERT(applied.ok(), "the key-value store failed: the member must stop");
  if (!applied.value().status.ok()) return OutcomeOf(applied.value().status);
  *outcome.mutable_response() = std::move(applied.value().response);
  const int64_t after = store_->Revision();
  if (after != before) revisions_->Publish(after);
  return outcome;
}

consensus::LogIndex ServerStateMachine::AppliedIndex() const { return store_->AppliedIndex(); }

// A state snapshot's bytes: the store's dump (kv::Store::WriteSnapshot, itself checked by
// a CRC), then the membership at the same index, its length (u32, little-endian) and
// kStateSnapshotMagic. The membership goes last so the dump can stream straight into the
// snapshot file; it is read back from the end. (Snapshots taken before this layout hold a
// serialized serverpb::StateSnapshot, and are still read.)
Result<consensus::LogIndex> ServerStateMachine::Snapshot(runtime::SnapshotWriter& out) {
  std::shared_ptr<const Pinned> pinned;
  {
    std::lock_guard lock(mu_);
    pinned = pinned_;
  }
  return WriteState(out, pinned.get());
}

Result<consensus::LogIndex> ServerStateMachine::WriteState(runtime::SnapshotWriter& out,
                                                           const Pinned* pinned) {
  // The store's dump is taken at one backend snapshot while applies go on; the membership
  // is the one in force at that index: read before and after, it must not have changed
  // (membership changes are rare: take the copy again if one slipped in). A pinned state
  // has its membership with it, checked the same way when it was pinned (Persist).
  for (;;) {
    const serverpb::Membership before = pinned ? pinned->membership : membership();
    SnapshotWriterSink sink(out);
    auto info = store_->WriteSnapshot(sink, pinned ? pinned->store.get() : nullptr);
    if (!info.ok()) return info.status();
    const serverpb::Membership after = pinned ? pinned->membership : membership();
    if (before.applied_index() != after.applied_index() ||
        after.applied_index() > info.value().applied_index) {
      if (Status s = out.Restart(); !s.ok()) return s;
      continue;
    }
    std::string tail = after.SerializeAsString();
    const auto len = static_cast<uint32_t>(tail.size());
    tail.append(reinterpret_cast<const char*>(&len), sizeof len);
    tail.append(kStateSnapshotMagic, sizeof kStateSnapshotMagic);
    if (Status s = out.Write(tail); !s.ok()) return s;
    return info.value().applied_index;
  }
}

Result<consensus::LogIndex> ServerStateMachine::Persist() {
  // Pinned with the membership in force at its index (read before and after, as above).
  auto pinned = std::make_shared<Pinned>();
  for (;;) {
    const serverpb::Membership before = membership();
    auto store = store_->Pin();
    if (!store.ok()) return store.status();
    pinned->membership = membership();
    pinned->store = std::move(store.value());
    if (before.applied_index() == pinned->membership.applied_index() &&
        pinned->membership.applied_index() <= pinned->store->applied_index()) {
      break;
    }
  }
  // Every entry the pinned state covers has its batch in the store: the flush covers it.
  if (Status s = store_->Sync(); !s.ok()) return s;
  const consensus::LogIndex index = pinned->store->applied_index();
  std::lock_guard lock(mu_);
  pinned_ = std::move(pinned);
  return index;
}

Status ServerStateMachine::Restore(const consensus::SnapshotData& data, consensus::LogIndex index) {
  if (index == 0 && data.size() == 0) {
    // The cluster's bootstrap snapshot (membership only, no state): a joining member
    // starts from the empty store it has.
    return Status::Ok();
  }
  const std::string at = " (a state snapshot at " + std::to_string(index) + ")";
  serverpb::Membership membership;
  std::unique_ptr<kv::SnapshotSource> dump;
  std::string tail;
  const uint64_t tail_bytes = sizeof(uint32_t) + sizeof kStateSnapshotMagic;
  if (data.size() >= tail_bytes) {
    if (Status s = data.ReadAt(data.size() - tail_bytes, tail_bytes, &tail); !s.ok()) return s;
  }
  if (tail.size() == tail_bytes && std::memcmp(tail.data() + sizeof(uint32_t), kStateSnapshotMagic,
                                               sizeof kStateSnapshotMagic) == 0) {
    uint32_t len = 0;
    std::memcpy(&len, tail.data(), sizeof len);
    if (len > data.size() - tail_bytes)
      return Status(Code::kCorruption, "bad membership length" + at);
    const uint64_t dump_bytes = data.size() - tail_bytes - len;
    std::string bytes;
    if (Status s = data.ReadAt(dump_bytes, len, &bytes); !s.ok()) return s;
    if (!membership.ParseFromString(bytes)) {
      return Status(Code::kCorruption, "the membership does not parse" + at);
    }
    dump = std::make_unique<SnapshotDataSource>(data, dump_bytes);
  } else {
    std::string bytes;
    if (Status s = data.ReadAt(0, data.size(), &bytes); !s.ok()) return s;
    serverpb::StateSnapshot snap;
    if (!snap.ParseFromString(bytes)) return Status(Code::kCorruption, "it does not parse" + at);
    membership = snap.membership();
    dump = std::make_unique<kv::StringSnapshotSource>(std::move(*snap.mutable_kv()));
  }
  {
    std::lock_guard lock(mu_);
    pinned_.reset();  // the state of a snapshot older than this one
  }
  auto installed = store_->InstallSnapshot(*dump);
  if (!installed.ok()) return installed.status();
  SaveMembership(std::move(membership));
  revisions_->Publish(store_->Revision());
  return Status::Ok();
}

}  // namespace synod::server
