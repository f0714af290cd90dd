#include "server/key_waiter.h"

#include <algorithm>
#include <utility>

#include "base/thread_name.h"
#include "kv/errors.h"

namespace synod::server {

std::string PrefixRangeEnd(std::string_view prefix) {
  std::string end(prefix);
  for (size_t i = end.size(); i > 0; --i) {
    if (static_cast<unsigned char>(end[i - 1]) < 0xff) {
      end[i - 1] = static_cast<char>(static_cast<unsigned char>(end[i - 1]) + 1);
      end.resize(i);
      return end;
    }
  }
  return std::string(1, '\0');
}

namespace {

bool IsEndless(const std::string& range_end) { return range_end == std::string_view("\0", 1); }

}  // namespace

// One wait or observation. The thread alone calls its methods; `closed` is the only field
// other threads touch (under KeyWaiter::mu_).
struct KeyWaiter::Sub {
  explicit Sub(std::string p) : prefix(std::move(p)), prefix_end(PrefixRangeEnd(prefix)) {}
  virtual ~Sub() = default;

  // Whether the local store has reached what the first look needs.
  virtual bool Ready(int64_t /*head*/) const { return true; }
  // The first look at the store.
  virtual void Begin(KeyWaiter& w) = 0;
  // An event under the prefix, of a revision >= `from`, in revision order.
  virtual void OnEvent(KeyWaiter& w, const kvpb::Event& event) = 0;
  // The history since `from` is gone (compacted): look at the store afresh.
  virtual void Resync(KeyWaiter& w) { Begin(w); }
  // The store cannot be read: end with `status`.
  virtual void Fail(KeyWaiter& w, Status status) = 0;

  bool Contains(std::string_view key) const { return key.starts_with(prefix); }

  uint64_t id = 0;
  const std::string prefix;
  const std::string prefix_end;
  bool rejected = false;  // over waiters_max: fails at the first look
  bool started = false;
  bool ended = false;   // ended by the thread itself
  int64_t from = 0;     // events of earlier revisions are accounted for by the last look
  bool closed = false;  // guarded by KeyWaiter::mu_
};

struct KeyWaiter::TurnSub final : Sub {
  TurnSub(std::string p, int64_t r, TurnDone d)
      : Sub(std::move(p)), revision(r), done(std::move(d)) {}

  bool Ready(int64_t head) const override { return head >= revision; }
  void Begin(KeyWaiter& w) override { Look(w); }
  void Resync(KeyWaiter& w) override { Look(w); }
  void OnEvent(KeyWaiter& w, const kvpb::Event& event) override {
    if (event.type() == kvpb::Event::DELETE && event.kv().key() == predecessor) Look(w);
  }
  void Fail(KeyWaiter& w, Status status) override { End(w, std::move(status)); }

  // etcd's waitDeletes step: the youngest key older than mine, or my turn.
  void Look(KeyWaiter& w) {
    if (revision <= 1) {  // revision 1 is the empty store: nothing is older
      End(w, Status::Ok());
      return;
    }
    kvpb::RangeRequest range;
    range.set_key(prefix);
    range.set_range_end(prefix_end);
    range.set_max_create_revision(revision - 1);
    range.set_sort_target(kvpb::RangeRequest::CREATE);
    range.set_sort_order(kvpb::RangeRequest::DESCEND);
    range.set_limit(1);
    range.set_keys_only(true);
    auto r = w.store_->Range(range);
    if (!r.ok()) {
      End(w, r.status());
      return;
    }
    if (r.value().kvs_size() == 0) {
      End(w, Status::Ok());
      return;
    }
    predecessor = r.value().kvs(0).key();
    from = r.value().header().revision() + 1;
  }

  void End(KeyWaiter& w, Status status) {
    ended = true;
    if (!w.Close(this)) return;  // cancelled meanwhile: the canceller answers
    TurnDone d = std::move(done);
    d(std::move(status));
  }

  const int64_t revision;
  TurnDone done;
  std::string predecessor;
};

// etcd's Election.observe as a state machine over the prefix's events.
struct KeyWaiter::ObserveSub final : Sub {
  ObserveSub(std::string p, LeaderUpdate u, ObserveEnd e)
      : Sub(std::move(p)), update(std::move(u)), end(std::move(e)) {}

  void Begin(KeyWaiter& w) override { Look(w); }
  void Resync(KeyWaiter& w) override { Look(w); }
  void OnEvent(KeyWaiter& w, const kvpb::Event& event) override {
    if (leader.empty()) {
      // No leader at the last look: the first put under the prefix is the next one.
      if (event.type() != kvpb::Event::PUT) return;
      leader = event.kv().key();
      from = event.kv().mod_revision() + 1;
      Post(w, event.kv(), event.kv().mod_revision());
      return;
    }
    if (event.kv().key() != leader) return;
    if (event.type() == kvpb::Event::DELETE) {
      Look(w);  // as etcd: whoever leads now, read afresh
      return;
    }
    Post(w, event.kv(), event.kv().mod_revision());  // a proclaimed value
  }
  void Fail(KeyWaiter& w, Status status) override {
    ended = true;
    if (!w.Close(this)) return;
    ObserveEnd e = std::move(end);
    e(std::move(status));
  }

  // etcd's Get(prefix, WithFirstCreate()).
  void Look(KeyWaiter& w) {
    kvpb::RangeRequest range;
    range.set_key(prefix);
    range.set_range_end(prefix_end);
    range.set_sort_target(kvpb::RangeRequest::CREATE);
    range.set_sort_order(kvpb::RangeRequest::ASCEND);
    range.set_limit(1);
    auto r = w.store_->Range(range);
    if (!r.ok()) {
      Fail(w, r.status());
      return;
    }
    const int64_t revision = r.value().header().revision();
    from = revision + 1;
    if (r.value().kvs_size() == 0) {
      leader.clear();
      return;
    }
    leader = r.value().kvs(0).key();
    Post(w, r.value().kvs(0), revision);
  }

