// Key-value workloads: put, range, mixed, txn-put (compare-and-swap) and txn-mixed
// (read-modify-write with retries).
#include <charconv>
#include <cstdio>
#include <memory>

#include "driver.h"
#include "workloads.h"

namespace synod::bench {
namespace {

using etcdserverpb::Compare;

// --- put ------------------------------------------------------------------------

class PutOps : public ClientOps {
 public:
  PutOps(Conn& conn, const KeySpace& keys, KeyPicker& picker, const std::string& value,
         Nanos timeout, uint64_t seed)
      : conn_(conn), keys_(keys), picker_(picker), timeout_(timeout), rng_(seed) {
    req_.set_value(value);
  }

  void Run(Time, Done done) override {
    req_.set_key(keys_.Key(picker_.Pick(rng_)));
    ResetContext(ctx_, timeout_);
    conn_.kv->async()->Put(&*ctx_, &req_, &resp_,
                           [done = std::move(done)](grpc::Status s) { done(s); });
  }

 private:
  Conn& conn_;
  const KeySpace& keys_;
  KeyPicker& picker_;
  const Nanos timeout_;
  std::mt19937_64 rng_;
  std::optional<grpc::ClientContext> ctx_;
  etcdserverpb::PutRequest req_;
  etcdserverpb::PutResponse resp_;
};

// Shared by the KV workloads: keys under <prefix>kv/, one value, optional preload.
class KvWorkload : public Workload {
 protected:
  explicit KvWorkload(Env& env, const std::string& space = "kv/")
      : env_(env),
        keys_(env.opts.prefix + space, env.opts.key_space, env.opts.key_size),
        picker_(env.opts.key_space, env.opts.seq_keys),
        value_(MakeValue(env.opts.val_size, env.opts.seed)) {}

  grpc::Status PreloadUnlessZero(int64_t default_count) {
    const int64_t n = env_.opts.preload >= 0 ? env_.opts.preload : default_count;
    return n > 0 ? Preload(env_, keys_, n, value_) : grpc::Status::OK;
  }

  Env& env_;
  KeySpace keys_;
  KeyPicker picker_;
  std::string value_;
};

class PutWorkload : public KvWorkload {
 public:
  explicit PutWorkload(Env& env) : KvWorkload(env) {}
  grpc::Status Setup() override { return PreloadUnlessZero(0); }
  std::unique_ptr<ClientOps> MakeClient(int i) override {
    return std::make_unique<PutOps>(env_.cluster.For(static_cast<size_t>(i)), keys_, picker_,
                                    value_, env_.opts.timeout, ClientSeed(env_.opts.seed, i));
  }
};

// --- range and mixed ----------------------------------------------------------------

class RangeOps : public ClientOps {
 public:
  RangeOps(Env& env, int index, const KeySpace& keys, KeyPicker& picker, const std::string& value,
           double read_ratio)
      : conn_(env.cluster.For(static_cast<size_t>(index))),
        keys_(keys),
        picker_(picker),
        timeout_(env.opts.timeout),
        read_ratio_(read_ratio),
        rng_(ClientSeed(env.opts.seed, index)),
        index_(static_cast<size_t>(index)) {
    range_req_.set_serializable(env.opts.serializable);
    put_req_.set_value(value);
    if (read_ratio < 1) {
      read_phase_ = &env.stats.Phase("read");
      write_phase_ = &env.stats.Phase("write");
    }
  }

  void Run(Time start, Done done) override {
    const std::string key = keys_.Key(picker_.Pick(rng_));
    ResetContext(ctx_, timeout_);
    if (read_ratio_ >= 1 || std::uniform_real_distribution<double>(0, 1)(rng_) < read_ratio_) {
      range_req_.set_key(key);
      conn_.kv->async()->Range(&*ctx_, &range_req_, &range_resp_,
                               [this, start, done = std::move(done)](grpc::Status s) {
                                 Finish(read_phase_, start, s, done);
                               });
    } else {
      put_req_.set_key(key);
      conn_.kv->async()->Put(&*ctx_, &put_req_, &put_resp_,
                             [this, start, done = std::move(done)](grpc::Status s) {
                               Finish(write_phase_, start, s, done);
                             });
    }
  }

