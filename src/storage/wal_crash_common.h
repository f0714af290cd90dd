// What the crash writer logs and the crash test expects: entry contents derived from the index
// alone, so that the test can check every recovered byte without any other record.
#pragma once

#include <cstdint>
#include <string>

#include "synod/consensus.pb.h"

namespace synod::storage::crash {

inline constexpr uint64_t kSegmentBytes = 256 << 10;
inline constexpr uint64_t kSnapshotEvery = 1000;  // entries between snapshot markers
inline constexpr uint64_t kSnapshotLag = 500;     // a marker covers up to index - lag

inline consensuspb::Entry EntryFor(uint64_t index) {
  consensuspb::Entry entry;
  entry.set_index(index);
  entry.set_term(1 + index / 5000);
  std::string data(10 + (index * 7919) % 2000, '\0');
  uint64_t x = index * 0x9e3779b97f4a7c15ULL + 1;
  for (char& c : data) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = static_cast<char>(x);
  }
  entry.set_data(data);
  return entry;
}

}  // namespace synod::storage::crash
