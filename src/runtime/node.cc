#include "runtime/node.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "base/assert.h"
#include "base/thread_name.h"
#include "consensus/paxos/paxos.h"
#include "consensus/raft/raft.h"
#include "storage/crc32c.h"

namespace synod::runtime {

namespace fs = std::filesystem;

namespace {

// Snapshot files: snap/<index as 16 hex digits>.snap holding
// [u32 CRC32C of the rest][serialized pb::Snapshot]; written to a temporary name, fsynced,
// renamed, and the directory fsynced, so a crash leaves either the old or the new file.
std::string SnapshotPath(const std::string& dir, LogIndex index) {
  char name[32];
  std::snprintf(name, sizeof name, "%016llx.snap", static_cast<unsigned long long>(index));
  return dir + "/" + name;
}

Status SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return Status(Code::kIoError, "open " + dir + ": " + std::strerror(errno));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Status(Code::kIoError, "fsync " + dir + ": " + std::strerror(errno));
  return Status::Ok();
}

// Writes `pieces`, one after the other, as the file `path`: a temp file, fsync, rename,
// fsync of the directory.
Status WriteFileDurably(const std::string& path, const std::vector<std::string_view>& pieces) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return Status(Code::kIoError, "create " + tmp + ": " + std::strerror(errno));
  for (std::string_view bytes : pieces) {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const Status s(Code::kIoError, "write " + tmp + ": " + std::strerror(errno));
        ::close(fd);
        return s;
      }
      done += static_cast<size_t>(n);
    }
  }
  if (::fsync(fd) != 0) {
    const Status s(Code::kIoError, "fsync " + tmp + ": " + std::strerror(errno));
    ::close(fd);
    return s;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status(Code::kIoError, "rename " + tmp + ": " + std::strerror(errno));
  }
  return SyncDir(fs::path(path).parent_path().string());
}

// The newest snapshot file that reads back intact (older ones are kept one generation).
Status LoadLatestSnapshot(const std::string& dir, pb::Snapshot* out) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".snap") names.push_back(e.path().string());
  }
  std::sort(names.rbegin(), names.rend());
  for (const auto& path : names) {
    std::string bytes;
    {
      const int fd = ::open(path.c_str(), O_RDONLY);
      if (fd < 0) return Status(Code::kIoError, "open " + path + ": " + std::strerror(errno));
      char buf[1 << 16];
      ssize_t n;
      while ((n = ::read(fd, buf, sizeof buf)) > 0) bytes.append(buf, static_cast<size_t>(n));
      ::close(fd);
    }
    uint32_t crc = 0;
    if (bytes.size() >= 4) std::memcpy(&crc, bytes.data(), 4);
    if (bytes.size() < 4 || storage::Crc32c(0, bytes.data() + 4, bytes.size() - 4) != crc ||
        !out->ParseFromArray(bytes.data() + 4, static_cast<int>(bytes.size() - 4))) {
      return Status(Code::kCorruption, "snapshot file " + path + " is corrupt (checksum mismatch)");
    }
    return Status::Ok();
  }
  return Status::Ok();  // none yet
}

}  // namespace

Node::Node(NodeOptions options, StateMachine* state, Transport* transport)
    : options_(std::move(options)), state_(state), transport_(transport) {}

Status Node::Start(NodeOptions options, StateMachine* state, Transport* transport,
                   std::unique_ptr<Node>* node) {
  std::unique_ptr<Node> n(new Node(std::move(options), state, transport));
  if (Status s = n->Open(); !s.ok()) return s;
  n->persist_thread_ = std::thread([p = n.get()] {
    NameThisThread("synod-persist");
    p->PersistLoop();
  });
  n->loop_thread_ = std::thread([p = n.get()] {
    NameThisThread("synod-loop");
    p->Loop();
  });
  *node = std::move(n);
  return Status::Ok();
}