  void Post(KeyWaiter& w, const kvpb::KeyValue& kv, int64_t revision) {
    {
      std::lock_guard lock(w.mu_);
      if (closed) return;
    }
    update(kv, revision);
  }

  LeaderUpdate update;
  ObserveEnd end;
  std::string leader;  // empty: no leader at the last look (keys are never empty)
};

KeyWaiter::KeyWaiter(const kv::Store* store, KeyWaiterOptions options)
    : store_(store), options_(options) {
  thread_ = std::thread([this] {
    NameThisThread("synod-key-wait");
    Loop();
  });
}

KeyWaiter::~KeyWaiter() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void KeyWaiter::Notify() {
  {
    std::lock_guard lock(mu_);
    // With nobody waiting there is nothing to move on, and no reason to wake the thread
    // for every write: a new waiter begins from the store as it is then (Step).
    if (active_.empty() && incoming_.empty()) return;
    notified_ = true;
  }
  cv_.notify_one();
}

uint64_t KeyWaiter::WaitTurn(std::string prefix, int64_t revision, TurnDone done) {
  return Add(std::make_shared<TurnSub>(std::move(prefix), revision, std::move(done)));
}

uint64_t KeyWaiter::Observe(std::string prefix, LeaderUpdate update, ObserveEnd end) {
  return Add(std::make_shared<ObserveSub>(std::move(prefix), std::move(update), std::move(end)));
}

uint64_t KeyWaiter::Add(std::shared_ptr<Sub> sub) {
  std::lock_guard lock(mu_);
  sub->id = next_id_++;
  // Over the bound the sub still gets an id, and fails on the thread: callbacks never run
  // inside the call that registers them.
  sub->rejected = subs_.size() >= options_.waiters_max;
  subs_[sub->id] = sub;
  incoming_.push_back(sub);
  cv_.notify_one();
  return sub->id;
}

bool KeyWaiter::Cancel(uint64_t id) {
  std::lock_guard lock(mu_);
  auto it = subs_.find(id);
  if (it == subs_.end()) return false;
  it->second->closed = true;
  subs_.erase(it);
  return true;
}

bool KeyWaiter::Close(Sub* sub) {
  std::lock_guard lock(mu_);
  if (sub->closed) return false;
  sub->closed = true;
  subs_.erase(sub->id);
  return true;
}

size_t KeyWaiter::size() const {
  std::lock_guard lock(mu_);
  return subs_.size();
}

void KeyWaiter::Loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || notified_ || !incoming_.empty(); });
    if (stopping_) return;
    notified_ = false;
    for (auto& sub : incoming_) active_.push_back(std::move(sub));
    incoming_.clear();
    std::erase_if(active_, [](const std::shared_ptr<Sub>& s) { return s->closed; });
    lock.unlock();
    Step();
    lock.lock();
  }
}

void KeyWaiter::Step() {
  const int64_t head = store_->Revision();
  const bool any_started = std::any_of(active_.begin(), active_.end(),
                                       [](const auto& s) { return s->started && !s->ended; });
  // With nobody following the history, there is nothing to catch up on: a first look reads
  // the store at `head` or later, so following it from head + 1 misses nothing.
  if (!any_started) cursor_ = head + 1;
  for (auto& sub : active_) {
    if (sub->started || sub->ended) continue;
    if (sub->rejected) {
      sub->Fail(*this, Status(Code::kUnavailable, "synod: too many lock and election waiters"));
      continue;
    }
    if (!sub->Ready(head)) continue;
    sub->started = true;
    sub->Begin(*this);
  }
  Pump(head);
}

// Reads the events of revisions [cursor_, head] under the prefixes being followed, slice by
// slice, and hands each to the subs it concerns.
void KeyWaiter::Pump(int64_t head) {
  std::vector<Sub*> following;
  for (auto& sub : active_) {
    if (sub->started && !sub->ended) following.push_back(sub.get());
  }
  if (following.empty()) {
    cursor_ = head + 1;
    return;
  }
  // One scan of the revision index covers every prefix: from the lowest prefix to the
  // highest end.
  std::string low = following[0]->prefix;
  std::string high = following[0]->prefix_end;
  for (Sub* sub : following) {
    low = std::min(low, sub->prefix);
    if (IsEndless(sub->prefix_end) || IsEndless(high)) {
      high = std::string(1, '\0');
    } else {
      high = std::max(high, sub->prefix_end);
    }
  }
  while (cursor_ <= head) {
    auto r = store_->EventsSince(cursor_, low, high, /*prev_kv=*/false, options_.events_per_slice);
    if (!r.ok()) {
      if (r.status().message() == kv::msg::kCompacted) {
        // Fell behind a compaction: events are lost, so everyone looks again.
        cursor_ = head + 1;
        for (Sub* sub : following) {
          if (!sub->ended) sub->Resync(*this);
        }
      } else {
        for (Sub* sub : following) {
          if (!sub->ended) sub->Fail(*this, r.status());
        }
      }
      return;
    }
    for (const kvpb::Event& event : r.value().events) {
      for (Sub* sub : following) {
        if (sub->ended || event.kv().mod_revision() < sub->from) continue;
        if (sub->Contains(event.kv().key())) sub->OnEvent(*this, event);
      }
    }
    if (r.value().next_revision <= cursor_) return;  // no progress: try again on the next wake
    cursor_ = r.value().next_revision;
  }
}

}  // namespace synod::server
