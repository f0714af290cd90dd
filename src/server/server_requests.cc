// How a Server serves requests: proposing (here or through the leader), read barriers,
// lease calls, retries while there is no leader, and the request timeout.
#include <chrono>

#include <grpcpp/grpcpp.h>

#include "kv/errors.h"
#include "server/forward.h"
#include "server/server.h"
#include "server/server_internal.h"
#include "server/services.h"
#include "server/state_machine.h"

namespace synod::server {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

// A pause between two attempts of a request that found no leader.
constexpr auto kRetryPause = 50ms;

serverpb::Outcome OutcomeOfProposal(const Result<std::string>& result) {
  if (result.ok()) {
    serverpb::Outcome outcome;
    if (!outcome.ParseFromString(result.value())) {
      return ErrorOutcome(grpc::StatusCode::INTERNAL, "unreadable apply result");
    }
    return outcome;
  }
  const Status& s = result.status();
  if (s.message().find("can only promote a learner member") != std::string::npos) {
    return ErrorOutcome(grpc::StatusCode::FAILED_PRECONDITION, "etcdserver: " + s.message());
  }
  switch (s.code()) {
    case Code::kNotLeader:
    case Code::kProposalDropped:
    // "proposal lost": another leader's entry took the index, so this one was never
    // applied anywhere: proposing it again is safe.
    case Code::kUnavailable:
      return ErrorOutcome(grpc::StatusCode::UNAVAILABLE, kLeaderChanged);
    case Code::kInvalidArgument:  // a refused membership change, e.g. "member already exists"
      return ErrorOutcome(grpc::StatusCode::FAILED_PRECONDITION, "etcdserver: " + s.message());
    case Code::kNotFound:
      return ErrorOutcome(grpc::StatusCode::NOT_FOUND, "etcdserver: member not found");
    case Code::kTooLarge:
      return ErrorOutcome(grpc::StatusCode::INVALID_ARGUMENT, "etcdserver: request is too large");
    default:
      return ErrorOutcome(grpc::StatusCode::UNAVAILABLE, "etcdserver: " + s.message());
  }
}

bool Retryable(const serverpb::Outcome& outcome) {
  return outcome.grpc_code() == grpc::StatusCode::UNAVAILABLE &&
         (outcome.message() == kLeaderChanged || outcome.message() == kNoLeader);
}

}  // namespace

// One request's life across attempts: answered once, by an attempt or by the timeout.
struct Server::Attempts : std::enable_shared_from_this<Server::Attempts> {
  Server* server;
  std::function<void(OutcomeCallback)> attempt;
  bool retry;
  Clock::time_point deadline;
  std::atomic<bool> answered{false};
  OutcomeCallback done;

  void Answer(serverpb::Outcome outcome) {
    if (answered.exchange(true)) return;
    OutcomeCallback d = std::move(done);
    d(std::move(outcome));
  }

  void Run() {
    if (server->draining_.load()) {
      Answer(ErrorOutcome(grpc::StatusCode::UNAVAILABLE, kStopped));
      return;
    }
    attempt([self = shared_from_this()](serverpb::Outcome outcome) {
      if (self->retry && Retryable(outcome) && !self->server->draining_.load() &&
          Clock::now() + kRetryPause < self->deadline) {
        self->server->timers_->After(kRetryPause, [self] { self->Run(); });
        return;
      }
      self->Answer(std::move(outcome));
    });
  }
};

std::chrono::milliseconds Server::RequestTimeout() const {
  return std::chrono::milliseconds(5000 + 2 * config_.election_timeout_ms);
}

void Server::Attempt(std::function<void(OutcomeCallback)> attempt, bool retry,
                     OutcomeCallback done) {
  auto a = std::make_shared<Attempts>();
  a->server = this;
  a->attempt = std::move(attempt);
  a->retry = retry;
  a->deadline = Clock::now() + RequestTimeout();
  a->done = std::move(done);
  timers_->After(RequestTimeout(), [weak = std::weak_ptr<Attempts>(a)] {
    if (auto a = weak.lock()) a->Answer(ErrorOutcome(grpc::StatusCode::UNAVAILABLE, kTimeout));
  });
  a->Run();
}

