#include "server/watch_hub.h"

#include <algorithm>
#include <limits>
#include <string_view>
#include <utility>
#include <vector>

#include <google/protobuf/io/coded_stream.h>
#include <grpcpp/grpcpp.h>

#include "base/assert.h"
#include "base/thread_name.h"
#include "etcd/etcdserverpb/rpc.grpc.pb.h"
#include "kv/errors.h"
#include "server/log.h"

namespace synod::server {

using etcdserverpb::WatchCreateRequest;
using etcdserverpb::WatchRequest;
using etcdserverpb::WatchResponse;

namespace {

using Clock = std::chrono::steady_clock;

// etcd's texts (mvcc/watcher.go, etcdserver/api/v3rpc/rpctypes).
constexpr char kDuplicateId[] = "mvcc: duplicate watch ID provided on the WatchStream";
constexpr char kEmptyRange[] = "mvcc: watcher range is empty";
constexpr char kStopped[] = "etcdserver: server stopped";
// The watch_id of a failed create and of the answer to a progress request (etcd's -1: it
// concerns no watcher, or all of them).
constexpr int64_t kNoWatchId = -1;
const std::string_view kFromKey("\0", 1);

grpc::Status Stopped() { return grpc::Status(grpc::StatusCode::UNAVAILABLE, kStopped); }

// What `event` adds to a WatchResponse: the tag of field 11, the length, the message.
size_t WireBytes(const mvccpb::Event& event) {
  const size_t n = event.ByteSizeLong();
  return 1 + google::protobuf::io::CodedOutputStream::VarintSize64(n) + n;
}

// synod's kvpb::Event and etcd's mvccpb::Event are the same bytes (proto/synod/kv.proto).
mvccpb::Event ToMvcc(const kvpb::Event& event) {
  mvccpb::Event out;
  const bool parsed = out.ParseFromString(event.SerializeAsString());
  SYNOD_ASSERT(parsed, "kvpb::Event and mvccpb::Event share one wire format");
  return out;
}

bool IsCompacted(const Status& status) { return status.message() == kv::msg::kCompacted; }

}  // namespace

// ---------------------------------------------------------------------------------
// State

// One watcher: what it watches and how far it has read. Guarded by its stream's mu.
struct Watcher {
  int64_t id = 0;
  uint64_t serial = 0;  // tells a watcher from a later one created with the same id
  // As the store takes them: range_end "" is the single key, "\0" every key >= key.
  std::string key;
  std::string range_end;
  bool prev_kv = false;
  bool no_put = false;
  bool no_delete = false;
  bool progress_notify = false;
  bool fragment = false;
  // The first revision whose events this watcher has not looked at. Only the hub thread
  // moves it, and only forward: events go out in revision order, each once.
  int64_t next_rev = 0;
  // The revision its `created` answer carried: no progress answer may claim less.
  int64_t created_rev = 0;
  bool events_since_tick = false;  // progress_notify: events went out since the last tick
  bool progress_due = false;       // progress_notify: a progress answer is owed

  bool Matches(bool is_put, const std::string& k) const {
    if (is_put ? no_put : no_delete) return false;
    if (range_end.empty()) return k == key;
    return k >= key && (range_end == kFromKey || k < range_end);
  }
};

class WatchStream {
 public:
  std::mutex mu;  // guards everything below, and every call to `sink`
  uint64_t id = 0;
  WatchSink* sink = nullptr;    // null once ended
  bool closing = false;         // cancelled, broken or stopped: end when no write is in flight
  bool ended = false;           // sink->End was called
  bool require_leader = false;  // ended when the member has long had no leader
  grpc::Status end_status;
  bool write_in_flight = false;
  bool read_paused = false;  // the outbox is full: the next read waits for it to drain
  // Responses waiting for the wire, in order (control answers, fragments, one event
  // response). Bounded: requests stop being read at outbox_max, and the hub builds event
  // responses only into an empty outbox.
  std::deque<WatchResponse> outbox;
  WatchResponse writing;  // the write in flight
  std::map<int64_t, Watcher> watchers;
  int64_t next_watch_id = 0;  // etcd: server-picked ids count from 0, skipping used ones
  uint64_t next_serial = 1;
  int64_t cursor = std::numeric_limits<int64_t>::min();  // the watcher served last
  // A progress request waits until every watcher has seen this revision (the store's when
  // the request came): the answer then says where the stream is, never an older place.
  bool progress_requested = false;
  int64_t progress_min_rev = 0;
};

// The shared window of recent events, all keys, with prev_kv. The hub thread's own.
struct WatchHub::Tail {
  struct Entry {
    int64_t revision;
    size_t bytes;
    mvccpb::Event event;
  };
  std::deque<Entry> events;
  // Every event of every revision in [first_rev, next_rev) is in `events`.
  int64_t first_rev = 0;
  int64_t next_rev = 0;
  size_t bytes = 0;

