// etcd's Cluster service: MemberList, MemberAdd, MemberRemove, MemberUpdate, MemberPromote.
//
// A change goes through the log: adding, removing and promoting are consensus membership
// changes (ConfChange, its context the serialized serverpb::Member), a new peer URL list is
// an ordinary command (Command.update_peer_urls). A follower forwards either to the leader;
// the answer comes once the change is applied there.
//
// etcd checks a change twice: before proposing (--strict-reconfig-check: "enough started
// members") and when applying it (membership.ValidateConfigurationChange: removed ids,
// existing ids and peer URLs, learner count). synod makes both checks before proposing,
// against this member's applied membership, with etcd's errors; the engine still refuses what
// would break its own rules (an id already present, one change at a time), and those
// refusals are turned into etcd's errors here. Not checked (etcd does it with its
// transport's connection times): that every voter has been reachable for a while.
//
// Member ids come from Server::NewMemberId: as etcd's, salted with the time, so that a member
// removed and added again at the same peer URLs gets a new id (a removed id is never reused).
#include <algorithm>
#include <string>
#include <vector>

#include "etcd/etcdserverpb/rpc.grpc.pb.h"
#include "server/config.h"
#include "server/log.h"
#include "server/server.h"
#include "server/services.h"

namespace synod::server {

namespace {

namespace epb = ::etcdserverpb;

// etcd's errors (api/v3rpc/rpctypes), with their gRPC codes.
constexpr char kBadUrls[] = "etcdserver: given member URLs are invalid";
constexpr char kMemberNotFound[] = "etcdserver: member not found";
constexpr char kMemberExist[] = "etcdserver: member ID already exist";
constexpr char kPeerUrlExist[] = "etcdserver: Peer URLs already exists";
constexpr char kNotEnoughStarted[] =
    "etcdserver: re-configuration failed due to not enough started members";
constexpr char kNotLearner[] = "etcdserver: can only promote a learner member";
constexpr char kLearnerNotReady[] =
    "etcdserver: can only promote a learner member which is in sync with leader";
constexpr char kTooManyLearners[] = "etcdserver: too many learner members in cluster";
// synod's own: Multi-Paxos member ids are small (Server::NewMemberId).
constexpr char kNoMemberId[] =
    "etcdserver: re-configuration failed: the cluster has no member id left to give";

// etcd 3.4 allows one learner at a time (membership.maxLearners).
constexpr int kLearnersMax = 1;

serverpb::Outcome Error(grpc::StatusCode code, std::string message) {
  return ErrorOutcome(code, std::move(message));
}

const serverpb::Member* FindMember(const serverpb::Membership& m, uint64_t id) {
  for (const auto& member : m.members()) {
    if (member.id() == id) return &member;
  }
  return nullptr;
}

// etcd counts a member as started once it has published its name.
bool IsStarted(const serverpb::Member& member) { return !member.name().empty(); }

// etcd's strict reconfiguration checks (membership.RaftCluster.IsReadyTo*): after the change,
// the started voters must still be a quorum.
bool ReadyToAddVoter(const serverpb::Membership& m) {
  int voters = 1;  // the new member
  int started = 0;
  for (const auto& member : m.members()) {
    if (member.is_learner()) continue;
    ++voters;
    if (IsStarted(member)) ++started;
  }
  // etcd's exception: a second member added to a one-member cluster (restoring from backup).
  if (started == 1 && voters == 2) return true;
  return started >= voters / 2 + 1;
}

bool ReadyToRemoveVoter(const serverpb::Membership& m, uint64_t id) {
  int voters = 0;
  int started = 0;
  for (const auto& member : m.members()) {
    if (member.is_learner() || member.id() == id) continue;
    ++voters;
    if (IsStarted(member)) ++started;
  }
  return started >= voters / 2 + 1;
}

bool ReadyToPromote(const serverpb::Membership& m) {
  int voters = 1;   // the learner, counted as a voter
  int started = 1;  // and as started
  for (const auto& member : m.members()) {
    if (member.is_learner()) continue;
    ++voters;
    if (IsStarted(member)) ++started;
  }
  return started >= voters / 2 + 1;
}

// Checks peer URLs as etcd's types.NewURLs does (at least one, each http://host:port) and
// sorts them, as etcd does.
bool ParsePeerUrls(const google::protobuf::RepeatedPtrField<std::string>& urls,
                   std::vector<std::string>* out) {
  if (urls.empty()) return false;
  for (const auto& url : urls) {
    if (!ParseUrl(url).ok()) return false;
    out->push_back(url);
  }
  std::sort(out->begin(), out->end());
  return true;
}

// The member (not `except`) already reached at one of `urls`, if any.
bool PeerUrlTaken(const serverpb::Membership& m, const std::vector<std::string>& urls,
                  uint64_t except) {
  for (const auto& member : m.members()) {
    if (member.id() == except) continue;
    for (const auto& url : member.peer_urls()) {
      if (std::find(urls.begin(), urls.end(), url) != urls.end()) return true;
    }
  }
  return false;
}

// The engine's refusals of a membership change, as etcd says them. The server reports an
// engine error as UNAVAILABLE "etcdserver: <engine message>" (server_requests.cc).
serverpb::Outcome EtcdOutcome(serverpb::Outcome outcome) {
  if (outcome.grpc_code() == 0) return outcome;
  const std::string& m = outcome.message();
  if (m.find("which is in sync with leader") != std::string::npos) {
    return Error(grpc::StatusCode::FAILED_PRECONDITION, kLearnerNotReady);
  }
  if (m == "etcdserver: member not found") {
    return Error(grpc::StatusCode::NOT_FOUND, kMemberNotFound);
  }
  if (m == "etcdserver: member already exists") {
    return Error(grpc::StatusCode::FAILED_PRECONDITION, kMemberExist);
  }
  if (m == "etcdserver: member is already a voter") {
    return Error(grpc::StatusCode::FAILED_PRECONDITION, kNotLearner);
  }
  if (m == "etcdserver: cannot remove the last voter") {
    return Error(grpc::StatusCode::FAILED_PRECONDITION, kNotEnoughStarted);
  }
  return outcome;
}

// The members as etcd lists them: sorted by id.
void FillMembers(std::vector<serverpb::Member> members,
                 google::protobuf::RepeatedPtrField<epb::Member>* out) {
  std::sort(members.begin(), members.end(),
            [](const auto& a, const auto& b) { return a.id() < b.id(); });
  for (const auto& member : members) *out->Add() = Convert<epb::Member>(member);
}

std::vector<serverpb::Member> MembersOf(const serverpb::Membership& m) {
  return {m.members().begin(), m.members().end()};
}

class ClusterService final : public epb::Cluster::CallbackService {
 public:
  explicit ClusterService(Server* server) : server_(server) {}