Status Node::Open() {
  std::error_code ec;
  fs::create_directories(options_.data_dir + "/snap", ec);
  if (ec) return Status(Code::kIoError, "create " + options_.data_dir + ": " + ec.message());

  storage::WalRecovered recovered;
  if (Status s = storage::Wal::Open(options_.data_dir + "/wal", options_.wal, &wal_, &recovered);
      !s.ok()) {
    return s;
  }
  consensus::DurableState durable;
  if (recovered.hard_state) durable.hard_state = *recovered.hard_state;
  durable_hard_state_ = durable.hard_state;
  if (Status s = LoadLatestSnapshot(options_.data_dir + "/snap", &durable.snapshot); !s.ok())
    return s;
  const bool fresh = !recovered.hard_state && durable.snapshot.metadata().index() == 0 &&
                     recovered.entries.empty();
  if (fresh && !options_.join_existing) {
    // A new cluster: every founding member starts from the same index-0 membership.
    // It is written down as the index-0 snapshot, so that a restart finds it again.
    for (NodeId v : options_.initial_voters)
      durable.snapshot.mutable_metadata()->mutable_conf_state()->add_voters(v);
    if (Status s = WriteSnapshotFile(durable.snapshot); !s.ok()) return s;
  }
  const LogIndex snap_index = durable.snapshot.metadata().index();
  if (recovered.snapshot && recovered.snapshot->index() > snap_index) {
    return Status(Code::kCorruption,
                  "the WAL names a snapshot at " + std::to_string(recovered.snapshot->index()) +
                      " but the newest snapshot file is at " + std::to_string(snap_index));
  }
  for (auto& e : recovered.entries) {
    if (e.index() > snap_index) durable.entries.push_back(std::move(e));
  }
  if (!durable.entries.empty() && durable.entries.front().index() != snap_index + 1) {
    return Status(Code::kCorruption,
                  "the WAL's entries start at " + std::to_string(durable.entries.front().index()) +
                      ", after a gap from the snapshot at " + std::to_string(snap_index));
  }
  // The state machine may have lost unsynced writes: if it is behind the snapshot the
  // log was compacted to, it starts again from the snapshot.
  if (snap_index > 0 && state_->AppliedIndex() < snap_index) {
    if (Status s = state_->Restore(durable.snapshot.data(), snap_index); !s.ok()) return s;
  }
  snapshot_index_ = snap_index;
  options_.raft.id = options_.id;
  options_.raft.seed ^=
      options_.id * 0x9e3779b97f4a7c15ULL ^
      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  if (options_.engine == "raft") {
    engine_ = std::make_unique<consensus::raft::Raft>(options_.raft, durable);
  } else if (options_.engine == "multi-paxos") {
    if (options_.id > 255) {
      return Status(Code::kInvalidArgument,
                    "multi-paxos member ids must be 1..255 (they are part of every ballot)");
    }
    consensus::paxos::Config p;
    p.id = options_.id;
    p.election_ticks = options_.raft.election_ticks;
    p.heartbeat_ticks = options_.raft.heartbeat_ticks;
    p.msg_bytes_max = options_.raft.msg_bytes_max;
    p.inflight_msgs_max = options_.raft.inflight_msgs_max;
    p.uncommitted_bytes_max = options_.raft.uncommitted_bytes_max;
    p.snapshot_chunk_bytes = options_.raft.snapshot_chunk_bytes;
    p.apply_bytes_max = options_.raft.apply_bytes_max;
    p.learner_catchup_entries_max = options_.raft.learner_catchup_entries_max;
    p.seed = options_.raft.seed;
    engine_ = std::make_unique<consensus::paxos::Paxos>(p, durable);
  } else {
    return Status(Code::kInvalidArgument, "unknown consensus engine \"" + options_.engine + "\"");
  }
  PublishStatus();
  return Status::Ok();
}

Node::~Node() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (loop_thread_.joinable()) loop_thread_.join();
  JoinSnapshotThread();
  {
    std::lock_guard lock(persist_mu_);
    persist_stopping_ = true;
  }
  persist_cv_.notify_all();
  if (persist_thread_.joinable()) persist_thread_.join();
}

// ---------------------------------------------------------------------------------
// Public entry points: they only queue work for the loop thread.

void Node::Post(std::function<void()> work) {
  {
    std::lock_guard lock(mu_);
    inbox_.push_back(std::move(work));
  }
  cv_.notify_one();
}

