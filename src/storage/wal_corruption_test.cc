// Damage at every record of a segment: what recovery must do with it.
//  - In the last segment, a record that is cut short or fails its checksum, with nothing valid
//    after it, is a torn tail: cut off and reported.
//  - Anywhere else (an earlier segment, or a bad record with a valid one after it) the WAL
//    refuses to open, naming the file and byte offset, and leaves the files untouched.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "storage/wal.h"
#include "storage/wal_format.h"
#include "storage/wal_test_util.h"

namespace synod::storage {
namespace {

using testing::Entries;
using testing::MakeHardState;
using testing::ScratchDir;
using testing::SegmentFiles;
using testing::SmallOptions;

struct RecordSpan {
  uint64_t offset = 0;
  uint64_t bytes = 0;
  uint64_t entries_before = 0;  // entries in the records before this one
};

// Splits a segment image into its records (the header is record 0).
std::vector<RecordSpan> Records(const std::string& image) {
  std::vector<RecordSpan> spans;
  uint64_t offset = 0;
  uint64_t entries = 0;
  for (;;) {
    ParsedRecord record;
    std::string why;
    if (ParseRecord(image, offset, 1 << 20, &record, &why) != ParseStatus::kRecord) break;
    spans.push_back({offset, record.bytes, entries});
    if (record.type == RecordType::kEntry) ++entries;
    offset += record.bytes;
  }
  return spans;
}

void WriteImage(const std::string& path, const std::string& image) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(std::fwrite(image.data(), 1, image.size(), f), image.size());
  std::fclose(f);
}

std::string FlipBit(std::string image, uint64_t byte, int bit = 0) {
  image[byte] = static_cast<char>(image[byte] ^ (1 << bit));
  return image;
}

class WalCorruptionTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kSegmentBytes = 64 << 10;
  static constexpr uint64_t kEntries = 60;

  void SetUp() override {
    WalRecovered recovered;
    std::unique_ptr<Wal> wal;
    ASSERT_TRUE(Wal::Open(dir_.wal(), Options(), &wal, &recovered).ok());
    for (uint64_t i = 1; i <= kEntries; ++i) {
      WalWrite write = Entries(i, i, 1, 20 + i % 50);
      if (i % 10 == 0) write.hard_state = MakeHardState(1, 1, i);
      ASSERT_TRUE(wal->AppendSync(write).ok());
    }
    wal.reset();
    path_ = dir_.wal() + "/" + SegmentFiles(dir_.wal()).at(0);
    ASSERT_TRUE(ReadFile(path_, &pristine_).ok());
    records_ = Records(pristine_);
    ASSERT_EQ(records_.size(), 1 + kEntries + kEntries / 10);
  }

  WalOptions Options() { return SmallOptions(kSegmentBytes, &log_); }

  // Writes `image` as the segment and opens the WAL on it.
  Status Reopen(const std::string& image, WalRecovered* recovered) {
    WriteImage(path_, image);
    std::unique_ptr<Wal> wal;
    return Wal::Open(dir_.wal(), Options(), &wal, recovered);
  }

  // The log must be exactly the entries before record `k`, repaired iff `repaired`.
  void ExpectPrefix(const std::string& image, size_t k, bool repaired, const std::string& what) {
    WalRecovered recovered;
    const Status s = Reopen(image, &recovered);
    ASSERT_TRUE(s.ok()) << what << ": " << s.ToString();
    EXPECT_EQ(recovered.entries.size(), records_[k].entries_before) << what;
    for (size_t i = 0; i < recovered.entries.size(); ++i) {
      ASSERT_EQ(recovered.entries[i].index(), i + 1) << what;
    }
    EXPECT_EQ(recovered.repaired_tail_bytes > 0, repaired) << what;
    if (repaired) {
      EXPECT_NE(recovered.repair_note.find(std::to_string(records_[k].offset)), std::string::npos)
          << what << ": " << recovered.repair_note;
      std::string after;
      ASSERT_TRUE(ReadFile(path_, &after).ok());
      EXPECT_EQ(after.size(), kSegmentBytes) << what << ": cut, then preallocated again";
      EXPECT_TRUE(AllZero(std::string_view(after).substr(records_[k].offset))) << what;
    }
  }

  // Opening must fail with kCorruption naming the file and `offset`, changing nothing.
  void ExpectRefused(const std::string& image, uint64_t offset, const std::string& what) {
    WalRecovered recovered;
    const Status s = Reopen(image, &recovered);
    ASSERT_EQ(s.code(), Code::kCorruption) << what << ": " << s.ToString();
    EXPECT_NE(s.message().find(path_), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("byte offset " + std::to_string(offset)), std::string::npos)
        << what << ": " << s.message();
    std::string after;
    ASSERT_TRUE(ReadFile(path_, &after).ok());
    EXPECT_TRUE(after == image) << what << ": a refused WAL is left as it was";
  }

