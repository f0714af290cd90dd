// Planted bugs: deliberate protocol mistakes, compiled only into test builds
// (SYNOD_PLANTED_BUGS), that the simulator's checkers must catch. A checker that has
// never caught a bug proves nothing. Production builds do not contain this switch.
#pragma once

namespace synod::consensus {

enum class PlantedBug {
  kNone,
  kCountVoteTwice,          // a candidate counts each vote message, not each voter
  kCommitPreviousTerm,      // a leader commits an old-term entry by counting replicas
  kReadWithoutReadIndex,    // a leader answers reads at once, with no quorum round
  kAckBeforeFsync,          // (driver) messages are sent before the Ready is durable
  kForgetPromiseOnRestart,  // (Paxos) an acceptor forgets its promise on restart
  kSkipRecovery,            // (Paxos) a new leader skips recovering accepted values
};

const char* PlantedBugName(PlantedBug bug);

}  // namespace synod::consensus
