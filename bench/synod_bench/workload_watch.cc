// watch: --watchers streams each watch the prefix <prefix>watch/; the clients put keys
// under it with the time the put was due written at the front of the value. Every event
// a watcher receives records (arrival - due) in the primary histogram: the fan-out
// latency, commit included. The puts' own latency goes to the "put" phase.
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "driver.h"
#include "workloads.h"

namespace synod::bench {
namespace {

using namespace std::chrono_literals;

constexpr int kStampDigits = 16;  // hex nanoseconds of the steady clock

std::string Stamp(Time t, const std::string& padding) {
  char buf[kStampDigits + 1];
  std::snprintf(buf, sizeof(buf), "%016llx",
                static_cast<unsigned long long>(t.time_since_epoch().count()));
  std::string v(buf, kStampDigits);
  if (padding.size() > v.size()) v.append(padding, v.size(), std::string::npos);
  return v;
}

std::optional<Time> ParseStamp(const std::string& value) {
  if (value.size() < kStampDigits) return std::nullopt;
  uint64_t ns = 0;
  const auto r = std::from_chars(value.data(), value.data() + kStampDigits, ns, 16);
  if (r.ec != std::errc() || r.ptr != value.data() + kStampDigits) return std::nullopt;
  return Time(Nanos(static_cast<int64_t>(ns)));
}

class WatchWorkload;

class WatchStream
    : public grpc::ClientBidiReactor<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse> {
 public:
  WatchStream(WatchWorkload& w, size_t index) : w_(w), index_(index) {}
  void Start(Conn& conn, const std::string& key, const std::string& range_end);
  void Cancel() { ctx_.TryCancel(); }

  void OnWriteDone(bool) override {}
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& s) override;

 private:
  WatchWorkload& w_;
  const size_t index_;
  grpc::ClientContext ctx_;
  etcdserverpb::WatchRequest create_;
  etcdserverpb::WatchResponse resp_;
};

class WatchWorkload : public Workload {
 public:
  explicit WatchWorkload(Env& env)
      : env_(env),
        keys_(env.opts.prefix + "watch/", env.opts.key_space, env.opts.key_size),
        picker_(env.opts.key_space, env.opts.seq_keys),
        padding_(MakeValue(env.opts.val_size, env.opts.seed)),
        puts_(env.stats.Phase("put")),
        events_(env.stats.Counter("events")),
        bad_events_(env.stats.Counter("events_unparsed")),
        lost_streams_(env.stats.Counter("watch_streams_lost")),
        canceled_(env.stats.Counter("watches_canceled")) {}

