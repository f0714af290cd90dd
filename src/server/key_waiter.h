// KeyWaiter: the waiting half of etcd's concurrency recipes (Mutex.Lock, Election.Campaign,
// Election.Observe), served without a thread per waiter.
//
// etcd's v3lock and v3election services run clientv3/concurrency inside the server: each
// waiter is a goroutine blocked on a watch. Here one thread follows the store's history for
// every waiter: the services call Notify() when the revision advances (from a RevisionFeed
// listener, which must return at once), the thread reads the events of the prefixes that
// have waiters (Store::EventsSince, one scan per wake-up, however many waiters) and moves
// each waiter on. Callbacks run on that thread and must not block: they hand their next step
// to the server (Serve, LeaseTimeToLive), which answers on other threads.
//
// Reads here are of the local store, which may lag the leader. That is safe for the two
// questions asked: "is any key under the prefix older than mine?" only ever turns from yes
// to no (a new key is always younger), so a no is final once the local store has reached
// my key's revision; and an observer has asked for a read barrier before it starts. The
// lock service still confirms a grant with a linearizable read (docs/locks.md).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/status.h"
#include "kv/store.h"
#include "synod/kv.pb.h"

namespace synod::server {

// etcd's clientv3.GetPrefixRangeEnd: the end of the range of keys that start with `prefix`
// ("\0", every key from `prefix` on, when no such end exists).
std::string PrefixRangeEnd(std::string_view prefix);

struct KeyWaiterOptions {
  // Waits and observations at once; past it, a new one fails at once (kUnavailable).
  size_t waiters_max = 100000;
  // Events read per slice of history (a revision is never split).
  size_t events_per_slice = 1000;
};

class KeyWaiter {
 public:
  explicit KeyWaiter(const kv::Store* store, KeyWaiterOptions options = {});
  // Stops the thread. Callbacks of waits still pending are dropped without being called:
  // destroy a KeyWaiter only once the RPCs that wait on it are finished.
  ~KeyWaiter();
  KeyWaiter(const KeyWaiter&) = delete;
  KeyWaiter& operator=(const KeyWaiter&) = delete;

  // The store's revision advanced (any thread; returns at once).
  void Notify();

  using TurnDone = std::function<void(Status)>;
  // etcd's waitDeletes(prefix, revision - 1): calls `done` once, when the local store has
  // reached `revision` and holds no key under `prefix` created before `revision` — the key
  // created at `revision` is then the oldest under the prefix. Like etcd, it waits for the
  // deletion of the youngest older key, then looks again, so a delete wakes one waiter, not
  // all. `done` gets an error if the store cannot be read (or too many wait).
  uint64_t WaitTurn(std::string prefix, int64_t revision, TurnDone done);

  using LeaderUpdate = std::function<void(const kvpb::KeyValue& kv, int64_t revision)>;
  using ObserveEnd = std::function<void(Status)>;
  // etcd's Election.Observe: posts the leader under `prefix` (the key created first) now if
  // there is one, otherwise the first key put under the prefix; then every new value of that
  // key; when it is deleted, the leader of that moment, and so on. `revision` is the store
  // revision the update was read at (the put's own revision for an event). Call it after a
  // read barrier: the first look is at the local store. `end` runs (once) if the store cannot
  // be read; updates stop then.
  uint64_t Observe(std::string prefix, LeaderUpdate update, ObserveEnd end);

  // Stops a wait or an observation. True if its callbacks will not run from now on; false if
  // it had already ended (WaitTurn: `done` has run or is running).
  bool Cancel(uint64_t id);

  // How many waits and observations are registered (for tests and metrics).
  size_t size() const;

 private:
  struct Sub;
  struct TurnSub;
  struct ObserveSub;

  uint64_t Add(std::shared_ptr<Sub> sub);
  void Loop();
  void Step();
  void Pump(int64_t head);
  // Marks `sub` ended; true if this call ended it (its callback may then run).
  bool Close(Sub* sub);

  const kv::Store* const store_;
  const KeyWaiterOptions options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool notified_ = false;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::shared_ptr<Sub>> subs_;  // every live sub, by id
  std::vector<std::shared_ptr<Sub>> incoming_;     // added since the thread last looked

  // The thread's own.
  std::vector<std::shared_ptr<Sub>> active_;
  int64_t cursor_ = 0;  // the next revision whose events the thread reads

  std::thread thread_;
};

}  // namespace synod::server