void Node::Propose(std::string data, ProposeCallback done) {
  Post([this, data = std::move(data), done = std::move(done)]() mutable {
    auto id = engine_->Propose(std::move(data));
    if (!id.ok()) {
      done(id.status());
      return;
    }
    proposals_[id.value().index] = Pending{id.value(), std::move(done)};
  });
}

void Node::ProposeConfChange(pb::ConfChange change, ProposeCallback done) {
  Post([this, change = std::move(change), done = std::move(done)]() mutable {
    auto id = engine_->ProposeConfChange(change);
    if (!id.ok()) {
      done(id.status());
      return;
    }
    proposals_[id.value().index] = Pending{id.value(), std::move(done)};
  });
}

void Node::ReadIndex(ReadCallback done) {
  Post([this, done = std::move(done)]() mutable {
    const uint64_t id = next_read_id_++;
    if (Status s = engine_->ReadIndex(id); !s.ok()) {
      done(s);
      return;
    }
    reads_[id] = std::move(done);
  });
}

void Node::TransferLeader(NodeId target) {
  Post([this, target] { (void)engine_->TransferLeader(target); });
}

void Node::Receive(pb::Envelope envelope) {
  Post([this, envelope = std::move(envelope)] {
    for (const auto& m : envelope.messages()) (void)engine_->Step(m);
  });
}

NodeStatus Node::GetStatus() const {
  std::lock_guard lock(mu_);
  return status_;
}

void Node::PublishStatus() {
  NodeStatus s;
  s.engine = engine_->GetStatus();
  s.applied = state_->AppliedIndex();
  s.wal = wal_->counters();
  std::lock_guard lock(mu_);
  status_ = std::move(s);
}

// ---------------------------------------------------------------------------------
// The loop thread.

void Node::Loop() {
  auto next_tick = std::chrono::steady_clock::now() + options_.tick_interval;
  for (;;) {
    std::deque<std::function<void()>> work;
    {
      std::unique_lock lock(mu_);
      cv_.wait_until(lock, next_tick, [&] { return stopping_ || !inbox_.empty(); });
      if (stopping_) break;
      work.swap(inbox_);
    }
    for (auto& w : work) w();
    bool ticked = false;
    if (std::chrono::steady_clock::now() >= next_tick) {
      engine_->Tick();
      ticked = true;
      next_tick += options_.tick_interval;
      // After a stall, do not fire a burst of ticks: time is what it is now.
      next_tick = std::max(next_tick, std::chrono::steady_clock::now());
    }
    HandleReady();
    if (ticked) PublishStatus();  // the full status is costly: once a tick
  }
}

void Node::HandleReady() {
  if (ready_in_flight_ || !engine_->HasReady()) return;
  consensus::Ready rd = engine_->TakeReady();
  ready_in_flight_ = true;
  if (rd.leader != leader_.load(std::memory_order_relaxed)) {
    leader_.store(rd.leader, std::memory_order_relaxed);
    PublishStatus();
  }
  // The leader's appends leave now: its fsync and its followers' overlap.
  std::vector<pb::Message> after_persist;
  std::vector<pb::Message> now;
  for (auto& m : rd.messages) {
    (engine_->MaySendBeforeDurable(m) ? now : after_persist).push_back(std::move(m));
  }
  rd.messages = std::move(after_persist);
  Send(std::move(now));
  // A hard state that only advanced the commit index is written without waiting: if a
  // crash loses it, the leader tells the commit index again.
  if (rd.hard_state && rd.entries.empty() && !rd.snapshot &&
      consensus::OnlyCommitAdvanced(*rd.hard_state, durable_hard_state_)) {
    storage::WalWrite write;
    write.hard_state = std::move(rd.hard_state);
    rd.hard_state.reset();
    storage::WalTicket ticket = 0;
    Status s = wal_->Append(write, &ticket);
    SYNOD_ASSERT(s.ok(), "the write-ahead log failed: the member must stop");
  }
  if (!rd.hard_state && rd.entries.empty() && !rd.snapshot) {
    FinishReady(std::move(rd));  // nothing to make durable
    return;
  }
  {
    std::lock_guard lock(persist_mu_);
    to_persist_ = std::move(rd);
  }
  persist_cv_.notify_one();
}

