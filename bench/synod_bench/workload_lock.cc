// lock: each client holds a lease and, per operation, takes one of --locks names with
// v3lock Lock, then releases it with Unlock. The operation's latency is the whole
// cycle; "acquire" (queueing behind other holders included) and "release" are phases.
// A background keeper refreshes the clients' leases on one keep-alive stream.
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "workloads.h"

namespace synod::bench {
namespace {

using namespace std::chrono_literals;

// Keeps a set of leases alive from its own thread with a synchronous stream, every
// third of their TTL, until Stop().
class LeaseKeeper {
 public:
  LeaseKeeper(Conn& conn, std::vector<int64_t> ids, int64_t ttl_s)
      : conn_(conn), ids_(std::move(ids)), period_(std::chrono::seconds(ttl_s) / 3) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~LeaseKeeper() { Stop(); }

  void Stop() {
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
      stop_ = true;
      if (ctx_) ctx_->TryCancel();
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void Loop() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      auto ctx = std::make_unique<grpc::ClientContext>();
      ctx_ = ctx.get();
      lock.unlock();
      auto stream = conn_.lease->LeaseKeepAlive(ctx.get());
      bool ok = true;
      for (int64_t id : ids_) {
        etcdserverpb::LeaseKeepAliveRequest req;
        req.set_id(id);
        etcdserverpb::LeaseKeepAliveResponse resp;
        if (!stream->Write(req) || !stream->Read(&resp)) {
          ok = false;
          break;
        }
      }
      stream->WritesDone();
      lock.lock();
      ctx_ = nullptr;
      lock.unlock();
      ctx->TryCancel();
      stream->Finish();
      lock.lock();
      if (!ok && !stop_) std::fprintf(stderr, "warning: lease keep-alive failed, retrying\n");
      cv_.wait_for(lock, ok ? period_ : Nanos(1s), [&] { return stop_; });
    }
  }

  Conn& conn_;
  const std::vector<int64_t> ids_;
  const Nanos period_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  grpc::ClientContext* ctx_ = nullptr;
  std::thread thread_;
};

class LockWorkload : public Workload {
 public:
  explicit LockWorkload(Env& env)
      : env_(env),
        names_(env.opts.prefix + "lock/", env.opts.locks, 0),
        acquire_(env.stats.Phase("acquire")),
        release_(env.stats.Phase("release")) {}

  grpc::Status Setup() override {
    for (int i = 0; i < env_.opts.clients; ++i) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + env_.opts.timeout);
      etcdserverpb::LeaseGrantRequest req;
      req.set_ttl(env_.opts.lease_ttl_s);
      etcdserverpb::LeaseGrantResponse resp;
      const grpc::Status s =
          env_.cluster.For(static_cast<size_t>(i)).lease->LeaseGrant(&ctx, req, &resp);
      if (!s.ok()) return s;
      if (!resp.error().empty()) return grpc::Status(grpc::StatusCode::UNKNOWN, resp.error());
      leases_.push_back(resp.id());
    }
    keeper_ = std::make_unique<LeaseKeeper>(env_.cluster.For(0), leases_, env_.opts.lease_ttl_s);
    return grpc::Status::OK;
  }

  std::unique_ptr<ClientOps> MakeClient(int i) override { return std::make_unique<Ops>(*this, i); }

  void Teardown() override {
    if (keeper_) keeper_->Stop();
    for (int64_t id : leases_) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + env_.opts.timeout);
      etcdserverpb::LeaseRevokeRequest req;
      req.set_id(id);
      etcdserverpb::LeaseRevokeResponse resp;
      (void)env_.cluster.For(0).lease->LeaseRevoke(&ctx, req, &resp);
    }
  }

 private:
  class Ops : public ClientOps {
   public:
    Ops(LockWorkload& w, int i)
        : w_(w),
          conn_(w.env_.cluster.For(static_cast<size_t>(i))),
          rng_(ClientSeed(w.env_.opts.seed, i)),
          index_(static_cast<size_t>(i)) {
      lock_req_.set_lease(w.leases_[index_]);
    }

    void Run(Time start, Done done) override {
      done_ = std::move(done);
      start_ = start;
      const int64_t n = std::uniform_int_distribution<int64_t>(0, w_.names_.size() - 1)(rng_);
      lock_req_.set_name(w_.names_.Key(n));
      ResetContext(ctx_, w_.env_.opts.timeout);
      conn_.lock->async()->Lock(&*ctx_, &lock_req_, &lock_resp_,
                                [this](grpc::Status s) { OnLocked(s); });
    }

   private:
    void OnLocked(const grpc::Status& s) {
      if (!s.ok()) return Finish(s);
      locked_ = Clock::now();
      w_.acquire_.Record(index_, locked_ - start_);
      unlock_req_.set_key(lock_resp_.key());
      ResetContext(ctx_, w_.env_.opts.timeout);
      conn_.lock->async()->Unlock(&*ctx_, &unlock_req_, &unlock_resp_,
                                  [this](grpc::Status s) { OnUnlocked(s); });
    }

    void OnUnlocked(const grpc::Status& s) {
      if (s.ok()) w_.release_.Record(index_, Clock::now() - locked_);
      Finish(s);
    }

    void Finish(const grpc::Status& s) {
      Done done = std::move(done_);
      done(s);
    }

    LockWorkload& w_;
    Conn& conn_;
    std::mt19937_64 rng_;
    const size_t index_;
    Done done_;
    Time start_;
    Time locked_;
    std::optional<grpc::ClientContext> ctx_;
    v3lockpb::LockRequest lock_req_;
    v3lockpb::LockResponse lock_resp_;
    v3lockpb::UnlockRequest unlock_req_;
    v3lockpb::UnlockResponse unlock_resp_;
  };

  Env& env_;
  KeySpace names_;
  LatencyRecorder& acquire_;
  LatencyRecorder& release_;
  std::vector<int64_t> leases_;
  std::unique_ptr<LeaseKeeper> keeper_;
};

}  // namespace

std::unique_ptr<Workload> MakeLockWorkload(Env& env) { return std::make_unique<LockWorkload>(env); }

}  // namespace synod::bench
