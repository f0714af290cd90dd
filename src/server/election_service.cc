// etcd's Election service (v3electionpb.Election): Campaign, Proclaim, Leader, Observe,
// Resign. Semantics: etcd 3.4's v3election (concurrency.Election run in the server); a
// campaign is granted like a lock (docs/locks.md).
#include <deque>
#include <memory>
#include <mutex>
#include <utility>

#include "etcd/v3electionpb/v3election.grpc.pb.h"
#include "server/concurrency.h"
#include "server/key_waiter.h"
#include "server/require_leader.h"
#include "server/server.h"
#include "server/services.h"

namespace synod::server {

namespace {

namespace epb = ::v3electionpb;

// Leader updates an Observe stream may hold for a slow client; past it the oldest are
// dropped (etcd's Observe promises the latest leader, not every one in between).
constexpr size_t kObserveQueueMax = 1024;

class CampaignReactor final : public grpc::ServerUnaryReactor {
 public:
  CampaignReactor(Server* server, KeyWaiter* waiter, const epb::CampaignRequest& request,
                  epb::CampaignResponse* response) {
    AcquireOptions options;
    options.prefix = request.name() + "/";
    options.lease = request.lease();
    options.value = request.value();
    options.release_on_error = false;  // etcd's Campaign resigns only when cancelled
    options.lost_message = kElectionNotLeader;
    // As in LockReactor: the acquisition answers once, before OnDone.
    acquisition_ = Acquisition::Start(
        server, waiter, std::move(options),
        [this, server, response, name = request.name()](grpc::Status status, Grant grant) {
          if (status.ok()) {
            FillHeaderFrom(*server, grant.header, response->mutable_header());
            epb::LeaderKey* leader = response->mutable_leader();
            leader->set_name(name);
            leader->set_key(std::move(grant.key));
            leader->set_rev(grant.revision);
            leader->set_lease(grant.lease);
          }
          Finish(std::move(status));
        });
  }

  void OnCancel() override { acquisition_->Cancel(); }
  void OnDone() override { delete this; }

 private:
  std::shared_ptr<Acquisition> acquisition_;
};

// An Observe stream: leader updates from the KeyWaiter's thread, written one at a time.
// The stream's state outlives the reactor (the waiter may still hold a callback).
class ObserveReactor final : public grpc::ServerWriteReactor<epb::LeaderResponse> {
 public:
  ObserveReactor(Server* server, KeyWaiter* waiter, std::string name)
      : stream_(std::make_shared<Stream>(this, server, waiter)) {
    std::shared_ptr<Stream> stream = stream_;
    // The first look must see every write acknowledged before the call (etcd's Get).
    server->ReadBarrier([stream, prefix = std::move(name) + "/"](serverpb::Outcome outcome) {
      if (outcome.grpc_code() != 0) {
        stream->Finish(ClientError(outcome));
        return;
      }
      stream->Subscribe(prefix);
    });
  }

  // The client requires a leader: the stream ends when the member has long had none.
  void RequireLeader(StreamsRequiringLeader& streams) {
    streams.Add(
        stream_, +[](const std::shared_ptr<Stream>& stream, const grpc::Status& status) {
          stream->Finish(status);
        });
  }

  void OnWriteDone(bool ok) override { stream_->OnWriteDone(ok); }
  void OnCancel() override { stream_->Finish(grpc::Status::CANCELLED); }
  void OnDone() override {
    stream_->Detach();
    delete this;
  }

 private:
  class Stream : public std::enable_shared_from_this<Stream> {
   public:
    Stream(ObserveReactor* reactor, Server* server, KeyWaiter* waiter)
        : reactor_(reactor), server_(server), waiter_(waiter) {}

    void Subscribe(const std::string& prefix) {
      // Callbacks hold the stream, not the reactor.
      std::shared_ptr<Stream> keep = shared_from_this();
      const uint64_t id = waiter_->Observe(
          prefix, [keep](const kvpb::KeyValue& kv, int64_t revision) { keep->Post(kv, revision); },
          [keep](Status status) { keep->Finish(ClientError(status.message())); });
      bool gone;
      {
        std::lock_guard lock(mu_);
        sub_id_ = id;
        gone = detached_ || finish_called_ || finish_wanted_;
      }
      if (gone) waiter_->Cancel(id);
    }