  void Reset(int64_t revision) {
    events.clear();
    bytes = 0;
    first_rev = next_rev = revision;
  }
};

// What the hub thread knows at the start of a round.
struct WatchHub::Round {
  int64_t compact_revision = 0;
  // Every event up to here is in the tail or before it: a watcher whose next_rev is above
  // it has nothing to send; the revision progress answers carry.
  int64_t frontier = 0;
  bool tail_behind = false;  // the store has revisions the tail has not read yet
};

// ---------------------------------------------------------------------------------
// The hub thread

WatchHub::WatchHub(const kv::Store* store, HeaderFiller fill_header, WatchHubOptions options)
    : store_(store),
      fill_header_(std::move(fill_header)),
      options_(options),
      tail_(std::make_unique<Tail>()) {
  tail_->Reset(store_->Revision() + 1);
  thread_ = std::thread([this] {
    NameThisThread("synod-watch-hub");
    Run();
  });
}

WatchHub::~WatchHub() { Stop(); }

void WatchHub::Notify(int64_t /*revision*/) {
  {
    std::lock_guard lock(mu_);
    if (streams_.empty()) {
      // Nobody watches: the thread sleeps through the writes, and the tail starts again
      // at the next round (a watcher older than that reads the store, as any behind it).
      tail_stale_ = true;
      return;
    }
    revision_changed_ = true;
  }
  cv_.notify_one();
}

void WatchHub::Run() {
  auto next_tick = Clock::now() + options_.progress_notify_interval;
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait_until(lock, next_tick,
                   [&] { return stopping_ || revision_changed_ || again_ || !ready_.empty(); });
    if (stopping_) return;
    const bool tick = Clock::now() >= next_tick;
    if (tick) next_tick = Clock::now() + options_.progress_notify_interval;
    // A new revision (or a tick) concerns every stream; otherwise only those that asked:
    // a write finished, a request came, a visit was cut short.
    const bool every_stream = tick || revision_changed_ || again_;
    revision_changed_ = again_ = false;
    std::vector<std::shared_ptr<WatchStream>> work;
    if (every_stream) {
      for (const auto& [id, s] : streams_) work.push_back(s);
    } else {
      for (uint64_t id : ready_) {
        if (auto it = streams_.find(id); it != streams_.end()) work.push_back(it->second);
      }
    }
    ready_.clear();
    const bool tail_stale = std::exchange(tail_stale_, false);
    lock.unlock();

    const Round round = StartRound(tail_stale);
    for (const auto& s : work) {
      if (tick) Tick(*s);
      Service(*s, round);
    }
    work.clear();  // a stream may end here: not under mu_

    lock.lock();
    if (round.tail_behind) again_ = true;
  }
}

WatchHub::Round WatchHub::StartRound(bool tail_stale) {
  Round round;
  const int64_t revision = store_->Revision();
  round.compact_revision = store_->CompactRevision();
  if (tail_stale) tail_->Reset(revision + 1);
  round.tail_behind = RefillTail(revision);
  round.frontier = tail_->next_rev - 1;
  return round;
}