 private:
  void Finish(LatencyRecorder* phase, Time start, const grpc::Status& s, const Done& done) {
    if (phase != nullptr && s.ok()) phase->Record(index_, Clock::now() - start);
    done(s);
  }

  Conn& conn_;
  const KeySpace& keys_;
  KeyPicker& picker_;
  const Nanos timeout_;
  const double read_ratio_;
  std::mt19937_64 rng_;
  const size_t index_;
  LatencyRecorder* read_phase_ = nullptr;
  LatencyRecorder* write_phase_ = nullptr;
  std::optional<grpc::ClientContext> ctx_;
  etcdserverpb::RangeRequest range_req_;
  etcdserverpb::RangeResponse range_resp_;
  etcdserverpb::PutRequest put_req_;
  etcdserverpb::PutResponse put_resp_;
};

class RangeWorkload : public KvWorkload {
 public:
  RangeWorkload(Env& env, double read_ratio) : KvWorkload(env), read_ratio_(read_ratio) {}
  grpc::Status Setup() override { return PreloadUnlessZero(env_.opts.key_space); }
  std::unique_ptr<ClientOps> MakeClient(int i) override {
    return std::make_unique<RangeOps>(env_, i, keys_, picker_, value_, read_ratio_);
  }

 private:
  double read_ratio_;
};

// --- txn-put: compare-and-swap ------------------------------------------------------

// Every client shares what it learned of each key's mod_revision: a CAS succeeds when
// nobody wrote the key since, and a failed CAS returns the current revision through
// the failure branch, so the next attempt on that key can succeed.
class TxnPutWorkload : public KvWorkload {
 public:
  explicit TxnPutWorkload(Env& env)
      : KvWorkload(env),
        revisions_(new std::atomic<int64_t>[static_cast<size_t>(env.opts.key_space)]()),
        swapped_(env.stats.Counter("cas_succeeded")),
        conflicts_(env.stats.Counter("cas_failed")) {}

  grpc::Status Setup() override {
    if (grpc::Status s = PreloadUnlessZero(0); !s.ok()) return s;
    return LearnRevisions();
  }
  std::unique_ptr<ClientOps> MakeClient(int i) override { return std::make_unique<Ops>(*this, i); }

 private:
  // Reads the mod_revision of every existing key, so that the first CAS on a key
  // written by an earlier run is not counted as a conflict.
  grpc::Status LearnRevisions() {
    etcdserverpb::RangeRequest req;
    req.set_key(keys_.prefix());
    req.set_range_end(keys_.End());
    req.set_keys_only(true);
    req.set_limit(10000);
    for (;;) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + env_.opts.timeout);
      etcdserverpb::RangeResponse resp;
      const grpc::Status s = env_.cluster.For(0).kv->Range(&ctx, req, &resp);
      if (!s.ok()) return s;
      for (const auto& kv : resp.kvs()) {
        const std::string& k = kv.key();
        int64_t index = -1;
        const char* digits = k.data() + keys_.prefix().size();
        const auto r = std::from_chars(digits, k.data() + k.size(), index);
        if (r.ec == std::errc() && r.ptr == k.data() + k.size() && index >= 0 &&
            index < keys_.size()) {
          revisions_[static_cast<size_t>(index)].store(kv.mod_revision());
        }
      }
      if (!resp.more() || resp.kvs_size() == 0) return grpc::Status::OK;
      req.set_key(resp.kvs(resp.kvs_size() - 1).key() + std::string(1, '\0'));
    }
  }

  class Ops : public ClientOps {
   public:
    Ops(TxnPutWorkload& w, int i)
        : w_(w),
          conn_(w.env_.cluster.For(static_cast<size_t>(i))),
          rng_(ClientSeed(w.env_.opts.seed, i)) {}

