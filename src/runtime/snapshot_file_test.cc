// Snapshot files on a real disk: streamed in, read in place, checked on the way back.
#include "runtime/snapshot_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>

#include "storage/crc32c.h"

namespace synod::runtime {
namespace {

namespace fs = std::filesystem;

class SnapshotFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("synod-snapfile-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static pb::SnapshotMetadata Meta(uint64_t index) {
    pb::SnapshotMetadata m;
    m.set_index(index);
    m.set_term(3);
    m.mutable_conf_state()->add_voters(1);
    m.mutable_conf_state()->add_voters(2);
    return m;
  }
  // Bytes that differ at every position (a misplaced chunk would show).
  static std::string State(size_t n) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
    return s;
  }
  std::vector<std::string> Files() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string Path(uint64_t index) const {
    char name[32];
    std::snprintf(name, sizeof name, "%016llx.snap", static_cast<unsigned long long>(index));
    return (dir_ / name).string();
  }
  static void FlipByte(const std::string& path, uint64_t offset) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5a);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(&c, 1);
  }

  fs::path dir_;
};

// The state is written in pieces around the writer's 1 MiB buffer, read in place before
// the file is finished (the engine holds it then), and loaded back whole and intact.
TEST_F(SnapshotFileTest, AStreamedSnapshotLoadsBackWithItsMetadata) {
  const std::string state = State(3 * 1024 * 1024 + 17);
  auto writer = SnapshotFileWriter::Create(dir_.string());
  ASSERT_TRUE(writer.ok()) << writer.status().message();
  for (size_t at = 0; at < state.size();) {
    const size_t n = std::min<size_t>(state.size() - at, at % 3 == 0 ? 700000 : 4096);
    ASSERT_TRUE(writer.value()->Write(std::string_view(state).substr(at, n)).ok());
    at += n;
  }
  auto data = writer.value()->Data();
  ASSERT_TRUE(data.ok());
  ASSERT_EQ(data.value()->size(), state.size());
  std::string middle;
  ASSERT_TRUE(data.value()->ReadAt(1000000, 2000000, &middle).ok());
  EXPECT_EQ(middle, state.substr(1000000, 2000000));
  ASSERT_TRUE(writer.value()->Finish(Meta(42)).ok());
  EXPECT_EQ(Files(), std::vector<std::string>{"000000000000002a.snap"});

  auto loaded = LoadLatestSnapshot(dir_.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded.value().metadata.SerializeAsString(), Meta(42).SerializeAsString());
  EXPECT_NE(dynamic_cast<const FileSnapshotData*>(loaded.value().data.get()), nullptr)
      << "a loaded snapshot is read in place, not into memory";
  auto all = loaded.value().ReadAll();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all.value(), state);
}

TEST_F(SnapshotFileTest, RestartForgetsWhatWasWritten) {
  auto writer = SnapshotFileWriter::Create(dir_.string());
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer.value()->Write(State(2 * 1024 * 1024)).ok());
  ASSERT_TRUE(writer.value()->Restart().ok());
  ASSERT_TRUE(writer.value()->Write("second copy").ok());
  ASSERT_TRUE(writer.value()->Finish(Meta(7)).ok());
  auto loaded = LoadLatestSnapshot(dir_.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded.value().ReadAll().value(), "second copy");
}

TEST_F(SnapshotFileTest, NoSnapshotIsAnEmptyOneAtIndexZero) {
  auto loaded = LoadLatestSnapshot(dir_.string());
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded.value().metadata.index(), 0u);
  EXPECT_EQ(loaded.value().data->size(), 0u);
}

// A writer dropped before Finish (a snapshot given up) leaves nothing; the temporary file of
// one interrupted by a crash is removed at the next start.
TEST_F(SnapshotFileTest, UnfinishedSnapshotsLeaveNoFile) {
  {
    auto writer = SnapshotFileWriter::Create(dir_.string());
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(writer.value()->Write("half").ok());
    ASSERT_TRUE(writer.value()->Data().ok());
    EXPECT_EQ(Files().size(), 1u);
  }
  EXPECT_TRUE(Files().empty());
  std::ofstream(dir_ / "writing-abc123") << "left by a crash";
  RemoveUnfinishedSnapshotFiles(dir_.string());
  EXPECT_TRUE(Files().empty());
}