// Reads the store's newest events into the tail, at most a tail's worth per round (so
// that a burst does not hold the streams up); true if the tail is still behind.
bool WatchHub::RefillTail(int64_t revision) {
  Tail& t = *tail_;
  size_t budget = options_.tail_events_max;
  while (t.next_rev <= revision && budget > 0) {
    tail_reads_.fetch_add(1, std::memory_order_relaxed);
    auto read = store_->EventsSince(t.next_rev, std::string_view(), kFromKey, /*prev_kv=*/true,
                                    std::min<size_t>(budget, 1024));
    if (!read.ok()) {
      if (IsCompacted(read.status())) {
        // The hub fell behind a compaction (or a snapshot replaced the store): restart at
        // the oldest revision left; watchers below it are cancelled as compacted.
        t.Reset(std::max(store_->CompactRevision(), t.next_rev + 1));
        continue;
      }
      LogWarn("watch: reading the history failed: " + read.status().ToString());
      // Watchers below the new start read the store themselves and hear the error.
      t.Reset(revision + 1);
      return false;
    }
    kv::WatchEvents& got = read.value();
    for (const kvpb::Event& e : got.events) {
      Tail::Entry entry{e.kv().mod_revision(), 0, ToMvcc(e)};
      entry.bytes = WireBytes(entry.event);
      t.bytes += entry.bytes;
      t.events.push_back(std::move(entry));
    }
    budget -= std::min(budget, got.events.size());
    if (got.next_revision <= t.next_rev) break;  // nothing new after all
    t.next_rev = got.next_revision;
    // Keep the window bounded, dropping whole revisions from the front.
    while (!t.events.empty() &&
           (t.events.size() > options_.tail_events_max || t.bytes > options_.tail_bytes_max)) {
      const int64_t oldest = t.events.front().revision;
      while (!t.events.empty() && t.events.front().revision == oldest) {
        t.bytes -= t.events.front().bytes;
        t.events.pop_front();
      }
      t.first_rev = oldest + 1;
    }
  }
  return t.next_rev <= revision;
}

// etcd's progress ticker: a progress_notify watcher that got no event since the last tick
// is owed a progress answer.
void WatchHub::Tick(WatchStream& s) {
  std::lock_guard lock(s.mu);
  for (auto& [id, w] : s.watchers) {
    if (!w.progress_notify) continue;
    if (w.events_since_tick) {
      w.events_since_tick = false;
    } else {
      w.progress_due = true;
    }
  }
}

// Sends the stream's next response, if it can take one: the outbox first, then events of
// its watchers in turn, then progress answers once every watcher is at the frontier.
void WatchHub::Service(WatchStream& s, const Round& round) {
  std::unique_lock lock(s.mu);
  bool read_store = false;
  while (true) {
    if (s.ended || s.closing) return;
    if (s.write_in_flight || !s.outbox.empty()) {
      Pump(s);
      return;  // the write's completion brings the stream back
    }
    // The next watcher (after the one served last) with events up to the frontier.
    Watcher* next = nullptr;
    auto pending = [&](auto begin, auto end) {
      for (auto it = begin; it != end && next == nullptr; ++it) {
        if (it->second.next_rev <= round.frontier) next = &it->second;
      }
    };
    const auto after = s.watchers.upper_bound(s.cursor);
    pending(after, s.watchers.end());
    pending(s.watchers.begin(), after);
    if (next == nullptr) break;
    Watcher& w = *next;
    s.cursor = w.id;
    if (w.next_rev < round.compact_revision) {
      CancelCompacted(s, w.id);
    } else if (w.next_rev >= tail_->first_rev) {
      ServeFromTail(s, w);
    } else if (read_store) {
      MarkReady(s);  // one store read per visit: the other streams' turn
      return;
    } else {
      read_store = true;
      ServeFromStore(s, w.id, lock);
    }
  }

  // Every watcher has seen everything up to the frontier.
  const int64_t progress = round.frontier;
  if (s.progress_requested && progress >= s.progress_min_rev) {
    s.progress_requested = false;
    WatchResponse r = NewResponse(kNoWatchId);
    r.mutable_header()->set_revision(progress);
    s.outbox.push_back(std::move(r));
  }
  for (auto& [id, w] : s.watchers) {
    if (!w.progress_due || progress < w.created_rev) continue;
    w.progress_due = false;
    WatchResponse r = NewResponse(id);
    r.mutable_header()->set_revision(progress);
    s.outbox.push_back(std::move(r));
  }
  Pump(s);
}

