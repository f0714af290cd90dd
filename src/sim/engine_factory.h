// Builds the consensus engine a simulated member runs, by name.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "consensus/api/engine.h"
#include "consensus/api/planted_bugs.h"

namespace synod::sim {

// (member id, what it recovered from disk, its incarnation) -> a fresh engine.
using EngineFactory = std::function<std::unique_ptr<consensus::Engine>(
    consensus::NodeId, const consensus::DurableState&, uint64_t incarnation)>;

// The engine's optional features are chosen from `seed` too, so that runs cover them:
// safety must hold with pre-vote and check-quorum on or off, and with lease reads.
// `catchup_entries`, when given, replaces the one drawn.
EngineFactory MakeEngineFactory(const std::string& engine, consensus::PlantedBug bug, uint64_t seed,
                                std::optional<uint64_t> catchup_entries = std::nullopt);

bool KnownEngine(const std::string& engine);

// Whether the engine keeps Raft's log matching property (§5.3): two logs that hold the
// same (index, term) agree on every entry before it. Multi-Paxos does not (a slot's
// value is chosen independently of its neighbours, and gaps are filled by whichever
// leader recovers them); the checker then only demands that an (index, term) names the
// same data everywhere.
bool EngineHasLogMatching(const std::string& engine);
std::vector<std::string> EngineNames();

}  // namespace synod::sim
