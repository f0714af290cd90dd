// ServerConfig: what one synod member is told at start-up — etcd's core flags, with
// etcd's names, meanings and defaults (docs/operations.md lists them).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/result.h"

namespace synod::server {

struct ServerConfig {
  std::string name = "default";
  std::string data_dir;  // empty: "<name>.etcd", as etcd
  std::vector<std::string> listen_client_urls{"http://localhost:2379"};
  std::vector<std::string> advertise_client_urls{"http://localhost:2379"};
  std::vector<std::string> listen_peer_urls{"http://localhost:2380"};
  std::vector<std::string> initial_advertise_peer_urls{"http://localhost:2380"};
  // "name=url[,name=url...]"; empty: "<name>=<initial-advertise-peer-urls>", as etcd.
  std::string initial_cluster;
  std::string initial_cluster_state = "new";  // or "existing"
  std::string initial_cluster_token = "etcd-cluster";
  int64_t heartbeat_interval_ms = 100;
  int64_t election_timeout_ms = 1000;
  uint64_t snapshot_count = 100000;
  // Entries a member keeps in memory before its newest snapshot, so that a follower a
  // little behind catches up from the log (etcd 3.5's flag; 3.4 keeps 5000, fixed).
  uint64_t snapshot_catchup_entries = 5000;
  int64_t quota_backend_bytes = 0;  // 0: the default, 2 GiB
  uint64_t max_request_bytes = 1536 * 1024;
  int64_t max_txn_ops = 128;
  std::string log_level = "info";
  // synod's own.
  std::string consensus = "raft";  // or "multi-paxos"
  bool auto_promote_learners = false;
  // The most key and value bytes one Range response holds (past it: RESOURCE_EXHAUSTED).
  uint64_t max_range_bytes = 512ull << 20;
};

// A parsed URL of the forms etcd accepts: http://host:port or unix://path.
struct Url {
  std::string scheme;  // "http" or "https"
  std::string host;
  int port = 0;
  // "host:port", what gRPC listens on / dials.
  std::string HostPort() const;
};

Result<Url> ParseUrl(const std::string& text);
// "a=http://x:1,b=http://y:2" -> {a: [http://x:1], b: [http://y:2]} (a name may repeat,
// giving it several URLs).
Result<std::map<std::string, std::vector<std::string>>> ParseInitialCluster(
    const std::string& text);
// Checks the config as etcd does at start-up; fills the defaults that depend on others.
Status Finalize(ServerConfig* config);

// etcd derives a member's id from its peer URLs and the cluster token, and the cluster's
// id from its members' ids; synod does the same (with its own hash), so that every member
// computes the same ids from the same flags.
uint64_t MemberIdFor(const std::vector<std::string>& peer_urls, const std::string& token);
uint64_t ClusterIdFor(const std::vector<uint64_t>& member_ids, const std::string& token);

}  // namespace synod::server
