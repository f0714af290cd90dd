#include "server/forward.h"

#include "server/server.h"
#include "server/services.h"

namespace synod::server {

ForwardClient::ForwardClient(std::map<uint64_t, std::string> peers) : peers_(std::move(peers)) {}

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

void ForwardClient::Call(uint64_t to, const serverpb::ForwardRequest& request,
                         std::chrono::milliseconds timeout,
                         std::function<void(serverpb::Outcome)> done) {
  std::shared_ptr<serverpb::Forward::Stub> stub = StubFor(to);
  if (stub == nullptr) {
    done(ErrorOutcome(grpc::StatusCode::UNAVAILABLE, "etcdserver: leader changed"));
    return;
  }
  struct Call {
    grpc::ClientContext context;
    serverpb::ForwardRequest request;
    serverpb::Outcome response;
    std::shared_ptr<serverpb::Forward::Stub> stub;  // kept alive while the call runs
  };
  auto call = std::make_shared<Call>();
  call->request = request;
  call->stub = stub;
  call->context.set_deadline(std::chrono::system_clock::now() + timeout);
  stub->async()->Forward(
      &call->context, &call->request, &call->response,
      [call, done = std::move(done)](grpc::Status status) {
        if (status.ok()) {
          done(std::move(call->response));
        } else if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
          done(ErrorOutcome(grpc::StatusCode::UNAVAILABLE, "etcdserver: request timed out"));
        } else {
          // Unreachable or gone: whoever leads next takes the retry.
          done(ErrorOutcome(grpc::StatusCode::UNAVAILABLE, "etcdserver: leader changed"));
        }
      });
}

namespace {

class ForwardService final : public serverpb::Forward::CallbackService {
 public:
  explicit ForwardService(Server* server) : server_(server) {}

  grpc::ServerUnaryReactor* Forward(grpc::CallbackServerContext* context,
                                    const serverpb::ForwardRequest* request,
                                    serverpb::Outcome* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    server_->ServeForwarded(*request, [reactor, response](serverpb::Outcome outcome) {
      *response = std::move(outcome);
      reactor->Finish(grpc::Status::OK);
    });
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
