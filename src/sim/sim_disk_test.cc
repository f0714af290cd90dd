// The simulated disk keeps its log in the WAL's record format and reads it back with the
// WAL's own rules; the replica agreement checker compares members' stores.
#include "sim/sim_disk.h"

#include <gtest/gtest.h>

#include "sim/invariants.h"

namespace synod::sim {

class SimDiskTestPeer {
 public:
  static std::string& bytes(SimDisk& disk) { return disk.wal_; }
};

namespace {

pb::Entry E(uint64_t index, uint64_t term, const std::string& data = "") {
  pb::Entry e;
  e.set_index(index);
  e.set_term(term);
  e.set_data(data.empty() ? "cmd" + std::to_string(index) : data);
  return e;
}

std::vector<pb::Entry> Es(uint64_t first, uint64_t last, uint64_t term) {
  std::vector<pb::Entry> out;
  for (uint64_t i = first; i <= last; ++i) out.push_back(E(i, term));
  return out;
}

pb::HardState HS(uint64_t term, uint64_t vote, uint64_t commit) {
  pb::HardState hs;
  hs.set_term(term);
  hs.set_vote(vote);
  hs.set_commit(commit);
  return hs;
}

consensus::Snapshot Snap(uint64_t index, uint64_t term, const std::string& data) {
  consensus::Snapshot s;
  s.metadata.set_index(index);
  s.metadata.set_term(term);
  s.metadata.mutable_conf_state()->add_voters(1);
  s.data = std::make_shared<const consensus::InMemorySnapshotData>(data);
  return s;
}

pb::ConfState Voters() {
  pb::ConfState c;
  c.add_voters(1);
  c.add_voters(2);
  c.add_voters(3);
  return c;
}

std::vector<uint64_t> Indexes(const std::vector<pb::Entry>& entries) {
  std::vector<uint64_t> out;
  for (const auto& e : entries) out.push_back(e.index());
  return out;
}

TEST(SimDisk, ANewDiskRecoversTheBootstrapSnapshot) {
  SimDisk disk(Voters());
  auto r = disk.Recover();
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value().snapshot.metadata.index(), 0u);
  EXPECT_EQ(r.value().snapshot.metadata.conf_state().voters_size(), 3);
  EXPECT_TRUE(r.value().entries.empty());
}

TEST(SimDisk, TheLogRoundTripsThroughTheWalRecords) {
  SimDisk disk(Voters());
  disk.Append(Es(1, 5, 1));
  disk.SetHardState(HS(1, 1, 3));
  disk.Append({E(4, 2, "overwrites"), E(5, 2), E(6, 2)});  // an overwritten suffix
  disk.SetHardState(HS(2, 2, 5));
  auto r = disk.Recover();
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(Indexes(r.value().entries), (std::vector<uint64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(r.value().entries[3].data(), "overwrites");
  EXPECT_EQ(r.value().entries[3].term(), 2u);
  EXPECT_EQ(r.value().hard_state.commit(), 5u);
  EXPECT_EQ(r.value().hard_state.vote(), 2u);
}

TEST(SimDisk, ACompactionKeepsTheEntriesAfterTheSnapshot) {
  SimDisk disk(Voters());
  disk.Append(Es(1, 10, 1));
  disk.SetHardState(HS(1, 1, 10));
  disk.Compact(Snap(6, 1, "state at 6"));
  auto r = disk.Recover();
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value().snapshot.metadata.index(), 6u);
  EXPECT_EQ(r.value().snapshot.ReadAll().value(), "state at 6");
  EXPECT_EQ(Indexes(r.value().entries), (std::vector<uint64_t>{7, 8, 9, 10}));
  EXPECT_EQ(r.value().hard_state.commit(), 10u);  // carried into the new segment
  disk.Append(Es(11, 12, 2));
  r = disk.Recover();
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(Indexes(r.value().entries), (std::vector<uint64_t>{7, 8, 9, 10, 11, 12}));
}

TEST(SimDisk, ALeadersSnapshotIsAMarkerThatKeepsTheEntriesAfterIt) {
  SimDisk disk(Voters());
  disk.Append(Es(1, 8, 1));
  disk.InstallSnapshot(Snap(5, 3, "leader's state"));
  auto r = disk.Recover();
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value().snapshot.metadata.index(), 5u);
  EXPECT_EQ(Indexes(r.value().entries), (std::vector<uint64_t>{6, 7, 8}));
  disk.InstallSnapshot(Snap(12, 3, "further"));
  disk.Append(Es(13, 13, 3));
  r = disk.Recover();
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(Indexes(r.value().entries), (std::vector<uint64_t>{13}));
}

TEST(SimDisk, DamagedBytesAreAViolationAtTheRestart) {
  for (size_t at : {size_t{3}, size_t{40}, size_t{100}}) {
    SimDisk disk(Voters());
    disk.Append(Es(1, 6, 1));
    disk.SetHardState(HS(1, 1, 6));
    std::string& bytes = SimDiskTestPeer::bytes(disk);
    ASSERT_LT(at, bytes.size());
    bytes[at] = static_cast<char>(bytes[at] ^ 0x20);
    auto r = disk.Recover();
    ASSERT_FALSE(r.ok()) << at;
    EXPECT_NE(r.status().message().find("wal round trip"), std::string::npos);
  }
}

TEST(SimDisk, ALostRecordIsAViolationAtTheRestart) {
  SimDisk disk(Voters());
  disk.Append(Es(1, 3, 1));
  const size_t before_last = SimDiskTestPeer::bytes(disk).size();
  disk.Append(Es(4, 4, 1));
  SimDiskTestPeer::bytes(disk).resize(before_last);  // entry 4 never reached the bytes
  auto r = disk.Recover();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("3 entries read back, 4 written"), std::string::npos)
      << r.status().message();
}

TEST(ReplicaAgreement, StoresAtTheSameIndexMustAgree) {
  InvariantChecker checker;
  checker.OnStoreState(1, 10, 7, -1, 1234);
  checker.OnStoreState(2, 10, 7, -1, 1234);
  checker.OnStoreState(2, 11, 8, -1, 99);
  EXPECT_TRUE(checker.ok()) << checker.violation();
  checker.OnStoreState(3, 10, 7, -1, 4321);
  ASSERT_FALSE(checker.ok());
  EXPECT_NE(checker.violation().find("replica agreement: at applied index 10"), std::string::npos)
      << checker.violation();
}

TEST(ReplicaAgreement, ADifferentRevisionOrCompactionIsADisagreement) {
  InvariantChecker a;
  a.OnStoreState(1, 10, 7, -1, 1234);
  a.OnStoreState(2, 10, 8, -1, 1234);
  EXPECT_FALSE(a.ok());
  InvariantChecker b;
  b.OnStoreState(1, 10, 7, -1, 1234);
  b.OnStoreState(2, 10, 7, 5, 1234);
  EXPECT_FALSE(b.ok());
}

}  // namespace
}  // namespace synod::sim
