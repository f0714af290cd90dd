// synod-sim: runs many deterministic simulations of a cluster and checks every one.
//
//   synod-sim --engine raft --nodes 5 --seeds 10000 --faults all
//   synod-sim --engine raft --nodes 3 --seed 42 --trace      # replay one seed
#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "sim/engine_factory.h"
#include "sim/simulator.h"
#include "sim/state_machine.h"

using synod::consensus::PlantedBug;
using synod::sim::SimOptions;
using synod::sim::SimResult;

namespace {

std::optional<PlantedBug> ParseBug(const std::string& name) {
  for (PlantedBug b :
       {PlantedBug::kNone, PlantedBug::kCountVoteTwice, PlantedBug::kCommitPreviousTerm,
        PlantedBug::kReadWithoutReadIndex, PlantedBug::kAckBeforeFsync,
        PlantedBug::kForgetPromiseOnRestart, PlantedBug::kSkipRecovery}) {
    if (name == synod::consensus::PlantedBugName(b)) return b;
  }
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"synod-sim: deterministic simulation of a synod cluster under faults"};
  SimOptions base;
  uint64_t seeds = 1;
  std::optional<uint64_t> one_seed;
  uint64_t first_seed = 1;
  std::string faults = "all";
  std::string bug = "none";
  int jobs = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  bool keep_going = false;
  bool list_engines = false;
  app.add_option("--engine", base.engine, "consensus engine (see --list-engines)")
      ->capture_default_str();
  app.add_option("--nodes", base.nodes, "cluster size")
      ->check(CLI::Range(1, 9))
      ->capture_default_str();
  app.add_option("--seeds", seeds, "number of seeds to run")->capture_default_str();
  app.add_option("--first-seed", first_seed, "first seed of the range")->capture_default_str();
  app.add_option("--seed", one_seed, "run (replay) this one seed");
  app.add_option(
         "--faults", faults,
         "all, none, or a list of crash,partition,loss,duplicate,reorder,membership,transfer")
      ->capture_default_str();
  app.add_option("--fault-ms", base.fault_ms, "simulated ms of the safety phase")
      ->capture_default_str();
  app.add_option("--liveness-ms", base.liveness_ms, "simulated ms allowed to recover")
      ->capture_default_str();
  app.add_option("--fault-interval-ms", base.fault_interval_ms_max,
                 "the longest time between two faults (the shortest is a tenth of it)")
      ->capture_default_str();
  app.add_option("--clients", base.clients, "concurrent clients")->capture_default_str();
  app.add_option("--keys", base.keys, "keys the clients share")->capture_default_str();
  app.add_option("--state-machine", base.state_machine,
                 "what members apply the log to: kv (the real store) or toy (a fast map)")
      ->capture_default_str();
  app.add_flag("--snapshot-mid-compaction", base.snapshot_mid_compaction,
               "kv: snapshot while physical compaction is under way (snapshots then differ)");
  app.add_flag("--deferred-snapshots", base.deferred_snapshots,
               "kv: snapshots are the store's flush; their state is made when a member needs it");
  app.add_option("--catchup-entries", base.catchup_entries,
                 "entries kept before each snapshot (default: drawn from the seed)");
  app.add_option("--jobs", jobs, "seeds run in parallel")->capture_default_str();
  app.add_option("--planted-bug", bug, "test builds only: run with a planted bug")
      ->capture_default_str();
  app.add_flag("--trace", base.trace, "print every event of the run");
  app.add_flag("--keep-going", keep_going, "run every seed even after a violation");
  app.add_flag("--list-engines", list_engines, "print the engines this build knows and exit");
  CLI11_PARSE(app, argc, argv);

  if (list_engines) {
    for (const auto& name : synod::sim::EngineNames()) std::printf("%s\n", name.c_str());
    return 0;
  }