  // Byte positions inside record `k` worth damaging: each header field and the payload.
  std::set<uint64_t> InsidePositions(size_t k) const {
    const RecordSpan& r = records_[k];
    return {r.offset,     r.offset + 3,           r.offset + 5,          r.offset + 8,
            r.offset + 9, r.offset + r.bytes / 2, r.offset + r.bytes - 1};
  }

  ScratchDir dir_{ScratchDir::Where::kMemory};
  std::vector<std::string> log_;
  std::string path_;
  std::string pristine_;
  std::vector<RecordSpan> records_;
};

TEST_F(WalCorruptionTest, TruncationAtEveryRecordBoundaryLosesOnlyTheCutRecords) {
  for (size_t k = 1; k < records_.size(); ++k) {
    ExpectPrefix(pristine_.substr(0, records_[k].offset), k, /*repaired=*/false,
                 "cut at record " + std::to_string(k));
  }
}

TEST_F(WalCorruptionTest, TruncationInsideEveryRecordIsATornTail) {
  for (size_t k = 1; k < records_.size(); ++k) {
    for (uint64_t cut : InsidePositions(k)) {
      if (cut == records_[k].offset) continue;  // that is a boundary
      ExpectPrefix(pristine_.substr(0, cut), k, /*repaired=*/true,
                   "cut inside record " + std::to_string(k) + " at " + std::to_string(cut));
    }
  }
}

TEST_F(WalCorruptionTest, PartialRecordBeforeThePreallocatedZerosIsATornTail) {
  // What a crash mid-write leaves: a prefix of the record, zeros after it.
  for (size_t k = 1; k < records_.size(); ++k) {
    for (uint64_t cut : InsidePositions(k)) {
      if (cut == records_[k].offset) continue;
      std::string image = pristine_;
      std::fill(image.begin() + static_cast<long>(cut), image.end(), '\0');
      ExpectPrefix(image, k, /*repaired=*/true, "zeros from " + std::to_string(cut));
    }
  }
}

TEST_F(WalCorruptionTest, FlippedBitInTheLastRecordIsATornTail) {
  const size_t last = records_.size() - 1;
  for (uint64_t byte : InsidePositions(last)) {
    for (int bit : {0, 7}) {
      ExpectPrefix(FlipBit(pristine_, byte, bit), last, /*repaired=*/true,
                   "flip byte " + std::to_string(byte) + " bit " + std::to_string(bit));
    }
  }
}

TEST_F(WalCorruptionTest, FlippedBitInAnyEarlierRecordIsRefused) {
  for (size_t k = 0; k + 1 < records_.size(); ++k) {
    for (uint64_t byte : InsidePositions(k)) {
      for (int bit : {0, 7}) {
        ExpectRefused(FlipBit(pristine_, byte, bit), records_[k].offset,
                      "record " + std::to_string(k) + " byte " + std::to_string(byte));
      }
    }
  }
}

TEST_F(WalCorruptionTest, ZeroedRecordFollowedByValidOnesIsRefused) {
  for (size_t k = 1; k + 1 < records_.size(); k += 7) {
    std::string image = pristine_;
    std::fill_n(image.begin() + static_cast<long>(records_[k].offset), records_[k].bytes, '\0');
    ExpectRefused(image, records_[k].offset, "zeroed record " + std::to_string(k));
  }
}

TEST_F(WalCorruptionTest, ValidRecordAfterAGapOfZerosIsRefused) {
  // A good record somewhere in the preallocated area means data was lost in between.
  const RecordSpan& some = records_[5];
  const uint64_t end = records_.back().offset + records_.back().bytes;
  std::string image = pristine_;
  image.replace(end + 1000, some.bytes, pristine_.substr(some.offset, some.bytes));
  ExpectRefused(image, end, "valid record after zeros");
}

TEST_F(WalCorruptionTest, GarbageInThePreallocatedAreaIsCutOff) {
  const uint64_t end = records_.back().offset + records_.back().bytes;
  std::string image = pristine_;
  image.replace(end + 100, 5, "\x01\x02\x03\x04\x05");
  {
    WalRecovered recovered;
    ASSERT_TRUE(Reopen(image, &recovered).ok());
    EXPECT_EQ(recovered.entries.size(), kEntries);
    EXPECT_EQ(recovered.repaired_tail_bytes, 105u);
    EXPECT_NE(recovered.repair_note.find("byte offset " + std::to_string(end)), std::string::npos);
    ASSERT_EQ(log_.size(), 1u) << "a repair is logged";
    EXPECT_NE(log_[0].find("torn tail"), std::string::npos);
  }
  WalRecovered recovered;
  std::unique_ptr<Wal> wal;
  ASSERT_TRUE(Wal::Open(dir_.wal(), Options(), &wal, &recovered).ok());
  EXPECT_EQ(recovered.repaired_tail_bytes, 0u) << "the earlier open cut the garbage for good";
  EXPECT_EQ(recovered.entries.size(), kEntries);
}

