// synod-bench: a load generator for etcd's v3 gRPC API, to run unchanged against etcd
// and against synod. See bench/README.md.
//
//   synod-bench put --endpoints 127.0.0.1:2379 --conns 10 --clients 100 --duration 10s
#include <absl/synchronization/mutex.h>
#include <signal.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <random>

#include "cluster.h"
#include "driver.h"
#include "options.h"
#include "report.h"
#include "stats.h"
#include "timer.h"
#include "workload.h"

namespace synod::bench {
namespace {

void OnSignal(int) { StopRequested().store(true); }

void InstallSignalHandlers() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sa.sa_flags = SA_RESETHAND;  // a second Ctrl-C kills at once
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "synod-bench: %s\n", what.c_str());
  return 2;
}

int Main(int argc, char** argv) {
  Options o;
  CLI::App app{"synod-bench: load generator for etcd's v3 gRPC API (etcd and synod)"};
  app.option_defaults()->always_capture_default();
  app.require_subcommand(1, 1);
  app.fallthrough();  // flags may follow the workload name
  for (const auto& [name, description] : WorkloadNames()) app.add_subcommand(name, description);

  std::vector<std::string> endpoints = o.endpoints;
  std::string duration_text, timeout_text = "10s", consistency = "l";
  const std::string target = "Target and load";
  app.add_option("--endpoints", endpoints, "Comma-separated host:port (http:// accepted)")
      ->delimiter(',')
      ->group(target);
  app.add_option("--conns", o.conns, "gRPC connections (at least one per endpoint)")
      ->check(CLI::PositiveNumber)
      ->group(target);
  app.add_option("--clients", o.clients, "Concurrent clients, round-robin over connections")
      ->check(CLI::PositiveNumber)
      ->group(target);
  app.add_option("--total", o.total, "Stop after this many operations (0: use --duration)")
      ->check(CLI::NonNegativeNumber)
      ->group(target);
  app.add_option("--duration", duration_text,
                 "Stop after this long, e.g. 10s, 500ms, 2m "
                 "(default 10s unless --total)")
      ->group(target);
  app.add_option("--rate", o.rate,
                 "Open loop: total ops/s on a fixed schedule, latency "
                 "from the scheduled time (0: closed loop)")
      ->check(CLI::NonNegativeNumber)
      ->group(target);
  app.add_option("--timeout", timeout_text, "Deadline of each RPC")->group(target);

  const std::string keys = "Keys and values";
  app.add_option("--prefix", o.prefix, "Every key the tool writes starts with this")->group(keys);
  app.add_option("--key-space", o.key_space, "Number of distinct keys")
      ->check(CLI::PositiveNumber)
      ->group(keys);
  app.add_option("--key-size", o.key_size, "Key length in bytes, prefix included")
      ->check(CLI::NonNegativeNumber)
      ->group(keys);
  app.add_option("--val-size", o.val_size, "Value length in bytes")
      ->check(CLI::NonNegativeNumber)
      ->group(keys);
  app.add_flag("--seq-keys", o.seq_keys, "Keys in sequence instead of at random")->group(keys);
  app.add_option("--preload", o.preload,
                 "Put this many keys before the run (-1: key-space for range and mixed, "
                 "0 otherwise)")
      ->group(keys);
  app.add_option("--consistency", consistency, "Reads: l (linearizable) or s (serializable)")
      ->check(CLI::IsMember({"l", "s"}))
      ->group(keys);

  const std::string knobs = "Workload knobs";
  app.add_option("--read-ratio", o.read_ratio, "mixed: fraction of reads")
      ->check(CLI::Range(0.0, 1.0))
      ->group(knobs);
  app.add_option("--max-retries", o.max_retries, "txn-mixed: CAS attempts before giving up")
      ->check(CLI::NonNegativeNumber)
      ->group(knobs);
  app.add_option("--watchers", o.watchers, "watch: watch streams on the prefix")
      ->check(CLI::PositiveNumber)
      ->group(knobs);
  app.add_option("--locks", o.locks, "lock: lock names the clients contend for")
      ->check(CLI::PositiveNumber)
      ->group(knobs);
  app.add_option("--lease-ttl", o.lease_ttl_s, "lock, lease: lease TTL in seconds")
      ->check(CLI::PositiveNumber)
      ->group(knobs);
  app.add_option("--keepalives", o.keepalives, "lease: keep-alives per granted lease")
      ->check(CLI::NonNegativeNumber)
      ->group(knobs);

  const std::string output = "Output";
  app.add_flag("--json", o.json, "One JSON object on stdout (the summary goes to stderr)")
      ->group(output);
  app.add_flag("--quiet", o.quiet, "No progress lines or summary on stderr")->group(output);
  app.add_option("--seed", o.seed, "Seed of the key choices (0: random)")->group(output);

  CLI11_PARSE(app, argc, argv);

  o.workload = app.get_subcommands().front()->get_name();
  o.serializable = consistency == "s";
  o.endpoints.clear();
  for (const auto& e : endpoints) {
    auto normal = NormalizeEndpoint(e);
    if (!normal) return Fail("bad endpoint \"" + e + "\" (host:port or http://host:port)");
    o.endpoints.push_back(*normal);
  }
  if (o.endpoints.empty()) return Fail("no endpoints");
  if (!duration_text.empty()) {
    auto d = ParseDuration(duration_text);
    if (!d) return Fail("bad --duration \"" + duration_text + "\"");
    o.duration = *d;
  }
  if (o.total == 0 && o.duration.count() == 0) o.duration = std::chrono::seconds(10);
  auto timeout = ParseDuration(timeout_text);
  if (!timeout || timeout->count() == 0) return Fail("bad --timeout \"" + timeout_text + "\"");
  o.timeout = *timeout;
  if (o.conns < static_cast<int>(o.endpoints.size())) {
    o.conns = static_cast<int>(o.endpoints.size());
  }
  if (o.workload == "txn-put" && o.key_space > (int64_t{1} << 26)) {
    return Fail("txn-put keeps a revision per key: --key-space at most 2^26");
  }
  if (o.seed == 0) o.seed = std::random_device{}() | 1;

  InstallSignalHandlers();
  Cluster cluster(o.endpoints, o.conns);
  const Nanos connect_timeout = std::max<Nanos>(o.timeout, std::chrono::seconds(5));
  if (grpc::Status s = cluster.Connect(connect_timeout); !s.ok()) {
    return Fail(s.error_message());
  }

  Timer timer;
  Stats stats;
  Env env{o, cluster, stats, timer};
  std::unique_ptr<Workload> workload = MakeWorkload(o.workload, env);
  if (grpc::Status s = workload->Setup(); !s.ok()) {
    workload->Teardown();
    return Fail(o.workload + " set-up failed: " + s.error_message());
  }

  RunConfig cfg;
  cfg.label = o.workload;
  cfg.clients = o.clients;
  cfg.total = o.total;
  cfg.duration = o.duration;
  cfg.rate = o.rate;
  cfg.progress = !o.quiet;
  Result r;
  {
    Driver driver(cfg, *workload, stats, timer);
    r.elapsed = driver.Run();
    workload->Teardown();
  }
  r.opts = &o;
  r.unit = o.workload == "watch" ? "events" : "ops";
  r.primary = stats.primary().Snapshot();
  r.phases = stats.Phases();
  r.errors = stats.Errors();
  r.counters = stats.Counters();
  r.problem = workload->Problem();
  r.interrupted = StopRequested().load();

  if (o.json) {
    PrintJson(stdout, r);
    if (!o.quiet) PrintText(stderr, r);
  } else {
    PrintText(stdout, r);
  }
  if (!r.problem.empty()) return 3;
  return r.primary.count() == 0 && !r.errors.empty() ? 1 : 0;
}

}  // namespace
}  // namespace synod::bench

int main(int argc, char** argv) {
  // gRPC locks with absl::Mutex, and Debian's absl checks every lock order for deadlocks
  // (a graph update per acquisition): a few percent of all CPU. Off, as in synod.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return synod::bench::Main(argc, argv);
}
