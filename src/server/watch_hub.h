// WatchHub: etcd's watch streams over the store's history (etcd 3.4 semantics).
//
// A client opens a stream (etcdserverpb.Watch/Watch) and creates any number of watchers on
// it; each watcher has a cursor, `next_rev`, the first revision it has not looked at. Events
// are never pushed into per-watcher buffers: the hub reads them from the store's history
// (Store::EventsSince) when the stream can take a response, so a slow client costs only its
// cursor, never memory, and never slows the apply loop or the other streams.
//
//   apply thread --Notify--> hub thread --reads--> kv::Store (history)
//                                |   one response at a time per stream
//                                v
//   gRPC threads: requests --> stream (watchers, outbox) --> Write --> OnWriteDone
//
// Threads. One hub thread does every store read and builds every event response. gRPC
// threads only queue requests and control answers. Notify (the apply thread) sets a flag
// and wakes the hub: it never waits on a read or a client.
//
// Flow control. Each stream has at most one write in flight; what waits behind it is a
// short outbox (control answers, fragments of one response), bounded: past `outbox_max`
// the stream stops reading requests until it drains. The hub builds a stream's next event
// response only when its outbox is empty and no write is in flight, so a stream holds at
// most one response of events (<= `response_bytes_max`, unless one revision alone is
// larger: a revision is never split, except into fragments for watchers that asked).
//
// The tail. Watchers that keep up read the newest events from a shared in-memory window
// (the last `tail_events_max` events, with prev_kv), filled by one store read per round,
// instead of one store read each. A watcher behind the window reads the store itself.
//
// Lifetime. The hub calls its WatchSink (the gRPC reactor) with the stream's lock held,
// and calls End exactly once, never while a write is in flight; after End it never touches
// the sink again. So a reactor whose write completes after a cancel is ended from that
// write's completion, and may be deleted (OnDone) any time after End.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include <grpcpp/support/status.h>

#include "etcd/etcdserverpb/rpc.pb.h"
#include "kv/store.h"
#include "server/require_leader.h"

namespace grpc {
class Service;
}  // namespace grpc

namespace synod::server {

struct WatchHubOptions {
  // How often a watcher created with progress_notify hears the revision when no event came
  // (etcd: 10 minutes; etcd 3.5 calls the flag --experimental-watch-progress-notify-interval).
  std::chrono::milliseconds progress_notify_interval{10 * 60 * 1000};
  // Events bytes per response; a larger revision goes alone (and whole, or in fragments).
  size_t response_bytes_max = 1 << 20;
  // Events asked of one store read for a watcher that is behind the tail.
  size_t read_events_max = 256;
  // etcd cuts fragments at --max-request-bytes (watchers created with fragment=true).
  size_t fragment_bytes_max = 1536 * 1024;
  // The shared window of recent events.
  size_t tail_events_max = 4096;
  size_t tail_bytes_max = 8 << 20;
  // Responses queued on one stream before it stops reading requests.
  size_t outbox_max = 64;
};

// Where a stream's responses go: the gRPC reactor, or a test's fake. The hub calls these
// with the stream's lock held (so they must not call back into the hub), one read and one
// write at a time; End once, after which the hub forgets the sink.
class WatchSink {
 public:
  // Reads the next request; the sink answers with WatchHub::Receive.
  virtual void Read() = 0;
  // Writes `response` (valid until the sink calls WatchHub::WriteDone).
  virtual void Write(const etcdserverpb::WatchResponse* response) = 0;
  // Ends the RPC.
  virtual void End(grpc::Status status) = 0;

 protected:
  ~WatchSink() = default;
};

// One client stream, and one watcher on it (defined in watch_hub.cc).
class WatchStream;
struct Watcher;

struct WatchHubStats {
  uint64_t streams = 0;      // open
  uint64_t watchers = 0;     // on open streams
  uint64_t store_reads = 0;  // reads by lagging watchers, since start
  uint64_t tail_reads = 0;   // reads that filled the shared tail, since start
};

class WatchHub {
 public:
  // Fills a response header as etcd does (cluster, member, term, current revision).
  using HeaderFiller = std::function<void(etcdserverpb::ResponseHeader*)>;

