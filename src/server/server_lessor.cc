// The chores a member runs on its own clock (the lessor thread, every 100 ms):
//   - leases: the leader's store is the primary lessor; expired leases are revoked
//     through the log, so every member deletes their keys at the same revision;
//   - compaction: the history below a compaction revision is removed in small steps;
//   - publishing this member's name and client URLs (etcd's "publish");
//   - promoting caught-up learners (--auto-promote-learners).
#include <chrono>

#include "server/forward.h"
#include "server/log.h"
#include "server/server.h"
#include "server/server_internal.h"
#include "server/services.h"
#include "server/state_machine.h"

namespace synod::server {

using namespace std::chrono_literals;

namespace {
constexpr auto kLessorPeriod = 100ms;
// Revocations proposed per period (etcd rate-limits them too: a burst of expiries must
// not flood the log).
constexpr size_t kRevocationsMax = 500;
// Compaction work per period, in history entries.
constexpr size_t kCompactionStep = 10000;
}  // namespace

void Server::LessorLoop() {
  std::unique_lock lock(stop_mu_);
  while (!stopping_) {
    lock.unlock();
    LessorStep();
    lock.lock();
    stop_cv_.wait_for(lock, kLessorPeriod, [&] { return stopping_; });
  }
}

void Server::OnNoLeader(std::function<void()> listener) {
  std::lock_guard lock(no_leader_mu_);
  no_leader_listeners_.push_back(std::move(listener));
}

// etcd's monitorLeader: reconnecting a stream costs more than refusing a new one, so
// streams end only once the member has been without a leader for three election timeouts
// (and again after each further three).
void Server::MonitorLeader(std::chrono::steady_clock::time_point now) {
  if (HasLeader()) {
    no_leader_since_ = {};
    return;
  }
  if (no_leader_since_ == std::chrono::steady_clock::time_point{}) {
    no_leader_since_ = now;
    return;
  }
  if (now - no_leader_since_ < 3 * std::chrono::milliseconds(config_.election_timeout_ms)) return;
  no_leader_since_ = now;
  std::vector<std::function<void()>> listeners;
  {
    std::lock_guard lock(no_leader_mu_);
    listeners = no_leader_listeners_;
  }
  LogWarn("no leader for " + std::to_string(3 * config_.election_timeout_ms) +
          " ms: ending the streams that require one");
  for (auto& listener : listeners) listener();
}

void Server::LessorStep() {
  revision_waiters_->Expire(std::chrono::steady_clock::now());
  MonitorLeader(std::chrono::steady_clock::now());
  const runtime::NodeStatus status = node_->GetStatus();
  term_.store(status.engine.term, std::memory_order_relaxed);
  const bool leader = status.engine.role == consensus::Role::kLeader;
  const uint64_t now = MonotonicMs();
  if (leader && !store_->IsPrimary()) {
    // etcd's Promote: every lease gets its full TTL again, plus an election timeout.
    store_->Promote(now, static_cast<uint64_t>(config_.election_timeout_ms));
    LogInfo("became the leader at term " + std::to_string(status.engine.term) +
            ": leases are kept here now");
  } else if (!leader && store_->IsPrimary()) {
    store_->Demote();
  }
  if (leader && store_->IsPrimary()) {
    for (int64_t id : store_->ExpiredLeases(now, kRevocationsMax)) {
      {
        std::lock_guard lock(revoke_mu_);
        if (!revoking_.insert(id).second) continue;
      }
      serverpb::Command revoke;
      revoke.mutable_kv()->mutable_lease_revoke()->set_id(id);
      Propose(std::move(revoke), [this, id](serverpb::Outcome) {
        std::lock_guard lock(revoke_mu_);
        revoking_.erase(id);
      });
    }
  }
  if (store_->CompactionPending()) {
    const auto until = std::chrono::steady_clock::now() + 50ms;
    while (std::chrono::steady_clock::now() < until) {
      auto step = store_->CompactStep(kCompactionStep);
      if (!step.ok()) {
        LogError("compaction failed: " + step.status().message());
        break;
      }
      if (step.value().done) break;
    }
  }
  PublishSelfIfNeeded();
  CheckRemoved(status);
  if (leader && config_.auto_promote_learners) AutoPromoteLearners(status);
}

void Server::CheckRemoved(const runtime::NodeStatus& status) {
  // A member removed while it could not hear of it (the leader stops replicating to it)
  // finds no leader any more: it asks the others whether it is still a member.
  const uint64_t now = MonotonicMs();
  if (status.engine.leader != 0) {
    leaderless_since_ms_ = 0;
    return;
  }
  if (leaderless_since_ms_ == 0) leaderless_since_ms_ = now;
  const uint64_t quiet = 3 * static_cast<uint64_t>(config_.election_timeout_ms);
  if (now - leaderless_since_ms_ < quiet || now - last_removal_check_ms_ < quiet) return;
  last_removal_check_ms_ = now;
  for (uint64_t peer : forward_->peers()) {
    forward_->GetMembership(peer, std::chrono::milliseconds(1000),
                            [this](const serverpb::Membership* m) {
                              if (m == nullptr) return;
                              for (uint64_t removed : m->removed()) {
                                if (removed != member_id_) continue;
                                LogWarn("the cluster says this member has been removed: stopping");
                                Shutdown();
                              }
                            });
  }
}

void Server::PublishSelfIfNeeded() {
  if (publishing_.load()) return;
  const serverpb::Membership m = state_->membership();
  for (const auto& member : m.members()) {
    if (member.id() != member_id_) continue;
    const bool same_urls =
        std::equal(member.client_urls().begin(), member.client_urls().end(),
                   config_.advertise_client_urls.begin(), config_.advertise_client_urls.end());
    if (member.name() == config_.name && same_urls) return;
    serverpb::Command publish;
    serverpb::Member* me = publish.mutable_publish();
    me->set_id(member_id_);
    me->set_name(config_.name);
    for (const auto& url : config_.advertise_client_urls) me->add_client_urls(url);
    publishing_.store(true);
    Propose(std::move(publish), [this](serverpb::Outcome outcome) {
      if (outcome.grpc_code() == 0) {
        LogInfo("published this member's name and client URLs to the cluster");
      }
      publishing_.store(false);
    });
    return;
  }
}

void Server::AutoPromoteLearners(const runtime::NodeStatus& status) {
  if (promoting_.load()) return;
  const serverpb::Membership m = state_->membership();
  for (const auto& [id, peer] : status.engine.peers) {
    if (!peer.learner) continue;
    // Not yet in sync (the engine's rule: it has acknowledged, and is close behind).
    if (peer.match == 0 || peer.match + 1000 < status.engine.last_index) continue;
    consensuspb::ConfChange change;
    change.set_type(consensuspb::CONF_ADD_VOTER);
    change.set_node_id(id);
    for (const auto& member : m.members()) {
      if (member.id() != id) continue;
      serverpb::Member promoted = member;
      promoted.set_is_learner(false);
      change.set_context(promoted.SerializeAsString());
    }
    promoting_.store(true);
    LogInfo("promoting learner " + MemberIdHex(id) + ": it has caught up with the leader");
    ProposeConfChange(std::move(change), [this, id](serverpb::Outcome outcome) {
      if (outcome.grpc_code() != 0) {
        LogWarn("promoting learner " + MemberIdHex(id) + " failed: " + outcome.message());
      }
      promoting_.store(false);
    });
    return;
  }
}

}  // namespace synod::server