// The watcher's events from the tail, up to a response's worth.
bool WatchHub::ServeFromTail(WatchStream& s, Watcher& w) {
  const Tail& t = *tail_;
  auto it = std::partition_point(t.events.begin(), t.events.end(),
                                 [&](const Tail::Entry& e) { return e.revision < w.next_rev; });
  std::vector<mvccpb::Event> events;
  size_t bytes = 0;
  int64_t last = 0;
  int64_t next_rev = t.next_rev;
  for (; it != t.events.end(); ++it) {
    if (!w.Matches(it->event.type() == mvccpb::Event::PUT, it->event.kv().key())) continue;
    if (!events.empty() && it->revision != last &&
        bytes + it->bytes > options_.response_bytes_max) {
      next_rev = it->revision;  // the rest next time; a revision is never split
      break;
    }
    events.push_back(it->event);
    if (!w.prev_kv) events.back().clear_prev_kv();
    bytes += it->bytes;
    last = it->revision;
  }
  w.next_rev = next_rev;
  if (events.empty()) return false;
  Emit(s, w, std::move(events), next_rev - 1);
  return true;
}

// The watcher's events from the store's history (it is behind the tail). The store is
// read without the stream's lock: the watcher may be cancelled meanwhile.
bool WatchHub::ServeFromStore(WatchStream& s, int64_t id, std::unique_lock<std::mutex>& lock) {
  const Watcher& before = s.watchers.at(id);
  const uint64_t serial = before.serial;
  const int64_t from = before.next_rev;
  const std::string key = before.key;
  const std::string range_end = before.range_end;
  const bool prev_kv = before.prev_kv;
  lock.unlock();
  store_reads_.fetch_add(1, std::memory_order_relaxed);
  auto read = store_->EventsSince(from, key, range_end, prev_kv, options_.read_events_max);
  lock.lock();

  if (s.ended || s.closing) return false;
  auto found = s.watchers.find(id);
  if (found == s.watchers.end() || found->second.serial != serial) return false;
  Watcher& w = found->second;
  SYNOD_ASSERT(w.next_rev == from, "only the hub thread moves a watcher's cursor");
  if (!read.ok()) {
    if (IsCompacted(read.status())) {
      CancelCompacted(s, id);
    } else {
      LogWarn("watch: reading the history failed: " + read.status().ToString());
      WatchResponse r = NewResponse(id);
      r.set_canceled(true);
      r.set_cancel_reason(read.status().message());
      s.outbox.push_back(std::move(r));
      s.watchers.erase(found);
    }
    return true;
  }
  std::vector<mvccpb::Event> events;
  size_t bytes = 0;
  int64_t last = 0;
  int64_t next_rev = read.value().next_revision;
  for (const kvpb::Event& e : read.value().events) {
    if (!w.Matches(e.type() == kvpb::Event::PUT, e.kv().key())) continue;
    mvccpb::Event event = ToMvcc(e);
    const size_t event_bytes = WireBytes(event);
    const int64_t revision = e.kv().mod_revision();
    if (!events.empty() && revision != last && bytes + event_bytes > options_.response_bytes_max) {
      next_rev = revision;
      break;
    }
    events.push_back(std::move(event));
    bytes += event_bytes;
    last = revision;
  }
  w.next_rev = next_rev;
  if (events.empty()) return false;
  Emit(s, w, std::move(events), next_rev - 1);
  return true;
}

