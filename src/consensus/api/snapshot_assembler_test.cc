// Joining a snapshot's chunks (both engines receive snapshots through SnapshotAssembler).
#include "consensus/api/snapshot_assembler.h"

#include <gtest/gtest.h>

namespace synod::consensus {
namespace {

pb::Message Chunk(NodeId from, uint64_t index, uint64_t offset, std::string bytes, bool done) {
  pb::Message m;
  m.set_type(pb::MSG_SNAPSHOT);
  m.set_from(from);
  m.set_to(9);
  m.set_term(4);
  m.mutable_snapshot_metadata()->set_index(index);
  m.mutable_snapshot_metadata()->set_term(2);
  m.set_snapshot_offset(offset);
  m.set_snapshot_chunk(std::move(bytes));
  m.set_snapshot_done(done);
  return m;
}

uint64_t AskedOffset(const SnapshotAssembler::Outcome& o) {
  EXPECT_FALSE(o.snapshot.has_value());
  EXPECT_TRUE(o.reply.has_value());
  if (!o.reply) return ~0ull;
  EXPECT_EQ(o.reply->type(), pb::MSG_SNAPSHOT_RESPONSE);
  EXPECT_EQ(o.reply->term(), 4u);
  return o.reply->snapshot_offset();
}

// A receiver that keeps the bytes in memory and can be made to fail (a full disk).
class TestReceiver final : public SnapshotReceiver {
 public:
  explicit TestReceiver(int* fail_appends) : fail_appends_(fail_appends) {}
  uint64_t size() const override { return inner_.size(); }
  Status Append(std::string_view chunk) override {
    if (*fail_appends_ > 0) {
      --*fail_appends_;
      return Status(Code::kIoError, "no space left on device");
    }
    return inner_.Append(chunk);
  }
  Result<std::shared_ptr<const SnapshotData>> Finish() override { return inner_.Finish(); }

 private:
  int* fail_appends_;
  InMemorySnapshotReceiver inner_;
};

TEST(SnapshotAssembler, ChunksInOrderMakeTheSnapshot) {
  int receivers = 0;
  SnapshotAssembler a([&] {
    ++receivers;
    return std::make_unique<InMemorySnapshotReceiver>();
  });
  EXPECT_EQ(AskedOffset(a.Take(Chunk(1, 30, 0, "abc", false))), 3u);
  EXPECT_EQ(AskedOffset(a.Take(Chunk(1, 30, 3, "de", false))), 5u);
  auto done = a.Take(Chunk(1, 30, 5, "f", true));
  ASSERT_TRUE(done.snapshot.has_value());
  EXPECT_FALSE(done.reply.has_value());
  EXPECT_EQ(done.snapshot->metadata.index(), 30u);
  EXPECT_EQ(done.snapshot->ReadAll().value(), "abcdef");
  EXPECT_EQ(receivers, 1) << "the bytes go where the caller's receiver puts them";
}

TEST(SnapshotAssembler, ALostOrRepeatedChunkIsAskedForAgain) {
  SnapshotAssembler a(nullptr);
  EXPECT_EQ(AskedOffset(a.Take(Chunk(1, 30, 0, "abc", false))), 3u);
  EXPECT_EQ(AskedOffset(a.Take(Chunk(1, 30, 6, "ghi", false))), 3u);  // 3..6 was lost
  EXPECT_EQ(AskedOffset(a.Take(Chunk(1, 30, 0, "abc", false))), 3u);  // a repeat
  auto done = a.Take(Chunk(1, 30, 3, "def", true));
  ASSERT_TRUE(done.snapshot.has_value());
  EXPECT_EQ(done.snapshot->ReadAll().value(), "abcdef");
}

// Two members' snapshots at one index need not be the same bytes: never mixed.
TEST(SnapshotAssembler, AnotherSenderOrSnapshotStartsOver) {
  SnapshotAssembler a(nullptr);
  EXPECT_EQ(AskedOffset(a.Take(Chunk(1, 30, 0, "abc", false))), 3u);
  EXPECT_EQ(AskedOffset(a.Take(Chunk(2, 30, 3, "XYZ", false))), 0u);
  EXPECT_EQ(AskedOffset(a.Take(Chunk(2, 30, 0, "uvw", false))), 3u);
  EXPECT_EQ(AskedOffset(a.Take(Chunk(2, 31, 3, "xyz", false))), 0u);
  EXPECT_EQ(AskedOffset(a.Take(Chunk(2, 31, 0, "uvw", false))), 3u);
  auto done = a.Take(Chunk(2, 31, 3, "xyz", true));
  ASSERT_TRUE(done.snapshot.has_value());
  EXPECT_EQ(done.snapshot->ReadAll().value(), "uvwxyz");
}

// A receiver that cannot write abandons the transfer without an answer; the sender's next
// chunk (resent at a heartbeat) is asked to start again from the beginning.
TEST(SnapshotAssembler, AFailedReceiverAbandonsTheTransfer) {
  int fail_appends = 0;
  SnapshotAssembler a([&] { return std::make_unique<TestReceiver>(&fail_appends); });
  EXPECT_EQ(AskedOffset(a.Take(Chunk(1, 30, 0, "abc", false))), 3u);
  fail_appends = 1;
  auto failed = a.Take(Chunk(1, 30, 3, "def", false));
  EXPECT_FALSE(failed.snapshot.has_value());
  EXPECT_FALSE(failed.reply.has_value());
  EXPECT_EQ(AskedOffset(a.Take(Chunk(1, 30, 3, "def", false))), 0u);
  EXPECT_EQ(AskedOffset(a.Take(Chunk(1, 30, 0, "abc", false))), 3u);
  auto done = a.Take(Chunk(1, 30, 3, "def", true));
  ASSERT_TRUE(done.snapshot.has_value());
  EXPECT_EQ(done.snapshot->ReadAll().value(), "abcdef");
}

}  // namespace
}  // namespace synod::consensus