    void Post(const kvpb::KeyValue& kv, int64_t revision) {
      epb::LeaderResponse response;
      server_->FillHeader(response.mutable_header());
      response.mutable_header()->set_revision(revision);
      *response.mutable_kv() = Convert<mvccpb::KeyValue>(kv);
      std::lock_guard lock(mu_);
      if (finish_called_ || finish_wanted_) return;
      if (writing_) {
        queue_.push_back(std::move(response));
        if (queue_.size() > kObserveQueueMax) queue_.pop_front();
        return;
      }
      in_flight_ = std::move(response);
      writing_ = true;
      // gRPC runs the reactions on its own threads, never inside StartWrite or Finish, so
      // holding mu_ here cannot deadlock with OnWriteDone.
      reactor_->StartWrite(&in_flight_);
    }

    void OnWriteDone(bool ok) {
      std::lock_guard lock(mu_);
      writing_ = false;
      if (!ok) {
        FinishLocked(grpc::Status::CANCELLED);  // the client is gone
      } else if (finish_wanted_) {
        FinishLocked(final_status_);
      } else if (!queue_.empty()) {
        in_flight_ = std::move(queue_.front());
        queue_.pop_front();
        writing_ = true;
        reactor_->StartWrite(&in_flight_);
      }
    }

    void Finish(grpc::Status status) {
      std::lock_guard lock(mu_);
      FinishLocked(std::move(status));
    }

    // The reactor is gone: stop the updates.
    void Detach() {
      uint64_t id;
      {
        std::lock_guard lock(mu_);
        detached_ = true;
        id = sub_id_;
      }
      if (id != 0) waiter_->Cancel(id);
    }

   private:
    // Finish waits for a write in flight (OnWriteDone then finishes).
    void FinishLocked(grpc::Status status) {
      if (finish_called_) return;
      if (writing_) {
        if (!finish_wanted_) {
          finish_wanted_ = true;
          final_status_ = std::move(status);
        }
        return;
      }
      finish_called_ = true;
      queue_.clear();
      reactor_->Finish(std::move(status));
    }

    ObserveReactor* const reactor_;  // valid until Finish is called (OnDone follows it)
    Server* const server_;
    KeyWaiter* const waiter_;

    std::mutex mu_;
    std::deque<epb::LeaderResponse> queue_;
    epb::LeaderResponse in_flight_;
    bool writing_ = false;
    bool finish_wanted_ = false;
    grpc::Status final_status_;
    bool finish_called_ = false;
    bool detached_ = false;
    uint64_t sub_id_ = 0;
  };

  std::shared_ptr<Stream> stream_;
};

class ElectionService final : public epb::Election::CallbackService {
 public:
  explicit ElectionService(Server* server)
      : server_(server),
        waiter_(&server->store()),
        requiring_leader_(StreamsRequiringLeader::EndedWhenNoLeader(*server)) {
    feed_id_ = server_->revisions().Subscribe([this](int64_t) { waiter_.Notify(); });
  }
  // As LockService: destroyed with no RPC in flight, before the revision feed.
  ~ElectionService() override { server_->revisions().Unsubscribe(feed_id_); }

  grpc::ServerUnaryReactor* Campaign(grpc::CallbackServerContext* /*context*/,
                                     const epb::CampaignRequest* request,
                                     epb::CampaignResponse* response) override {
    return new CampaignReactor(server_, &waiter_, *request, response);
  }

