// Leases: etcd's lessor. Grant and Revoke are replicated (applied from the log); expiry,
// keep-alive and the time left are the leader's local business (the "primary lessor").
#include <algorithm>
#include <limits>

#include "base/assert.h"
#include "kv/errors.h"
#include "kv/store_internal.h"

namespace synod::kv {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t ExpiryMs(uint64_t now_ms, int64_t ttl_s, uint64_t extend_ms) {
  return now_ms + static_cast<uint64_t>(ttl_s) * 1000 + extend_ms;
}

}  // namespace

bool Store::LeaseExists(int64_t id) const {
  std::lock_guard lock(lease_mu_);
  return leases_.contains(id);
}

Status Store::ApplyLeaseGrant(WriteTxn& txn, const kvpb::LeaseGrantRequest& request, uint64_t index,
                              uint64_t now_ms, kvpb::LeaseGrantResponse* response) {
  int64_t id = request.id();
  if (id == 0) {
    // etcd's server picks the ID before proposing; a request without one gets an ID derived
    // from its log index, the same on every member.
    for (uint64_t x = index;; ++x) {
      id = static_cast<int64_t>(SplitMix64(x) &
                                static_cast<uint64_t>(std::numeric_limits<int64_t>::max()));
      if (id != 0 && !LeaseExists(id)) break;
    }
  }
  int64_t ttl = request.ttl();
  if (ttl > options_.lease_ttl_max_s) return ErrLeaseTTLTooLarge();
  ttl = std::max(ttl, options_.lease_ttl_min_s);
  if (LeaseExists(id)) return ErrLeaseExist();
  txn.batch().Put(keys::Lease(id), keys::EncodeLease({.ttl_s = ttl}));
  txn.OnCommit([this, id, ttl, now_ms] {
    std::lock_guard lock(lease_mu_);
    LeaseState state{.ttl_s = ttl, .expiry_ms = std::nullopt};
    if (primary_) state.expiry_ms = ExpiryMs(now_ms, ttl, 0);
    leases_[id] = state;
  });
  response->mutable_header()->set_revision(txn.revision());
  response->set_id(id);
  response->set_ttl(ttl);
  return Status::Ok();
}

// Deletes every key attached to the lease in one revision (in key order, as etcd does, so the
// sub-revisions agree on every member), and the lease with them.
Status Store::ApplyLeaseRevoke(WriteTxn& txn, const kvpb::LeaseRevokeRequest& request,
                               kvpb::LeaseRevokeResponse* response) {
  const int64_t id = request.id();
  if (!LeaseExists(id)) return ErrLeaseNotFound();
  const std::string prefix = keys::LeaseKeyPrefix(id);
  std::vector<std::string> attached;
  auto it = backend_->NewIterator(prefix, keys::PrefixEnd(prefix));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    attached.emplace_back(it->key().substr(prefix.size()));
  }
  if (!it->status().ok()) return it->status();
  for (const auto& key : attached) {
    auto deleted = txn.DeleteRange(KeyRange::Make(key, ""), nullptr);
    if (!deleted.ok()) return deleted.status();
    SYNOD_ASSERT(deleted.value() == 1, "a key attached to a lease is live");
  }
  txn.batch().Delete(keys::Lease(id));
  txn.OnCommit([this, id] {
    std::lock_guard lock(lease_mu_);
    leases_.erase(id);
  });
  response->mutable_header()->set_revision(txn.revision());
  return Status::Ok();
}

void Store::Promote(uint64_t now_ms, uint64_t extend_ms) {
  std::lock_guard lock(lease_mu_);
  primary_ = true;
  for (auto& [id, lease] : leases_) lease.expiry_ms = ExpiryMs(now_ms, lease.ttl_s, extend_ms);
}

void Store::Demote() {
  std::lock_guard lock(lease_mu_);
  primary_ = false;
  for (auto& [id, lease] : leases_) lease.expiry_ms.reset();
}

bool Store::IsPrimary() const {
  std::lock_guard lock(lease_mu_);
  return primary_;
}

std::vector<int64_t> Store::ExpiredLeases(uint64_t now_ms, size_t max) const {
  std::vector<std::pair<uint64_t, int64_t>> expired;  // (expiry, id): soonest first
  {
    std::lock_guard lock(lease_mu_);
    if (!primary_) return {};
    for (const auto& [id, lease] : leases_) {
      if (lease.expiry_ms.has_value() && *lease.expiry_ms <= now_ms) {
        expired.emplace_back(*lease.expiry_ms, id);
      }
    }
  }
  std::sort(expired.begin(), expired.end());
  std::vector<int64_t> out;
  for (size_t i = 0; i < expired.size() && i < max; ++i) out.push_back(expired[i].second);
  return out;
}

Result<kvpb::LeaseKeepAliveResponse> Store::LeaseKeepAlive(
    const kvpb::LeaseKeepAliveRequest& request, uint64_t now_ms) {
  const int64_t revision = Revision();  // before lease_mu_: the lock order is mu_, lease_mu_
  std::lock_guard lock(lease_mu_);
  if (!primary_) return ErrNotPrimary();
  auto it = leases_.find(request.id());
  if (it == leases_.end()) return ErrLeaseNotFound();
  LeaseState& lease = it->second;
  // An expired lease is as good as revoked: its revoke is on its way through the log.
  if (lease.expiry_ms.has_value() && *lease.expiry_ms <= now_ms) return ErrLeaseNotFound();
  lease.expiry_ms = ExpiryMs(now_ms, lease.ttl_s, 0);
  kvpb::LeaseKeepAliveResponse response;
  response.mutable_header()->set_revision(revision);
  response.set_id(request.id());
  response.set_ttl(lease.ttl_s);
  return response;
}

Result<kvpb::LeaseTimeToLiveResponse> Store::LeaseTimeToLive(
    const kvpb::LeaseTimeToLiveRequest& request, uint64_t now_ms) const {
  auto view = TakeView();
  if (!view.ok()) return view.status();
  kvpb::LeaseTimeToLiveResponse response;
  response.mutable_header()->set_revision(view.value().revision);
  response.set_id(request.id());
  {
    std::lock_guard lock(lease_mu_);
    auto it = leases_.find(request.id());
    if (it == leases_.end()) {
      response.set_ttl(-1);
      return response;
    }
    const LeaseState& lease = it->second;
    response.set_grantedttl(lease.ttl_s);
    if (lease.expiry_ms.has_value()) {
      // Go's int64(Duration.Seconds()): truncation toward zero.
      const int64_t remaining_ms =
          static_cast<int64_t>(*lease.expiry_ms) - static_cast<int64_t>(now_ms);
      response.set_ttl(remaining_ms / 1000);
    } else {
      response.set_ttl(lease.ttl_s);
    }
  }
  if (request.keys()) {
    const std::string prefix = keys::LeaseKeyPrefix(request.id());
    auto it = view.value().reader->NewIterator(prefix, keys::PrefixEnd(prefix));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      response.add_keys(std::string(it->key().substr(prefix.size())));
    }
    if (!it->status().ok()) return it->status();
  }
  return response;
}

kvpb::LeaseLeasesResponse Store::LeaseLeases() const {
  kvpb::LeaseLeasesResponse response;
  response.mutable_header()->set_revision(Revision());
  std::lock_guard lock(lease_mu_);
  for (const auto& [id, lease] : leases_) response.add_leases()->set_id(id);
  return response;
}

}  // namespace synod::kv