TEST_F(WalCorruptionTest, RepairedWalAppendsAndReopensCleanly) {
  const size_t k = records_.size() / 2;
  ExpectPrefix(pristine_.substr(0, records_[k].offset + 4), k, /*repaired=*/true, "cut");
  const uint64_t next = records_[k].entries_before + 1;
  {
    WalRecovered recovered;
    std::unique_ptr<Wal> wal;
    ASSERT_TRUE(Wal::Open(dir_.wal(), Options(), &wal, &recovered).ok());
    EXPECT_EQ(recovered.repaired_tail_bytes, 0u);
    ASSERT_TRUE(wal->AppendSync(Entries(next, next + 4, 2)).ok());
  }
  WalRecovered recovered;
  std::unique_ptr<Wal> wal;
  ASSERT_TRUE(Wal::Open(dir_.wal(), Options(), &wal, &recovered).ok());
  EXPECT_EQ(recovered.repaired_tail_bytes, 0u);
  ASSERT_EQ(recovered.entries.size(), next + 4);
  EXPECT_EQ(recovered.entries.back().term(), 2u);
}

TEST_F(WalCorruptionTest, DamagedSegmentHeaderIsRefused) {
  ExpectRefused(FlipBit(pristine_, 12), 0, "header payload");
  ExpectRefused(pristine_.substr(0, 10), 0, "cut inside the header");
  ExpectRefused("", 0, "empty segment file");
}

// A WAL of several segments: only the last may have a torn tail.
class WalMultiSegmentCorruptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WalRecovered recovered;
    std::unique_ptr<Wal> wal;
    ASSERT_TRUE(Wal::Open(dir_.wal(), SmallOptions(2048), &wal, &recovered).ok());
    for (uint64_t i = 1; i <= 100; ++i) ASSERT_TRUE(wal->AppendSync(Entries(i, i, 1, 60)).ok());
    wal.reset();
    files_ = SegmentFiles(dir_.wal());
    ASSERT_GE(files_.size(), 3u);
    first_ = dir_.wal() + "/" + files_[0];
    ASSERT_TRUE(ReadFile(first_, &pristine_).ok());
  }

  Status OpenWith(const std::string& first_image) {
    WriteImage(first_, first_image);
    WalRecovered recovered;
    std::unique_ptr<Wal> wal;
    return Wal::Open(dir_.wal(), SmallOptions(2048), &wal, &recovered);
  }

  ScratchDir dir_{ScratchDir::Where::kMemory};
  std::vector<std::string> files_;
  std::string first_;
  std::string pristine_;
};

TEST_F(WalMultiSegmentCorruptionTest, AnyDamageToAnEarlierSegmentIsRefused) {
  const std::vector<RecordSpan> records = Records(pristine_);
  ASSERT_EQ(records.back().offset + records.back().bytes, pristine_.size()) << "cut at rotation";
  for (size_t k = 1; k < records.size(); ++k) {
    for (uint64_t byte : {records[k].offset + 1, records[k].offset + records[k].bytes - 1}) {
      const Status flipped = OpenWith(FlipBit(pristine_, byte));
      EXPECT_EQ(flipped.code(), Code::kCorruption) << "flip in record " << k;
      EXPECT_NE(flipped.message().find(first_), std::string::npos) << flipped.message();
      EXPECT_NE(flipped.message().find("byte offset " + std::to_string(records[k].offset)),
                std::string::npos)
          << flipped.message();
      const Status cut = OpenWith(pristine_.substr(0, byte));
      EXPECT_EQ(cut.code(), Code::kCorruption) << "cut inside record " << k;
    }
    // Cut exactly at a record boundary: the next segment no longer continues the log.
    const Status boundary = OpenWith(pristine_.substr(0, records[k].offset));
    EXPECT_EQ(boundary.code(), Code::kCorruption) << "cut before record " << k;
  }
  // Zeros after the last record of a closed segment are damage too.
  const Status padded = OpenWith(pristine_ + std::string(100, '\0'));
  EXPECT_EQ(padded.code(), Code::kCorruption);
  EXPECT_TRUE(OpenWith(pristine_).ok());
}

TEST_F(WalMultiSegmentCorruptionTest, MissingMiddleSegmentIsRefused) {
  std::filesystem::remove(dir_.wal() + "/" + files_[1]);
  const Status s = OpenWith(pristine_);
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_NE(s.message().find("missing"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace synod::storage
