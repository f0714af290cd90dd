#include "sim/state_machine.h"

#include "base/assert.h"
#include "kv/store.h"
#include "sim/store_state_machine.h"
#include "sim/toy_state_machine.h"

namespace synod::sim {
uint32_t HashKeyValues(const std::vector<kvpb::KeyValue>& kvs) {
  uint32_t crc = 0;
  for (const auto& item : kvs) crc = kv::Store::ExtendKeyValueHash(crc, item);
  return crc;
}

bool KnownStateMachine(const std::string& kind) { return kind == "kv" || kind == "toy"; }

std::unique_ptr<StateMachine> MakeStateMachine(const StateMachineOptions& options) {
  if (options.kind == "toy") return std::make_unique<ToyStateMachine>();
  SYNOD_ASSERT(options.kind == "kv", "unknown state machine");
  return std::make_unique<StoreStateMachine>(options);
}

}  // namespace synod::sim