// Queues `events` for watcher `w` as one response, or as fragments if the watcher asked
// for them and the response is too large (etcd's sendFragments). The header's revision is
// the revision the watcher has now seen everything up to: the last event's revision when
// it keeps up, the store's revision when it catches up (as etcd).
void WatchHub::Emit(WatchStream& s, Watcher& w, std::vector<mvccpb::Event> events,
                    int64_t header_revision) {
  w.events_since_tick = true;
  w.progress_due = false;
  WatchResponse base = NewResponse(w.id);
  base.mutable_header()->set_revision(header_revision);

  std::vector<size_t> sizes;
  size_t total = base.ByteSizeLong();
  if (w.fragment) {
    for (const auto& e : events) total += sizes.emplace_back(WireBytes(e));
  }
  if (!w.fragment || total < options_.fragment_bytes_max || events.size() < 2) {
    for (auto& e : events) *base.add_events() = std::move(e);
    s.outbox.push_back(std::move(base));
    return;
  }
  base.set_fragment(true);
  const size_t base_bytes = base.ByteSizeLong();
  size_t i = 0;
  while (i < events.size()) {
    WatchResponse part = base;
    size_t bytes = base_bytes;
    // At least one event per fragment; more while the fragment stays under the bound.
    while (i < events.size() &&
           (part.events_size() == 0 || bytes + sizes[i] < options_.fragment_bytes_max)) {
      bytes += sizes[i];
      *part.add_events() = std::move(events[i++]);
    }
    if (i == events.size()) part.set_fragment(false);  // the last fragment
    s.outbox.push_back(std::move(part));
  }
}

// ---------------------------------------------------------------------------------
// Requests (gRPC threads)

void WatchHub::Create(WatchStream& s, const WatchCreateRequest& request) {
  Watcher w;
  // etcd: an empty key is "\0", the smallest key.
  w.key = request.key().empty() ? std::string(kFromKey) : request.key();
  w.range_end = request.range_end();
  if (!w.range_end.empty() && w.range_end != kFromKey && w.key >= w.range_end) {
    WatchResponse r = NewResponse(kNoWatchId);
    r.set_created(true);
    r.set_canceled(true);
    r.set_cancel_reason(kEmptyRange);
    s.outbox.push_back(std::move(r));
    return;
  }
  int64_t id = request.watch_id();
  if (id == 0) {  // etcd's AutoWatchID: the server picks
    while (s.watchers.count(s.next_watch_id) > 0) s.next_watch_id++;
    id = s.next_watch_id++;
  } else if (s.watchers.count(id) > 0) {
    WatchResponse r = NewResponse(kNoWatchId);
    r.set_created(true);
    r.set_canceled(true);
    r.set_cancel_reason(kDuplicateId);
    s.outbox.push_back(std::move(r));
    return;
  }
  const int64_t revision = store_->Revision();
  w.id = id;
  w.serial = s.next_serial++;
  w.prev_kv = request.prev_kv();
  w.progress_notify = request.progress_notify();
  w.fragment = request.fragment();
  for (int f : request.filters()) {
    if (f == WatchCreateRequest::NOPUT) w.no_put = true;
    if (f == WatchCreateRequest::NODELETE) w.no_delete = true;
  }
  // 0: only what comes after now. A start below the compaction revision is accepted, and
  // cancelled with compact_revision by the hub right after `created`, as etcd does.
  w.next_rev = request.start_revision() == 0 ? revision + 1 : request.start_revision();
  w.created_rev = revision;

  WatchResponse r = NewResponse(id);
  r.mutable_header()->set_revision(revision);
  r.set_created(true);
  s.outbox.push_back(std::move(r));
  s.watchers.emplace(id, std::move(w));
  MarkReady(s);
}

void WatchHub::Cancel(WatchStream& s, int64_t watch_id) {
  auto it = s.watchers.find(watch_id);
  if (it == s.watchers.end()) return;  // etcd answers nothing
  s.watchers.erase(it);
  WatchResponse r = NewResponse(watch_id);
  r.set_canceled(true);
  s.outbox.push_back(std::move(r));
}

void WatchHub::CancelCompacted(WatchStream& s, int64_t watch_id) {
  s.watchers.erase(watch_id);
  WatchResponse r = NewResponse(watch_id);
  r.mutable_header()->set_revision(0);  // etcd's compaction answer carries revision 0
  r.set_canceled(true);
  r.set_compact_revision(store_->CompactRevision());
  s.outbox.push_back(std::move(r));
}

WatchResponse WatchHub::NewResponse(int64_t watch_id) const {
  WatchResponse r;
  fill_header_(r.mutable_header());
  r.set_watch_id(watch_id);
  return r;
}

