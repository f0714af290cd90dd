// Crash test with real processes: wal_crash_writer appends with group commit from several
// threads and reports each index once it is durable; we SIGKILL it at a random moment, then
// check that every index it reported survives intact and that nothing half-written appears.
// Repeats WAL_CRASH_ITERATIONS times (default 200) on the same directory, so later runs also
// recover (and may be killed while repairing) what earlier kills left.
//   WAL_CRASH_ITERATIONS=2000 WAL_CRASH_SEED=7 ./storage_wal_crash_test
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/assert.h"
#include "base/rng.h"
#include "storage/wal.h"
#include "storage/wal_crash_common.h"
#include "storage/wal_format.h"
#include "storage/wal_test_util.h"

namespace synod::storage {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::strtoull(value, nullptr, 10) : fallback;
}

struct ChildRun {
  std::vector<uint64_t> durable;  // indexes reported durable
  uint64_t repaired_tail_bytes = 0;
  bool killed = false;  // false: it exited on its own (an error)
};

// Parses the complete lines in `buffer`, leaving a partial one.
void ParseLines(std::string* buffer, ChildRun* run) {
  size_t start = 0;
  for (size_t nl; (nl = buffer->find('\n', start)) != std::string::npos; start = nl + 1) {
    const std::string line = buffer->substr(start, nl - start);
    const uint64_t value = std::strtoull(line.c_str() + 2, nullptr, 10);
    if (line[0] == 'D') run->durable.push_back(value);
    if (line[0] == 'R') run->repaired_tail_bytes = value;
  }
  buffer->erase(0, start);
}

// Starts the writer, lets it run for `run_time`, SIGKILLs it and collects what it reported.
ChildRun RunAndKill(const std::string& dir, std::chrono::microseconds run_time) {
  int fds[2];
  SYNOD_ASSERT(::pipe2(fds, O_CLOEXEC) == 0, "pipe");
  const pid_t pid = ::fork();
  SYNOD_ASSERT(pid >= 0, "fork");
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::execl(WAL_CRASH_WRITER_PATH, WAL_CRASH_WRITER_PATH, dir.c_str(), "4", nullptr);
    ::_exit(127);
  }
  ::close(fds[1]);
  ChildRun run;
  std::string buffer;
  const Clock::time_point deadline = Clock::now() + run_time;
  char chunk[4096];
  bool eof = false;
  while (!eof) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (!run.killed && left.count() <= 0) {
      ::kill(pid, SIGKILL);
      run.killed = true;
    }
    pollfd p{fds[0], POLLIN, 0};
    ::poll(&p, 1, run.killed ? 1000 : static_cast<int>(std::max<long>(left.count(), 1)));
    if (p.revents == 0) continue;
    const ssize_t n = ::read(fds[0], chunk, sizeof chunk);
    if (n <= 0) {
      eof = true;  // after the kill: the pipe has been drained
    } else {
      buffer.append(chunk, static_cast<size_t>(n));
      ParseLines(&buffer, &run);
    }
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  run.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  return run;
}

// SIGKILL loses nothing that reached the page cache, so on its own it never tears a record.
// To also crash like a power cut, we zero a random stretch of the last segment after the last
// entry the writer reported durable: data it had not reported may not have been synced. The
// header and the state copied behind it are kept (they were synced before the file was
// named). Returns the number of bytes zeroed.
uint64_t SimulateLostUnsyncedTail(const std::string& dir, uint64_t max_reported, Rng& rng) {
  const std::vector<std::string> files = testing::SegmentFiles(dir);
  if (files.empty()) return 0;
  const std::string path = dir + "/" + files.back();
  std::string image;
  if (!ReadFile(path, &image).ok()) return 0;
  uint64_t keep = 0;  // bytes that must survive
  uint64_t end = 0;   // end of the last valid record
  bool entries_seen = false;
  for (;;) {
    ParsedRecord record;
    std::string why;
    if (ParseRecord(image, end, 1 << 30, &record, &why) != ParseStatus::kRecord) break;
    end += record.bytes;
    if (record.type == RecordType::kEntry) {
      entries_seen = true;
      consensuspb::Entry entry;
      entry.ParseFromArray(record.payload.data(), static_cast<int>(record.payload.size()));
      if (entry.index() <= max_reported) keep = end;
    } else if (!entries_seen) {
      keep = end;  // header and copied state
    }
  }
  if (end <= keep) return 0;
  const uint64_t cut = keep + rng.Next() % (end - keep);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  const std::string zeros(end - cut, '\0');
  const bool ok = ::pwrite(fd, zeros.data(), zeros.size(), static_cast<off_t>(cut)) ==
                  static_cast<ssize_t>(zeros.size());
  ::close(fd);
  return ok ? zeros.size() : 0;
}