    void Run(Time, Done done) override {
      const int64_t index = w_.picker_.Pick(rng_);
      const std::string key = w_.keys_.Key(index);
      req_.Clear();
      Compare* c = req_.add_compare();
      c->set_result(Compare::EQUAL);
      c->set_target(Compare::MOD);
      c->set_key(key);
      c->set_mod_revision(w_.revisions_[static_cast<size_t>(index)].load());
      auto* put = req_.add_success()->mutable_request_put();
      put->set_key(key);
      put->set_value(w_.value_);
      req_.add_failure()->mutable_request_range()->set_key(key);
      ResetContext(ctx_, w_.env_.opts.timeout);
      conn_.kv->async()->Txn(&*ctx_, &req_, &resp_,
                             [this, index, done = std::move(done)](grpc::Status s) {
                               if (s.ok()) Learn(index);
                               done(s);
                             });
    }

   private:
    void Learn(int64_t index) {
      auto& rev = w_.revisions_[static_cast<size_t>(index)];
      if (resp_.succeeded()) {
        w_.swapped_.fetch_add(1, std::memory_order_relaxed);
        rev.store(resp_.header().revision());
        return;
      }
      w_.conflicts_.fetch_add(1, std::memory_order_relaxed);
      const auto& range = resp_.responses(0).response_range();
      rev.store(range.kvs_size() > 0 ? range.kvs(0).mod_revision() : 0);
    }

    TxnPutWorkload& w_;
    Conn& conn_;
    std::mt19937_64 rng_;
    std::optional<grpc::ClientContext> ctx_;
    etcdserverpb::TxnRequest req_;
    etcdserverpb::TxnResponse resp_;
  };

  std::unique_ptr<std::atomic<int64_t>[]> revisions_;
  std::atomic<int64_t>& swapped_;
  std::atomic<int64_t>& conflicts_;
};

// --- txn-mixed: read-modify-write -----------------------------------------------------

// Each key under <prefix>rmw/ holds a decimal counter (padded to --val-size). One
// operation reads a counter, then writes counter+1 in a Txn guarded by the mod_revision
// it read; on conflict the Txn's failure branch returns the current value and the
// client tries again. At the end the counters must have grown by exactly the number of
// committed operations: a lost update shows up as a shortfall.
class TxnMixedWorkload : public KvWorkload {
 public:
  explicit TxnMixedWorkload(Env& env)
      : KvWorkload(env, "rmw/"),
        read_(env.stats.Phase("read")),
        txn_(env.stats.Phase("txn")),
        committed_(env.stats.Counter("committed")),
        retries_(env.stats.Counter("retries")),
        gave_up_(env.stats.Counter("gave_up")),
        sum_delta_(env.stats.Counter("counter_sum_delta")) {}

  grpc::Status Setup() override { return SumCounters(&sum_before_); }

  std::unique_ptr<ClientOps> MakeClient(int i) override { return std::make_unique<Ops>(*this, i); }

  void Teardown() override {
    int64_t after = 0;
    const grpc::Status s = SumCounters(&after);
    if (!s.ok()) {
      problem_ = "could not read the counters back: " + s.error_message();
      return;
    }
    const int64_t delta = after - sum_before_;
    sum_delta_.store(delta);
    // An operation that failed with a timeout may still have committed.
    const int64_t ambiguous = env_.stats.ErrorCount();
    if (delta < committed_.load() || delta > committed_.load() + ambiguous) {
      problem_ = "counters grew by " + std::to_string(delta) + " but " +
                 std::to_string(committed_.load()) + " read-modify-writes committed (" +
                 std::to_string(ambiguous) + " ended in an error)";
    }
  }

  std::string Problem() const override { return problem_; }

