#include "storage/wal_format.h"

#include <gtest/gtest.h>

#include "storage/wal_log.h"

namespace synod::storage {
namespace {

TEST(WalFormatTest, RecordRoundTripAndLayout) {
  std::string buffer;
  AppendRecord(RecordType::kEntry, "hello", &buffer);
  ASSERT_EQ(buffer.size(), kRecordHeaderBytes + 5);
  EXPECT_EQ(buffer[0], 5);  // little-endian length
  EXPECT_EQ(buffer[8], static_cast<char>(RecordType::kEntry));
  ParsedRecord record;
  std::string why;
  ASSERT_EQ(ParseRecord(buffer, 0, 1024, &record, &why), ParseStatus::kRecord) << why;
  EXPECT_EQ(record.type, RecordType::kEntry);
  EXPECT_EQ(record.payload, "hello");
  EXPECT_EQ(record.bytes, buffer.size());
}

TEST(WalFormatTest, EveryTruncationIsTruncatedAndEveryBitFlipIsCaught) {
  std::string buffer;
  AppendRecord(RecordType::kHardState, "some payload bytes", &buffer);
  ParsedRecord record;
  std::string why;
  for (size_t size = 0; size < buffer.size(); ++size) {
    EXPECT_EQ(ParseRecord(std::string_view(buffer).substr(0, size), 0, 1024, &record, &why),
              ParseStatus::kTruncated)
        << size;
  }
  for (size_t bit = 0; bit < buffer.size() * 8; ++bit) {
    std::string flipped = buffer;
    flipped[bit / 8] = static_cast<char>(flipped[bit / 8] ^ (1 << (bit % 8)));
    EXPECT_NE(ParseRecord(flipped, 0, 1024, &record, &why), ParseStatus::kRecord) << bit;
  }
}

TEST(WalFormatTest, ZerosAreNeverARecord) {
  const std::string zeros(64, '\0');
  ParsedRecord record;
  std::string why;
  EXPECT_EQ(ParseRecord(zeros, 0, 1024, &record, &why), ParseStatus::kBad);
  EXPECT_TRUE(AllZero(zeros));
}

TEST(WalFormatTest, OversizedLengthIsBad) {
  std::string buffer;
  AppendRecord(RecordType::kEntry, std::string(100, 'x'), &buffer);
  ParsedRecord record;
  std::string why;
  EXPECT_EQ(ParseRecord(buffer, 0, 99, &record, &why), ParseStatus::kBad);
  EXPECT_NE(why.find("exceeds"), std::string::npos);
}

TEST(WalFormatTest, SegmentHeaderRoundTrip) {
  const SegmentHeader header{.seq = 7, .first_index = 12345};
  std::string why;
  const auto decoded = DecodeSegmentHeader(EncodeSegmentHeader(header), &why);
  ASSERT_TRUE(decoded) << why;
  EXPECT_EQ(decoded->seq, 7u);
  EXPECT_EQ(decoded->first_index, 12345u);
  std::string bad = EncodeSegmentHeader(header);
  bad[8] = 9;  // version
  EXPECT_FALSE(DecodeSegmentHeader(bad, &why));
  EXPECT_NE(why.find("version"), std::string::npos);
}

TEST(WalFormatTest, FileNamesSortInLogOrderAndParseBack) {
  EXPECT_EQ(SegmentFileName({.seq = 1, .first_index = 1}), "0000000000000001-0000000000000001.wal");
  EXPECT_LT(SegmentFileName({.seq = 9, .first_index = 500}),
            SegmentFileName({.seq = 10, .first_index = 20}));
  const auto parsed = ParseSegmentFileName("00000000000000ff-0000000000001000.wal");
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->seq, 255u);
  EXPECT_EQ(parsed->first_index, 4096u);
  EXPECT_FALSE(ParseSegmentFileName("00000000000000ff-0000000000001000.wal.tmp"));
  EXPECT_FALSE(ParseSegmentFileName("00000000000000fg-0000000000001000.wal"));
  EXPECT_FALSE(ParseSegmentFileName("LOCK"));
}

TEST(LogReplayTest, OverwriteReplacesTheSuffix) {
  LogReplay replay(1);
  for (uint64_t i = 1; i <= 5; ++i) {
    consensuspb::Entry e;
    e.set_index(i);
    e.set_term(1);
    ASSERT_EQ(replay.AddEntry(e), "");
  }
  consensuspb::Entry e;
  e.set_index(3);
  e.set_term(2);
  ASSERT_EQ(replay.AddEntry(e), "");
  EXPECT_EQ(replay.bounds().last_index(), 3u);
  e.set_index(5);  // a gap
  EXPECT_NE(replay.AddEntry(e), "");
  const auto entries = replay.TakeEntries();
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[2].term(), 2u);
}

TEST(LogReplayTest, SnapshotDropsCoveredEntriesAndMayRunAhead) {
  LogReplay replay(1);
  for (uint64_t i = 1; i <= 5; ++i) {
    consensuspb::Entry e;
    e.set_index(i);
    ASSERT_EQ(replay.AddEntry(e), "");
  }
  consensuspb::SnapshotMetadata snapshot;
  snapshot.set_index(3);
  ASSERT_EQ(replay.AddSnapshot(snapshot), "");
  EXPECT_EQ(replay.bounds().lowest_index(), 4u);
  EXPECT_EQ(replay.bounds().last_index(), 5u);
  consensuspb::Entry below;
  below.set_index(3);
  EXPECT_NE(replay.AddEntry(below), "") << "no entry at or below the snapshot";
  snapshot.set_index(10);
  ASSERT_EQ(replay.AddSnapshot(snapshot), "");
  EXPECT_TRUE(replay.TakeEntries().empty());
  EXPECT_EQ(replay.bounds().last_index(), 10u);
  snapshot.set_index(9);
  EXPECT_NE(replay.AddSnapshot(snapshot), "") << "markers never move back";
}

}  // namespace
}  // namespace synod::storage