uint64_t Server::LeaderId() const { return node_->Leader(); }

// ---------------------------------------------------------------------------------
// Proposals

void Server::ServeAnywhere(std::shared_ptr<serverpb::ForwardRequest> request,
                           OutcomeCallback done) {
  Attempt([this, request](OutcomeCallback cb) { ServeOnce(request, /*forward=*/true, cb); },
          /*retry=*/true, std::move(done));
}

void Server::Propose(serverpb::Command command, OutcomeCallback done) {
  auto request = std::make_shared<serverpb::ForwardRequest>();
  *request->mutable_command() = std::move(command);
  ServeAnywhere(std::move(request), std::move(done));
}

void Server::ProposeConfChange(consensuspb::ConfChange change, OutcomeCallback done) {
  auto request = std::make_shared<serverpb::ForwardRequest>();
  *request->mutable_conf_change() = std::move(change);
  ServeAnywhere(std::move(request), std::move(done));
}

void Server::LeaseKeepAlive(kvpb::LeaseKeepAliveRequest keep_alive, OutcomeCallback done) {
  auto request = std::make_shared<serverpb::ForwardRequest>();
  *request->mutable_keep_alive() = std::move(keep_alive);
  ServeAnywhere(std::move(request), std::move(done));
}

void Server::LeaseTimeToLive(kvpb::LeaseTimeToLiveRequest time_to_live, OutcomeCallback done) {
  auto request = std::make_shared<serverpb::ForwardRequest>();
  *request->mutable_time_to_live() = std::move(time_to_live);
  ServeAnywhere(std::move(request), std::move(done));
}

void Server::ServeForwarded(serverpb::ForwardRequest request, OutcomeCallback done) {
  // Served here or refused, never forwarded again (the follower retries with whoever
  // leads by then), so a request cannot travel in circles.
  auto shared = std::make_shared<const serverpb::ForwardRequest>(std::move(request));
  Attempt([this, shared](OutcomeCallback cb) { ServeOnce(shared, /*forward=*/false, cb); },
          /*retry=*/false, std::move(done));
}

void Server::ServeOnce(const std::shared_ptr<const serverpb::ForwardRequest>& request, bool forward,
                       OutcomeCallback done) {
  const uint64_t leader = LeaderId();
  if (leader == 0) {
    done(ErrorOutcome(grpc::StatusCode::UNAVAILABLE, kNoLeader));
    return;
  }
  if (leader != member_id_) {
    if (forward) {
      forward_->Call(leader, *request, RequestTimeout(), std::move(done));
    } else {
      done(ErrorOutcome(grpc::StatusCode::UNAVAILABLE, kLeaderChanged));
    }
    return;
  }
  if (request->has_keep_alive() || request->has_time_to_live()) {
    done(ServeLease(*request));
    return;
  }
  auto answer = [done = std::move(done)](Result<std::string> r) { done(OutcomeOfProposal(r)); };
  switch (request->request_case()) {
    case serverpb::ForwardRequest::kCommand:
      node_->Propose(request->command().SerializeAsString(), std::move(answer));
      return;
    case serverpb::ForwardRequest::kConfChange:
      node_->ProposeConfChange(request->conf_change(), std::move(answer));
      return;
    default:
      answer(Status(Code::kInvalidArgument, "empty forwarded request"));
  }
}

void Server::TransferLeader(uint64_t member_id) { node_->TransferLeader(member_id); }

// ---------------------------------------------------------------------------------
// Key-value requests