// A snapshot received from the leader is streamed into a temporary file chunk by chunk;
// persisting it names that same file (its inode is kept: nothing is copied).
TEST_F(SnapshotFileTest, AReceivedSnapshotIsWrittenToAFileAsItArrives) {
  const std::string state = State(3 * 1024 * 1024 + 5);
  auto receiver = NewSnapshotFileReceiver(dir_.string());
  for (size_t at = 0; at < state.size(); at += 1 << 20) {
    ASSERT_TRUE(receiver->Append(std::string_view(state).substr(at, 1 << 20)).ok());
    EXPECT_EQ(receiver->size(), std::min(state.size(), at + (1 << 20)));
  }
  ASSERT_EQ(Files().size(), 1u);
  const fs::path tmp = dir_ / Files()[0];
  EXPECT_GE(fs::file_size(tmp), 3u * 1024 * 1024) << "the chunks are on disk, not in memory";
  auto data = receiver->Finish();
  ASSERT_TRUE(data.ok()) << data.status().message();
  ASSERT_EQ(data.value()->size(), state.size());
  std::string middle;
  ASSERT_TRUE(data.value()->ReadAt(1000000, 2000000, &middle).ok());
  EXPECT_EQ(middle, state.substr(1000000, 2000000));
  struct stat before {};
  ASSERT_EQ(::stat(tmp.c_str(), &before), 0);

  ASSERT_TRUE(WriteSnapshotFile(dir_.string(), consensus::Snapshot{Meta(42), data.value()}).ok());
  EXPECT_EQ(Files(), std::vector<std::string>{"000000000000002a.snap"});
  struct stat after {};
  ASSERT_EQ(::stat(Path(42).c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino) << "the received file was copied, not named";
  auto loaded = LoadLatestSnapshot(dir_.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded.value().metadata.SerializeAsString(), Meta(42).SerializeAsString());
  EXPECT_EQ(loaded.value().ReadAll().value(), state);
}

// A transfer given up (another snapshot came, or the member stopped) leaves no file.
TEST_F(SnapshotFileTest, AnAbandonedReceivedSnapshotLeavesNoFile) {
  {
    auto receiver = NewSnapshotFileReceiver(dir_.string());
    ASSERT_TRUE(receiver->Append(State(2 * 1024 * 1024)).ok());
    EXPECT_EQ(Files().size(), 1u);
  }
  EXPECT_TRUE(Files().empty());
  // The same once its data is made but never persisted (a snapshot the engine did not
  // install).
  {
    auto receiver = NewSnapshotFileReceiver(dir_.string());
    ASSERT_TRUE(receiver->Append("some state").ok());
    auto data = receiver->Finish();
    ASSERT_TRUE(data.ok());
    EXPECT_EQ(Files().size(), 1u);
  }
  EXPECT_TRUE(Files().empty());
}

// A receiver that cannot write fails the chunk, naming where (the engine then abandons the
// transfer, and the leader starts it over).
TEST_F(SnapshotFileTest, AReceiverThatCannotWriteFailsNamingTheDirectory) {
  const std::string missing = (dir_ / "no-such-dir").string();
  auto receiver = NewSnapshotFileReceiver(missing);
  Status s = receiver->Append("state");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(missing), std::string::npos) << s.message();
  EXPECT_EQ(receiver->size(), 0u);
}

TEST_F(SnapshotFileTest, TheNewestTwoAreKept) {
  for (uint64_t index : {5, 9, 12, 20}) {
    ASSERT_TRUE(
        WriteSnapshotFile(dir_.string(), consensus::Snapshot::InMemory(Meta(index), "s")).ok());
  }
  EXPECT_EQ(Files(), (std::vector<std::string>{"000000000000000c.snap", "0000000000000014.snap"}));
  EXPECT_EQ(LoadLatestSnapshot(dir_.string()).value().metadata.index(), 20u);
}

