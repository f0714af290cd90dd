// wal_crash_writer DIR THREADS: opens the WAL in DIR (recovering what a killed predecessor
// left) and appends entries forever from THREADS threads with group commit. After an entry
// is durable it writes "D <index>\n" to stdout, one write() per line (atomic on a pipe).
// Every kSnapshotEvery entries it logs a snapshot marker and releases covered segments.
// Meant to be SIGKILLed by storage_wal_crash_test at a random moment.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "storage/wal.h"
#include "storage/wal_crash_common.h"

namespace synod::storage::crash {
namespace {

void Report(const char* kind, uint64_t value) {
  char line[40];
  const int n =
      std::snprintf(line, sizeof line, "%s %lu\n", kind, static_cast<unsigned long>(value));
  if (::write(STDOUT_FILENO, line, static_cast<size_t>(n)) != n) std::_Exit(3);  // parent gone
}

void AppendForever(Wal& wal, std::mutex& index_mu, uint64_t& next_index) {
  for (;;) {
    WalWrite write;
    WalTicket ticket = 0;
    uint64_t index = 0;
    {
      std::lock_guard lock(index_mu);  // indexes are chosen in Append order
      index = next_index++;
      write.entries.push_back(EntryFor(index));
      if (index % kSnapshotEvery == 0) {
        write.snapshot.emplace();
        write.snapshot->set_index(index - kSnapshotLag);
        write.snapshot->set_term(EntryFor(index - kSnapshotLag).term());
      }
      if (Status s = wal.Append(write, &ticket); !s.ok()) {
        std::fprintf(stderr, "wal_crash_writer: append: %s\n", s.ToString().c_str());
        std::_Exit(2);
      }
    }
    if (Status s = wal.WaitDurable(ticket); !s.ok()) {
      std::fprintf(stderr, "wal_crash_writer: wait: %s\n", s.ToString().c_str());
      std::_Exit(2);
    }
    Report("D", index);
    if (write.snapshot && !wal.ReleaseBefore(write.snapshot->index()).ok()) std::_Exit(2);
  }
}

int Main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: wal_crash_writer DIR THREADS\n");
    return 1;
  }
  WalOptions options;
  options.segment_bytes = kSegmentBytes;
  WalRecovered recovered;
  std::unique_ptr<Wal> wal;
  if (Status s = Wal::Open(argv[1], options, &wal, &recovered); !s.ok()) {
    std::fprintf(stderr, "wal_crash_writer: open: %s\n", s.ToString().c_str());
    return 2;
  }
  if (recovered.repaired_tail_bytes > 0) Report("R", recovered.repaired_tail_bytes);
  std::mutex index_mu;
  uint64_t next_index = wal->last_index() + 1;
  std::vector<std::thread> threads;
  for (int t = 0; t < std::atoi(argv[2]); ++t) {
    threads.emplace_back([&] { AppendForever(*wal, index_mu, next_index); });
  }
  for (auto& thread : threads) thread.join();
  return 0;
}

}  // namespace
}  // namespace synod::storage::crash

int main(int argc, char** argv) { return synod::storage::crash::Main(argc, argv); }