  // `store` must outlive the hub, or at least its Stop().
  WatchHub(const kv::Store* store, HeaderFiller fill_header, WatchHubOptions options = {});
  ~WatchHub();  // Stop()
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // The store's revision advanced (any thread; returns at once).
  void Notify(int64_t revision);

  // A new stream writing to `sink`: the hub starts reading its requests. After Stop the
  // stream is ended at once (UNAVAILABLE).
  // `require_leader`: the client asked for a leader (etcd's "hasleader" metadata): the
  // stream ends at EndStreamsRequiringLeader.
  std::shared_ptr<WatchStream> Open(WatchSink* sink, bool require_leader = false);
  // The sink's read finished: `request`, or nullptr when the client sends no more (etcd
  // keeps a half-closed stream and its watchers until the client cancels).
  void Receive(WatchStream* stream, const etcdserverpb::WatchRequest* request);
  // The sink's write finished; !ok: the stream is broken, it ends.
  void WriteDone(WatchStream* stream, bool ok);
  // The RPC is cancelled (or the server stops it): ends it as soon as no write is in flight.
  void Close(WatchStream* stream, grpc::Status status);
  // Ends, with `status`, every open stream whose client required a leader: this member
  // has had none for a while.
  void EndStreamsRequiringLeader(const grpc::Status& status);

  // Ends every stream (UNAVAILABLE, "etcdserver: server stopped") and stops the hub thread;
  // the store is not read after it returns. Idempotent.
  void Stop();

  WatchHubStats Stats() const;

 private:
  struct Round;
  struct Tail;

  void Run();
  // tail_stale: writes happened while nobody watched; the tail starts again at the head.
  Round StartRound(bool tail_stale);
  bool RefillTail(int64_t revision);
  void Tick(WatchStream& s);
  void Service(WatchStream& s, const Round& round);
  bool ServeFromTail(WatchStream& s, Watcher& w);
  bool ServeFromStore(WatchStream& s, int64_t id, std::unique_lock<std::mutex>& lock);
  void Emit(WatchStream& s, Watcher& w, std::vector<mvccpb::Event> events, int64_t header_revision);
  void Create(WatchStream& s, const etcdserverpb::WatchCreateRequest& request);
  void Cancel(WatchStream& s, int64_t watch_id);
  void CancelCompacted(WatchStream& s, int64_t watch_id);
  etcdserverpb::WatchResponse NewResponse(int64_t watch_id) const;
  // With s.mu held: starts the next write, resumes reading, or ends the stream.
  void Pump(WatchStream& s);
  void MaybeEnd(WatchStream& s);
  void MarkReady(const WatchStream& s);

  const kv::Store* const store_;
  const HeaderFiller fill_header_;
  const WatchHubOptions options_;

  // Guards the registry, the ready set and the hub thread's wake-up flags. Held briefly,
  // never while calling a sink or reading the store. Lock order: a stream's mu, then mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, std::shared_ptr<WatchStream>> streams_;  // open streams, by id
  std::set<uint64_t> ready_;                                  // streams to visit
  uint64_t next_stream_id_ = 1;
  bool revision_changed_ = false;
  bool tail_stale_ = false;  // writes came while no stream was open (Notify)
  bool again_ = false;       // the tail is behind the store: another round at once
  bool stopping_ = false;

  // The hub thread's own.
  std::unique_ptr<Tail> tail_;

  std::atomic<uint64_t> store_reads_{0};
  std::atomic<uint64_t> tail_reads_{0};
  std::thread thread_;
};

// The etcdserverpb.Watch service over `hub` (gRPC callback API: a reactor per stream).
// `has_leader` (may be null): whether the member knows a leader; a client that requires
// one (metadata "hasleader: true") is refused without (UNAVAILABLE "etcdserver: no
// leader"), as etcd does. `on_stop` runs once, before the hub stops, when the service is
// stopped or destroyed (the server unsubscribes the hub from its revision feed there).
std::unique_ptr<grpc::Service> MakeWatchService(std::shared_ptr<WatchHub> hub,
                                                std::function<bool()> has_leader,
                                                std::function<void()> on_stop);
// Ends every watch stream of a service made above (UNAVAILABLE, "server stopped"), so that
// a server shutting down does not wait for watchers to hang up. Idempotent.
void StopWatchService(grpc::Service* service);

}  // namespace synod::server
