// Who a member is and which cluster it belongs to.
//
//   restart          the data dir's membership file decides (the bootstrap flags are
//                    ignored, as etcd does); a data dir of another cluster is refused.
//   founding member  the ids come from --initial-cluster: every founding member computes
//                    the same ones from the same flags.
//   joining member   (--initial-cluster-state existing, after MemberAdd) asks the running
//                    members for the membership, and finds itself in it by peer URL.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "server/log.h"
#include "server/server.h"
#include "server/state_machine.h"
#include "synod/server.grpc.pb.h"

namespace synod::server {

namespace {

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// The member of `m` reached at exactly these peer URLs, or null.
const serverpb::Member* FindByPeerUrls(const serverpb::Membership& m,
                                       const std::vector<std::string>& peer_urls) {
  const auto want = Sorted(peer_urls);
  for (const auto& member : m.members()) {
    std::vector<std::string> have(member.peer_urls().begin(), member.peer_urls().end());
    if (Sorted(have) == want) return &member;
  }
  return nullptr;
}

}  // namespace

Status Server::ResumeMembership(const serverpb::Membership& stored) {
  if (stored.cluster_token() != config_.initial_cluster_token) {
    return Status(Code::kInvalidArgument,
                  "data dir " + config_.data_dir + " belongs to the cluster with token \"" +
                      stored.cluster_token() + "\", not \"" + config_.initial_cluster_token +
                      "\" (--initial-cluster-token): refusing to start");
  }
  const serverpb::Member* me = FindByPeerUrls(stored, config_.initial_advertise_peer_urls);
  if (me == nullptr) {
    return Status(Code::kInvalidArgument,
                  "data dir " + config_.data_dir +
                      " belongs to another member: no member of its cluster has the peer URLs "
                      "given by --initial-advertise-peer-urls (or it was removed): refusing to "
                      "start");
  }
  member_id_ = me->id();
  if (!config_.consensus.empty() && config_.consensus != stored.consensus() &&
      config_.consensus != "raft") {
    LogWarn("--consensus=" + config_.consensus + " is ignored: the cluster runs " +
            stored.consensus());
  }
  return Status::Ok();
}

Status Server::BootstrapMembership(serverpb::Membership* membership) {
  auto initial = ParseInitialCluster(config_.initial_cluster);
  if (!initial.ok()) return initial.status();
  membership->set_cluster_token(config_.initial_cluster_token);
  membership->set_consensus(config_.consensus);
  std::vector<uint64_t> ids;
  uint64_t small_id = 0;  // Multi-Paxos: 1, 2, 3... in name order (the map's order)
  for (const auto& [name, urls] : initial.value()) {
    serverpb::Member* m = membership->add_members();
    m->set_id(config_.consensus == "multi-paxos"
                  ? ++small_id
                  : MemberIdFor(urls, config_.initial_cluster_token));
    m->set_name(name);
    for (const auto& u : urls) m->add_peer_urls(u);
    ids.push_back(m->id());
  }
  if (small_id > 255) {
    return Status(Code::kInvalidArgument, "a multi-paxos cluster has at most 255 members");
  }
  std::vector<uint64_t> unique = ids;
  std::sort(unique.begin(), unique.end());
  if (std::adjacent_find(unique.begin(), unique.end()) != unique.end()) {
    return Status(Code::kInvalidArgument,
                  "--initial-cluster names two members with the same "
                  "peer URLs");
  }
  membership->set_cluster_id(ClusterIdFor(ids, config_.initial_cluster_token));
  const serverpb::Member* me = FindByPeerUrls(*membership, config_.initial_advertise_peer_urls);
  if (me == nullptr) {
    return Status(Code::kInvalidArgument,
                  "--initial-cluster gives \"" + config_.name +
                      "\" other peer URLs than --initial-advertise-peer-urls");
  }
  member_id_ = me->id();
  return Status::Ok();
}

Status Server::JoinMembership(serverpb::Membership* membership) {
  auto initial = ParseInitialCluster(config_.initial_cluster);
  if (!initial.ok()) return initial.status();
  std::vector<std::string> peers;
  for (const auto& [name, urls] : initial.value()) {
    if (name == config_.name) continue;
    for (const auto& u : urls) {
      if (auto url = ParseUrl(u); url.ok()) peers.push_back(url.value().HostPort());
    }
  }
  // The cluster may still be applying the MemberAdd: ask for up to ten seconds.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::string last_error = "no other member in --initial-cluster";
  while (std::chrono::steady_clock::now() < deadline) {
    for (const auto& peer : peers) {
      auto stub =
          serverpb::Forward::NewStub(grpc::CreateChannel(peer, grpc::InsecureChannelCredentials()));
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
      serverpb::Membership m;
      grpc::Status s = stub->GetMembership(&context, serverpb::GetMembershipRequest(), &m);
      if (!s.ok()) {
        last_error = peer + ": " + s.error_message();
        continue;
      }
      if (m.cluster_token() != config_.initial_cluster_token) {
        return Status(Code::kInvalidArgument, "the cluster at " + peer + " has token \"" +
                                                  m.cluster_token() + "\", not \"" +
                                                  config_.initial_cluster_token + "\"");
      }
      const serverpb::Member* me = FindByPeerUrls(m, config_.initial_advertise_peer_urls);
      if (me == nullptr) {
        last_error = "the cluster at " + peer +
                     " has no member with this member's peer URLs (add it first: etcdctl "
                     "member add)";
        continue;
      }
      member_id_ = me->id();
      *membership = m;
      membership->set_applied_index(0);
      return Status::Ok();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return Status(Code::kUnavailable, "cannot join the existing cluster: " + last_error);
}

uint64_t Server::NewMemberId(const std::vector<std::string>& peer_urls) const {
  const serverpb::Membership m = state_->membership();
  auto taken = [&](uint64_t id) {
    for (const auto& member : m.members()) {
      if (member.id() == id) return true;
    }
    return std::find(m.removed().begin(), m.removed().end(), id) != m.removed().end();
  };
  if (m.consensus() == "multi-paxos") {
    for (uint64_t id = 1; id <= 255; ++id) {
      if (!taken(id)) return id;
    }
    return 0;  // full
  }
  // As etcd: the peer URLs, the cluster token and the time, so that a member removed
  // and added again at the same address gets a new id.
  std::vector<std::string> salted = peer_urls;
  salted.push_back(std::to_string(std::time(nullptr)));
  uint64_t id = MemberIdFor(salted, m.cluster_token());
  while (taken(id)) ++id;
  return id;
}

}  // namespace synod::server
