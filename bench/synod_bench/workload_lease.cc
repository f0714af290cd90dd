// lease: per operation, LeaseGrant, then --keepalives keep-alives of that lease on the
// client's keep-alive stream, then LeaseRevoke. Phases "grant", "keepalive" (each
// round trip) and "revoke".
#include <condition_variable>
#include <mutex>

#include "workloads.h"

namespace synod::bench {
namespace {

using namespace std::chrono_literals;

// One client's LeaseKeepAlive stream: one keep-alive at a time, started from outside
// the reactions (hence the hold). Once broken it fails every call; the client then
// opens another.
class KeepAliveStream : public grpc::ClientBidiReactor<etcdserverpb::LeaseKeepAliveRequest,
                                                       etcdserverpb::LeaseKeepAliveResponse> {
 public:
  using Callback = std::function<void(bool ok, int64_t ttl)>;

  explicit KeepAliveStream(Conn& conn) {
    conn.lease->async()->LeaseKeepAlive(&ctx_, this);
    AddHold();
    StartCall();
  }

  bool broken() const { return broken_.load(); }

  void KeepAlive(int64_t id, Callback done) {
    if (broken_.load()) return done(false, 0);
    req_.set_id(id);
    done_ = std::move(done);
    failed_.store(false);
    pending_.store(2);
    StartWrite(&req_);
    StartRead(&resp_);
  }

  // Ends the stream; then WaitDone. Call once.
  void Close() {
    ctx_.TryCancel();
    RemoveHold();
  }
  bool WaitDone(Nanos timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return done_called_; });
  }

  void OnWriteDone(bool ok) override { Step(ok); }
  void OnReadDone(bool ok) override { Step(ok); }
  void OnDone(const grpc::Status&) override {
    std::lock_guard lock(mu_);
    done_called_ = true;
    cv_.notify_all();
  }

 private:
  // The keep-alive completes when both its write and its read have.
  void Step(bool ok) {
    if (!ok) failed_.store(true);
    if (pending_.fetch_sub(1) != 1) return;
    const bool good = !failed_.load();
    if (!good) broken_.store(true);
    Callback done = std::move(done_);
    done(good, good ? resp_.ttl() : 0);
  }

  grpc::ClientContext ctx_;
  etcdserverpb::LeaseKeepAliveRequest req_;
  etcdserverpb::LeaseKeepAliveResponse resp_;
  Callback done_;
  std::atomic<int> pending_{0};
  std::atomic<bool> failed_{false};
  std::atomic<bool> broken_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_called_ = false;
};

class LeaseWorkload : public Workload {
 public:
  explicit LeaseWorkload(Env& env)
      : env_(env),
        grant_(env.stats.Phase("grant")),
        keepalive_(env.stats.Phase("keepalive")),
        revoke_(env.stats.Phase("revoke")),
        reopened_(env.stats.Counter("keepalive_streams_reopened")) {}

  std::unique_ptr<ClientOps> MakeClient(int i) override { return std::make_unique<Ops>(*this, i); }

  void Teardown() override {
    std::lock_guard lock(mu_);
    for (auto& s : streams_) s->Close();
    for (auto& s : streams_) {
      // A reactor gRPC may still call must not be deleted: leak it instead.
      if (!s->WaitDone(10s)) (void)s.release();
    }
    streams_.clear();
  }

 private:
  KeepAliveStream* NewStream(Conn& conn) {
    std::lock_guard lock(mu_);
    streams_.push_back(std::make_unique<KeepAliveStream>(conn));
    return streams_.back().get();
  }

  class Ops : public ClientOps {
   public:
    Ops(LeaseWorkload& w, int i)
        : w_(w), conn_(w.env_.cluster.For(static_cast<size_t>(i))), index_(static_cast<size_t>(i)) {
      grant_req_.set_ttl(w.env_.opts.lease_ttl_s);
    }

    void Run(Time, Done done) override {
      done_ = std::move(done);
      failure_ = grpc::Status::OK;
      id_ = 0;
      step_start_ = Clock::now();
      ResetContext(ctx_, w_.env_.opts.timeout);
      conn_.lease->async()->LeaseGrant(&*ctx_, &grant_req_, &grant_resp_,
                                       [this](grpc::Status s) { OnGranted(s); });
    }

   private:
    void OnGranted(const grpc::Status& s) {
      if (!s.ok()) return Finish(s);
      if (!grant_resp_.error().empty()) {
        return Finish(grpc::Status(grpc::StatusCode::UNKNOWN, grant_resp_.error()));
      }
      w_.grant_.Record(index_, Clock::now() - step_start_);
      id_ = grant_resp_.id();
      keepalives_left_ = w_.env_.opts.keepalives;
      NextKeepAlive();
    }

    void NextKeepAlive() {
      if (keepalives_left_-- <= 0) return Revoke();
      if (stream_ == nullptr || stream_->broken()) {
        if (stream_ != nullptr) w_.reopened_.fetch_add(1);
        stream_ = w_.NewStream(conn_);
      }
      step_start_ = Clock::now();
      stream_->KeepAlive(id_, [this](bool ok, int64_t ttl) {
        if (!ok) {
          failure_ = grpc::Status(grpc::StatusCode::UNAVAILABLE, "keep-alive stream broke");
          return Revoke();
        }
        if (ttl <= 0) {
          failure_ = grpc::Status(grpc::StatusCode::NOT_FOUND, "lease expired");
          return Revoke();
        }
        w_.keepalive_.Record(index_, Clock::now() - step_start_);
        NextKeepAlive();
      });
    }

    void Revoke() {
      revoke_req_.set_id(id_);
      step_start_ = Clock::now();
      ResetContext(ctx_, w_.env_.opts.timeout);
      conn_.lease->async()->LeaseRevoke(&*ctx_, &revoke_req_, &revoke_resp_,
                                        [this](grpc::Status s) {
                                          if (s.ok()) {
                                            w_.revoke_.Record(index_, Clock::now() - step_start_);
                                          }
                                          Finish(failure_.ok() ? s : failure_);
                                        });
    }

    void Finish(const grpc::Status& s) {
      Done done = std::move(done_);
      done(s);
    }

    LeaseWorkload& w_;
    Conn& conn_;
    const size_t index_;
    KeepAliveStream* stream_ = nullptr;  // owned by the workload
    Done done_;
    grpc::Status failure_;
    int64_t id_ = 0;
    int keepalives_left_ = 0;
    Time step_start_;
    std::optional<grpc::ClientContext> ctx_;
    etcdserverpb::LeaseGrantRequest grant_req_;
    etcdserverpb::LeaseGrantResponse grant_resp_;
    etcdserverpb::LeaseRevokeRequest revoke_req_;
    etcdserverpb::LeaseRevokeResponse revoke_resp_;
  };

  Env& env_;
  LatencyRecorder& grant_;
  LatencyRecorder& keepalive_;
  LatencyRecorder& revoke_;
  std::atomic<int64_t>& reopened_;
  std::mutex mu_;
  std::vector<std::unique_ptr<KeepAliveStream>> streams_;
};

}  // namespace

std::unique_ptr<Workload> MakeLeaseWorkload(Env& env) {
  return std::make_unique<LeaseWorkload>(env);
}

}  // namespace synod::bench
