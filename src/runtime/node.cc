#include "runtime/node.h"

#include <algorithm>
#include <filesystem>

#include "base/assert.h"
#include "base/thread_name.h"
#include "consensus/paxos/paxos.h"
#include "consensus/raft/raft.h"

namespace synod::runtime {

namespace fs = std::filesystem;

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
  RemoveUnfinishedSnapshotFiles(SnapshotDir());
  auto loaded = LoadLatestSnapshot(SnapshotDir(), SnapshotStateWanted());
  if (!loaded.ok()) return loaded.status();
  durable.snapshot = std::move(loaded.value());
  const bool fresh =
      !recovered.hard_state && durable.snapshot.metadata.index() == 0 && recovered.entries.empty();
  if (fresh && !options_.join_existing) {
    // A new cluster: every founding member starts from the same index-0 membership.
    // It is written down as the index-0 snapshot, so that a restart finds it again.
    for (NodeId v : options_.initial_voters)
      durable.snapshot.metadata.mutable_conf_state()->add_voters(v);
    if (Status s = WriteSnapshotFile(SnapshotDir(), durable.snapshot); !s.ok()) return s;
  }
  const LogIndex snap_index = durable.snapshot.metadata.index();
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
    if (DeferredSnapshotData::Is(*durable.snapshot.data)) {
      // The log before the snapshot is gone, and the state machine that was to hold it
      // has lost it.
      return Status(Code::kCorruption,
                    "the state machine's storage is behind the newest snapshot (applied " +
                        std::to_string(state_->AppliedIndex()) + ", the snapshot at " +
                        std::to_string(snap_index) +
                        " is held there): this member's data is damaged; remove the member "
                        "and add it again");
    }
    if (Status s = state_->Restore(*durable.snapshot.data, snap_index); !s.ok()) return s;
  }
  consensus::RaiseCommitToApplied(durable, state_->AppliedIndex());
  snapshot_index_ = snap_index;
  options_.raft.id = options_.id;
  // A snapshot from the leader goes into a file as it arrives, not into memory.
  options_.raft.snapshot_receiver = [dir = SnapshotDir()] { return NewSnapshotFileReceiver(dir); };
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
    p.snapshot_receiver = options_.raft.snapshot_receiver;
    p.catchup_entries = options_.raft.catchup_entries;
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
  // Now, while the inbox still exists: the WAL writes what is queued, and its callbacks
  // post to the inbox (no loop runs them any more).
  wal_.reset();
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
  // The loop asks for a round once it has taken in everything queued (Loop).
  Post([this, done = std::move(done)]() mutable { reads_waiting_.push_back(std::move(done)); });
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
    AskForReadIndex();
    bool ticked = false;
    if (std::chrono::steady_clock::now() >= next_tick) {
      engine_->Tick();
      ticked = true;
      // Two ticks: a round asked just before this tick is not asked again yet.
      if (read_round_ && ++read_round_->ticks_waited >= 2) RequestReadIndex();
      next_tick += options_.tick_interval;
      // After a stall, do not fire a burst of ticks: time is what it is now.
      next_tick = std::max(next_tick, std::chrono::steady_clock::now());
    }
    HandleReady();
    if (snapshot_state_wanted_.load(std::memory_order_relaxed)) MaybeSnapshot();
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
  // The committed entries are durable here already (an engine hands out only entries an
  // earlier Ready made durable): they are applied while this Ready's writes are being
  // persisted, so that answers do not wait for this fsync. A snapshot is installed first,
  // once durable: then everything waits for FinishReady.
  std::vector<pb::Entry> committed;
  std::vector<consensus::ReadState> read_states;
  if (!rd.snapshot) {
    committed = std::move(rd.committed_entries);
    read_states = std::move(rd.read_states);
    rd.committed_entries.clear();
    rd.read_states.clear();
  }
  if (rd.snapshot) {
    {
      std::lock_guard lock(persist_mu_);
      to_persist_ = std::move(rd);
    }
    persist_cv_.notify_one();
  } else {
    // The WAL's storage thread tells us when the write is durable: no thread of ours
    // waits for the fsync. (The engine does not read the Ready back: its entries move.)
    storage::WalWrite write;
    write.entries = std::move(rd.entries);
    write.hard_state = rd.hard_state;
    Status s = wal_->Append(write, [this, rd = std::move(rd)](const Status& durable) mutable {
      OnDurable(durable, std::move(rd));
    });
    SYNOD_ASSERT(s.ok(), "the write-ahead log failed: the member must stop");
  }
  ApplyAndServe(committed, read_states);
}