 private:
  static int64_t Parse(const etcdserverpb::RangeResponse& r) {
    if (r.kvs_size() == 0) return 0;
    const std::string& v = r.kvs(0).value();
    int64_t n = 0;
    std::from_chars(v.data(), v.data() + v.size(), n);
    return n;
  }

  std::string Encode(int64_t n) const {
    std::string v = std::to_string(n);
    if (static_cast<int>(v.size()) < env_.opts.val_size) {
      v.append(static_cast<size_t>(env_.opts.val_size) - v.size(), '.');
    }
    return v;
  }

  // The sum of every counter, read page by page.
  grpc::Status SumCounters(int64_t* sum) {
    *sum = 0;
    Conn& conn = env_.cluster.For(0);
    etcdserverpb::RangeRequest req;
    req.set_key(keys_.prefix());
    req.set_range_end(keys_.End());
    req.set_limit(1000);
    for (;;) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + env_.opts.timeout);
      etcdserverpb::RangeResponse resp;
      const grpc::Status s = conn.kv->Range(&ctx, req, &resp);
      if (!s.ok()) return s;
      for (const auto& kv : resp.kvs()) {
        int64_t n = 0;
        std::from_chars(kv.value().data(), kv.value().data() + kv.value().size(), n);
        *sum += n;
      }
      if (!resp.more() || resp.kvs_size() == 0) return grpc::Status::OK;
      req.set_key(resp.kvs(resp.kvs_size() - 1).key() + std::string(1, '\0'));
    }
  }

  class Ops : public ClientOps {
   public:
    Ops(TxnMixedWorkload& w, int i)
        : w_(w),
          conn_(w.env_.cluster.For(static_cast<size_t>(i))),
          rng_(ClientSeed(w.env_.opts.seed, i)),
          index_(static_cast<size_t>(i)) {
      range_req_.set_serializable(w.env_.opts.serializable);
    }

    void Run(Time, Done done) override {
      done_ = std::move(done);
      attempts_ = 0;
      key_ = w_.keys_.Key(w_.picker_.Pick(rng_));
      range_req_.set_key(key_);
      step_start_ = Clock::now();
      ResetContext(ctx_, w_.env_.opts.timeout);
      conn_.kv->async()->Range(&*ctx_, &range_req_, &range_resp_,
                               [this](grpc::Status s) { OnRead(s); });
    }

   private:
    void OnRead(const grpc::Status& s) {
      if (!s.ok()) return Finish(s);
      w_.read_.Record(index_, Clock::now() - step_start_);
      counter_ = Parse(range_resp_);
      mod_revision_ = range_resp_.kvs_size() > 0 ? range_resp_.kvs(0).mod_revision() : 0;
      Swap();
    }

    void Swap() {
      txn_req_.Clear();
      Compare* c = txn_req_.add_compare();
      c->set_result(Compare::EQUAL);
      c->set_target(Compare::MOD);
      c->set_key(key_);
      c->set_mod_revision(mod_revision_);
      auto* put = txn_req_.add_success()->mutable_request_put();
      put->set_key(key_);
      put->set_value(w_.Encode(counter_ + 1));
      txn_req_.add_failure()->mutable_request_range()->set_key(key_);
      step_start_ = Clock::now();
      ResetContext(ctx_, w_.env_.opts.timeout);
      conn_.kv->async()->Txn(&*ctx_, &txn_req_, &txn_resp_, [this](grpc::Status s) { OnTxn(s); });
    }

    void OnTxn(const grpc::Status& s) {
      if (!s.ok()) return Finish(s);
      w_.txn_.Record(index_, Clock::now() - step_start_);
      if (txn_resp_.succeeded()) {
        w_.committed_.fetch_add(1, std::memory_order_relaxed);
        return Finish(grpc::Status::OK);
      }
      if (++attempts_ > w_.env_.opts.max_retries) {
        w_.gave_up_.fetch_add(1, std::memory_order_relaxed);
        return Finish(grpc::Status(grpc::StatusCode::ABORTED, "too many conflicts"));
      }
      w_.retries_.fetch_add(1, std::memory_order_relaxed);
      const auto& current = txn_resp_.responses(0).response_range();
      counter_ = Parse(current);
      mod_revision_ = current.kvs_size() > 0 ? current.kvs(0).mod_revision() : 0;
      Swap();
    }

    void Finish(const grpc::Status& s) {
      Done done = std::move(done_);
      done(s);
    }

    TxnMixedWorkload& w_;
    Conn& conn_;
    std::mt19937_64 rng_;
    const size_t index_;
    Done done_;
    int attempts_ = 0;
    std::string key_;
    int64_t counter_ = 0;
    int64_t mod_revision_ = 0;
    Time step_start_;
    std::optional<grpc::ClientContext> ctx_;
    etcdserverpb::RangeRequest range_req_;
    etcdserverpb::RangeResponse range_resp_;
    etcdserverpb::TxnRequest txn_req_;
    etcdserverpb::TxnResponse txn_resp_;
  };

  LatencyRecorder& read_;
  LatencyRecorder& txn_;
  std::atomic<int64_t>& committed_;
  std::atomic<int64_t>& retries_;
  std::atomic<int64_t>& gave_up_;
  std::atomic<int64_t>& sum_delta_;
  int64_t sum_before_ = 0;
  std::string problem_;
};