  grpc::Status Setup() override {
    for (int i = 0; i < env_.opts.watchers; ++i) {
      streams_.push_back(std::make_unique<WatchStream>(*this, static_cast<size_t>(i)));
    }
    for (size_t i = 0; i < streams_.size(); ++i) {
      streams_[i]->Start(env_.cluster.For(i), keys_.prefix(), keys_.End());
    }
    std::unique_lock lock(mu_);
    const bool ready = cv_.wait_for(lock, env_.opts.timeout,
                                    [&] { return created_ == env_.opts.watchers || ended_ > 0; });
    if (!ready || ended_ > 0) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "only " + std::to_string(created_) + " of " +
                              std::to_string(env_.opts.watchers) + " watches were created");
    }
    return grpc::Status::OK;
  }

  std::unique_ptr<ClientOps> MakeClient(int i) override {
    return std::make_unique<PutOps>(*this, i);
  }
  LatencyRecorder* OpLatency() override { return &puts_; }

  // Waits for the events of every successful put to reach every watcher; gives up
  // after 2 s without progress.
  void Drain() override {
    const int64_t expected = static_cast<int64_t>(puts_.Snapshot().count()) * env_.opts.watchers;
    int64_t seen = events_.load();
    Time last_progress = Clock::now();
    while (seen < expected && Clock::now() - last_progress < 2s && !StopRequested().load()) {
      std::this_thread::sleep_for(5ms);
      const int64_t now_seen = events_.load();
      if (now_seen != seen) last_progress = Clock::now();
      seen = now_seen;
    }
    if (seen < expected) {
      missing_ = expected - seen;
      env_.stats.Counter("events_missing").store(missing_);
    }
  }

  void Teardown() override {
    {
      std::lock_guard lock(mu_);
      tearing_down_ = true;
    }
    for (auto& s : streams_) s->Cancel();
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, 10s, [&] { return ended_ == static_cast<int>(streams_.size()); });
    if (ended_ != static_cast<int>(streams_.size())) {
      std::fprintf(stderr, "warning: %d watch streams did not close\n",
                   static_cast<int>(streams_.size()) - ended_);
      // Leaking them is safer than deleting reactors gRPC may still call.
      for (auto& s : streams_) (void)s.release();
    }
  }

  std::string Problem() const override {
    return missing_ > 0 ? std::to_string(missing_) + " watch events never arrived" : "";
  }

 private:
  friend class WatchStream;

  class PutOps : public ClientOps {
   public:
    PutOps(WatchWorkload& w, int i)
        : w_(w),
          conn_(w.env_.cluster.For(static_cast<size_t>(i))),
          rng_(ClientSeed(w.env_.opts.seed, i)) {}

    void Run(Time start, Done done) override {
      req_.set_key(w_.keys_.Key(w_.picker_.Pick(rng_)));
      req_.set_value(Stamp(start, w_.padding_));
      ResetContext(ctx_, w_.env_.opts.timeout);
      conn_.kv->async()->Put(&*ctx_, &req_, &resp_,
                             [done = std::move(done)](grpc::Status s) { done(s); });
    }

   private:
    WatchWorkload& w_;
    Conn& conn_;
    std::mt19937_64 rng_;
    std::optional<grpc::ClientContext> ctx_;
    etcdserverpb::PutRequest req_;
    etcdserverpb::PutResponse resp_;
  };

  void Created() {
    std::lock_guard lock(mu_);
    ++created_;
    cv_.notify_all();
  }

  void Canceled() { canceled_.fetch_add(1); }

  void Event(size_t watcher, Time now, const std::string& value) {
    events_.fetch_add(1, std::memory_order_relaxed);
    if (auto due = ParseStamp(value)) {
      env_.stats.primary().Record(watcher, now - *due);
    } else {
      bad_events_.fetch_add(1, std::memory_order_relaxed);
    }
  }

  void Ended(const grpc::Status& s) {
    std::lock_guard lock(mu_);
    ++ended_;
    if (!tearing_down_) {
      lost_streams_.fetch_add(1);
      env_.stats.CountError(s.ok() ? grpc::StatusCode::UNKNOWN : s.error_code());
    }
    cv_.notify_all();
  }

  Env& env_;
  KeySpace keys_;
  KeyPicker picker_;
  std::string padding_;
  LatencyRecorder& puts_;
  std::atomic<int64_t>& events_;
  std::atomic<int64_t>& bad_events_;
  std::atomic<int64_t>& lost_streams_;
  std::atomic<int64_t>& canceled_;
  std::vector<std::unique_ptr<WatchStream>> streams_;
  int64_t missing_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  int created_ = 0;
  int ended_ = 0;
  bool tearing_down_ = false;
};

void WatchStream::Start(Conn& conn, const std::string& key, const std::string& range_end) {
  auto* create = create_.mutable_create_request();
  create->set_key(key);
  create->set_range_end(range_end);
  conn.watch->async()->Watch(&ctx_, this);
  StartWrite(&create_);
  StartRead(&resp_);
  StartCall();
}

void WatchStream::OnReadDone(bool ok) {
  if (!ok) return;  // the stream is over; OnDone follows
  if (resp_.created()) w_.Created();
  if (resp_.canceled()) w_.Canceled();
  const Time now = Clock::now();
  for (const auto& ev : resp_.events()) {
    if (ev.type() == mvccpb::Event::PUT) w_.Event(index_, now, ev.kv().value());
  }
  StartRead(&resp_);
}

void WatchStream::OnDone(const grpc::Status& s) { w_.Ended(s); }

}  // namespace

std::unique_ptr<Workload> MakeWatchWorkload(Env& env) {
  return std::make_unique<WatchWorkload>(env);
}

}  // namespace synod::bench
