// etcd's Lease service: LeaseGrant, LeaseRevoke, LeaseKeepAlive (a stream),
// LeaseTimeToLive, LeaseLeases.
//
// Grant and revoke go through the log. Keep-alives and time-to-live are answered by the
// leader, whose lessor keeps the expiry times (a follower forwards them). Keep-alive
// streams honour etcd's require-leader (server/require_leader.h).
#include <deque>
#include <mutex>
#include <vector>

#include "etcd/etcdserverpb/rpc.grpc.pb.h"
#include "kv/errors.h"
#include "server/require_leader.h"
#include "server/server.h"
#include "server/services.h"

namespace synod::server {

namespace {

namespace epb = ::etcdserverpb;

// One LeaseKeepAlive stream: every request is answered in the order its answer comes,
// one write in flight at a time. Answers that arrive after the stream ended are dropped.
class KeepAliveStream final
    : public grpc::ServerBidiReactor<epb::LeaseKeepAliveRequest, epb::LeaseKeepAliveResponse> {
 public:
  explicit KeepAliveStream(Server* server) : server_(server), state_(std::make_shared<State>()) {
    state_->stream = this;
  }
  // Starts reading requests: from then on the stream may end (and be deleted) any time.
  void Start() { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client closed its side, or the call is cancelled
      std::lock_guard lock(state_->mu);
      state_->reading = false;
      MaybeFinishLocked();
      return;
    }
    kvpb::LeaseKeepAliveRequest request;
    request.set_id(request_.id());
    {
      std::lock_guard lock(state_->mu);
      ++state_->pending;
    }
    server_->LeaseKeepAlive(std::move(request),
                            [state = state_, id = request_.id()](serverpb::Outcome outcome) {
                              Answer(state, id, std::move(outcome));
                            });
    std::lock_guard lock(state_->mu);
    if (!state_->finished) StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(state_->mu);
    state_->writing = false;
    if (!ok) state_->reading = false;
    if (!state_->queue.empty() && ok) {
      WriteNextLocked();
    } else {
      MaybeFinishLocked();
    }
  }

  void OnCancel() override {
    std::lock_guard lock(state_->mu);
    cancelled_ = true;
    state_->reading = false;
    state_->queue.clear();
    MaybeFinishLocked();
  }

  void OnDone() override {
    {
      std::lock_guard lock(state_->mu);
      state_->stream = nullptr;
    }
    delete this;
  }

  struct State;
  std::shared_ptr<State> state() const { return state_; }

  // Ends the stream with `status` unless it is done already; answers not yet written are
  // dropped (etcd cancels the stream's context).
  static void End(const std::shared_ptr<State>& state, const grpc::Status& status) {
    std::lock_guard lock(state->mu);
    KeepAliveStream* stream = state->stream;
    if (stream == nullptr || state->finished) return;
    state->queue.clear();
    state->finished = true;
    stream->Finish(status);
  }

  struct State {
    std::mutex mu;
    KeepAliveStream* stream = nullptr;  // null once the stream is done
    std::deque<epb::LeaseKeepAliveResponse> queue;
    int pending = 0;  // keep-alives being served: answered even after the client half-closes
    bool writing = false;
    bool reading = true;
    bool finished = false;
  };

 private:
  static void Answer(const std::shared_ptr<State>& state, int64_t id, serverpb::Outcome outcome) {
    std::lock_guard lock(state->mu);
    --state->pending;
    KeepAliveStream* stream = state->stream;
    if (stream == nullptr || state->finished) return;
    epb::LeaseKeepAliveResponse response;
    if (outcome.grpc_code() == 0) {
      response.ParseFromString(outcome.keep_alive().SerializeAsString());
    } else if (outcome.message() == kv::msg::kLeaseNotFound) {
      response.set_id(id);  // etcd answers a missing lease with TTL 0, not an error
      response.set_ttl(0);
    } else {
      // etcd ends the stream with the error.
      state->queue.clear();
      state->finished = true;
      stream->Finish(ToGrpcStatus(outcome));
      return;
    }
    stream->server_->FillHeader(response.mutable_header());
    state->queue.push_back(std::move(response));
    if (!state->writing) {
      stream->WriteNextLocked();
    } else {
      stream->MaybeFinishLocked();
    }
  }

  void WriteNextLocked() {
    state_->writing = true;
    current_ = std::move(state_->queue.front());
    state_->queue.pop_front();
    StartWrite(&current_);
  }

