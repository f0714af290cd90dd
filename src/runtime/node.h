// Node: the runtime that turns a pure consensus engine into a live member.
//
// It owns the threads the engine must not have, and keeps the engine's contract
// (consensus/api/engine.h) with real components:
//
//   loop thread     owns the engine: steps messages, ticks every `tick_interval`, takes
//                   proposals and reads, takes a Ready when the previous one is done,
//                   queues it on the write-ahead log (storage/wal.h: its storage thread
//                   writes and fdatasyncs, one group commit for all that queued) and
//                   meanwhile applies its committed entries (durable already) to the
//                   StateMachine, answering the proposals and reads waiting on them
//   WAL thread      tells the loop when the Ready is durable (no thread waits for it)
//   persist thread  writes a Ready that carries a snapshot from the leader: the snapshot
//                   file, then the WAL
//   then, back on the loop thread: send the Ready's messages (Transport), install its
//   snapshot if it has one (and only then apply), snapshot and compact the log every
//   `snapshot_entries`, Advance.
//
// Snapshots come in two kinds. A state machine with durable storage of its own (the
// server's RocksDB store: StateMachine::Persist) makes its state durable, and the snapshot
// is its index, membership and term alone (a file without state, DeferredSnapshotData):
// nothing is written but the storage's own flush, so a snapshot costs the members' disks
// next to nothing. Its bytes are made when a member needs them (the engine reads the
// deferred data, which asks): the state machine then writes its state into a snapshot
// file (StateMachine::Snapshot), at that index or a later one, and the engine sends that
// file. A state machine without durable storage writes that file every time.
//
// Batching is designed in: every proposal and message that arrives while a Ready is
// being persisted goes into the next one, so one fsync covers many proposals.
//
// All public methods are thread-safe. Callbacks run on the loop thread: they must be
// quick and must not call back into the Node synchronously... except through the
// public methods, which only queue work.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "consensus/api/engine.h"
#include "consensus/raft/config.h"
#include "runtime/snapshot_file.h"
#include "storage/wal.h"

namespace synod::runtime {

using consensus::LogIndex;
using consensus::NodeId;
namespace pb = ::synod::consensuspb;

// What the node applies committed entries to.
class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // Applies one committed entry (normal entries; empty ones are the leader's no-ops and
  // membership changes are applied by the engine itself, but all are passed here so the
  // state machine can record its applied index). Returns the result for the proposer.
  virtual std::string Apply(const pb::Entry& entry) = 0;
  // The index of the last entry applied (0 if none). After a restart the node replays
  // the log from its latest snapshot; entries at or below this are skipped.
  virtual LogIndex AppliedIndex() const = 0;
  // Writes a consistent copy of the state to `out`, as bytes another member's Restore
  // accepts, and returns the last entry it covers. Runs on a thread of its own,
  // concurrently with Apply: snapshots never stall the apply loop. A state machine that
  // persists its state (Persist) writes the state as of its last Persist, kept for this
  // (pinned), until the next Persist or a Restore: the state of the snapshot without state
  // the engine holds, at that snapshot's index. (Made at a later index instead, it would be
  // a newer snapshot, which the engine may not be able to take yet: Multi-Paxos refuses one
  // while a membership change is pending, and a member far behind would wait for it.)
  virtual Result<LogIndex> Snapshot(SnapshotWriter& out) = 0;
  // Replaces the whole state by a snapshot taken at `index`.
  virtual Status Restore(const consensus::SnapshotData& data, LogIndex index) = 0;
  // Makes everything applied so far durable in the state machine's own storage, and
  // returns the last entry that covers: the state then stands for a snapshot at that
  // index, and the log before it may be released without the state being written out.
  // Runs on a thread of its own, concurrently with Apply. After a restart, AppliedIndex()
  // must be at least the index returned. A state machine without durable storage of its
  // own keeps this default (kUnimplemented): its state is written into snapshot files.
  // The state Persist covers is kept readable for Snapshot (above) until the next Persist.
  virtual Result<LogIndex> Persist() {
    return Status(Code::kUnimplemented, "the state machine has no durable storage");
  }
};

// How messages leave: best effort, asynchronous, may drop (the engine retries).
class Transport {
 public:
  virtual ~Transport() = default;
  // Takes the envelope: the entries it carries are not copied again on their way out.
  virtual void Send(pb::Envelope envelope) = 0;
};

struct NodeOptions {
  NodeId id = consensus::kNoNode;
  uint64_t group_id = 1;
  std::string data_dir;                // holds wal/ and snap/
  std::vector<NodeId> initial_voters;  // a new cluster's members (ignored on restart)
  bool join_existing = false;          // a member added to a running cluster
  std::chrono::milliseconds tick_interval{100};
  // The consensus engine: "raft" or "multi-paxos". Both take their timing and bounds
  // from `raft` (election and heartbeat ticks, message and apply bounds).
  std::string engine = "raft";
  consensus::raft::Config raft;       // id and seed are filled in by the node
  uint64_t snapshot_entries = 10000;  // applied entries between two snapshots
  storage::WalOptions wal;
};

struct NodeStatus {
  consensus::EngineStatus engine;
  LogIndex applied = 0;
  storage::WalCounters wal;
};

class Node {
 public:
  using ProposeCallback = std::function<void(Result<std::string>)>;
  using ReadCallback = std::function<void(Status)>;