  // etcd: the leader's key gets the new value if it still has the leader's create revision.
  grpc::ServerUnaryReactor* Proclaim(grpc::CallbackServerContext* context,
                                     const epb::ProclaimRequest* request,
                                     epb::ProclaimResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (!request->has_leader()) {
      reactor->Finish(ClientError(kMissingLeaderKey));
      return reactor;
    }
    const epb::LeaderKey& leader = request->leader();
    kvpb::Request txn_request;
    kvpb::TxnRequest* txn = txn_request.mutable_txn();
    kvpb::Compare* is_leader = txn->add_compare();
    is_leader->set_target(kvpb::Compare::CREATE);
    is_leader->set_result(kvpb::Compare::EQUAL);
    is_leader->set_key(leader.key());
    is_leader->set_create_revision(leader.rev());
    kvpb::PutRequest* put = txn->add_success()->mutable_request_put();
    put->set_key(leader.key());
    put->set_value(request->value());
    // etcd would grant a fresh 60 s lease for a LeaderKey without one and move the key to
    // it; synod keeps the key's lease instead.
    if (leader.lease() == 0) {
      put->set_ignore_lease(true);
    } else {
      put->set_lease(leader.lease());
    }
    server_->Serve(std::move(txn_request), [this, reactor, response](serverpb::Outcome outcome) {
      if (outcome.grpc_code() != 0) {
        reactor->Finish(ClientError(outcome));
        return;
      }
      if (!outcome.response().txn().succeeded()) {
        reactor->Finish(ClientError(kElectionNotLeader));
        return;
      }
      FillHeaderFrom(*server_, outcome.response().txn().header(), response->mutable_header());
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

  // etcd: a linearizable Get of the oldest key under the prefix.
  grpc::ServerUnaryReactor* Leader(grpc::CallbackServerContext* context,
                                   const epb::LeaderRequest* request,
                                   epb::LeaderResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    const std::string prefix = request->name() + "/";
    kvpb::Request range_request;
    kvpb::RangeRequest* range = range_request.mutable_range();
    range->set_key(prefix);
    range->set_range_end(PrefixRangeEnd(prefix));
    range->set_sort_target(kvpb::RangeRequest::CREATE);
    range->set_sort_order(kvpb::RangeRequest::ASCEND);
    range->set_limit(1);
    server_->Serve(std::move(range_request), [this, reactor, response](serverpb::Outcome outcome) {
      if (outcome.grpc_code() != 0) {
        reactor->Finish(ClientError(outcome));
        return;
      }
      const kvpb::RangeResponse& r = outcome.response().range();
      if (r.kvs_size() == 0) {
        reactor->Finish(ClientError(kElectionNoLeader));
        return;
      }
      FillHeaderFrom(*server_, r.header(), response->mutable_header());
      *response->mutable_kv() = Convert<mvccpb::KeyValue>(r.kvs(0));
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

  grpc::ServerWriteReactor<epb::LeaderResponse>* Observe(
      grpc::CallbackServerContext* context, const epb::LeaderRequest* request) override {
    const bool require_leader = RequiresLeader(*context);
    if (require_leader && !server_->HasLeader()) {
      return new RefusedWriter<epb::LeaderResponse>(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, kStreamNoLeader));
    }
    auto* observe = new ObserveReactor(server_, &waiter_, request->name());
    if (require_leader) observe->RequireLeader(*requiring_leader_);
    return observe;
  }

  // etcd: deletes the leader's key if it still has the leader's create revision; answers OK
  // either way.
  grpc::ServerUnaryReactor* Resign(grpc::CallbackServerContext* context,
                                   const epb::ResignRequest* request,
                                   epb::ResignResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (!request->has_leader()) {
      reactor->Finish(ClientError(kMissingLeaderKey));
      return reactor;
    }
    const epb::LeaderKey& leader = request->leader();
    kvpb::Request txn_request;
    kvpb::TxnRequest* txn = txn_request.mutable_txn();
    kvpb::Compare* is_leader = txn->add_compare();
    is_leader->set_target(kvpb::Compare::CREATE);
    is_leader->set_result(kvpb::Compare::EQUAL);
    is_leader->set_key(leader.key());
    is_leader->set_create_revision(leader.rev());
    txn->add_success()->mutable_request_delete_range()->set_key(leader.key());
    server_->Serve(std::move(txn_request), [this, reactor, response](serverpb::Outcome outcome) {
      if (outcome.grpc_code() != 0) {
        reactor->Finish(ClientError(outcome));
        return;
      }
      FillHeaderFrom(*server_, outcome.response().txn().header(), response->mutable_header());
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

 private:
  Server* const server_;
  KeyWaiter waiter_;
  uint64_t feed_id_ = 0;
  std::shared_ptr<StreamsRequiringLeader> requiring_leader_;  // Observe streams
};

}  // namespace

std::unique_ptr<grpc::Service> MakeElectionService(Server* server) {
  return std::make_unique<ElectionService>(server);
}

}  // namespace synod::server
