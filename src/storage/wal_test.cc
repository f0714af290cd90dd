#include "storage/wal.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "storage/wal_test_util.h"

namespace synod::storage {
namespace {

using testing::Entries;
using testing::MakeEntry;
using testing::MakeHardState;
using testing::MakeSnapshot;
using testing::ScratchDir;
using testing::SegmentFiles;
using testing::SmallOptions;

std::unique_ptr<Wal> OpenOrDie(const std::string& dir, const WalOptions& options,
                               WalRecovered* recovered) {
  std::unique_ptr<Wal> wal;
  const Status s = Wal::Open(dir, options, &wal, recovered);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return wal;
}

// Expects `entries` to be exactly indexes [first, last] of `term` as MakeEntry builds them.
void ExpectEntries(const std::vector<consensuspb::Entry>& entries, uint64_t first, uint64_t last,
                   uint64_t term, size_t data_bytes = 32) {
  ASSERT_EQ(entries.size(), last - first + 1);
  for (uint64_t i = first; i <= last; ++i) {
    const consensuspb::Entry want = MakeEntry(i, term, data_bytes);
    ASSERT_EQ(entries[i - first].SerializeAsString(), want.SerializeAsString()) << "index " << i;
  }
}

TEST(WalTest, NewWalIsEmptyAndNamesItsFirstSegment) {
  ScratchDir dir;
  WalRecovered recovered;
  auto wal = OpenOrDie(dir.wal(), SmallOptions(64 << 10), &recovered);
  EXPECT_FALSE(recovered.hard_state);
  EXPECT_FALSE(recovered.snapshot);
  EXPECT_TRUE(recovered.entries.empty());
  EXPECT_EQ(wal->last_index(), 0u);
  EXPECT_EQ(SegmentFiles(dir.wal()),
            std::vector<std::string>{"0000000000000001-0000000000000001.wal"});
  EXPECT_EQ(std::filesystem::file_size(dir.wal() + "/0000000000000001-0000000000000001.wal"),
            64u << 10)
      << "preallocated";
}

TEST(WalTest, RoundTrip) {
  ScratchDir dir;
  WalRecovered recovered;
  {
    auto wal = OpenOrDie(dir.wal(), SmallOptions(1 << 20), &recovered);
    WalWrite write = Entries(1, 50, 1);
    write.hard_state = MakeHardState(1, 2, 40);
    ASSERT_TRUE(wal->AppendSync(write).ok());
    ASSERT_TRUE(wal->AppendSync(Entries(51, 100, 2)).ok());
    EXPECT_EQ(wal->durable_index(), 100u);
    const WalCounters c = wal->counters();
    EXPECT_EQ(c.records_written, 101u);
    EXPECT_EQ(c.appends_written, 2u);
  }
  auto wal = OpenOrDie(dir.wal(), SmallOptions(1 << 20), &recovered);
  ASSERT_EQ(recovered.entries.size(), 100u);
  ExpectEntries({recovered.entries.begin(), recovered.entries.begin() + 50}, 1, 50, 1);
  ExpectEntries({recovered.entries.begin() + 50, recovered.entries.end()}, 51, 100, 2);
  ASSERT_TRUE(recovered.hard_state);
  EXPECT_EQ(recovered.hard_state->commit(), 40u);
  EXPECT_EQ(recovered.hard_state->vote(), 2u);
  EXPECT_EQ(recovered.repaired_tail_bytes, 0u);
  EXPECT_EQ(wal->last_index(), 100u);
}

TEST(WalTest, RecoveryAfterManyReopens) {
  ScratchDir dir;
  uint64_t last = 0;
  for (int round = 0; round < 6; ++round) {
    WalRecovered recovered;
    auto wal = OpenOrDie(dir.wal(), SmallOptions(8 << 10), &recovered);
    ExpectEntries(recovered.entries, 1, last, 1, 64);
    if (round > 0) {
      EXPECT_EQ(recovered.hard_state->commit(), last);
    }
    EXPECT_EQ(recovered.repaired_tail_bytes, 0u);
    WalWrite write = Entries(last + 1, last + 37, 1, 64);
    last += 37;
    write.hard_state = MakeHardState(1, 1, last);
    ASSERT_TRUE(wal->AppendSync(write).ok());
  }
}

TEST(WalTest, RotatesIntoSortedSegmentsCutToTheirUsedLength) {
  ScratchDir dir;
  const uint64_t segment_bytes = 4096;
  {
    WalRecovered recovered;
    auto wal = OpenOrDie(dir.wal(), SmallOptions(segment_bytes), &recovered);
    for (uint64_t i = 1; i <= 200; ++i) ASSERT_TRUE(wal->AppendSync(Entries(i, i, 1, 100)).ok());
    EXPECT_GT(wal->segment_count(), 5u);
    EXPECT_EQ(wal->counters().segments_created, wal->segment_count());
  }
  const auto files = SegmentFiles(dir.wal());
  ASSERT_GT(files.size(), 5u);
  for (size_t i = 0; i < files.size(); ++i) {
    const auto header = ParseSegmentFileName(files[i]);
    ASSERT_TRUE(header);
    EXPECT_EQ(header->seq, i + 1);
    const auto size = std::filesystem::file_size(dir.wal() + "/" + files[i]);
    if (i + 1 < files.size()) {
      EXPECT_LE(size, segment_bytes) << files[i];
      EXPECT_GT(size, segment_bytes - 200) << files[i] << " holds as much as fits";
    } else {
      EXPECT_EQ(size, segment_bytes) << "the open segment is preallocated";
    }
  }
  WalRecovered recovered;
  auto wal = OpenOrDie(dir.wal(), SmallOptions(segment_bytes), &recovered);
  ExpectEntries(recovered.entries, 1, 200, 1, 100);
}

TEST(WalTest, AppendLargerThanASegmentGetsASegmentOfItsOwn) {
  ScratchDir dir;
  {
    WalRecovered recovered;
    auto wal = OpenOrDie(dir.wal(), SmallOptions(4096), &recovered);
    ASSERT_TRUE(wal->AppendSync(Entries(1, 3, 1, 100)).ok());
    ASSERT_TRUE(wal->AppendSync(Entries(4, 4, 1, 10000)).ok());
    ASSERT_TRUE(wal->AppendSync(Entries(5, 5, 1, 100)).ok());
  }
  WalRecovered recovered;
  auto wal = OpenOrDie(dir.wal(), SmallOptions(4096), &recovered);
  ASSERT_EQ(recovered.entries.size(), 5u);
  EXPECT_EQ(recovered.entries[3].data().size(), 10000u);
}

TEST(WalTest, TruncationReplaysLikeRaftOverwrite) {
  ScratchDir dir;
  {
    WalRecovered recovered;
    auto wal = OpenOrDie(dir.wal(), SmallOptions(1024), &recovered);
    for (uint64_t i = 1; i <= 40; ++i) ASSERT_TRUE(wal->AppendSync(Entries(i, i, 1, 64)).ok());
    ASSERT_GT(wal->segment_count(), 2u) << "entries 10..40 span several segments";
    ASSERT_TRUE(wal->AppendSync(Entries(10, 12, 2, 64)).ok());  // overwrites 10..40
    EXPECT_EQ(wal->last_index(), 12u);
    ASSERT_TRUE(wal->AppendSync(Entries(13, 20, 2, 64)).ok());
    ASSERT_TRUE(wal->AppendSync(Entries(20, 20, 3, 64)).ok());  // overwrites only the last
  }
  WalRecovered recovered;
  auto wal = OpenOrDie(dir.wal(), SmallOptions(1024), &recovered);
  ASSERT_EQ(recovered.entries.size(), 20u);
  ExpectEntries({recovered.entries.begin(), recovered.entries.begin() + 9}, 1, 9, 1, 64);
  ExpectEntries({recovered.entries.begin() + 9, recovered.entries.begin() + 19}, 10, 19, 2, 64);
  ExpectEntries({recovered.entries.begin() + 19, recovered.entries.end()}, 20, 20, 3, 64);
  EXPECT_EQ(wal->last_index(), 20u);
  // The log continues after the overwritten suffix.
  ASSERT_TRUE(wal->AppendSync(Entries(21, 21, 3, 64)).ok());
}

TEST(WalTest, SnapshotMarkerKeepsLaterEntriesAndMayRunAheadOfTheLog) {
  ScratchDir dir;
  {
    WalRecovered recovered;
    auto wal = OpenOrDie(dir.wal(), SmallOptions(1 << 20), &recovered);
    ASSERT_TRUE(wal->AppendSync(Entries(1, 10, 1)).ok());
    ASSERT_TRUE(wal->AppendSync(WalWrite{.snapshot = MakeSnapshot(6, 1)}).ok());
    EXPECT_EQ(wal->durable_snapshot_index(), 6u);
  }
  {
    WalRecovered recovered;
    auto wal = OpenOrDie(dir.wal(), SmallOptions(1 << 20), &recovered);
    ASSERT_TRUE(recovered.snapshot);
    EXPECT_EQ(recovered.snapshot->index(), 6u);
    ExpectEntries(recovered.entries, 7, 10, 1);
    // A snapshot from the leader far ahead of our log: everything before it goes.
    WalWrite install = Entries(101, 105, 4);
    install.snapshot = MakeSnapshot(100, 3);
    ASSERT_TRUE(wal->AppendSync(install).ok());
  }
  WalRecovered recovered;
  auto wal = OpenOrDie(dir.wal(), SmallOptions(1 << 20), &recovered);
  EXPECT_EQ(recovered.snapshot->index(), 100u);
  ExpectEntries(recovered.entries, 101, 105, 4);
}

TEST(WalTest, CompactionDeletesOnlySegmentsCoveredByADurableSnapshot) {
  ScratchDir dir;
  const WalOptions options = SmallOptions(2048);
  {
    WalRecovered recovered;
    auto wal = OpenOrDie(dir.wal(), options, &recovered);
    WalWrite first = Entries(1, 1, 1, 100);
    first.hard_state = MakeHardState(1, 3, 1);  // the only hard state ever logged
    ASSERT_TRUE(wal->AppendSync(first).ok());
    for (uint64_t i = 2; i <= 150; ++i) ASSERT_TRUE(wal->AppendSync(Entries(i, i, 1, 100)).ok());
    ASSERT_GT(wal->segment_count(), 8u);

    uint64_t released = 0;
    ASSERT_TRUE(wal->ReleaseBefore(120, &released).ok());
    EXPECT_EQ(released, 0u) << "no snapshot yet: nothing is covered";

    ASSERT_TRUE(wal->AppendSync(WalWrite{.snapshot = MakeSnapshot(100, 1)}).ok());
    const size_t before = wal->segment_count();
    ASSERT_TRUE(wal->ReleaseBefore(120, &released).ok());  // clamped to the snapshot, 100
    EXPECT_GT(released, 0u);
    EXPECT_EQ(wal->segment_count(), before - released);
    EXPECT_EQ(wal->counters().segments_released, released);
  }
  const auto files = SegmentFiles(dir.wal());
  EXPECT_NE(files.front(), "0000000000000001-0000000000000001.wal");
  WalRecovered recovered;
  auto wal = OpenOrDie(dir.wal(), options, &recovered);
  ASSERT_TRUE(recovered.snapshot);
  EXPECT_EQ(recovered.snapshot->index(), 100u);
  ExpectEntries(recovered.entries, 101, 150, 1, 100);
  ASSERT_TRUE(recovered.hard_state) << "copied into every new segment, so never released";
  EXPECT_EQ(recovered.hard_state->vote(), 3u);
  // Release everything the snapshot covers, then rotate on: the marker is copied forward too.
  ASSERT_TRUE(wal->AppendSync(WalWrite{.snapshot = MakeSnapshot(150, 1)}).ok());
  for (uint64_t i = 151; i <= 200; ++i) ASSERT_TRUE(wal->AppendSync(Entries(i, i, 1, 100)).ok());
  ASSERT_TRUE(wal->ReleaseBefore(150).ok());
  wal.reset();
  auto reopened = OpenOrDie(dir.wal(), options, &recovered);
  EXPECT_EQ(recovered.snapshot->index(), 150u);
  ExpectEntries(recovered.entries, 151, 200, 1, 100);
  EXPECT_EQ(recovered.hard_state->vote(), 3u);
}

TEST(WalTest, GroupCommitFromSixteenThreadsSharesFdatasyncs) {
  ScratchDir dir;
  WalRecovered recovered;
  WalOptions options = SmallOptions(4 << 20);
  std::atomic<uint64_t> last_reported{0};
  options.on_durable = [&](uint64_t index) {
    EXPECT_GE(index, last_reported.load()) << "durable position never moves back";
    last_reported = index;
  };
  auto wal = OpenOrDie(dir.wal(), options, &recovered);
  constexpr int kThreads = 16;
  constexpr int kAppendsPerThread = 200;
  std::mutex index_mu;  // appenders agree on indexes, as a consensus engine would
  uint64_t next_index = 1;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kAppendsPerThread; ++i) {
        WalTicket ticket = 0;
        {
          std::lock_guard lock(index_mu);
          ASSERT_TRUE(wal->Append(Entries(next_index, next_index, 1), &ticket).ok());
          ++next_index;
        }
        ASSERT_TRUE(wal->WaitDurable(ticket).ok());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const WalCounters c = wal->counters();
  const uint64_t records = kThreads * kAppendsPerThread;
  EXPECT_EQ(c.records_written, records);
  std::printf("group commit: %lu records, %lu group commits, %lu syncs (%.1f records/sync)\n",
              static_cast<unsigned long>(c.records_written),
              static_cast<unsigned long>(c.group_commits), static_cast<unsigned long>(c.syncs),
              static_cast<double>(c.records_written) / static_cast<double>(c.syncs));
  EXPECT_LT(c.syncs * 4, records) << "one fdatasync should cover many appends";
  // on_durable runs on the storage thread after the waiters are woken; once the Wal is
  // destroyed (its thread joined) the last report has surely been made.
  wal.reset();
  EXPECT_EQ(last_reported.load(), records);
  auto reopened = OpenOrDie(dir.wal(), options, &recovered);
  ExpectEntries(recovered.entries, 1, records, 1);
}

TEST(WalTest, AnAppendWithACallbackIsToldInOrderOnceDurable) {
  ScratchDir dir;
  WalRecovered recovered;
  {
    auto wal = OpenOrDie(dir.wal(), SmallOptions(1 << 20), &recovered);
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::pair<uint64_t, uint64_t>> told;  // (first index, durable index then)
    for (uint64_t first = 1; first <= 91; first += 10) {
      const Status s = wal->Append(Entries(first, first + 9, 1), [&, first](const Status& d) {
        EXPECT_TRUE(d.ok()) << d.ToString();
        std::lock_guard lock(mu);
        told.emplace_back(first, wal->durable_index());
        cv.notify_all();
      });
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return told.size() == 10; }))
        << told.size() << " of 10 appends told";
    for (size_t i = 0; i < told.size(); ++i) {
      EXPECT_EQ(told[i].first, 1 + 10 * i) << "in the order of the appends";
      EXPECT_GE(told[i].second, told[i].first + 9) << "told only once durable";
    }
  }
  WalRecovered again;
  auto wal = OpenOrDie(dir.wal(), SmallOptions(1 << 20), &again);
  ExpectEntries(again.entries, 1, 100, 1);
}