// Preload: a closed-loop put run over keys 0..count-1, with its own statistics.
class PreloadWorkload : public Workload {
 public:
  PreloadWorkload(Env& env, const KeySpace& keys, int64_t count, const std::string& value)
      : env_(env), keys_(keys), picker_(count, /*sequential=*/true), value_(value) {}
  std::unique_ptr<ClientOps> MakeClient(int i) override {
    return std::make_unique<PutOps>(env_.cluster.For(static_cast<size_t>(i)), keys_, picker_,
                                    value_, env_.opts.timeout, 0);
  }

 private:
  Env& env_;
  const KeySpace& keys_;
  KeyPicker picker_;
  const std::string& value_;
};

}  // namespace

grpc::Status Preload(Env& env, const KeySpace& keys, int64_t count, const std::string& value) {
  Stats stats;
  Env preload_env{env.opts, env.cluster, stats, env.timer};
  PreloadWorkload workload(preload_env, keys, count, value);
  RunConfig cfg;
  cfg.label = "preload";
  cfg.clients = static_cast<int>(std::min<int64_t>(std::max(env.opts.clients, 16), count));
  cfg.total = count;
  cfg.progress = !env.opts.quiet;
  Driver driver(cfg, workload, stats, env.timer);
  const double secs = std::chrono::duration<double>(driver.Run()).count();
  if (!env.opts.quiet) {
    std::fprintf(stderr, "preloaded %lld keys in %.2f s\n", static_cast<long long>(count), secs);
  }
  if (StopRequested().load()) return grpc::Status(grpc::StatusCode::CANCELLED, "interrupted");
  if (stats.ErrorCount() > 0) {
    std::string what;
    for (const auto& [code, n] : stats.Errors()) what += " " + code + "=" + std::to_string(n);
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "preload failed:" + what);
  }
  return grpc::Status::OK;
}

std::unique_ptr<Workload> MakePutWorkload(Env& env) { return std::make_unique<PutWorkload>(env); }
std::unique_ptr<Workload> MakeRangeWorkload(Env& env) {
  return std::make_unique<RangeWorkload>(env, 1.0);
}
std::unique_ptr<Workload> MakeMixedWorkload(Env& env) {
  return std::make_unique<RangeWorkload>(env, env.opts.read_ratio);
}
std::unique_ptr<Workload> MakeTxnPutWorkload(Env& env) {
  return std::make_unique<TxnPutWorkload>(env);
}
std::unique_ptr<Workload> MakeTxnMixedWorkload(Env& env) {
  return std::make_unique<TxnMixedWorkload>(env);
}

}  // namespace synod::bench
