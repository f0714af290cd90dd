// etcd's Lock service (v3lockpb.Lock): Lock waits for the lock `name` under a lease, Unlock
// deletes the key that holds it. Semantics: etcd 3.4's v3lock (concurrency.Mutex run in the
// server), plus a linearizable check of the key and its lease when the lock is granted
// (docs/locks.md).
#include <memory>
#include <utility>

#include "etcd/v3lockpb/v3lock.grpc.pb.h"
#include "server/concurrency.h"
#include "server/key_waiter.h"
#include "server/server.h"
#include "server/services.h"

namespace synod::server {

namespace {

class LockReactor final : public grpc::ServerUnaryReactor {
 public:
  LockReactor(Server* server, KeyWaiter* waiter, const v3lockpb::LockRequest& request,
              v3lockpb::LockResponse* response) {
    AcquireOptions options;
    options.prefix = request.name() + "/";
    options.lease = request.lease();
    options.release_on_error = true;  // etcd's Mutex.Lock unlocks when the wait fails
    options.lost_message = kSessionExpired;
    // The acquisition answers exactly once, and this reactor lives until it has (OnDone
    // follows Finish), so `this` is safe in the callback.
    acquisition_ =
        Acquisition::Start(server, waiter, std::move(options),
                           [this, server, response](grpc::Status status, Grant grant) {
                             if (status.ok()) {
                               FillHeaderFrom(*server, grant.header, response->mutable_header());
                               response->set_key(std::move(grant.key));
                             }
                             Finish(std::move(status));
                           });
  }

  void OnCancel() override { acquisition_->Cancel(); }
  void OnDone() override { delete this; }

 private:
  std::shared_ptr<Acquisition> acquisition_;
};

class LockService final : public v3lockpb::Lock::CallbackService {
 public:
  explicit LockService(Server* server) : server_(server), waiter_(&server->store()) {
    feed_id_ = server_->revisions().Subscribe([this](int64_t) { waiter_.Notify(); });
  }
  // The server destroys its services after the client listener has stopped (no RPC is in
  // flight) and while the revision feed still exists.
  ~LockService() override { server_->revisions().Unsubscribe(feed_id_); }

  grpc::ServerUnaryReactor* Lock(grpc::CallbackServerContext* /*context*/,
                                 const v3lockpb::LockRequest* request,
                                 v3lockpb::LockResponse* response) override {
    return new LockReactor(server_, &waiter_, *request, response);
  }

  // etcd: a plain delete of the key, whoever holds it; a missing key is not an error.
  grpc::ServerUnaryReactor* Unlock(grpc::CallbackServerContext* context,
                                   const v3lockpb::UnlockRequest* request,
                                   v3lockpb::UnlockResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    kvpb::Request del;
    del.mutable_delete_range()->set_key(request->key());
    server_->Serve(std::move(del), [this, reactor, response](serverpb::Outcome outcome) {
      if (outcome.grpc_code() != 0) {
        reactor->Finish(ClientError(outcome));
        return;
      }
      FillHeaderFrom(*server_, outcome.response().delete_range().header(),
                     response->mutable_header());
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

 private:
  Server* const server_;
  KeyWaiter waiter_;
  uint64_t feed_id_ = 0;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeLockService(Server* server) {
  return std::make_unique<LockService>(server);
}

}  // namespace synod::server
