// ServerStateMachine: what a synod member applies committed log entries to — the
// key-value store (kv::Store) and the cluster's membership.
//
// Membership lives beside the store in <member dir>/cluster (written durably, by
// rename, each time it changes: rare), so a restart knows every member's URLs before the
// log is replayed. A state snapshot carries both, at the same index.
#pragma once

#include <functional>
#include <mutex>
#include <string>

#include "kv/store.h"
#include "runtime/node.h"
#include "synod/server.pb.h"

namespace synod::server {

class RevisionFeed;

class ServerStateMachine final : public runtime::StateMachine {
 public:
  // `membership_path`: where the membership is kept. `on_membership`: called (on the apply
  // thread) after every membership change, with the new membership.
  ServerStateMachine(kv::Store* store, RevisionFeed* revisions, std::string membership_path,
                     serverpb::Membership membership,
                     std::function<void(const serverpb::Membership&)> on_membership);

  // Reads the membership file; NotFound if there is none (a new member).
  static Result<serverpb::Membership> LoadMembership(const std::string& path);

  std::string Apply(const consensuspb::Entry& entry) override;
  consensus::LogIndex AppliedIndex() const override;
  Result<consensus::LogIndex> Snapshot(runtime::SnapshotWriter& out) override;
  Status Restore(const consensus::SnapshotData& data, consensus::LogIndex index) override;
  // Pins the store as it is (kv::Store::Pin) with the membership in force, then flushes it
  // (RocksDB's memtables, written without its log) to its files: the store's own storage
  // then holds every entry the pinned state covers. The membership file is durable already
  // at every change. Snapshot then dumps the pinned state, at the index Persist returned,
  // until the next Persist or Restore.
  Result<consensus::LogIndex> Persist() override;

  serverpb::Membership membership() const;
  // Writes the bootstrap membership of a founding member (before the node starts).
  Status SaveInitial(const serverpb::Membership& membership);

 private:
  serverpb::Outcome ApplyConfChange(const consensuspb::Entry& entry);
  serverpb::Outcome ApplyCommand(const consensuspb::Entry& entry);
  void SaveMembership(serverpb::Membership membership);

  // The store and membership of the last Persist, the state of the snapshot the engine holds.
  struct Pinned {
    std::shared_ptr<const kv::Store::Pinned> store;
    serverpb::Membership membership;
  };
  // Writes the store's dump (pinned, or as it is now) and the membership that goes with it.
  Result<consensus::LogIndex> WriteState(runtime::SnapshotWriter& out, const Pinned* pinned);

  kv::Store* store_;
  RevisionFeed* revisions_;
  const std::string membership_path_;
  std::function<void(const serverpb::Membership&)> on_membership_;
  mutable std::mutex mu_;  // guards membership_ (read by the services)
  serverpb::Membership membership_;
  std::shared_ptr<const Pinned> pinned_;  // under mu_
};

// Milliseconds of a monotonic clock: the time leases are measured in on this member.
uint64_t MonotonicMs();

}  // namespace synod::server
