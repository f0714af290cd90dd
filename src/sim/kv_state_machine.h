// The simulator's state machine: a small key-value map driven by log entries.
// Deliberately simple; the real MVCC store lives in kv/.
#pragma once

#include <map>
#include <optional>
#include <string>

namespace synod::sim {

struct KvCommand {
  enum class Kind : char { kPut = 'P', kCas = 'C' };
  Kind kind = Kind::kPut;
  std::string key;
  std::string value;
  std::optional<std::string> expected;  // kCas: required current value (nullopt: absent)

  std::string Encode() const;
  static std::optional<KvCommand> Decode(const std::string& bytes);
};

class KvStateMachine {
 public:
  // Applies one command; returns whether it took effect (a put always does).
  bool Apply(const KvCommand& command);
  std::optional<std::string> Get(const std::string& key) const;

  std::string Snapshot() const;
  void Restore(const std::string& snapshot);

 private:
  std::map<std::string, std::string> data_;
};

}  // namespace synod::sim
