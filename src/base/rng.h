// Rng: a small, seeded, deterministic pseudo-random generator (xoshiro256**).
// Every source of randomness in the consensus engines and the simulator is an Rng given
// at construction, so that a seed replays byte for byte on any machine: no std::random_device,
// and no std:: distributions (their output differs between standard libraries).
#pragma once

#include <cstdint>

namespace synod {

class Rng {
 public:
  explicit Rng(uint64_t seed) {
    // SplitMix64 spreads the seed over the whole state.
    for (auto& word : state_) {
      seed += 0x9e3779b97f4a7c15ULL;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      word = z ^ (z >> 31);
    }
  }

  uint64_t Next() {
    const uint64_t result = Rotl(state_[1] * 5, 7) * 9;
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = Rotl(state_[3], 45);
    return result;
  }

  // Uniform in [0, bound); bound must be > 0. The tiny modulo bias is irrelevant here.
  uint64_t Below(uint64_t bound) { return Next() % bound; }
  // Uniform in [lo, hi].
  uint64_t Between(uint64_t lo, uint64_t hi) { return lo + Below(hi - lo + 1); }
  // True with probability `p` (0..1).
  bool Chance(double p) { return static_cast<double>(Next() >> 11) * 0x1.0p-53 < p; }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t state_[4];
};

}  // namespace synod