  grpc::ServerUnaryReactor* MemberList(grpc::CallbackServerContext* context,
                                       const epb::MemberListRequest* /*request*/,
                                       epb::MemberListResponse* response) override {
    // As etcd 3.4: this member's view, without a read barrier.
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    FillMembers(MembersOf(server_->membership()), response->mutable_members());
    server_->FillHeader(response->mutable_header());
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* MemberAdd(grpc::CallbackServerContext* context,
                                      const epb::MemberAddRequest* request,
                                      epb::MemberAddResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    std::vector<std::string> urls;
    if (!ParsePeerUrls(request->peerurls(), &urls)) {
      return Finish(reactor, Error(grpc::StatusCode::INVALID_ARGUMENT, kBadUrls));
    }
    const serverpb::Membership m = server_->membership();
    serverpb::Member added;
    for (const auto& url : urls) added.add_peer_urls(url);
    added.set_is_learner(request->islearner());

    // etcd's order: the strict reconfiguration check before proposing, then (at apply) the
    // peer URLs and the learner count.
    if (!added.is_learner() && !ReadyToAddVoter(m)) {
      return Finish(reactor, Error(grpc::StatusCode::FAILED_PRECONDITION, kNotEnoughStarted));
    }
    if (PeerUrlTaken(m, urls, /*except=*/0)) {
      return Finish(reactor, Error(grpc::StatusCode::FAILED_PRECONDITION, kPeerUrlExist));
    }
    if (added.is_learner()) {
      const auto learners = std::count_if(m.members().begin(), m.members().end(),
                                          [](const auto& x) { return x.is_learner(); });
      if (learners + 1 > kLearnersMax) {
        return Finish(reactor, Error(grpc::StatusCode::FAILED_PRECONDITION, kTooManyLearners));
      }
    }
    added.set_id(server_->NewMemberId(urls));
    if (added.id() == 0) {
      return Finish(reactor, Error(grpc::StatusCode::FAILED_PRECONDITION, kNoMemberId));
    }

    consensuspb::ConfChange change;
    change.set_type(added.is_learner() ? consensuspb::CONF_ADD_LEARNER
                                       : consensuspb::CONF_ADD_VOTER);
    change.set_node_id(added.id());
    change.set_context(added.SerializeAsString());
    server_->ProposeConfChange(
        std::move(change), [this, reactor, response, added](serverpb::Outcome outcome) {
          if (outcome.grpc_code() != 0) {
            Finish(reactor, EtcdOutcome(std::move(outcome)));
            return;
          }
          LogInfo("added member " + MemberIdHex(added.id()) +
                  (added.is_learner() ? " (learner)" : "") + " at " + added.peer_urls(0));
          *response->mutable_member() = Convert<epb::Member>(added);
          AnswerWithMembers(reactor, response, /*barrier=*/true,
                            [added](std::vector<serverpb::Member>* members) {
                              for (const auto& m : *members) {
                                if (m.id() == added.id()) return;
                              }
                              members->push_back(added);
                            });
        });
    return reactor;
  }

  grpc::ServerUnaryReactor* MemberRemove(grpc::CallbackServerContext* context,
                                         const epb::MemberRemoveRequest* request,
                                         epb::MemberRemoveResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    const uint64_t id = request->id();
    const serverpb::Membership m = server_->membership();
    const serverpb::Member* member = FindMember(m, id);
    if (member == nullptr) {
      return Finish(reactor, Error(grpc::StatusCode::NOT_FOUND, kMemberNotFound));
    }
    if (!member->is_learner() && !ReadyToRemoveVoter(m, id)) {
      return Finish(reactor, Error(grpc::StatusCode::FAILED_PRECONDITION, kNotEnoughStarted));
    }
    consensuspb::ConfChange change;
    change.set_type(consensuspb::CONF_REMOVE);
    change.set_node_id(id);
    change.set_context(member->SerializeAsString());
    server_->ProposeConfChange(
        std::move(change), [this, reactor, response, id](serverpb::Outcome outcome) {
          if (outcome.grpc_code() != 0) {
            Finish(reactor, EtcdOutcome(std::move(outcome)));
            return;
          }
          LogInfo("removed member " + MemberIdHex(id));
          // A member that removed itself is stopping: no read barrier through it.
          AnswerWithMembers(reactor, response, /*barrier=*/id != server_->member_id(),
                            [id](std::vector<serverpb::Member>* members) {
                              std::erase_if(*members, [id](const auto& m) { return m.id() == id; });
                            });
        });
    return reactor;
  }

  grpc::ServerUnaryReactor* MemberUpdate(grpc::CallbackServerContext* context,
                                         const epb::MemberUpdateRequest* request,
                                         epb::MemberUpdateResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    const uint64_t id = request->id();
    const serverpb::Membership m = server_->membership();
    if (FindMember(m, id) == nullptr) {
      return Finish(reactor, Error(grpc::StatusCode::NOT_FOUND, kMemberNotFound));
    }
    // etcd does not check the URLs of an update; synod does, since its peers dial them.
    std::vector<std::string> urls;
    if (!ParsePeerUrls(request->peerurls(), &urls)) {
      return Finish(reactor, Error(grpc::StatusCode::INVALID_ARGUMENT, kBadUrls));
    }
    if (PeerUrlTaken(m, urls, /*except=*/id)) {
      return Finish(reactor, Error(grpc::StatusCode::FAILED_PRECONDITION, kPeerUrlExist));
    }
    serverpb::Command command;
    serverpb::Member* update = command.mutable_update_peer_urls();
    update->set_id(id);
    for (const auto& url : urls) update->add_peer_urls(url);
    server_->Propose(std::move(command),
                     [this, reactor, response, id, urls](serverpb::Outcome outcome) {
                       if (outcome.grpc_code() != 0) {
                         Finish(reactor, std::move(outcome));
                         return;
                       }
                       LogInfo("updated the peer URLs of member " + MemberIdHex(id));
                       AnswerWithMembers(reactor, response, /*barrier=*/true,
                                         [id, urls](std::vector<serverpb::Member>* members) {
                                           for (auto& m : *members) {
                                             if (m.id() != id) continue;
                                             m.clear_peer_urls();
                                             for (const auto& url : urls) m.add_peer_urls(url);
                                           }
                                         });
                     });
    return reactor;
  }

  grpc::ServerUnaryReactor* MemberPromote(grpc::CallbackServerContext* context,
                                          const epb::MemberPromoteRequest* request,
                                          epb::MemberPromoteResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    const uint64_t id = request->id();
    const serverpb::Membership m = server_->membership();
    const serverpb::Member* member = FindMember(m, id);
    if (member == nullptr) {
      return Finish(reactor, Error(grpc::StatusCode::NOT_FOUND, kMemberNotFound));
    }
    if (!member->is_learner()) {
      return Finish(reactor, Error(grpc::StatusCode::FAILED_PRECONDITION, kNotLearner));
    }
    if (LearnerLagsHere(id)) {
      return Finish(reactor, Error(grpc::StatusCode::FAILED_PRECONDITION, kLearnerNotReady));
    }
    if (!ReadyToPromote(m)) {
      return Finish(reactor, Error(grpc::StatusCode::FAILED_PRECONDITION, kNotEnoughStarted));
    }
    serverpb::Member promoted = *member;
    promoted.set_is_learner(false);
    consensuspb::ConfChange change;
    change.set_type(consensuspb::CONF_ADD_VOTER);
    change.set_node_id(id);
    change.set_context(promoted.SerializeAsString());
    server_->ProposeConfChange(
        std::move(change), [this, reactor, response, id](serverpb::Outcome outcome) {
          if (outcome.grpc_code() != 0) {
            Finish(reactor, EtcdOutcome(std::move(outcome)));
            return;
          }
          LogInfo("promoted learner " + MemberIdHex(id) + " to a voting member");
          AnswerWithMembers(reactor, response, /*barrier=*/true,
                            [id](std::vector<serverpb::Member>* members) {
                              for (auto& m : *members) {
                                if (m.id() == id) m.set_is_learner(false);
                              }
                            });
        });
    return reactor;
  }

 private:
  static grpc::ServerUnaryReactor* Finish(grpc::ServerUnaryReactor* reactor,
                                          const serverpb::Outcome& outcome) {
    reactor->Finish(ToGrpcStatus(outcome));
    return reactor;
  }

  // Only the leader knows how far a learner has caught up. On the leader, etcd's rule
  // (isLearnerReady: the learner holds at least 90% of the leader's log) and the engine's
  // (at most learner_catchup_entries_max entries behind, the default the server keeps). A
  // follower forwards the change and only the engine's rule applies.
  bool LearnerLagsHere(uint64_t id) const {
    const runtime::NodeStatus status = server_->node_status();
    if (status.engine.role != consensus::Role::kLeader) return false;
    const auto it = status.engine.peers.find(id);
    if (it == status.engine.peers.end()) return false;
    const uint64_t match = it->second.match;
    const uint64_t leader_match = status.engine.last_index;
    const uint64_t catchup_max = runtime::NodeOptions().raft.learner_catchup_entries_max;
    return match * 10 < leader_match * 9 || match + catchup_max < leader_match;
  }

  // Answers a change with the members after it. The leader answered once the change was
  // applied there; this member's membership may lag, so a read barrier first (its apply then
  // caught up), and `patch` makes sure the list shows the change even if the barrier failed.
  template <typename Response, typename Patch>
  void AnswerWithMembers(grpc::ServerUnaryReactor* reactor, Response* response, bool barrier,
                         Patch patch) {
    auto answer = [this, reactor, response, patch](serverpb::Outcome) {
      std::vector<serverpb::Member> members = MembersOf(server_->membership());
      patch(&members);
      FillMembers(std::move(members), response->mutable_members());
      server_->FillHeader(response->mutable_header());
      reactor->Finish(grpc::Status::OK);
    };
    if (barrier) {
      server_->ReadBarrier(std::move(answer));
    } else {
      answer(serverpb::Outcome());
    }
  }

  Server* server_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeClusterService(Server* server) {
  return std::make_unique<ClusterService>(server);
}

}  // namespace synod::server