void Node::PersistLoop() {
  for (;;) {
    consensus::Ready rd;
    {
      std::unique_lock lock(persist_mu_);
      persist_cv_.wait(lock, [&] { return persist_stopping_ || to_persist_.has_value(); });
      if (!to_persist_) return;
      rd = std::move(*to_persist_);
      to_persist_.reset();
    }
    storage::WalWrite write;
    if (rd.snapshot) {
      Status s = WriteSnapshotFile(*rd.snapshot);
      SYNOD_ASSERT(s.ok(),
                   "cannot persist a snapshot: the member must stop (disk full or I/O error)");
      write.snapshot = rd.snapshot->metadata();
    }
    write.entries = rd.entries;
    write.hard_state = rd.hard_state;
    Status s = wal_->AppendSync(write);
    if (rd.hard_state) {
      std::lock_guard lock(persist_mu_);
      durable_hard_state_ = *rd.hard_state;
    }
    // A WAL that cannot write cannot promise anything: stop rather than send messages
    // that claim durability (the WAL has already made sure nothing on disk is damaged).
    SYNOD_ASSERT(s.ok(), "the write-ahead log failed: the member must stop");
    Post([this, rd = std::move(rd)]() mutable { FinishReady(std::move(rd)); });
  }
}

void Node::FinishReady(consensus::Ready rd) {
  // Durable: now the messages may promise it.
  Send(std::move(rd.messages));
  if (rd.snapshot) {
    const auto& meta = rd.snapshot->metadata();
    Status s = state_->Restore(rd.snapshot->data(), meta.index());
    SYNOD_ASSERT(s.ok(), "a snapshot from the leader must install");
    snapshot_index_ = meta.index();
    proposals_.erase(proposals_.begin(), proposals_.upper_bound(meta.index()));
  }
  ApplyCommitted(rd.committed_entries);
  for (const auto& rs : rd.read_states) {
    auto it = reads_.find(rs.request_id);
    if (it == reads_.end()) continue;
    reads_to_serve_.emplace(rs.index, std::move(it->second));
    reads_.erase(it);
  }
  ServeReads();
  engine_->Advance(rd);
  ready_in_flight_ = false;
  MaybeSnapshot();
  HandleReady();
}

void Node::Send(std::vector<pb::Message> messages) {
  if (messages.empty()) return;
  // One envelope per destination: many messages per network write.
  std::map<NodeId, pb::Envelope> out;
  for (auto& m : messages) {
    pb::Envelope& env = out[m.to()];
    env.set_group_id(options_.group_id);
    env.set_from(options_.id);
    env.set_to(m.to());
    *env.add_messages() = std::move(m);
  }
  for (auto& [to, env] : out) transport_->Send(env);
}

void Node::ApplyCommitted(const std::vector<pb::Entry>& entries) {
  for (const auto& e : entries) {
    std::string result;
    if (e.index() > state_->AppliedIndex()) result = state_->Apply(e);
    auto it = proposals_.find(e.index());
    if (it == proposals_.end()) continue;
    Pending p = std::move(it->second);
    proposals_.erase(it);
    if (p.id.term == e.term()) {
      p.done(std::move(result));
    } else {
      p.done(Status(Code::kUnavailable, "proposal lost: another leader's entry took its place"));
    }
  }
}

void Node::ServeReads() {
  const LogIndex applied = state_->AppliedIndex();
  while (!reads_to_serve_.empty() && reads_to_serve_.begin()->first <= applied) {
    auto done = std::move(reads_to_serve_.begin()->second);
    reads_to_serve_.erase(reads_to_serve_.begin());
    done(Status::Ok());
  }
}

