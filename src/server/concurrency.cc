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
// has one (then take it over, keeping its place in the queue), and read the oldest key.
//
// Taking an existing key over writes it again (etcd only reads it): the new mod revision
// marks the key as this acquisition's, so that the clean-up of an earlier, cancelled
// attempt with the same lease, still in flight, cannot delete it (Abandon compares it).
// A Campaign's value is put either way, which is etcd's Proclaim of a changed value.
void Acquisition::Enter() {
  key_ = options_.prefix + LeaseHex(lease_);
  kvpb::Request request;
  kvpb::TxnRequest* txn = request.mutable_txn();
  *txn->add_compare() = CreateRevisionIs(key_, 0);
  for (bool exists : {false, true}) {
    kvpb::PutRequest* put =
        (exists ? txn->add_failure() : txn->add_success())->mutable_request_put();
    put->set_key(key_);
    put->set_value(options_.value);
    put->set_lease(lease_);
    put->set_prev_kv(exists);
  }
  *txn->add_success()->mutable_request_range() = FirstCreated(options_.prefix);
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
  modified_ = txn.header().revision();  // the txn's revision is the put's
  if (txn.succeeded()) {
    revision_ = modified_;
  } else {
    const kvpb::PutResponse& put = txn.responses(0).response_put();
    if (!put.has_prev_kv()) {  // the compare saw the key: cannot happen in one txn
      Abandon(ClientError("synod: lock key vanished inside a txn"), /*release=*/false);
      return;
    }
    revision_ = put.prev_kv().create_revision();
  }
  if (cancelled()) {
    Abandon(grpc::Status::CANCELLED, /*release=*/true);
    return;
  }
  Decide(txn.responses(1).response_range());
}

// The txn that entered the queue is a linearizable read: if my key was the oldest there,
// it held the lock at that point, and only the lease is left to check.
void Acquisition::Decide(const kvpb::RangeResponse& owner) {
  if (owner.kvs_size() == 0 || owner.kvs(0).create_revision() == revision_) {
    Check(/*keys_too=*/false);
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
  Check(/*keys_too=*/true);
}

// The wait decided on the local store; the grant is decided by two reads after it, asked
// at once (a lock changes hands after one round trip, not two):
//  - a linearizable read (a read barrier, then the keys under the prefix created up to my
//    revision): my key must be there with my create revision — so its lease had not been
//    revoked — and no older key;
//  - the lease's time to live at the leader, whose lessor also knows whether the lease has
//    expired without being revoked yet (revocation is a proposal that follows expiry). A
//    lease within a second of expiry (TTL 0) is not granted either.
// The two reads may be served in either order. If the lease's was first, its TTL of at least
// a second still vouches for the lease at the keys' read as long as that came less than
// kLeaseCheckWindow later (lease expiry already assumes clocks that run at about the same
// rate); if the answers took longer, the lease is read again, after the keys. etcd 3.4
// checked neither and granted locks whose lease had expired during the wait (Jepsen, etcd
// 3.4.3).
constexpr std::chrono::milliseconds kLeaseCheckWindow{500};

void Acquisition::Check(bool keys_too) {
  {
    std::lock_guard lock(mu_);
    checks_asked_ = std::chrono::steady_clock::now();
    checks_awaited_ = keys_too ? 2 : 1;
    keys_checked_.reset();
  }
  auto self = shared_from_this();
  if (keys_too) {
    kvpb::Request request;
    kvpb::RangeRequest* range = request.mutable_range();
    range->set_key(options_.prefix);
    range->set_range_end(PrefixRangeEnd(options_.prefix));
    range->set_max_create_revision(revision_);
    range->set_keys_only(true);
    server_->Serve(std::move(request), [self](serverpb::Outcome outcome) {
      self->OnCheckAnswer(std::move(outcome), /*of_keys=*/true);
    });
  }
  kvpb::LeaseTimeToLiveRequest request;
  request.set_id(lease_);
  server_->LeaseTimeToLive(std::move(request), [self](serverpb::Outcome outcome) {
    self->OnCheckAnswer(std::move(outcome), /*of_keys=*/false);
  });
}

void Acquisition::OnCheckAnswer(serverpb::Outcome outcome, bool of_keys) {
  {
    std::lock_guard lock(mu_);
    (of_keys ? keys_checked_.emplace() : lease_checked_) = std::move(outcome);
    if (--checks_awaited_ > 0) return;
  }
  OnChecked();
}

// Every answer is in (the last one to arrive runs this, alone).
void Acquisition::OnChecked() {
  std::optional<serverpb::Outcome> keys;
  serverpb::Outcome lease;
  std::chrono::steady_clock::time_point asked;
  {
    std::lock_guard lock(mu_);
    keys = std::move(keys_checked_);
    lease = std::move(lease_checked_);
    asked = checks_asked_;
  }
  if (keys.has_value()) {
    if (Failed(*keys)) {
      Fail(ClientError(*keys));
      return;
    }
    if (cancelled()) {
      Abandon(grpc::Status::CANCELLED, /*release=*/true);
      return;
    }
    const kvpb::RangeResponse& range = keys->response().range();
    bool mine = false;
    for (const kvpb::KeyValue& kv : range.kvs()) {
      if (kv.create_revision() < revision_) {
        // An older key than mine: only a wait that ended early could lead here (keys are
        // always created younger). Wait again rather than grant.
        Wait();
        return;
      }
      mine = mine || (kv.key() == key_ && kv.create_revision() == revision_);
    }
    if (!mine) {
      // My key is gone: its lease expired or was revoked, or someone deleted it (Unlock,
      // Resign). A key of mine created later (another Lock with this lease) is not this
      // grant.
      Abandon(ClientError(options_.lost_message), /*release=*/false);
      return;
    }
    header_ = range.header();
    if (std::chrono::steady_clock::now() - asked >= kLeaseCheckWindow) {
      Check(/*keys_too=*/false);  // the lease's answer may be too old: ask again
      return;
    }
  }
  if (Failed(lease)) {
    Fail(ClientError(lease));
    return;
  }
  if (lease.time_to_live().ttl() <= 0) {
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
    // Only the key as this acquisition last wrote it (etcd deletes by name): not a newer
    // incarnation, nor the key a later attempt with the same lease has taken over.
    kvpb::Request request;
    kvpb::TxnRequest* txn = request.mutable_txn();
    *txn->add_compare() = CreateRevisionIs(key_, revision_);
    kvpb::Compare* mine = txn->add_compare();
    mine->set_target(kvpb::Compare::MOD);
    mine->set_result(kvpb::Compare::EQUAL);
    mine->set_key(key_);
    mine->set_mod_revision(modified_);
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