// A snapshot whose state the state machine holds: a file without state, loaded back as data
// that cannot be read yet and asks for its state to be made each time it is read.
TEST_F(SnapshotFileTest, ASnapshotWithItsStateInTheStateMachineLoadsBackAsDeferred) {
  ASSERT_TRUE(
      WriteSnapshotFile(dir_.string(), consensus::Snapshot::InMemory(Meta(4), "full")).ok());
  consensus::Snapshot deferred{Meta(7), std::make_shared<DeferredSnapshotData>(nullptr)};
  ASSERT_TRUE(WriteSnapshotFile(dir_.string(), deferred).ok());
  EXPECT_EQ(Files(), (std::vector<std::string>{"0000000000000004.snap", "0000000000000007.snap"}));

  int wanted = 0;
  auto loaded = LoadLatestSnapshot(dir_.string(), [&] { ++wanted; });
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded.value().metadata.SerializeAsString(), Meta(7).SerializeAsString());
  ASSERT_TRUE(DeferredSnapshotData::Is(*loaded.value().data));
  std::string out;
  const Status read = loaded.value().data->ReadAt(0, 0, &out);
  EXPECT_EQ(read.code(), Code::kUnavailable);
  EXPECT_EQ(loaded.value().ReadAll().status().code(), Code::kUnavailable);
  EXPECT_EQ(wanted, 2);

  // A writer that was given state cannot leave it out.
  auto writer = SnapshotFileWriter::Create(dir_.string());
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer.value()->Write("state").ok());
  EXPECT_FALSE(writer.value()->FinishWithStateInStateMachine(Meta(9)).ok());

  // The full snapshot at the same index, made when a member needed it, replaces the file.
  ASSERT_TRUE(
      WriteSnapshotFile(dir_.string(), consensus::Snapshot::InMemory(Meta(7), "made")).ok());
  auto made = LoadLatestSnapshot(dir_.string(), [&] { ++wanted; });
  ASSERT_TRUE(made.ok());
  EXPECT_FALSE(DeferredSnapshotData::Is(*made.value().data));
  EXPECT_EQ(made.value().ReadAll().value(), "made");
}

// The engine may still be sending a snapshot whose file a newer one has replaced.
TEST_F(SnapshotFileTest, DataStaysReadableAfterItsFileIsRemoved) {
  ASSERT_TRUE(
      WriteSnapshotFile(dir_.string(), consensus::Snapshot::InMemory(Meta(3), "kept")).ok());
  auto loaded = LoadLatestSnapshot(dir_.string());
  ASSERT_TRUE(loaded.ok());
  fs::remove_all(dir_);
  fs::create_directories(dir_);
  EXPECT_EQ(loaded.value().ReadAll().value(), "kept");
}

// Damage anywhere is refused, naming the file: in the state, in the trailer, a truncation.
TEST_F(SnapshotFileTest, DamageIsRefusedNamingTheFile) {
  const std::string state = State(100000);
  struct Case {
    const char* what;
    std::function<void(const std::string&)> damage;
    const char* why;
  };
  const std::vector<Case> cases = {
      {"a byte of the state", [&](const std::string& p) { FlipByte(p, 5000); },
       "state checksum mismatch"},
      {"a byte of the trailer", [&](const std::string& p) { FlipByte(p, state.size() + 2); },
       "trailer checksum mismatch"},
      {"a truncation", [&](const std::string& p) { fs::resize_file(p, fs::file_size(p) - 3); },
       "checksum mismatch"},
  };
  for (const auto& c : cases) {
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_TRUE(
        WriteSnapshotFile(dir_.string(), consensus::Snapshot::InMemory(Meta(9), state)).ok());
    c.damage(Path(9));
    auto loaded = LoadLatestSnapshot(dir_.string());
    ASSERT_FALSE(loaded.ok()) << c.what;
    EXPECT_EQ(loaded.status().code(), Code::kCorruption) << c.what;
    EXPECT_NE(loaded.status().message().find(Path(9)), std::string::npos)
        << c.what << ": " << loaded.status().message();
    EXPECT_NE(loaded.status().message().find(c.why), std::string::npos)
        << c.what << ": " << loaded.status().message();
  }
}

// Files written before the state was streamed ([u32 CRC-32C][serialized pb::Snapshot]) load.
TEST_F(SnapshotFileTest, FilesOfTheEarlierFormatAreRead) {
  pb::Snapshot old;
  *old.mutable_metadata() = Meta(11);
  old.set_data("state in the earlier format");
  const std::string body = old.SerializeAsString();
  const uint32_t crc = storage::Crc32c(0, body.data(), body.size());
  {
    std::ofstream f(Path(11), std::ios::binary);
    f.write(reinterpret_cast<const char*>(&crc), 4);
    f.write(body.data(), static_cast<std::streamsize>(body.size()));
  }
  auto loaded = LoadLatestSnapshot(dir_.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded.value().metadata.SerializeAsString(), Meta(11).SerializeAsString());
  EXPECT_EQ(loaded.value().ReadAll().value(), "state in the earlier format");
}

}  // namespace
}  // namespace synod::runtime
