#include "server/forward.h"

#include "server/server.h"
#include "server/server_internal.h"
#include "server/services.h"

namespace synod::server {

ForwardClient::ForwardClient(std::map<uint64_t, std::string> peers) : peers_(std::move(peers)) {}

ForwardClient::~ForwardClient() {
  std::unique_lock lock(mu_);
  stopping_ = true;  // queued requests are not sent: their timeouts answer them
  for (grpc::ClientContext* context : active_) context->TryCancel();
  idle_.wait(lock, [&] { return active_.empty(); });
}

void ForwardClient::SetPeer(uint64_t id, const std::string& address) {
  std::lock_guard lock(mu_);
  if (peers_[id] != address) stubs_.erase(id);
  peers_[id] = address;
}

void ForwardClient::RemovePeer(uint64_t id) {
  std::lock_guard lock(mu_);
  peers_.erase(id);
  stubs_.erase(id);
}

std::vector<uint64_t> ForwardClient::peers() const {
  std::lock_guard lock(mu_);
  std::vector<uint64_t> ids;
  for (const auto& [id, address] : peers_) ids.push_back(id);
  return ids;
}

std::shared_ptr<serverpb::Forward::Stub> ForwardClient::StubFor(uint64_t to) {
  std::lock_guard lock(mu_);
  return StubForLocked(to);
}

std::shared_ptr<serverpb::Forward::Stub> ForwardClient::StubForLocked(uint64_t to) {
  auto it = stubs_.find(to);
  if (it != stubs_.end()) return it->second;
  auto p = peers_.find(to);
  if (p == peers_.end()) return nullptr;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  auto channel = grpc::CreateCustomChannel(p->second, grpc::InsecureChannelCredentials(), args);
  std::shared_ptr<serverpb::Forward::Stub> stub = serverpb::Forward::NewStub(channel);
  stubs_[to] = stub;
  return stub;
}

void ForwardClient::GetMembership(uint64_t to, std::chrono::milliseconds timeout,
                                  std::function<void(const serverpb::Membership*)> done) {
  auto stub = StubFor(to);
  if (stub == nullptr) {
    done(nullptr);
    return;
  }
  struct Call {
    grpc::ClientContext context;
    serverpb::GetMembershipRequest request;
    serverpb::Membership response;
    std::shared_ptr<serverpb::Forward::Stub> stub;
  };
  auto call = std::make_shared<Call>();
  call->stub = stub;
  call->context.set_deadline(std::chrono::system_clock::now() + timeout);
  stub->async()->GetMembership(&call->context, &call->request, &call->response,
                               [call, done = std::move(done)](grpc::Status status) {
                                 done(status.ok() ? &call->response : nullptr);
                               });
}

namespace {

constexpr int kBatchesInFlight = 4;
constexpr size_t kBatchRequestsMax = 512;

// A call that failed before reaching the leader may be retried (with whoever leads
// next); one that failed on the way may have been applied, and must not be.
serverpb::Outcome FailedCall(const grpc::Status& status) {
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return ErrorOutcome(grpc::StatusCode::UNAVAILABLE, kTimeout);
  }
  const std::string& m = status.error_message();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
      (m.find("failed to connect") != std::string::npos ||
       m.find("Connection refused") != std::string::npos)) {
    return ErrorOutcome(grpc::StatusCode::UNAVAILABLE, kLeaderChanged);
  }
  return ErrorOutcome(grpc::StatusCode::UNAVAILABLE,
                      "etcdserver: request timed out, possibly due to connection lost");
}

}  // namespace

void ForwardClient::Call(uint64_t to, const serverpb::ForwardRequest& request,
                         std::chrono::milliseconds timeout,
                         std::function<void(serverpb::Outcome)> done) {
  std::lock_guard lock(mu_);
  if (peers_.find(to) == peers_.end()) {
    done(ErrorOutcome(grpc::StatusCode::UNAVAILABLE, kLeaderChanged));
    return;
  }
  Queue& queue = queues_[to];
  queue.requests.push_back(request);
  queue.callbacks.push_back(std::move(done));
  if (queue.in_flight < kBatchesInFlight) SendBatchLocked(to, &queue, timeout);
}

void ForwardClient::SendBatchLocked(uint64_t to, Queue* queue, std::chrono::milliseconds timeout) {
  if (queue->requests.empty() || stopping_) return;
  std::shared_ptr<serverpb::Forward::Stub> stub = StubForLocked(to);
  if (stub == nullptr) return;  // removed meanwhile: the queued requests time out
  struct Batch {
    grpc::ClientContext context;
    serverpb::ForwardBatch request;
    serverpb::OutcomeBatch response;
    std::vector<std::function<void(serverpb::Outcome)>> callbacks;
    std::shared_ptr<serverpb::Forward::Stub> stub;  // kept alive while the call runs
  };
  auto batch = std::make_shared<Batch>();
  const size_t n = std::min(queue->requests.size(), kBatchRequestsMax);
  for (size_t i = 0; i < n; ++i) {
    *batch->request.add_requests() = std::move(queue->requests[i]);
    batch->callbacks.push_back(std::move(queue->callbacks[i]));
  }
  queue->requests.erase(queue->requests.begin(), queue->requests.begin() + n);
  queue->callbacks.erase(queue->callbacks.begin(), queue->callbacks.begin() + n);
  batch->stub = stub;
  batch->context.set_deadline(std::chrono::system_clock::now() + timeout);
  ++queue->in_flight;
  active_.insert(&batch->context);
  stub->async()->ForwardMany(
      &batch->context, &batch->request, &batch->response,
      [this, to, timeout, batch](grpc::Status status) {
        {
          std::lock_guard lock(mu_);
          Queue& q = queues_[to];
          --q.in_flight;
          active_.erase(&batch->context);
          if (active_.empty()) idle_.notify_all();
          SendBatchLocked(to, &q, timeout);  // what gathered meanwhile
        }
        const bool ok = status.ok() && batch->response.outcomes_size() ==
                                           static_cast<int>(batch->callbacks.size());
        for (size_t i = 0; i < batch->callbacks.size(); ++i) {
          batch->callbacks[i](ok ? std::move(*batch->response.mutable_outcomes(static_cast<int>(i)))
                                 : FailedCall(status));
        }
      });
}

namespace {

class ForwardService final : public serverpb::Forward::CallbackService {
 public:
  explicit ForwardService(Server* server) : server_(server) {}

  grpc::ServerUnaryReactor* ForwardMany(grpc::CallbackServerContext* context,
                                        const serverpb::ForwardBatch* request,
                                        serverpb::OutcomeBatch* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    const int n = request->requests_size();
    if (n == 0) {
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
    for (int i = 0; i < n; ++i) response->add_outcomes();
    auto remaining = std::make_shared<std::atomic<int>>(n);
    for (int i = 0; i < n; ++i) {
      server_->ServeForwarded(request->requests(i),
                              [reactor, response, remaining, i](serverpb::Outcome outcome) {
                                *response->mutable_outcomes(i) = std::move(outcome);
                                if (remaining->fetch_sub(1) == 1) reactor->Finish(grpc::Status::OK);
                              });
    }
    return reactor;
  }

  grpc::ServerUnaryReactor* GetMembership(grpc::CallbackServerContext* context,
                                          const serverpb::GetMembershipRequest*,
                                          serverpb::Membership* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    *response = server_->membership();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  Server* server_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeForwardService(Server* server) {
  return std::make_unique<ForwardService>(server);
}

}  // namespace synod::server