void Server::Serve(kvpb::Request request, OutcomeCallback done) {
  if (is_learner_.load() && !(request.has_range() && request.range().serializable())) {
    // etcd: a learner serves serializable reads (and member status) only.
    done(ErrorOutcome(grpc::StatusCode::FAILED_PRECONDITION,
                      "etcdserver: rpc not supported for learner"));
    return;
  }
  if (Status s = store_->Validate(request); !s.ok()) {
    done(OutcomeOf(s));
    return;
  }
  if (request.has_range()) {
    const bool serializable = request.range().serializable();
    auto read = [this, range = std::move(*request.mutable_range()),
                 done = std::move(done)](serverpb::Outcome barrier) mutable {
      if (barrier.grpc_code() != 0) {
        done(std::move(barrier));
        return;
      }
      readers_->Run([this, range = std::move(range), done = std::move(done)] {
        auto r = store_->Range(range);
        if (!r.ok()) {
          done(OutcomeOf(r.status()));
          return;
        }
        serverpb::Outcome outcome;
        *outcome.mutable_response()->mutable_range() = std::move(r.value());
        done(std::move(outcome));
      });
    };
    if (serializable) {  // served from this member's store, as it is
      read(serverpb::Outcome());
    } else {
      ReadBarrier(std::move(read));
    }
    return;
  }
  if (!store_->QuotaAvailable(request)) {
    // etcd: the member raises the NOSPACE alarm, and the write is refused.
    serverpb::Command alarm;
    auto* a = alarm.mutable_kv()->mutable_alarm();
    a->set_action(kvpb::AlarmRequest::ACTIVATE);
    a->set_memberid(member_id_);
    a->set_alarm(kvpb::NOSPACE);
    Propose(std::move(alarm), [](serverpb::Outcome) {});
    done(OutcomeOf(kv::ErrNoSpace()));
    return;
  }
  serverpb::Command command;
  *command.mutable_kv() = std::move(request);
  Propose(std::move(command), [this, done = std::move(done)](serverpb::Outcome outcome) mutable {
    // Answer once this member has applied the write too (a follower forwarded it), as
    // etcd does: a watch or a serializable read here then sees it.
    const int64_t revision = ResponseRevision(outcome.response());
    if (outcome.grpc_code() != 0 || store_->Revision() >= revision) {
      done(std::move(outcome));
      return;
    }
    revision_waiters_->Wait(revision, Clock::now() + RequestTimeout(),
                            [outcome = std::move(outcome), done = std::move(done)]() mutable {
                              done(std::move(outcome));
                            });
  });
}

int64_t Server::ResponseRevision(const kvpb::Response& response) {
  switch (response.response_case()) {
    case kvpb::Response::kPut:
      return response.put().header().revision();
    case kvpb::Response::kDeleteRange:
      return response.delete_range().header().revision();
    case kvpb::Response::kTxn:
      return response.txn().header().revision();
    case kvpb::Response::kCompaction:
      return response.compaction().header().revision();
    case kvpb::Response::kLeaseRevoke:
      return response.lease_revoke().header().revision();
    default:
      return 0;
  }
}

void Server::ReadBarrier(OutcomeCallback done) {
  Attempt(
      [this](OutcomeCallback cb) {
        node_->ReadIndex([cb = std::move(cb)](Status s) {
          if (s.ok()) {
            cb(serverpb::Outcome());
          } else if (s.code() == Code::kNotLeader || s.code() == Code::kUnavailable) {
            cb(ErrorOutcome(grpc::StatusCode::UNAVAILABLE, kNoLeader));
          } else {
            cb(ErrorOutcome(grpc::StatusCode::UNAVAILABLE, "etcdserver: " + s.message()));
          }
        });
      },
      /*retry=*/true, std::move(done));
}

// ---------------------------------------------------------------------------------
// Leases: the leader's lessor keeps the expiry times, so the leader answers.

serverpb::Outcome Server::ServeLease(const serverpb::ForwardRequest& request) {
  if (!store_->IsPrimary()) {
    // Just elected: the lessor has not taken the leases over yet.
    return ErrorOutcome(grpc::StatusCode::UNAVAILABLE, kLeaderChanged);
  }
  serverpb::Outcome outcome;
  if (request.has_keep_alive()) {
    auto r = store_->LeaseKeepAlive(request.keep_alive(), MonotonicMs());
    if (!r.ok()) {
      return r.status().message() == kv::msg::kNotPrimary
                 ? ErrorOutcome(grpc::StatusCode::UNAVAILABLE, kLeaderChanged)
                 : OutcomeOf(r.status());
    }
    *outcome.mutable_keep_alive() = std::move(r.value());
  } else {
    auto r = store_->LeaseTimeToLive(request.time_to_live(), MonotonicMs());
    if (!r.ok()) return OutcomeOf(r.status());
    *outcome.mutable_time_to_live() = std::move(r.value());
  }
  return outcome;
}

}  // namespace synod::server
