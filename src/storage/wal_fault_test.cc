// Write errors: the WAL fails for good, reports why, and damages nothing already durable.
// The errors are real where the machine allows it: writes past a budget go to /dev/full
// (ENOSPC from a real write), and a size-limited tmpfs is mounted when we may (root).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "storage/wal.h"
#include "storage/wal_test_util.h"

namespace synod::storage {
namespace {

using testing::Entries;
using testing::ScratchDir;
using testing::SmallOptions;

// Lets `budget` bytes of writes reach the file; the write that crosses the budget puts what
// fits into the file and then fails with the ENOSPC of a real write to /dev/full.
class DiskFullAfter : public WalIo {
 public:
  explicit DiskFullAfter(uint64_t budget)
      : budget_(budget), full_fd_(::open("/dev/full", O_WRONLY | O_CLOEXEC)) {}
  ~DiskFullAfter() override { ::close(full_fd_); }

  int PwriteAll(int fd, const iovec* iov, int iovcnt, off_t offset, size_t* written) override {
    std::vector<iovec> fits;
    uint64_t room = budget_;
    for (int i = 0; i < iovcnt && room > 0; ++i) {
      fits.push_back({iov[i].iov_base, std::min<size_t>(iov[i].iov_len, room)});
      room -= fits.back().iov_len;
    }
    size_t total = 0;
    for (int i = 0; i < iovcnt; ++i) total += iov[i].iov_len;
    if (total <= budget_) {
      budget_ -= total;
      return WalIo::PwriteAll(fd, iov, iovcnt, offset, written);
    }
    budget_ = 0;
    if (int err = WalIo::PwriteAll(fd, fits.data(), static_cast<int>(fits.size()), offset, written);
        err != 0) {
      return err;
    }
    return ::write(full_fd_, "x", 1) < 0 ? errno : EIO;
  }

  int Fdatasync(int fd) override {
    if (fail_syncs_) return EIO;  // cannot be provoked for real here; injected
    return WalIo::Fdatasync(fd);
  }

  void FailSyncs() { fail_syncs_ = true; }

 private:
  uint64_t budget_;
  const int full_fd_;
  std::atomic<bool> fail_syncs_{false};
};

TEST(WalFaultTest, DiskFullFailsTheWalForGoodAndKeepsWhatWasDurable) {
  ScratchDir dir;
  DiskFullAfter io(3000);
  WalOptions options = SmallOptions(1 << 20);
  options.io = &io;
  uint64_t durable = 0;
  Status failure;
  {
    WalRecovered recovered;
    std::unique_ptr<Wal> wal;
    ASSERT_TRUE(Wal::Open(dir.wal(), options, &wal, &recovered).ok());
    for (uint64_t i = 1; i <= 100; ++i) {
      failure = wal->AppendSync(Entries(i, i, 1, 100));
      if (!failure.ok()) break;
      durable = i;
    }
    ASSERT_EQ(failure.code(), Code::kIoError);
    EXPECT_NE(failure.message().find(std::strerror(ENOSPC)), std::string::npos)
        << failure.message();
    EXPECT_NE(failure.message().find(dir.wal()), std::string::npos) << failure.message();
    EXPECT_GT(durable, 5u);
    // Failed for good: later appends get the same error, without touching the disk.
    WalTicket ticket = 0;
    const Status later = wal->Append(Entries(durable + 1, durable + 1, 1), &ticket);
    EXPECT_EQ(later.code(), Code::kIoError);
    EXPECT_EQ(later.message(), failure.message());
    EXPECT_EQ(wal->status().message(), failure.message());
    EXPECT_EQ(wal->durable_index(), durable);
  }
  WalRecovered recovered;
  std::unique_ptr<Wal> wal;
  ASSERT_TRUE(Wal::Open(dir.wal(), SmallOptions(1 << 20), &wal, &recovered).ok());
  ASSERT_EQ(recovered.entries.size(), durable) << "the torn write is cut, nothing else";
  EXPECT_GT(recovered.repaired_tail_bytes, 0u);
  EXPECT_EQ(recovered.entries.back().SerializeAsString(),
            testing::MakeEntry(durable, 1, 100).SerializeAsString());
  EXPECT_TRUE(wal->AppendSync(Entries(durable + 1, durable + 1, 1)).ok());
}

TEST(WalFaultTest, DiskFullWakesEveryWaiterOfAGroupCommit) {
  ScratchDir dir;
  DiskFullAfter io(200 << 10);
  WalOptions options = SmallOptions(1 << 20);
  options.io = &io;
  WalRecovered recovered;
  std::unique_ptr<Wal> wal;
  ASSERT_TRUE(Wal::Open(dir.wal(), options, &wal, &recovered).ok());
  std::mutex index_mu;
  uint64_t next_index = 1;
  std::atomic<uint64_t> durable_max{0};
  std::atomic<int> failed_threads{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (;;) {
        WalTicket ticket = 0;
        uint64_t index = 0;
        {
          std::lock_guard lock(index_mu);
          index = next_index;
          if (!wal->Append(Entries(index, index, 1, 500), &ticket).ok()) break;
          ++next_index;
        }
        if (!wal->WaitDurable(ticket).ok()) break;
        uint64_t seen = durable_max.load();
        while (seen < index && !durable_max.compare_exchange_weak(seen, index)) {
        }
      }
      ++failed_threads;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failed_threads.load(), 8);
  wal.reset();
  ASSERT_TRUE(Wal::Open(dir.wal(), SmallOptions(1 << 20), &wal, &recovered).ok());
  EXPECT_GE(recovered.entries.size(), durable_max.load()) << "every acknowledged entry survives";
  for (size_t i = 0; i < recovered.entries.size(); ++i) {
    ASSERT_EQ(recovered.entries[i].SerializeAsString(),
              testing::MakeEntry(i + 1, 1, 500).SerializeAsString());
  }
}

// A WAL with entries 1..5 durable, whose fdatasyncs fail (EIO) from now on.
class WalSyncFailureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WalOptions options = SmallOptions(1 << 20);
    options.io = &io_;
    WalRecovered recovered;
    ASSERT_TRUE(Wal::Open(dir_.wal(), options, &wal_, &recovered).ok());
    ASSERT_TRUE(wal_->AppendSync(Entries(1, 5, 1)).ok());
    io_.FailSyncs();
  }

