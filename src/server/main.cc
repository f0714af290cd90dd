// synod: one member of a synod cluster. Takes etcd's core flags (and their ETCD_*
// environment variables), so a start-up script written for etcd runs synod unchanged.
#include <absl/synchronization/mutex.h>
#include <signal.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#ifdef SYNOD_TCMALLOC
#include <gperftools/malloc_extension.h>
#endif

#include "base/thread_name.h"
#include "server/config.h"
#include "server/log.h"
#include "server/server.h"

namespace {

// The allocator's policy for a long-running member, with tcmalloc (measured: BENCHMARKS.md,
// memory). Its per-thread caches are capped at 4 MiB in all: gRPC runs dozens of threads,
// and by default their caches may hold 32 MiB. And the pages it holds free are handed back
// to the system once a second: tcmalloc keeps them otherwise — tens of MiB after a
// snapshot lets the engine drop the log before it, or a burst of requests ends.
class AllocatorHousekeeping {
 public:
  AllocatorHousekeeping() {
#ifdef SYNOD_TCMALLOC
    MallocExtension::instance()->SetNumericProperty("tcmalloc.max_total_thread_cache_bytes",
                                                    4 << 20);
    thread_ = std::thread([this] {
      synod::NameThisThread("synod-alloc");
      std::unique_lock lock(mu_);
      while (!cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; })) {
        MallocExtension::instance()->ReleaseFreeMemory();
      }
    });
#endif
  }
  ~AllocatorHousekeeping() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

constexpr char kVersion[] = "0.1.0";
constexpr char kApiVersion[] = "3.4";

// etcd flags synod does not implement: refused with a clear message rather than ignored.
const char* const kUnsupportedEtcdFlags[] = {"auto-compaction-retention",
                                             "auto-compaction-mode",
                                             "cert-file",
                                             "key-file",
                                             "client-cert-auth",
                                             "trusted-ca-file",
                                             "auto-tls",
                                             "peer-cert-file",
                                             "peer-key-file",
                                             "peer-client-cert-auth",
                                             "peer-trusted-ca-file",
                                             "peer-auto-tls",
                                             "enable-v2",
                                             "logger",
                                             "log-outputs",
                                             "listen-metrics-urls",
                                             "max-snapshots",
                                             "max-wals",
                                             "discovery",
                                             "discovery-srv",
                                             "discovery-proxy",
                                             "discovery-fallback",
                                             "proxy",
                                             "enable-pprof",
                                             "force-new-cluster",
                                             "strict-reconfig-check",
                                             "wal-dir",
                                             "cors",
                                             "enable-grpc-gateway",
                                             "grpc-keepalive-min-time",
                                             "grpc-keepalive-interval",
                                             "grpc-keepalive-timeout",
                                             "metrics",
                                             "auth-token",
                                             "cipher-suites",
                                             "unsafe-no-fsync",
                                             "experimental-initial-corrupt-check",
                                             "experimental-corrupt-check-time",
                                             "experimental-enable-v2v3",
                                             "experimental-backend-bbolt-freelist-type",
                                             "experimental-enable-lease-checkpoint",
                                             "experimental-compaction-batch-limit",
                                             "experimental-peer-skip-client-san-verification",
                                             "experimental-watch-progress-notify-interval",
                                             "initial-election-tick-advance",
                                             "pre-vote",
                                             "config-file",
                                             "debug",
                                             "log-package-levels",
                                             "snapshot-count-unused",
                                             "max-concurrent-streams",
                                             "backend-batch-interval",
                                             "backend-batch-limit",
                                             "quota-backend-bytes-unused"};

// "--flag", "--flag=v", "-flag", "-flag=v" -> "flag"
std::string FlagName(const char* arg) {
  std::string a = arg;
  if (a.rfind("--", 0) == 0) {
    a = a.substr(2);
  } else if (a.rfind("-", 0) == 0) {
    a = a.substr(1);
  } else {
    return "";
  }
  return a.substr(0, a.find('='));
}

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    std::string item = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!item.empty()) out.push_back(item);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

// For the unsigned flags: CLI11 would wrap a negative value around to 2^64 - 1; etcd
// refuses it.
const CLI::Validator kUnsigned(
    [](const std::string& value) {
      return value.find('-') == std::string::npos ? std::string()
                                                  : "must not be negative, not " + value;
    },
    "UINT");

}  // namespace