void Node::OnDurable(const Status& durable, consensus::Ready rd) {
  // A WAL that cannot write cannot promise anything: stop rather than send messages
  // that claim durability (the WAL has already made sure nothing on disk is damaged).
  SYNOD_ASSERT(durable.ok(), "the write-ahead log failed: the member must stop");
  if (rd.hard_state) {
    std::lock_guard lock(persist_mu_);
    durable_hard_state_ = *rd.hard_state;
  }
  Post([this, rd = std::move(rd)]() mutable { FinishReady(std::move(rd)); });
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
    // The snapshot file first (it can be large: this thread, not the loop, writes it),
    // then its marker, entries and hard state in the WAL.
    Status s = WriteSnapshotFile(SnapshotDir(), *rd.snapshot);
    SYNOD_ASSERT(s.ok(),
                 "cannot persist a snapshot: the member must stop (disk full or I/O error)");
    storage::WalWrite write;
    write.snapshot = rd.snapshot->metadata;
    write.entries = std::move(rd.entries);
    write.hard_state = rd.hard_state;
    OnDurable(wal_->AppendSync(write), std::move(rd));
  }
}

void Node::FinishReady(consensus::Ready rd) {
  // Durable: now the messages may promise it.
  Send(std::move(rd.messages));
  if (rd.snapshot) {
    const auto& meta = rd.snapshot->metadata;
    Status s = state_->Restore(*rd.snapshot->data, meta.index());
    SYNOD_ASSERT(s.ok(), "a snapshot from the leader must install");
    snapshot_index_ = meta.index();
    proposals_.erase(proposals_.begin(), proposals_.upper_bound(meta.index()));
  }
  ApplyAndServe(rd.committed_entries, rd.read_states);
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
  for (auto& [to, env] : out) transport_->Send(std::move(env));
}

void Node::ApplyAndServe(const std::vector<pb::Entry>& committed,
                         const std::vector<consensus::ReadState>& read_states) {
  ApplyCommitted(committed);
  for (const auto& rs : read_states) {
    if (!read_round_ || std::find(read_round_->request_ids.begin(), read_round_->request_ids.end(),
                                  rs.request_id) == read_round_->request_ids.end()) {
      continue;  // an earlier request of a round already served
    }
    for (auto& done : read_round_->reads) reads_to_serve_.emplace(rs.index, std::move(done));
    read_round_.reset();
  }
  ServeReads();
  AskForReadIndex();  // the reads that waited for that round
}

void Node::AskForReadIndex() {
  if (read_round_ || reads_waiting_.empty()) return;
  read_round_.emplace();
  read_round_->reads = std::move(reads_waiting_);
  reads_waiting_.clear();
  RequestReadIndex();
}

