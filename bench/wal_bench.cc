// WAL group commit throughput: N closed-loop appenders, each appending one entry and waiting
// until it is durable before the next, as proposals waiting for their fdatasync would.
// Reports entries/s, fdatasyncs/s and entries per fdatasync. The WAL lives in $WAL_BENCH_DIR
// (default /tmp): put it on the disk you mean to measure.
//   wal_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <barrier>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/assert.h"
#include "storage/wal.h"

namespace synod::storage {
namespace {

constexpr uint64_t kEntriesPerIteration = 256;      // split over the appenders
constexpr uint64_t kReleaseEveryBytes = 256 << 20;  // keep the bench's disk use bounded

std::string MakeDir() {
  const char* base = std::getenv("WAL_BENCH_DIR");
  std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/synod_wal_bench_XXXXXX";
  SYNOD_ASSERT(::mkdtemp(tmpl.data()) != nullptr, "WAL_BENCH_DIR must be writable");
  return tmpl;
}

// Appenders share the log: indexes are taken under one mutex in Append order.
struct SharedLog {
  Wal* wal = nullptr;
  std::mutex index_mu;
  uint64_t next_index = 1;

  void AppendOne(const std::string& data) {
    WalWrite write;
    write.entries.emplace_back();
    write.entries[0].set_term(1);
    write.entries[0].set_data(data);
    WalTicket ticket = 0;
    {
      std::lock_guard lock(index_mu);
      write.entries[0].set_index(next_index++);
      SYNOD_ASSERT(wal->Append(write, &ticket).ok(), "the bench disk does not fail");
    }
    SYNOD_ASSERT(wal->WaitDurable(ticket).ok(), "the bench disk does not fail");
  }
};

void BM_WalGroupCommit(benchmark::State& state) {
  const auto appenders = static_cast<int>(state.range(0));
  const std::string data(static_cast<size_t>(state.range(1)), 'x');
  const uint64_t per_appender = std::max<uint64_t>(1, kEntriesPerIteration / appenders);
  const std::string dir = MakeDir();
  std::unique_ptr<Wal> wal;
  WalRecovered recovered;
  SYNOD_ASSERT(Wal::Open(dir + "/wal", WalOptions{}, &wal, &recovered).ok(), "open");
  SharedLog log{.wal = wal.get()};

  // Workers live across iterations; two barrier phases bracket each iteration.
  std::barrier sync(appenders + 1);
  bool done = false;
  std::vector<std::thread> workers;
  for (int t = 0; t < appenders; ++t) {
    workers.emplace_back([&] {
      for (;;) {
        sync.arrive_and_wait();
        if (done) return;
        for (uint64_t i = 0; i < per_appender; ++i) log.AppendOne(data);
        sync.arrive_and_wait();
      }
    });
  }
  const WalCounters before = wal->counters();
  uint64_t released_at_bytes = 0;
  for (auto _ : state) {
    sync.arrive_and_wait();  // start
    sync.arrive_and_wait();  // every appender's entries are durable
    if (wal->counters().bytes_written - released_at_bytes > kReleaseEveryBytes) {
      state.PauseTiming();
      WalWrite marker;
      marker.snapshot.emplace();
      marker.snapshot->set_index(wal->last_index());
      SYNOD_ASSERT(wal->AppendSync(marker).ok(), "marker");
      SYNOD_ASSERT(wal->ReleaseBefore(wal->last_index()).ok(), "release");
      released_at_bytes = wal->counters().bytes_written;
      state.ResumeTiming();
    }
  }
  done = true;
  sync.arrive_and_wait();
  for (auto& worker : workers) worker.join();

  const WalCounters after = wal->counters();
  const auto entries = static_cast<double>(per_appender * appenders * state.iterations());
  const auto syncs = static_cast<double>(after.syncs - before.syncs);
  state.counters["entries/s"] = benchmark::Counter(entries, benchmark::Counter::kIsRate);
  state.counters["fdatasyncs/s"] = benchmark::Counter(syncs, benchmark::Counter::kIsRate);
  state.counters["entries/fdatasync"] = entries / std::max(syncs, 1.0);
  state.SetBytesProcessed(static_cast<int64_t>(entries) * state.range(1));
  wal.reset();
  std::filesystem::remove_all(dir);
}

BENCHMARK(BM_WalGroupCommit)
    ->ArgNames({"appenders", "entry_bytes"})
    ->ArgsProduct({{1, 16, 256}, {100, 4096}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace synod::storage

BENCHMARK_MAIN();