  // Opens the WAL and the latest snapshot, rebuilds the engine and starts the threads.
  static Status Start(NodeOptions options, StateMachine* state, Transport* transport,
                      std::unique_ptr<Node>* node);
  ~Node();  // stops the threads; whatever was acknowledged is durable already
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Replicates `data`; `done` gets the state machine's result once the entry is applied
  // here, or an error (kNotLeader, kProposalDropped, or kUnavailable "proposal lost" if
  // another leader's entry took its place).
  void Propose(std::string data, ProposeCallback done);
  // Membership change, one at a time: `done` once applied.
  void ProposeConfChange(pb::ConfChange change, ProposeCallback done);
  // Linearizable read: `done(Ok)` once the local state machine may be read.
  void ReadIndex(ReadCallback done);
  void TransferLeader(NodeId target);
  // A message from a peer.
  void Receive(pb::Envelope envelope);

  // Published every tick (and at start): may be a tick old.
  NodeStatus GetStatus() const;
  // The leader as of the latest Ready: cheap, for every request.
  NodeId Leader() const { return leader_.load(std::memory_order_relaxed); }
  NodeId id() const { return options_.id; }

 private:
  struct Pending {
    consensus::ProposalId id;
    ProposeCallback done;
  };
  struct Work;  // one item of the loop's inbox

  Node(NodeOptions options, StateMachine* state, Transport* transport);
  Status Open();
  void Loop();
  void PersistLoop();
  void Post(std::function<void()> work);
  void HandleReady();
  // On the thread that made `ready` durable (or failed to): hands it back to the loop.
  void OnDurable(const Status& durable, consensus::Ready ready);
  void FinishReady(consensus::Ready ready);
  void Send(std::vector<pb::Message> messages);
  // Applies committed entries, then serves the reads they (and earlier ones) made safe.
  void ApplyAndServe(const std::vector<pb::Entry>& committed,
                     const std::vector<consensus::ReadState>& read_states);
  void ApplyCommitted(const std::vector<pb::Entry>& entries);
  // Reads: AskForReadIndex starts a round for the reads waiting, if none is outstanding;
  // RequestReadIndex asks the engine (again) for the outstanding round.
  void AskForReadIndex();
  void RequestReadIndex();
  void ServeReads();
  // Snapshots (every snapshot_entries applied entries, and when a member needs the state
  // of one that has none yet): on the snapshot thread the state machine makes its state
  // durable (Persist) or, if it cannot or a member needs the bytes, streams its state into
  // a new snapshot file; on the loop thread the engine compacts, holding that file (not a
  // copy of the state) or a DeferredSnapshotData; on the snapshot thread the snapshot file
  // gets its metadata and is made durable; the WAL marker and log release follow on the
  // loop thread.
  void MaybeSnapshot();
  // `file` is null for a snapshot whose state the state machine holds.
  void CompactTo(std::shared_ptr<SnapshotFileWriter> file, LogIndex index);
  // What a DeferredSnapshotData calls when the engine reads it.
  std::function<void()> SnapshotStateWanted() {
    return [this] { snapshot_state_wanted_.store(true, std::memory_order_relaxed); };
  }
  void FinishSnapshot(const pb::SnapshotMetadata& meta);
  void JoinSnapshotThread();
  std::string SnapshotDir() const { return options_.data_dir + "/snap"; }
  void PublishStatus();

  NodeOptions options_;
  StateMachine* state_;
  Transport* transport_;
  std::unique_ptr<consensus::Engine> engine_;  // loop thread only
  std::unique_ptr<storage::Wal> wal_;

  // Loop thread state.
  std::map<LogIndex, Pending> proposals_;
  // Linearizable reads are coalesced, as etcd's read loop does: one read index request
  // (a "round") is outstanding at a time, and the reads that arrive meanwhile wait for
  // the next round, whose read index is taken after they arrived. One round costs the
  // same messages for one read or for a thousand. A round not answered within a tick or
  // two (a message lost, a leader change) is asked again under a new request id; the
  // first answer serves it.
  struct ReadRound {
    std::vector<uint64_t> request_ids;
    std::vector<ReadCallback> reads;
    int ticks_waited = 0;
  };
  std::vector<ReadCallback> reads_waiting_;               // not in a round yet
  std::optional<ReadRound> read_round_;                   // asked, not answered
  std::multimap<LogIndex, ReadCallback> reads_to_serve_;  // confirmed, waiting to apply
  uint64_t next_read_id_ = 1;
  bool ready_in_flight_ = false;
  LogIndex snapshot_index_ = 0;
  bool snapshotting_ = false;  // a snapshot is being taken (loop thread)
  // The engine asked for the state of a snapshot it holds without one (set where the engine
  // reads it: the loop thread).
  std::atomic<bool> snapshot_state_wanted_{false};
  // Written and durable, waiting for a moment with no Ready in flight for its WAL marker.
  std::optional<pb::SnapshotMetadata> snapshot_written_;
  std::thread snapshot_thread_;

  // Inbox.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> inbox_;
  bool stopping_ = false;
  NodeStatus status_;  // published copy, under mu_
  std::atomic<NodeId> leader_{consensus::kNoNode};

  // Persist thread (Readies with a snapshot) and the durable hard state.
  std::mutex persist_mu_;
  std::condition_variable persist_cv_;
  std::optional<consensus::Ready> to_persist_;
  // The hard state last made durable (read by the loop thread, which only does so while
  // no Ready is being persisted).
  pb::HardState durable_hard_state_;
  bool persist_stopping_ = false;

  std::thread persist_thread_;
  std::thread loop_thread_;
};

}  // namespace synod::runtime