  void MaybeFinishLocked() {
    if (state_->finished || state_->reading || state_->writing) return;
    if (state_->pending > 0 && !cancelled_) return;
    state_->finished = true;
    Finish(grpc::Status::OK);
  }

  Server* server_;
  std::shared_ptr<State> state_;
  epb::LeaseKeepAliveRequest request_;
  epb::LeaseKeepAliveResponse current_;
  bool cancelled_ = false;  // under state_->mu
};

class LeaseService final : public epb::Lease::CallbackService {
 public:
  explicit LeaseService(Server* server)
      : server_(server), requiring_leader_(StreamsRequiringLeader::EndedWhenNoLeader(*server)) {}

  grpc::ServerUnaryReactor* LeaseGrant(grpc::CallbackServerContext* context,
                                       const epb::LeaseGrantRequest* request,
                                       epb::LeaseGrantResponse* response) override {
    kvpb::Request r;
    *r.mutable_lease_grant() = Convert<kvpb::LeaseGrantRequest>(*request);
    return Replicate(context, std::move(r), response,
                     [](const kvpb::Response& in) { return in.lease_grant().SerializeAsString(); });
  }

  grpc::ServerUnaryReactor* LeaseRevoke(grpc::CallbackServerContext* context,
                                        const epb::LeaseRevokeRequest* request,
                                        epb::LeaseRevokeResponse* response) override {
    kvpb::Request r;
    *r.mutable_lease_revoke() = Convert<kvpb::LeaseRevokeRequest>(*request);
    return Replicate(context, std::move(r), response, [](const kvpb::Response& in) {
      return in.lease_revoke().SerializeAsString();
    });
  }

  grpc::ServerBidiReactor<epb::LeaseKeepAliveRequest, epb::LeaseKeepAliveResponse>* LeaseKeepAlive(
      grpc::CallbackServerContext* context) override {
    const bool require_leader = RequiresLeader(*context);
    if (require_leader && !server_->HasLeader()) {
      return new RefusedStream<epb::LeaseKeepAliveRequest, epb::LeaseKeepAliveResponse>(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, kStreamNoLeader));
    }
    auto* stream = new KeepAliveStream(server_);
    if (require_leader) requiring_leader_->Add(stream->state(), &KeepAliveStream::End);
    stream->Start();
    return stream;
  }

  grpc::ServerUnaryReactor* LeaseTimeToLive(grpc::CallbackServerContext* context,
                                            const epb::LeaseTimeToLiveRequest* request,
                                            epb::LeaseTimeToLiveResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    server_->LeaseTimeToLive(
        Convert<kvpb::LeaseTimeToLiveRequest>(*request),
        [this, reactor, response](serverpb::Outcome outcome) {
          if (outcome.grpc_code() != 0) {
            reactor->Finish(ToGrpcStatus(outcome));
            return;
          }
          response->ParseFromString(outcome.time_to_live().SerializeAsString());
          server_->FillHeader(response->mutable_header());
          reactor->Finish(grpc::Status::OK);
        });
    return reactor;
  }

  grpc::ServerUnaryReactor* LeaseLeases(grpc::CallbackServerContext* context,
                                        const epb::LeaseLeasesRequest*,
                                        epb::LeaseLeasesResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    server_->ReadBarrier([this, reactor, response](serverpb::Outcome barrier) {
      if (barrier.grpc_code() != 0) {
        reactor->Finish(ToGrpcStatus(barrier));
        return;
      }
      response->ParseFromString(server_->store().LeaseLeases().SerializeAsString());
      server_->FillHeader(response->mutable_header());
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

 private:
  template <typename Response>
  grpc::ServerUnaryReactor* Replicate(grpc::CallbackServerContext* context, kvpb::Request request,
                                      Response* response,
                                      std::string (*pick)(const kvpb::Response&)) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    server_->Serve(std::move(request), [this, reactor, response, pick](serverpb::Outcome o) {
      if (o.grpc_code() != 0) {
        reactor->Finish(ToGrpcStatus(o));
        return;
      }
      response->ParseFromString(pick(o.response()));
      server_->FillHeader(response->mutable_header());
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

  Server* server_;
  std::shared_ptr<StreamsRequiringLeader> requiring_leader_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeLeaseService(Server* server) {
  return std::make_unique<LeaseService>(server);
}

}  // namespace synod::server