TEST(WalCrashTest, EveryEntryReportedDurableSurvivesSigkill) {
  const uint64_t iterations = EnvOr("WAL_CRASH_ITERATIONS", 200);
  Rng rng(EnvOr("WAL_CRASH_SEED", 1));
  testing::ScratchDir scratch;
  const std::string dir = scratch.wal();
  std::vector<char> reported(1, 0);  // reported[i]: index i was reported durable
  uint64_t max_reported = 0, total_reported = 0, lost = 0, kills = 0;
  uint64_t child_repairs = 0, parent_repairs = 0, power_cuts = 0;
  const Clock::time_point start = Clock::now();
  for (uint64_t iter = 0; iter < iterations; ++iter) {
    const auto run_time = std::chrono::microseconds(rng.Next() % 120000);
    ChildRun run = RunAndKill(dir, run_time);
    ASSERT_TRUE(run.killed) << "iteration " << iter << ": the writer exited on its own";
    ++kills;
    child_repairs += run.repaired_tail_bytes > 0;
    for (uint64_t index : run.durable) {
      if (index >= reported.size()) reported.resize(index * 2, 0);
      reported[index] = 1;
      max_reported = std::max(max_reported, index);
    }
    total_reported += run.durable.size();
    if (rng.Next() % 2 == 0) power_cuts += SimulateLostUnsyncedTail(dir, max_reported, rng) > 0;

    // Every other iteration recovers read-only, so the next writer meets the torn tail itself
    // (and may be killed while repairing it); the others open the WAL, repairing here.
    RecoveryResult recovery;
    std::unique_ptr<Wal> wal;
    if (iter % 2 == 0) {
      const Status s = RecoverWal(dir, WalOptions{}.record_bytes_max, &recovery);
      ASSERT_TRUE(s.ok()) << "iteration " << iter << ": " << s.ToString();
    } else {
      WalOptions options;
      options.segment_bytes = crash::kSegmentBytes;
      options.log = [](const std::string&) {};
      const Status s = Wal::Open(dir, options, &wal, &recovery.recovered);
      ASSERT_TRUE(s.ok()) << "iteration " << iter << ": " << s.ToString();
      parent_repairs += recovery.recovered.repaired_tail_bytes > 0;
    }
    const WalRecovered& got = recovery.recovered;
    const uint64_t snapshot = got.snapshot ? got.snapshot->index() : 0;
    const uint64_t last = got.entries.empty() ? snapshot : got.entries.back().index();
    ASSERT_GE(last, max_reported) << "iteration " << iter;
    for (size_t i = 0; i < got.entries.size(); ++i) {
      const uint64_t index = snapshot + 1 + i;
      ASSERT_EQ(got.entries[i].SerializeAsString(), crash::EntryFor(index).SerializeAsString())
          << "iteration " << iter << ": entry " << index << " is not what was appended";
    }
    for (uint64_t index = snapshot + 1; index <= max_reported; ++index) {
      lost += reported[index] && index > last;
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf(
      "wal crash test: %lu kills (%lu also losing unsynced bytes), %lu entries reported durable, "
      "%lu lost, torn tails repaired by writer %lu / by checker %lu, last index %lu, %.1f s\n",
      static_cast<unsigned long>(kills), static_cast<unsigned long>(power_cuts),
      static_cast<unsigned long>(total_reported), static_cast<unsigned long>(lost),
      static_cast<unsigned long>(child_repairs), static_cast<unsigned long>(parent_repairs),
      static_cast<unsigned long>(max_reported), seconds);
  EXPECT_EQ(lost, 0u);
  EXPECT_GT(total_reported, 0u);
}

}  // namespace
}  // namespace synod::storage