int main(int argc, char** argv) {
  // gRPC locks with absl::Mutex, and Debian's absl checks every lock order for
  // deadlocks (a graph update per acquisition): a few percent of all CPU. Off.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  using synod::server::ServerConfig;
  // etcd's Go flags accept a single dash too: -name x. Turn those into --name x.
  std::vector<std::string> args;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (i > 0 && a.size() > 2 && a[0] == '-' && a[1] != '-') a = "-" + a;
    args.push_back(a);
  }
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string name = FlagName(args[i].c_str());
    for (const char* unsupported : kUnsupportedEtcdFlags) {
      if (name == unsupported) {
        std::fprintf(stderr,
                     "synod: etcd's flag --%s is not supported by synod (see docs/operations.md "
                     "for the flags it takes)\n",
                     name.c_str());
        return 2;
      }
    }
  }

  ServerConfig config;
  CLI::App app{"synod: a strongly consistent, replicated key-value store that speaks etcd's v3 API",
               "synod"};
  app.option_defaults()->always_capture_default();
  std::string listen_client = "http://localhost:2379";
  std::string advertise_client = "http://localhost:2379";
  std::string listen_peer = "http://localhost:2380";
  std::string advertise_peer = "http://localhost:2380";
  bool version = false;
  app.add_flag("--version", version, "Print the version and exit");
  app.add_option("--name", config.name, "Human-readable name for this member")
      ->envname("ETCD_NAME");
  app.add_option("--data-dir", config.data_dir,
                 "Path to the data directory (default: ${name}.etcd)")
      ->envname("ETCD_DATA_DIR");
  app.add_option("--listen-client-urls", listen_client,
                 "List of URLs to listen on for client traffic")
      ->envname("ETCD_LISTEN_CLIENT_URLS");
  app.add_option("--advertise-client-urls", advertise_client,
                 "List of this member's client URLs to advertise to the rest of the cluster")
      ->envname("ETCD_ADVERTISE_CLIENT_URLS");
  app.add_option("--listen-peer-urls", listen_peer, "URL to listen on for peer traffic")
      ->envname("ETCD_LISTEN_PEER_URLS");
  app.add_option("--initial-advertise-peer-urls", advertise_peer,
                 "List of this member's peer URLs to advertise to the rest of the cluster")
      ->envname("ETCD_INITIAL_ADVERTISE_PEER_URLS");
  app.add_option("--initial-cluster", config.initial_cluster,
                 "Initial cluster configuration for bootstrapping (name=peer-url,...)")
      ->envname("ETCD_INITIAL_CLUSTER");
  app.add_option("--initial-cluster-state", config.initial_cluster_state,
                 "Initial cluster state ('new' or 'existing')")
      ->envname("ETCD_INITIAL_CLUSTER_STATE")
      ->check(CLI::IsMember({"new", "existing"}));
  app.add_option("--initial-cluster-token", config.initial_cluster_token,
                 "Initial cluster token for the cluster during bootstrap")
      ->envname("ETCD_INITIAL_CLUSTER_TOKEN");
  app.add_option("--heartbeat-interval", config.heartbeat_interval_ms,
                 "Time (in milliseconds) of a heartbeat interval")
      ->envname("ETCD_HEARTBEAT_INTERVAL");
  app.add_option("--election-timeout", config.election_timeout_ms,
                 "Time (in milliseconds) for an election to timeout")
      ->envname("ETCD_ELECTION_TIMEOUT");
  app.add_option("--snapshot-count", config.snapshot_count,
                 "Number of committed transactions to trigger a snapshot to disk")
      ->envname("ETCD_SNAPSHOT_COUNT")
      ->check(kUnsigned);
  app.add_option("--experimental-snapshot-catchup-entries", config.snapshot_catchup_entries,
                 "Entries kept before the newest snapshot, from which a follower a little "
                 "behind catches up instead of receiving the snapshot")
      ->envname("ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES")
      ->check(kUnsigned);
  app.add_option("--quota-backend-bytes", config.quota_backend_bytes,
                 "Raise alarms when backend size exceeds the given quota (0 defaults to 2 GiB)")
      ->envname("ETCD_QUOTA_BACKEND_BYTES");
  app.add_option("--max-request-bytes", config.max_request_bytes,
                 "Maximum client request size in bytes the server will accept")
      ->envname("ETCD_MAX_REQUEST_BYTES")
      ->check(kUnsigned);
  app.add_option("--max-txn-ops", config.max_txn_ops,
                 "Maximum number of operations permitted in a transaction")
      ->envname("ETCD_MAX_TXN_OPS");
  app.add_option("--log-level", config.log_level, "debug, info, warn or error")
      ->envname("ETCD_LOG_LEVEL");
  app.add_option("--consensus", config.consensus,
                 "synod: the consensus engine of a new cluster, 'raft' or 'multi-paxos'")
      ->envname("SYNOD_CONSENSUS");
  app.add_option("--max-range-bytes", config.max_range_bytes,
                 "synod: the most key and value bytes one Range response may hold (0: no "
                 "bound); a larger Range fails with RESOURCE_EXHAUSTED: paginate with a limit")
      ->envname("SYNOD_MAX_RANGE_BYTES")
      ->check(kUnsigned);
  app.add_flag("--auto-promote-learners", config.auto_promote_learners,
               "synod: promote a learner to voter once it has caught up with the leader")
      ->envname("SYNOD_AUTO_PROMOTE_LEARNERS");

  std::vector<const char*> cargv;
  for (const auto& a : args) cargv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(cargv.size()), const_cast<char**>(cargv.data()));
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;  // etcd exits 2 on a bad flag
  }
  if (version) {
    std::printf("synod Version: %s\nAPI version: %s (etcd v3 gRPC API)\n", kVersion, kApiVersion);
    return 0;
  }
  config.listen_client_urls = SplitList(listen_client);
  config.advertise_client_urls = SplitList(advertise_client);
  config.listen_peer_urls = SplitList(listen_peer);
  config.initial_advertise_peer_urls = SplitList(advertise_peer);
  if (!synod::server::SetLogLevel(config.log_level)) {
    std::fprintf(stderr, "synod: --log-level must be debug, info, warn or error, not \"%s\"\n",
                 config.log_level.c_str());
    return 2;
  }

  // Signals are taken by this thread only (sigwait), never delivered to the others.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  AllocatorHousekeeping allocator;
  std::unique_ptr<synod::server::Server> server;
  if (synod::Status s = synod::server::Server::Start(config, &server); !s.ok()) {
    std::fprintf(stderr, "synod: %s\n", s.message().c_str());
    return 1;
  }
  synod::server::LogInfo("synod " + std::string(kVersion) + " member " + config.name + " (" +
                         synod::server::MemberIdHex(server->member_id()) + ") serving clients on " +
                         listen_client + ", peers on " + listen_peer);
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    synod::server::LogInfo(std::string("received ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
                           ": shutting down");
    server->Shutdown();
  });
  server->Wait();
  // The member may also stop by itself (removed from the cluster): wake the waiter.
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  server.reset();
  synod::server::LogInfo("stopped");
  return 0;
}
