#include "server/concurrency.h"

#include <utility>

namespace synod::server {

std::string LeaseHex(int64_t lease) {
  static constexpr char kDigits[] = "0123456789abcdef";
  // Go prints a negative int64 as "-" and the magnitude (which may be 2^63).
  uint64_t magnitude = lease < 0 ? 0 - static_cast<uint64_t>(lease) : static_cast<uint64_t>(lease);
  std::string digits;
  do {
    digits.insert(digits.begin(), kDigits[magnitude % 16]);
    magnitude /= 16;
  } while (magnitude != 0);
  return lease < 0 ? "-" + digits : digits;
}

grpc::Status ClientError(std::string message) {
  return grpc::Status(grpc::StatusCode::UNKNOWN, std::move(message));
}

grpc::Status ClientError(const serverpb::Outcome& outcome) {
  return ClientError(outcome.message());
}

namespace {

bool Failed(const serverpb::Outcome& outcome) { return outcome.grpc_code() != 0; }

kvpb::Compare CreateRevisionIs(const std::string& key, int64_t revision) {
  kvpb::Compare c;
  c.set_target(kvpb::Compare::CREATE);
  c.set_result(kvpb::Compare::EQUAL);
  c.set_key(key);
  c.set_create_revision(revision);
  return c;
}

// etcd's Get(prefix, WithFirstCreate()): the oldest key under the prefix.
kvpb::RangeRequest FirstCreated(const std::string& prefix) {
  kvpb::RangeRequest r;
  r.set_key(prefix);
  r.set_range_end(PrefixRangeEnd(prefix));
  r.set_sort_target(kvpb::RangeRequest::CREATE);
  r.set_sort_order(kvpb::RangeRequest::ASCEND);
  r.set_limit(1);
  return r;
}

kvpb::RangeRequest Get(const std::string& key) {
  kvpb::RangeRequest r;
  r.set_key(key);
  return r;
}

}  // namespace

std::shared_ptr<Acquisition> Acquisition::Start(Server* server, KeyWaiter* waiter,
                                                AcquireOptions options, Done done) {
  auto a = std::make_shared<Acquisition>(server, waiter, std::move(options), std::move(done));
  a->Begin();
  return a;
}

Acquisition::Acquisition(Server* server, KeyWaiter* waiter, AcquireOptions options, Done done)
    : server_(server), waiter_(waiter), options_(std::move(options)), done_(std::move(done)) {}

bool Acquisition::cancelled() const {
  std::lock_guard lock(mu_);
  return cancelled_;
}

void Acquisition::Cancel() {
  uint64_t wait_id = 0;
  {
    std::lock_guard lock(mu_);
    if (cancelled_ || !done_) return;
    cancelled_ = true;
    wait_id = wait_id_;
  }
  // Waiting: nothing else will happen unless we act. Otherwise the step in flight (a
  // proposal, a read) sees `cancelled_` when it returns.
  if (wait_id != 0 && waiter_->Cancel(wait_id)) {
    Abandon(grpc::Status::CANCELLED, /*release=*/true);
  }
}

// A request without a lease gets one, as etcd's session does (concurrency.NewSession with
// no lease grants one of 60 s, and the service orphans it: it is never kept alive).
void Acquisition::Begin() {
  if (options_.lease != 0) {
    lease_ = options_.lease;
    Enter();
    return;
  }
  kvpb::Request request;
  request.mutable_lease_grant()->set_ttl(kSessionTtlS);
  server_->Serve(std::move(request), [self = shared_from_this()](serverpb::Outcome outcome) {
    self->OnLeaseGranted(outcome);
  });
}

void Acquisition::OnLeaseGranted(const serverpb::Outcome& outcome) {
  if (Failed(outcome)) {
    Complete(ClientError(outcome));
    return;
  }
  const kvpb::LeaseGrantResponse& grant = outcome.response().lease_grant();
  if (!grant.error().empty()) {
    Complete(ClientError(grant.error()));
    return;
  }
  lease_ = grant.id();
  own_lease_ = true;
  if (cancelled()) {
    Abandon(grpc::Status::CANCELLED, /*release=*/true);
    return;
  }
  Enter();
}

// etcd's Mutex.tryAcquire / Election.Campaign txn: create my key unless this lease already
// has one (then reuse it and its place in the queue), and read the oldest key.
void Acquisition::Enter() {
  key_ = options_.prefix + LeaseHex(lease_);
  kvpb::Request request;
  kvpb::TxnRequest* txn = request.mutable_txn();
  *txn->add_compare() = CreateRevisionIs(key_, 0);
  kvpb::PutRequest* put = txn->add_success()->mutable_request_put();
  put->set_key(key_);
  put->set_value(options_.value);
  put->set_lease(lease_);
  *txn->add_success()->mutable_request_range() = FirstCreated(options_.prefix);
  *txn->add_failure()->mutable_request_range() = Get(key_);
  *txn->add_failure()->mutable_request_range() = FirstCreated(options_.prefix);
  server_->Serve(std::move(request), [self = shared_from_this()](serverpb::Outcome outcome) {
    self->OnEntered(outcome);
  });
}

void Acquisition::OnEntered(const serverpb::Outcome& outcome) {
  if (Failed(outcome)) {
    // etcd: the lease-not-found error of the put, as is.
    Abandon(ClientError(outcome), /*release=*/false);
    return;
  }
  const kvpb::TxnResponse& txn = outcome.response().txn();
  if (txn.responses_size() != 2) {
    Abandon(ClientError("synod: unexpected lock txn response"), /*release=*/false);
    return;
  }
  header_ = txn.header();
  std::string existing_value;
  if (txn.succeeded()) {
    revision_ = txn.header().revision();  // the txn's revision is the put's
  } else {
    const kvpb::RangeResponse& mine = txn.responses(0).response_range();
    if (mine.kvs_size() == 0) {  // the compare saw the key: cannot happen in one txn
      Abandon(ClientError("synod: lock key vanished inside a txn"), /*release=*/false);
      return;
    }
    revision_ = mine.kvs(0).create_revision();
    existing_value = mine.kvs(0).value();
  }
  if (cancelled()) {
    Abandon(grpc::Status::CANCELLED, /*release=*/true);
    return;
  }
  kvpb::RangeResponse owner = txn.responses(1).response_range();
  if (options_.proclaim && !txn.succeeded() && existing_value != options_.value) {
    Proclaim(std::move(owner));
    return;
  }
  Decide(owner);
}

// etcd's Campaign on a key this lease already holds with another value: Proclaim the new
// one; if that fails, Resign and fail.
void Acquisition::Proclaim(kvpb::RangeResponse owner) {
  kvpb::Request request;
  kvpb::TxnRequest* txn = request.mutable_txn();
  *txn->add_compare() = CreateRevisionIs(key_, revision_);
  kvpb::PutRequest* put = txn->add_success()->mutable_request_put();
  put->set_key(key_);
  put->set_value(options_.value);
  put->set_lease(lease_);
  server_->Serve(std::move(request),
                 [self = shared_from_this(), owner = std::move(owner)](serverpb::Outcome outcome) {
                   if (Failed(outcome)) {
                     self->Abandon(ClientError(outcome), /*release=*/true);
                   } else if (!outcome.response().txn().succeeded()) {
                     self->Abandon(ClientError(kElectionNotLeader), /*release=*/true);
                   } else if (self->cancelled()) {
                     self->Abandon(grpc::Status::CANCELLED, /*release=*/true);
                   } else {
                     self->header_ = outcome.response().txn().header();
                     self->Decide(owner);
                   }
                 });
}

// The txn that entered the queue is a linearizable read: if my key was the oldest there,
// it held the lock at that point, and only the lease is left to check.
void Acquisition::Decide(const kvpb::RangeResponse& owner) {
  if (owner.kvs_size() == 0 || owner.kvs(0).create_revision() == revision_) {
    CheckLease();
  } else {
    Wait();
  }
}

void Acquisition::Wait() {
  const uint64_t id = waiter_->WaitTurn(
      options_.prefix, revision_,
      [self = shared_from_this()](Status status) { self->OnTurn(std::move(status)); });
  bool cancel_now;
  {
    std::lock_guard lock(mu_);
    wait_id_ = id;
    cancel_now = cancelled_;
  }
  // Cancelled before the id was known: Cancel() could not stop the wait, so stop it here.
  if (cancel_now && waiter_->Cancel(id)) Abandon(grpc::Status::CANCELLED, /*release=*/true);
}

void Acquisition::OnTurn(Status status) {
  {
    std::lock_guard lock(mu_);
    wait_id_ = 0;
  }
  if (!status.ok()) {
    Fail(ClientError(status.message()));
    return;
  }
  if (cancelled()) {
    Abandon(grpc::Status::CANCELLED, /*release=*/true);
    return;
  }
  Verify();
}

// The wait decided on the local store; the grant is decided through the log: my key still
// has my create revision (so its lease has not been revoked) and every key under the prefix
// was created at my revision or later. etcd 3.4 skipped this and granted locks whose lease
// had expired during the wait (Jepsen, etcd 3.4.3).
void Acquisition::Verify() {
  kvpb::Request request;
  kvpb::TxnRequest* txn = request.mutable_txn();
  *txn->add_compare() = CreateRevisionIs(key_, revision_);
  kvpb::Compare* none_older = txn->add_compare();
  none_older->set_target(kvpb::Compare::CREATE);
  none_older->set_result(kvpb::Compare::GREATER);
  none_older->set_key(options_.prefix);
  none_older->set_range_end(PrefixRangeEnd(options_.prefix));
  none_older->set_create_revision(revision_ - 1);
  *txn->add_success()->mutable_request_range() = Get(key_);
  *txn->add_failure()->mutable_request_range() = Get(key_);
  server_->Serve(std::move(request), [self = shared_from_this()](serverpb::Outcome outcome) {
    self->OnVerified(outcome);
  });
}

void Acquisition::OnVerified(const serverpb::Outcome& outcome) {
  if (Failed(outcome)) {
    Fail(ClientError(outcome));
    return;
  }
  if (cancelled()) {
    Abandon(grpc::Status::CANCELLED, /*release=*/true);
    return;
  }
  const kvpb::TxnResponse& txn = outcome.response().txn();
  if (txn.succeeded()) {
    header_ = txn.header();
    CheckLease();
    return;
  }
  const kvpb::RangeResponse& mine = txn.responses_size() == 1
                                        ? txn.responses(0).response_range()
                                        : kvpb::RangeResponse::default_instance();
  if (mine.kvs_size() == 0 || mine.kvs(0).create_revision() != revision_) {
    // The lease expired or was revoked, or someone deleted the key (Unlock, Resign).
    Abandon(ClientError(options_.lost_message), /*release=*/false);
    return;
  }
  // My key is there but an older one is too: only a wait that ended early could tell us
  // that (keys are always created younger). Wait again rather than grant.
  Wait();
}

// The key being there proves the lease was not revoked; the leader's lessor also knows
// whether it has expired without being revoked yet (revocation is a proposal that follows
// expiry). A lease within a second of expiry (TTL 0) is not granted either.
void Acquisition::CheckLease() {
  kvpb::LeaseTimeToLiveRequest request;
  request.set_id(lease_);
  server_->LeaseTimeToLive(
      std::move(request),
      [self = shared_from_this()](serverpb::Outcome outcome) { self->OnLease(outcome); });
}

void Acquisition::OnLease(const serverpb::Outcome& outcome) {
  if (Failed(outcome)) {
    Fail(ClientError(outcome));
    return;
  }
  if (outcome.time_to_live().ttl() <= 0) {
    // Expiring or expired: give the key up now, nobody may hold the lock through it.
    Abandon(ClientError(options_.lost_message), /*release=*/true);
    return;
  }
  if (cancelled()) {
    Abandon(grpc::Status::CANCELLED, /*release=*/true);
    return;
  }
  Grant grant;
  grant.key = key_;
  grant.revision = revision_;
  grant.lease = lease_;
  grant.header = header_;
  Complete(grpc::Status::OK, std::move(grant));
}

void Acquisition::Abandon(grpc::Status status, bool release) {
  if (own_lease_) {
    // Nobody else knows this lease: revoking it removes the key too.
    kvpb::Request request;
    request.mutable_lease_revoke()->set_id(lease_);
    server_->Serve(std::move(request), [](serverpb::Outcome) {});
  } else if (release && revision_ != 0) {
    // Only the incarnation of the key this acquisition knows (etcd deletes by name).
    kvpb::Request request;
    kvpb::TxnRequest* txn = request.mutable_txn();
    *txn->add_compare() = CreateRevisionIs(key_, revision_);
    txn->add_success()->mutable_request_delete_range()->set_key(key_);
    server_->Serve(std::move(request), [](serverpb::Outcome) {});
  }
  Complete(std::move(status));
}

void Acquisition::Complete(grpc::Status status, Grant grant) {
  Done done;
  {
    std::lock_guard lock(mu_);
    if (!done_) return;
    done = std::move(done_);
    done_ = nullptr;
  }
  done(std::move(status), std::move(grant));
}

}  // namespace synod::server