// ---------------------------------------------------------------------------------
// Streams

std::shared_ptr<WatchStream> WatchHub::Open(WatchSink* sink, bool require_leader) {
  auto s = std::make_shared<WatchStream>();
  s->sink = sink;
  s->require_leader = require_leader;
  bool stopped;
  {
    std::lock_guard lock(mu_);
    stopped = stopping_;
    if (!stopped) {
      s->id = next_stream_id_++;
      streams_.emplace(s->id, s);
    }
  }
  std::lock_guard lock(s->mu);
  if (stopped) {
    s->closing = true;
    s->end_status = Stopped();
    MaybeEnd(*s);
  } else {
    sink->Read();
  }
  return s;
}

void WatchHub::Receive(WatchStream* stream, const WatchRequest* request) {
  WatchStream& s = *stream;
  std::lock_guard lock(s.mu);
  if (s.ended || s.closing) return;
  // No more requests: etcd keeps serving a half-closed stream until the client cancels.
  if (request == nullptr) return;
  switch (request->request_union_case()) {
    case WatchRequest::kCreateRequest:
      Create(s, request->create_request());
      break;
    case WatchRequest::kCancelRequest:
      Cancel(s, request->cancel_request().watch_id());
      break;
    case WatchRequest::kProgressRequest:
      s.progress_requested = true;
      s.progress_min_rev = std::max(s.progress_min_rev, store_->Revision());
      MarkReady(s);
      break;
    case WatchRequest::REQUEST_UNION_NOT_SET:
      break;  // etcd ignores what it does not know
  }
  Pump(s);
  if (s.outbox.size() >= options_.outbox_max) {
    s.read_paused = true;  // Pump reads again once the client takes its answers
  } else {
    s.sink->Read();
  }
}

void WatchHub::WriteDone(WatchStream* stream, bool ok) {
  WatchStream& s = *stream;
  std::lock_guard lock(s.mu);
  SYNOD_ASSERT(s.write_in_flight, "a write completes only once, after it was started");
  s.write_in_flight = false;
  if (!ok && !s.closing) {
    s.closing = true;
    s.end_status = grpc::Status(grpc::StatusCode::CANCELLED, "the watch stream is broken");
  }
  if (s.closing) {
    MaybeEnd(s);
    return;
  }
  Pump(s);
  if (!s.write_in_flight) MarkReady(s);  // the hub may have events for it
}

void WatchHub::Close(WatchStream* stream, grpc::Status status) {
  WatchStream& s = *stream;
  std::lock_guard lock(s.mu);
  if (s.ended) return;
  if (!s.closing) {
    s.closing = true;
    s.end_status = std::move(status);
  }
  MaybeEnd(s);
}

void WatchHub::Pump(WatchStream& s) {
  if (s.ended || s.closing) return;
  if (!s.write_in_flight && !s.outbox.empty()) {
    s.writing = std::move(s.outbox.front());
    s.outbox.pop_front();
    s.write_in_flight = true;
    s.sink->Write(&s.writing);
  }
  if (s.read_paused && s.outbox.size() < options_.outbox_max) {
    s.read_paused = false;
    s.sink->Read();
  }
}

// Ends the stream once it is closing and its write (if any) has completed: then nothing
// of the RPC is in flight but possibly a read, which End completes.
void WatchHub::MaybeEnd(WatchStream& s) {
  if (!s.closing || s.write_in_flight || s.ended) return;
  s.ended = true;
  s.outbox.clear();
  s.watchers.clear();
  WatchSink* sink = std::exchange(s.sink, nullptr);
  sink->End(s.end_status);
  std::lock_guard lock(mu_);
  streams_.erase(s.id);
  ready_.erase(s.id);
}

void WatchHub::MarkReady(const WatchStream& s) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || streams_.count(s.id) == 0) return;
    ready_.insert(s.id);
  }
  cv_.notify_one();
}

void WatchHub::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  std::vector<std::shared_ptr<WatchStream>> open;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, s] : streams_) open.push_back(s);
  }
  for (const auto& s : open) Close(s.get(), Stopped());
}