TEST(WalTest, OversizedEntryIsRefusedWithoutHarm) {
  ScratchDir dir;
  WalRecovered recovered;
  WalOptions options = SmallOptions(1 << 20);
  options.record_bytes_max = 1000;
  auto wal = OpenOrDie(dir.wal(), options, &recovered);
  WalTicket ticket = 0;
  const Status s = wal->Append(Entries(1, 1, 1, 2000), &ticket);
  EXPECT_EQ(s.code(), Code::kTooLarge);
  EXPECT_EQ(wal->last_index(), 0u);
  EXPECT_TRUE(wal->AppendSync(Entries(1, 1, 1, 100)).ok());
}

TEST(WalTest, SecondOpenOfTheSameDirectoryIsRefused) {
  ScratchDir dir;
  WalRecovered recovered;
  auto wal = OpenOrDie(dir.wal(), SmallOptions(1 << 20), &recovered);
  std::unique_ptr<Wal> second;
  const Status s = Wal::Open(dir.wal(), SmallOptions(1 << 20), &second, &recovered);
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
}

TEST(WalTest, LeftoverTempSegmentIsRemovedOnOpen) {
  ScratchDir dir;
  WalRecovered recovered;
  { OpenOrDie(dir.wal(), SmallOptions(4096), &recovered); }
  const std::string tmp = dir.wal() + "/0000000000000002-0000000000000001.wal.tmp";
  {
    std::FILE* f = std::fopen(tmp.c_str(), "w");
    std::fputs("half-made", f);
    std::fclose(f);
  }
  auto wal = OpenOrDie(dir.wal(), SmallOptions(4096), &recovered);
  EXPECT_FALSE(std::filesystem::exists(tmp));
  EXPECT_TRUE(wal->AppendSync(Entries(1, 1, 1)).ok());
}

using WalDeathTest = ::testing::Test;

TEST_F(WalDeathTest, AGapInTheLogIsACallerBug) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  ScratchDir dir;
  EXPECT_DEATH(
      {
        WalRecovered recovered;
        std::unique_ptr<Wal> wal;
        (void)Wal::Open(dir.wal(), SmallOptions(1 << 20), &wal, &recovered);
        (void)wal->AppendSync(Entries(1, 3, 1));
        (void)wal->AppendSync(Entries(5, 5, 1));
      },
      "entry index 5 outside \\[1, 4\\]");
}

}  // namespace
}  // namespace synod::storage
