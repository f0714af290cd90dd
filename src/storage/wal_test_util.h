// Helpers shared by the WAL tests: scratch directories and entry builders.
#pragma once

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "storage/wal.h"
#include "synod/consensus.pb.h"

namespace synod::storage::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
// kMemory puts it on /dev/shm when there is one: for tests that reopen a WAL hundreds of times
// and do not care what fsync costs on a real disk.
class ScratchDir {
 public:
  enum class Where { kDisk, kMemory };
  explicit ScratchDir(Where where = Where::kDisk) {
    const char* base = std::getenv("TMPDIR");
    std::string root = base != nullptr ? base : "/tmp";
    if (where == Where::kMemory && std::filesystem::is_directory("/dev/shm")) root = "/dev/shm";
    std::string tmpl = root + "/synod_wal_XXXXXX";
    path_ = ::mkdtemp(tmpl.data());
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }
  std::string wal() const { return path_ + "/wal"; }

 private:
  std::string path_;
};

// The entry at `index` of `term` whose data is derived from both, so a test can tell any two
// entries apart and check the bytes it gets back.
inline consensuspb::Entry MakeEntry(uint64_t index, uint64_t term, size_t data_bytes = 32) {
  consensuspb::Entry entry;
  entry.set_index(index);
  entry.set_term(term);
  std::string data(data_bytes, '\0');
  uint64_t x = index * 0x9e3779b97f4a7c15ULL ^ term;
  for (char& c : data) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = static_cast<char>(x);
  }
  entry.set_data(data);
  return entry;
}

inline WalWrite Entries(uint64_t first, uint64_t last, uint64_t term, size_t data_bytes = 32) {
  WalWrite write;
  for (uint64_t i = first; i <= last; ++i) write.entries.push_back(MakeEntry(i, term, data_bytes));
  return write;
}

inline consensuspb::HardState MakeHardState(uint64_t term, uint64_t vote, uint64_t commit) {
  consensuspb::HardState hs;
  hs.set_term(term);
  hs.set_vote(vote);
  hs.set_commit(commit);
  return hs;
}

inline consensuspb::SnapshotMetadata MakeSnapshot(uint64_t index, uint64_t term) {
  consensuspb::SnapshotMetadata snapshot;
  snapshot.set_index(index);
  snapshot.set_term(term);
  return snapshot;
}

// Segment file names in `dir`, sorted.
inline std::vector<std::string> SegmentFiles(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.ends_with(".wal")) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Options with small segments and a quiet log, collecting repair messages.
inline WalOptions SmallOptions(uint64_t segment_bytes, std::vector<std::string>* log = nullptr) {
  WalOptions options;
  options.segment_bytes = segment_bytes;
  options.log = [log](const std::string& message) {
    if (log != nullptr) log->push_back(message);
  };
  return options;
}

}  // namespace synod::storage::testing