void Node::RequestReadIndex() {
  const uint64_t id = next_read_id_++;
  if (Status s = engine_->ReadIndex(id); !s.ok()) {
    std::vector<ReadCallback> reads = std::move(read_round_->reads);
    read_round_.reset();
    for (auto& done : reads) done(s);
    return;
  }
  read_round_->request_ids.push_back(id);
  read_round_->ticks_waited = 0;
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
  // may be on its way to the WAL. The WAL segments the marker frees are deleted on the
  // snapshot thread (idle by now): each deletion is an unlink and a directory fsync, which
  // took the loop 50-70 ms for a snapshot of a large store (measured), every put waiting.
  if (snapshot_written_ && !ready_in_flight_) {
    const pb::SnapshotMetadata meta = *snapshot_written_;
    snapshot_written_.reset();
    snapshotting_ = false;
    if (meta.index() > snapshot_index_) {
      storage::WalWrite marker;
      marker.snapshot = meta;
      if (wal_->AppendSync(marker).ok()) {
        snapshot_index_ = meta.index();
        JoinSnapshotThread();
        snapshot_thread_ = std::thread([this, index = meta.index()] {
          NameThisThread("synod-snapshot");
          (void)wal_->ReleaseBefore(index);
        });
      }
    }
  }
  const bool state_wanted = snapshot_state_wanted_.load(std::memory_order_relaxed);
  if (snapshotting_ ||
      (!state_wanted && state_->AppliedIndex() < snapshot_index_ + options_.snapshot_entries)) {
    return;
  }
  snapshotting_ = true;
  snapshot_state_wanted_.store(false, std::memory_order_relaxed);
  JoinSnapshotThread();
  snapshot_thread_ = std::thread([this, state_wanted] {
    NameThisThread("synod-snapshot");
    if (!state_wanted) {
      Result<LogIndex> persisted = state_->Persist();
      if (persisted.ok()) {
        Post([this, at = persisted.value()] { CompactTo(nullptr, at); });
        return;
      }
      if (persisted.status().code() != Code::kUnimplemented) {
        Post([this] { snapshotting_ = false; });  // try again later
        return;
      }
    }
    auto file = SnapshotFileWriter::Create(SnapshotDir());
    Result<LogIndex> index = file.ok() ? state_->Snapshot(*file.value()) : file.status();
    if (!index.ok()) {
      Post([this, state_wanted] {
        snapshotting_ = false;  // try again later
        if (state_wanted) snapshot_state_wanted_.store(true, std::memory_order_relaxed);
      });
      return;
    }
    Post([this, file = std::shared_ptr<SnapshotFileWriter>(std::move(file.value())),
          at = index.value()]() mutable { CompactTo(std::move(file), at); });
  });
}

void Node::CompactTo(std::shared_ptr<SnapshotFileWriter> file, LogIndex index) {
  // At the index of the snapshot held the engine only takes new data: the state of a
  // snapshot that had none, made for a member that needs it.
  if (index < snapshot_index_ || (index == snapshot_index_ && !file)) {
    snapshotting_ = false;  // a leader's snapshot came first, or nothing was applied since
    return;                 // (the file is removed with its writer)
  }
  // The engine holds the file, not the state: it reads the chunks it sends from there. Or,
  // without a file, the state machine holds the state, made when a member needs it.
  consensus::Snapshot snap;
  snap.metadata.set_index(index);
  if (file) {
    auto data = file->Data();
    if (!data.ok()) {
      snapshotting_ = false;  // try again later
      return;
    }
    snap.data = std::move(data.value());
  } else {
    snap.data = std::make_shared<const DeferredSnapshotData>(SnapshotStateWanted());
  }
  auto meta = engine_->Compact(snap);
  if (!meta.ok()) {
    snapshotting_ = false;  // e.g. not durable yet
    return;
  }
  snap.metadata = meta.value();
  JoinSnapshotThread();  // the thread that made the state durable or wrote it has finished
  snapshot_thread_ = std::thread([this, file = std::move(file), snap = std::move(snap)] {
    NameThisThread("synod-snapshot");
    Status s = file ? file->Finish(snap.metadata) : WriteSnapshotFile(SnapshotDir(), snap);
    if (!s.ok()) {
      Post([this] { snapshotting_ = false; });  // try again later
      return;
    }
    Post([this, meta = snap.metadata] { FinishSnapshot(meta); });
  });
}

void Node::FinishSnapshot(const pb::SnapshotMetadata& meta) {
  snapshot_written_ = meta;
  MaybeSnapshot();
}

void Node::JoinSnapshotThread() {
  if (snapshot_thread_.joinable()) snapshot_thread_.join();
}

}  // namespace synod::runtime
