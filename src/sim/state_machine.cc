#include "sim/state_machine.h"

#include "base/assert.h"
#include "sim/store_state_machine.h"
#include "sim/toy_state_machine.h"
#include "storage/crc32c.h"

namespace synod::sim {
namespace {

void AppendFixed64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

}  // namespace

uint32_t HashKeyValues(const std::vector<kvpb::KeyValue>& kvs) {
  uint32_t crc = 0;
  std::string record;
  for (const auto& item : kvs) {
    record.clear();
    AppendFixed64(&record, item.key().size());
    record += item.key();
    AppendFixed64(&record, item.value().size());
    record += item.value();
    AppendFixed64(&record, static_cast<uint64_t>(item.create_revision()));
    AppendFixed64(&record, static_cast<uint64_t>(item.mod_revision()));
    AppendFixed64(&record, static_cast<uint64_t>(item.version()));
    AppendFixed64(&record, static_cast<uint64_t>(item.lease()));
    crc = storage::Crc32c(crc, record.data(), record.size());
  }
  return crc;
}

bool KnownStateMachine(const std::string& kind) { return kind == "kv" || kind == "toy"; }

std::unique_ptr<StateMachine> MakeStateMachine(const StateMachineOptions& options) {
  if (options.kind == "toy") return std::make_unique<ToyStateMachine>();
  SYNOD_ASSERT(options.kind == "kv", "unknown state machine");
  return std::make_unique<StoreStateMachine>(options);
}

}  // namespace synod::sim
