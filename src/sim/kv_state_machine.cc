#include "sim/kv_state_machine.h"

#include "base/assert.h"

namespace synod::sim {

namespace {

// Length-prefixed fields: "<len>:<bytes>", so keys and values may hold any byte.
void PutField(std::string* out, const std::string& field) {
  *out += std::to_string(field.size());
  *out += ':';
  *out += field;
}

bool GetField(const std::string& in, size_t* pos, std::string* field) {
  const size_t colon = in.find(':', *pos);
  if (colon == std::string::npos) return false;
  const size_t len = std::stoul(in.substr(*pos, colon - *pos));
  if (colon + 1 + len > in.size()) return false;
  *field = in.substr(colon + 1, len);
  *pos = colon + 1 + len;
  return true;
}

}  // namespace

std::string KvCommand::Encode() const {
  std::string out(1, static_cast<char>(kind));
  out += expected ? '1' : '0';
  PutField(&out, key);
  PutField(&out, value);
  PutField(&out, expected.value_or(""));
  return out;
}

std::optional<KvCommand> KvCommand::Decode(const std::string& bytes) {
  if (bytes.size() < 2) return std::nullopt;
  KvCommand c;
  c.kind = static_cast<Kind>(bytes[0]);
  size_t pos = 2;
  std::string expected;
  if (!GetField(bytes, &pos, &c.key) || !GetField(bytes, &pos, &c.value) ||
      !GetField(bytes, &pos, &expected)) {
    return std::nullopt;
  }
  if (bytes[1] == '1') c.expected = expected;
  return c;
}

bool KvStateMachine::Apply(const KvCommand& c) {
  if (c.kind == KvCommand::Kind::kCas && Get(c.key) != c.expected) return false;
  data_[c.key] = c.value;
  return true;
}

std::optional<std::string> KvStateMachine::Get(const std::string& key) const {
  auto it = data_.find(key);
  if (it == data_.end()) return std::nullopt;
  return it->second;
}

std::string KvStateMachine::Snapshot() const {
  std::string out;
  for (const auto& [k, v] : data_) {
    PutField(&out, k);
    PutField(&out, v);
  }
  return out;
}

void KvStateMachine::Restore(const std::string& snapshot) {
  data_.clear();
  size_t pos = 0;
  while (pos < snapshot.size()) {
    std::string k, v;
    SYNOD_ASSERT(GetField(snapshot, &pos, &k) && GetField(snapshot, &pos, &v),
                 "a snapshot the simulator wrote must parse");
    data_[k] = v;
  }
}

}  // namespace synod::sim
