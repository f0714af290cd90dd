#include "server/state_machine.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

#include <grpcpp/support/status_code_enum.h>

#include "base/assert.h"
#include "server/server.h"
#include "server/services.h"

namespace synod::server {

uint64_t MonotonicMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

namespace {

Status WriteDurably(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return Status(Code::kIoError, "create " + tmp + ": " + std::strerror(errno));
  const bool ok = ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()) &&
                  ::fsync(fd) == 0;
  const std::string err = std::strerror(errno);
  ::close(fd);
  if (!ok) return Status(Code::kIoError, "write " + tmp + ": " + err);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status(Code::kIoError, "rename " + tmp + ": " + std::strerror(errno));
  }
  const std::string dir = path.substr(0, path.rfind('/'));
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

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
  if (Status s = WriteDurably(membership_path_, membership.SerializeAsString()); !s.ok()) return s;
  std::lock_guard lock(mu_);
  membership_ = membership;
  return Status::Ok();
}

void ServerStateMachine::SaveMembership(serverpb::Membership membership) {
  Status s = WriteDurably(membership_path_, membership.SerializeAsString());
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

std::string ServerStateMachine::Snapshot(consensus::LogIndex* index) {
  // The store's dump is taken at one backend snapshot while applies go on; the membership
  // is the one in force at that index: read before and after, it must not have changed
  // (membership changes are rare: try again if one slipped in).
  for (;;) {
    const serverpb::Membership before = membership();
    serverpb::StateSnapshot snap;
    kv::StringSnapshotSink sink;
    auto info = store_->WriteSnapshot(sink);
    SYNOD_ASSERT(info.ok(), "cannot take a snapshot of the key-value store");
    const serverpb::Membership after = membership();
    if (before.applied_index() != after.applied_index() ||
        after.applied_index() > info.value().applied_index) {
      continue;
    }
    snap.set_kv(std::move(sink.mutable_data()));
    *snap.mutable_membership() = after;
    *index = info.value().applied_index;
    return snap.SerializeAsString();
  }
}

Status ServerStateMachine::Restore(const std::string& data, consensus::LogIndex index) {
  if (index == 0 && data.empty()) {
    // The cluster's bootstrap snapshot (membership only, no state): a joining member
    // starts from the empty store it has.
    return Status::Ok();
  }
  serverpb::StateSnapshot snap;
  if (!snap.ParseFromString(data)) {
    return Status(Code::kCorruption,
                  "a state snapshot at " + std::to_string(index) + " does not parse");
  }
  kv::StringSnapshotSource source(std::move(*snap.mutable_kv()));
  auto installed = store_->InstallSnapshot(source);
  if (!installed.ok()) return installed.status();
  SaveMembership(snap.membership());
  revisions_->Publish(store_->Revision());
  return Status::Ok();
}

}  // namespace synod::server
