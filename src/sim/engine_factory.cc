#include "sim/engine_factory.h"

#include "base/assert.h"
#include "base/rng.h"
#include "consensus/paxos/paxos.h"
#include "consensus/raft/raft.h"

namespace synod::sim {

std::vector<std::string> EngineNames() { return {"raft", "multi-paxos"}; }

bool KnownEngine(const std::string& engine) {
  for (const auto& name : EngineNames()) {
    if (name == engine) return true;
  }
  return false;
}

bool EngineHasLogMatching(const std::string& engine) { return engine != "multi-paxos"; }

namespace {

EngineFactory MakePaxosFactory([[maybe_unused]] consensus::PlantedBug bug, uint64_t seed,
                               std::optional<uint64_t> catchup_entries) {
  Rng features(seed * 31 + 7);
  consensus::paxos::Config base;
  base.election_ticks = 10;
  base.heartbeat_ticks = 1;
  base.stable_leader = features.Chance(0.85);
  base.pre_prepare = features.Chance(0.85);
  // A small alpha now and then, so that the window fills and configurations change
  // close to the slots in flight.
  base.window_slots_max = features.Chance(0.5) ? features.Between(2, 8) : 64;
  base.msg_bytes_max = features.Between(1, 8) * 32;
  base.inflight_msgs_max = 4;
  base.snapshot_chunk_bytes = 64;
  // Half the runs keep a few chosen values before each snapshot, as for Raft (drawn last:
  // the draws above stay what they were for every seed).
  base.catchup_entries = features.Chance(0.5) ? features.Between(1, 20) : 0;
  if (catchup_entries) base.catchup_entries = *catchup_entries;
#ifdef SYNOD_PLANTED_BUGS
  base.planted_bug = bug;
#endif
  return [base, seed](consensus::NodeId id, const consensus::DurableState& durable,
                      uint64_t incarnation) {
    consensus::paxos::Config cfg = base;
    cfg.id = id;
    cfg.seed = seed ^ (incarnation * 0x51ed27f1ULL);
    return std::make_unique<consensus::paxos::Paxos>(cfg, durable);
  };
}

}  // namespace

EngineFactory MakeEngineFactory(const std::string& engine,
                                [[maybe_unused]] consensus::PlantedBug bug, uint64_t seed,
                                std::optional<uint64_t> catchup_entries) {
  SYNOD_ASSERT(KnownEngine(engine), "unknown engine");
  if (engine == "multi-paxos") return MakePaxosFactory(bug, seed, catchup_entries);
  Rng features(seed * 31 + 7);
  consensus::raft::Config base;
  base.election_ticks = 10;
  base.heartbeat_ticks = 1;
  base.pre_vote = features.Chance(0.85);
  base.check_quorum = features.Chance(0.85);
  base.lease_reads = base.check_quorum && features.Chance(0.25);
  // Small bounds, so that a short run exercises them: batches split across messages,
  // a full pipeline, snapshots sent in many chunks.
  base.msg_bytes_max = features.Between(1, 8) * 32;
  base.inflight_msgs_max = 4;
  base.snapshot_chunk_bytes = 64;
  // Half the runs keep a few entries before each snapshot: followers a little behind
  // then catch up from the log, the others from the snapshot. (Drawn last: the draws
  // above stay what they were for every seed.)
  base.catchup_entries = features.Chance(0.5) ? features.Between(1, 20) : 0;
  if (catchup_entries) base.catchup_entries = *catchup_entries;
#ifdef SYNOD_PLANTED_BUGS
  base.planted_bug = bug;
#endif
  return [base, seed](consensus::NodeId id, const consensus::DurableState& durable,
                      uint64_t incarnation) {
    consensus::raft::Config cfg = base;
    cfg.id = id;
    cfg.seed = seed ^ (incarnation * 0x51ed27f1ULL);
    return std::make_unique<consensus::raft::Raft>(cfg, durable);
  };
}

}  // namespace synod::sim