void WatchHub::EndStreamsRequiringLeader(const grpc::Status& status) {
  std::vector<std::shared_ptr<WatchStream>> open;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, s] : streams_) open.push_back(s);
  }
  // require_leader never changes after Open: read without the stream's lock.
  for (const auto& s : open) {
    if (s->require_leader) Close(s.get(), status);
  }
}

WatchHubStats WatchHub::Stats() const {
  WatchHubStats stats;
  std::vector<std::shared_ptr<WatchStream>> open;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, s] : streams_) open.push_back(s);
  }
  stats.streams = open.size();
  for (const auto& s : open) {
    std::lock_guard lock(s->mu);
    stats.watchers += s->watchers.size();
  }
  stats.store_reads = store_reads_.load(std::memory_order_relaxed);
  stats.tail_reads = tail_reads_.load(std::memory_order_relaxed);
  return stats;
}

// ---------------------------------------------------------------------------------
// The gRPC service

namespace {

// One Watch RPC. Every operation goes through the hub, which calls back (Read, Write,
// End) under the stream's lock and never after End; gRPC calls OnDone after End and after
// every started operation completed, so deleting the reactor there is safe, and the
// stream's state (owned with the hub) outlives any late hub visit.
class WatchReactor final : public grpc::ServerBidiReactor<WatchRequest, WatchResponse>,
                           public WatchSink {
 public:
  WatchReactor(std::shared_ptr<WatchHub> hub, bool require_leader) : hub_(std::move(hub)) {
    // gRPC holds operations started before the reactor is bound (this constructor), so
    // no callback can run before stream_ is set.
    stream_ = hub_->Open(this, require_leader);
  }

  void OnReadDone(bool ok) override { hub_->Receive(stream_.get(), ok ? &request_ : nullptr); }
  void OnWriteDone(bool ok) override { hub_->WriteDone(stream_.get(), ok); }
  void OnCancel() override {
    hub_->Close(stream_.get(), grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }
  void OnDone() override { delete this; }

  // WatchSink
  void Read() override { StartRead(&request_); }
  void Write(const WatchResponse* response) override { StartWrite(response); }
  void End(grpc::Status status) override { Finish(std::move(status)); }

 private:
  const std::shared_ptr<WatchHub> hub_;
  std::shared_ptr<WatchStream> stream_;
  WatchRequest request_;
};

// A stream refused before it starts (etcd: no leader while the client requires one).
class WatchService final : public etcdserverpb::Watch::CallbackService {
 public:
  WatchService(std::shared_ptr<WatchHub> hub, std::function<bool()> has_leader,
               std::function<void()> on_stop)
      : hub_(std::move(hub)), has_leader_(std::move(has_leader)), on_stop_(std::move(on_stop)) {}
  ~WatchService() override { Stop(); }

  grpc::ServerBidiReactor<WatchRequest, WatchResponse>* Watch(
      grpc::CallbackServerContext* context) override {
    // etcd's clients (etcdctl watch among them) ask to be told when the member they
    // watch through is cut off from the cluster.
    const bool require_leader = RequiresLeader(*context);
    if (require_leader && has_leader_ && !has_leader_()) {
      return new RefusedStream<WatchRequest, WatchResponse>(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, kStreamNoLeader));
    }
    return new WatchReactor(hub_, require_leader);
  }

  void Stop() {
    std::call_once(stopped_, [&] {
      if (on_stop_) on_stop_();
      hub_->Stop();
    });
  }

 private:
  const std::shared_ptr<WatchHub> hub_;
  const std::function<bool()> has_leader_;  // null: never refuse
  const std::function<void()> on_stop_;
  std::once_flag stopped_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeWatchService(std::shared_ptr<WatchHub> hub,
                                                std::function<bool()> has_leader,
                                                std::function<void()> on_stop) {
  return std::make_unique<WatchService>(std::move(hub), std::move(has_leader), std::move(on_stop));
}

void StopWatchService(grpc::Service* service) {
  if (auto* watch = dynamic_cast<WatchService*>(service)) watch->Stop();
}

}  // namespace synod::server