void Node::MaybeSnapshot() {
  // A written snapshot gets its WAL marker, then the log before it is released. Only
  // while no Ready is being persisted: markers never move back, and a leader's snapshot
  // may be on its way to the WAL.
  if (snapshot_written_ && !ready_in_flight_) {
    const pb::SnapshotMetadata meta = *snapshot_written_;
    snapshot_written_.reset();
    snapshotting_ = false;
    if (meta.index() > snapshot_index_) {
      storage::WalWrite marker;
      marker.snapshot = meta;
      if (wal_->AppendSync(marker).ok()) {
        (void)wal_->ReleaseBefore(meta.index());
        snapshot_index_ = meta.index();
      }
    }
  }
  if (snapshotting_ || state_->AppliedIndex() < snapshot_index_ + options_.snapshot_entries) {
    return;
  }
  snapshotting_ = true;
  JoinSnapshotThread();
  snapshot_thread_ = std::thread([this] {
    NameThisThread("synod-snapshot");
    LogIndex index = 0;
    std::string data = state_->Snapshot(&index);
    Post([this, data = std::move(data), index]() mutable { CompactTo(std::move(data), index); });
  });
}

void Node::CompactTo(std::string data, LogIndex index) {
  pb::Snapshot snap;
  snap.mutable_metadata()->set_index(index);
  snap.set_data(std::move(data));
  auto meta = engine_->Compact(std::move(snap));
  if (!meta.ok() || index <= snapshot_index_) {
    snapshotting_ = false;  // e.g. not durable yet, or a leader's snapshot came first
    return;
  }
  // The engine holds the state now (for members far behind); the file is written from
  // that same immutable copy, so a snapshot costs one copy of the store in memory.
  std::shared_ptr<const pb::Snapshot> held = engine_->LatestSnapshot();
  JoinSnapshotThread();  // the thread that took the copy has finished
  snapshot_thread_ = std::thread([this, held = std::move(held)] {
    NameThisThread("synod-snapshot");
    if (Status s = WriteSnapshotFile(*held); !s.ok()) {
      Post([this] { snapshotting_ = false; });  // try again later
      return;
    }
    Post([this, meta = held->metadata()] { FinishSnapshot(meta); });
  });
}

void Node::FinishSnapshot(const pb::SnapshotMetadata& meta) {
  snapshot_written_ = meta;
  MaybeSnapshot();
}

void Node::JoinSnapshotThread() {
  if (snapshot_thread_.joinable()) snapshot_thread_.join();
}

Status Node::WriteSnapshotFile(const pb::Snapshot& snapshot) {
  const std::string dir = options_.data_dir + "/snap";
  // The file: the CRC-32C of the rest, then the serialized pb::Snapshot. The message is
  // written field by field — the metadata, then the data field's tag and length, then the
  // data straight from `snapshot` — so that the state (the whole store) is not copied to be
  // written; the bytes are those SerializeAsString would give.
  pb::Snapshot head;
  *head.mutable_metadata() = snapshot.metadata();
  const std::string meta = head.SerializeAsString();
  std::string data_prefix;
  if (!snapshot.data().empty()) {
    data_prefix.push_back(static_cast<char>((pb::Snapshot::kDataFieldNumber << 3) | 2));
    for (uint64_t n = snapshot.data().size();; n >>= 7) {  // varint
      data_prefix.push_back(static_cast<char>((n & 0x7f) | (n >= 0x80 ? 0x80 : 0)));
      if (n < 0x80) break;
    }
  }
  uint32_t crc = storage::Crc32c(0, meta.data(), meta.size());
  crc = storage::Crc32c(crc, data_prefix.data(), data_prefix.size());
  crc = storage::Crc32c(crc, snapshot.data().data(), snapshot.data().size());
  char crc_bytes[4];
  std::memcpy(crc_bytes, &crc, 4);
  if (Status s =
          WriteFileDurably(SnapshotPath(dir, snapshot.metadata().index()),
                           {std::string_view(crc_bytes, 4), meta, data_prefix, snapshot.data()});
      !s.ok())
    return s;
  // Keep the newest two snapshot files.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".snap") names.push_back(e.path().string());
  }
  std::sort(names.begin(), names.end());
  for (size_t i = 0; i + 2 < names.size(); ++i) fs::remove(names[i]);
  return Status::Ok();
}

}  // namespace synod::runtime
