#include "workload.h"

#include <algorithm>

#include "workloads.h"

namespace synod::bench {

const std::vector<std::pair<std::string, std::string>>& WorkloadNames() {
  static const std::vector<std::pair<std::string, std::string>> names = {
      {"put", "Put a key (random or --seq-keys) of --key-space"},
      {"range", "Range one key (--consistency l|s) after preloading --preload keys"},
      {"txn-put", "Compare-and-swap: Txn comparing the key's mod_revision, then Put"},
      {"txn-mixed", "Read-modify-write of a counter: Range, then Txn CAS, retried on conflict"},
      {"watch", "--watchers streams watch a prefix; latency from Put start to each event"},
      {"lock", "v3lock Lock then Unlock, --locks names contended by the clients"},
      {"lease", "LeaseGrant, --keepalives keep-alives on a stream, LeaseRevoke"},
      {"mixed", "Range (--read-ratio) or Put on random keys"},
  };
  return names;
}

std::unique_ptr<Workload> MakeWorkload(const std::string& name, Env& env) {
  if (name == "put") return MakePutWorkload(env);
  if (name == "range") return MakeRangeWorkload(env);
  if (name == "mixed") return MakeMixedWorkload(env);
  if (name == "txn-put") return MakeTxnPutWorkload(env);
  if (name == "txn-mixed") return MakeTxnMixedWorkload(env);
  if (name == "watch") return MakeWatchWorkload(env);
  if (name == "lock") return MakeLockWorkload(env);
  if (name == "lease") return MakeLeaseWorkload(env);
  return nullptr;
}

KeySpace::KeySpace(std::string prefix, int64_t size, int key_size)
    : prefix_(std::move(prefix)), size_(std::max<int64_t>(size, 1)) {
  const int digits = static_cast<int>(std::to_string(size_ - 1).size());
  width_ = std::max(digits, key_size - static_cast<int>(prefix_.size()));
}

std::string KeySpace::Key(int64_t index) const {
  const std::string n = std::to_string(index);
  std::string key = prefix_;
  key.append(static_cast<size_t>(std::max(0, width_ - static_cast<int>(n.size()))), '0');
  key += n;
  return key;
}

std::string KeySpace::End() const { return PrefixEnd(prefix_); }

std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(prefix.back());
    if (last < 0xff) {
      ++last;
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // every key
}

std::string MakeValue(int size, uint64_t seed) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::mt19937_64 rng(seed);
  std::string v(static_cast<size_t>(std::max(size, 0)), 'x');
  for (char& c : v) c = kAlphabet[rng() % (sizeof(kAlphabet) - 1)];
  return v;
}

uint64_t ClientSeed(uint64_t seed, int index) {
  // splitmix64 of (seed, index): unrelated streams for neighbouring clients.
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(index + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace synod::bench