  if (!synod::sim::KnownEngine(base.engine)) {
    std::string known;
    for (const auto& name : synod::sim::EngineNames()) known += (known.empty() ? "" : ", ") + name;
    std::fprintf(stderr, "synod-sim: unknown engine '%s' (known: %s)\n", base.engine.c_str(),
                 known.c_str());
    return 2;
  }
  if (!synod::sim::KnownStateMachine(base.state_machine)) {
    std::fprintf(stderr, "synod-sim: unknown state machine '%s' (known: kv, toy)\n",
                 base.state_machine.c_str());
    return 2;
  }
  auto parsed = synod::sim::FaultSet::Parse(faults);
  if (!parsed.ok()) {
    std::fprintf(stderr, "synod-sim: %s\n", parsed.status().message().c_str());
    return 2;
  }
  base.faults = parsed.value();
  base.fault_interval_ms_min = std::max<int64_t>(1, base.fault_interval_ms_max / 10);
  auto planted = ParseBug(bug);
  if (!planted) {
    std::fprintf(stderr, "synod-sim: unknown planted bug '%s'\n", bug.c_str());
    return 2;
  }
  base.planted_bug = *planted;
  if (one_seed) {
    first_seed = *one_seed;
    seeds = 1;
  }
  if (base.trace) jobs = 1;

  std::atomic<uint64_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex mu;
  uint64_t runs = 0, failures = 0, ops_ok = 0, ops_unknown = 0, sim_ms = 0, leaders = 0,
           crashes = 0, partitions = 0, conf_changes = 0, transfers = 0, snapshots = 0, events = 0,
           lin_unknown = 0, compactions = 0, fingerprints = 0;
  const auto start = std::chrono::steady_clock::now();
  auto worker = [&] {
    for (;;) {
      const uint64_t i = next++;
      if (i >= seeds || stop) return;
      SimOptions o = base;
      o.seed = first_seed + i;
      SimResult r = synod::sim::RunSimulation(o);
      std::lock_guard<std::mutex> lock(mu);
      runs++;
      sim_ms += r.stats.simulated_ms;
      ops_ok += r.stats.ops_ok;
      ops_unknown += r.stats.ops_timed_out;
      leaders += r.stats.leaders_elected;
      crashes += r.stats.crashes;
      partitions += r.stats.partitions;
      conf_changes += r.stats.conf_changes;
      transfers += r.stats.transfers;
      snapshots += r.stats.snapshots_sent;
      compactions += r.stats.compactions;
      fingerprints += r.stats.fingerprints;
      events += r.stats.events;
      lin_unknown += r.stats.linearizability_unknown ? 1 : 0;
      if (!r.ok) {
        failures++;
        std::printf(
            "\nseed %llu: VIOLATION: %s\n--- last events ---\n%s--- replay with ---\n  %s\n",
            static_cast<unsigned long long>(o.seed), r.violation.c_str(), r.trace_tail.c_str(),
            r.replay_command.c_str());
        if (!keep_going) stop = true;
      }
      if (seeds >= 100 && runs % (seeds / 10) == 0) {
        std::printf("  %llu/%llu seeds, %llu violations\n", static_cast<unsigned long long>(runs),
                    static_cast<unsigned long long>(seeds),
                    static_cast<unsigned long long>(failures));
        std::fflush(stdout);
      }
    }
  };
  std::vector<std::thread> threads;
  for (int j = 0; j < std::max(1, jobs); ++j) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  const double wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::printf(
      "\nengine %s, %d nodes, state machine %s, faults %s: %llu seeds, %llu violations\n"
      "  simulated %.0f s in %.1f s wall (%.0fx real time, %d jobs), %.0f seeds/min\n"
      "  %llu events; %llu client ops answered, %llu with unknown outcome; %llu leaders elected,\n"
      "  %llu crashes, %llu partitions, %llu membership changes, %llu leader transfers, %llu "
      "snapshots installed,\n"
      "  %llu compactions proposed, %llu state machine fingerprints compared\n",
      base.engine.c_str(), base.nodes, base.state_machine.c_str(), base.faults.ToString().c_str(),
      static_cast<unsigned long long>(runs), static_cast<unsigned long long>(failures),
      sim_ms / 1000.0, wall_s, sim_ms / 1000.0 / wall_s, jobs, runs / wall_s * 60,
      static_cast<unsigned long long>(events), static_cast<unsigned long long>(ops_ok),
      static_cast<unsigned long long>(ops_unknown), static_cast<unsigned long long>(leaders),
      static_cast<unsigned long long>(crashes), static_cast<unsigned long long>(partitions),
      static_cast<unsigned long long>(conf_changes), static_cast<unsigned long long>(transfers),
      static_cast<unsigned long long>(snapshots), static_cast<unsigned long long>(compactions),
      static_cast<unsigned long long>(fingerprints));
  if (lin_unknown > 0) {
    std::printf("  linearizability search budget exhausted (verdict unknown) in %llu seeds\n",
                static_cast<unsigned long long>(lin_unknown));
  }
  return failures == 0 ? 0 : 1;
}