  ScratchDir dir_;
  DiskFullAfter io_{UINT64_MAX};
  std::unique_ptr<Wal> wal_;
};

TEST_F(WalSyncFailureTest, AFailedFdatasyncIsNeverRetried) {
  const Status s = wal_->AppendSync(Entries(6, 6, 1));
  EXPECT_EQ(s.code(), Code::kIoError);
  EXPECT_NE(s.message().find("fdatasync"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(std::strerror(EIO)), std::string::npos) << s.message();
  WalTicket ticket = 0;
  EXPECT_EQ(wal_->Append(Entries(6, 6, 1), &ticket).code(), Code::kIoError);
  EXPECT_EQ(wal_->durable_index(), 5u);
}

TEST_F(WalSyncFailureTest, AFailedFdatasyncIsToldToTheAppendsWaitingForIt) {
  std::promise<Status> told;
  ASSERT_TRUE(wal_->Append(Entries(6, 6, 1), [&](const Status& s) { told.set_value(s); }).ok());
  std::future<Status> result = told.get_future();
  ASSERT_EQ(result.wait_for(std::chrono::seconds(10)), std::future_status::ready)
      << "the append was never told";
  const Status s = result.get();
  EXPECT_EQ(s.code(), Code::kIoError) << "never Ok: the entry is not durable";
  EXPECT_NE(s.message().find("fdatasync"), std::string::npos) << s.message();
  bool called = false;
  EXPECT_EQ(wal_->Append(Entries(6, 6, 1), [&](const Status&) { called = true; }).code(),
            Code::kIoError);
  EXPECT_FALSE(called) << "an append refused at once is not told again";
  EXPECT_EQ(wal_->durable_index(), 5u);
}

// A real file system that fills up: a 256 KiB tmpfs. Needs the right to mount (root in CI).
class WalTmpfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mount_ = dir_.path() + "/mnt";
    std::filesystem::create_directory(mount_);
    if (::mount("tmpfs", mount_.c_str(), "tmpfs", 0, "size=256k") != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(errno);
    }
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_) ::umount2(mount_.c_str(), MNT_DETACH);
  }

  // Fills the WAL until it fails; returns the highest index reported durable.
  uint64_t FillUntilFailure(const WalOptions& options, Status* failure) {
    WalRecovered recovered;
    std::unique_ptr<Wal> wal;
    *failure = Wal::Open(mount_ + "/wal", options, &wal, &recovered);
    if (!failure->ok()) return 0;
    uint64_t durable = 0;
    for (uint64_t i = 1; i <= 100000; ++i) {
      *failure = wal->AppendSync(Entries(i, i, 1, 1000));
      if (!failure->ok()) break;
      durable = i;
    }
    return durable;
  }

  void ExpectRecoversAfterSpaceIsFreed(const WalOptions& options, uint64_t durable) {
    std::filesystem::remove(mount_ + "/filler");
    WalRecovered recovered;
    std::unique_ptr<Wal> wal;
    const Status s = Wal::Open(mount_ + "/wal", options, &wal, &recovered);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_GE(recovered.entries.size(), durable);
    for (size_t i = 0; i < recovered.entries.size(); ++i) {
      ASSERT_EQ(recovered.entries[i].SerializeAsString(),
                testing::MakeEntry(i + 1, 1, 1000).SerializeAsString());
    }
    const uint64_t next = recovered.entries.size() + 1;
    EXPECT_TRUE(wal->AppendSync(Entries(next, next, 1, 1000)).ok());
  }

  void Fill(size_t bytes) {
    std::FILE* f = std::fopen((mount_ + "/filler").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    const std::string block(bytes, 'f');
    std::fwrite(block.data(), 1, block.size(), f);
    std::fclose(f);
  }

  ScratchDir dir_;
  std::string mount_;
  bool mounted_ = false;
};

TEST_F(WalTmpfsTest, PreallocationOfTheNextSegmentFailsWithRealEnospc) {
  Fill(64 << 10);
  WalOptions options = SmallOptions(64 << 10);
  Status failure;
  const uint64_t durable = FillUntilFailure(options, &failure);
  ASSERT_EQ(failure.code(), Code::kIoError) << failure.ToString();
  EXPECT_NE(failure.message().find(std::strerror(ENOSPC)), std::string::npos) << failure.message();
  EXPECT_GT(durable, 50u);
  ExpectRecoversAfterSpaceIsFreed(options, durable);
}

TEST_F(WalTmpfsTest, WriteWithoutPreallocationFailsWithRealEnospc) {
  Fill(64 << 10);
  WalOptions options = SmallOptions(1 << 20);
  options.preallocate = false;
  Status failure;
  const uint64_t durable = FillUntilFailure(options, &failure);
  ASSERT_EQ(failure.code(), Code::kIoError) << failure.ToString();
  EXPECT_NE(failure.message().find("write"), std::string::npos) << failure.message();
  EXPECT_NE(failure.message().find(std::strerror(ENOSPC)), std::string::npos) << failure.message();
  ExpectRecoversAfterSpaceIsFreed(options, durable);
}

}  // namespace
}  // namespace synod::storage
