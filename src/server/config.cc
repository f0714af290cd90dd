#include "server/config.h"

#include <algorithm>
#include <cstdlib>

namespace synod::server {

namespace {

std::vector<std::string> Split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = text.find(sep, start);
    parts.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return parts;
}

// FNV-1a, 64 bits: stable across builds and machines (std::hash is not).
uint64_t Fnv1a(const std::string& bytes, uint64_t hash = 0xcbf29ce484222325ULL) {
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

}  // namespace

std::string Url::HostPort() const { return host + ":" + std::to_string(port); }

Result<Url> ParseUrl(const std::string& text) {
  Url url;
  const size_t sep = text.find("://");
  if (sep == std::string::npos) {
    return Status(Code::kInvalidArgument,
                  "URL \"" + text + "\" has no scheme: expected http://host:port");
  }
  url.scheme = text.substr(0, sep);
  if (url.scheme != "http") {
    return Status(Code::kInvalidArgument, "URL \"" + text + "\": scheme \"" + url.scheme +
                                              "\" is not supported (synod serves http only; "
                                              "TLS is not implemented)");
  }
  std::string rest = text.substr(sep + 3);
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0 || rest.find('/') != std::string::npos) {
    return Status(Code::kInvalidArgument,
                  "URL \"" + text + "\" must be http://host:port (with an explicit port)");
  }
  url.host = rest.substr(0, colon);
  const std::string port = rest.substr(colon + 1);
  char* end = nullptr;
  const long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 0 || p > 65535) {
    return Status(Code::kInvalidArgument, "URL \"" + text + "\" has an invalid port");
  }
  url.port = static_cast<int>(p);
  return url;
}

Result<std::map<std::string, std::vector<std::string>>> ParseInitialCluster(
    const std::string& text) {
  std::map<std::string, std::vector<std::string>> members;
  for (const std::string& item : Split(text, ',')) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size()) {
      return Status(Code::kInvalidArgument,
                    "--initial-cluster: \"" + item + "\" is not name=peer-url");
    }
    const std::string url = item.substr(eq + 1);
    if (auto u = ParseUrl(url); !u.ok()) {
      return Status(Code::kInvalidArgument, "--initial-cluster: " + u.status().message());
    }
    members[item.substr(0, eq)].push_back(url);
  }
  return members;
}

Status Finalize(ServerConfig* c) {
  if (c->name.empty()) return Status(Code::kInvalidArgument, "--name must not be empty");
  if (c->data_dir.empty()) c->data_dir = c->name + ".etcd";
  if (c->initial_cluster.empty()) {
    for (const auto& url : c->initial_advertise_peer_urls) {
      if (!c->initial_cluster.empty()) c->initial_cluster += ",";
      c->initial_cluster += c->name + "=" + url;
    }
  }
  if (c->initial_cluster_state != "new" && c->initial_cluster_state != "existing") {
    return Status(Code::kInvalidArgument,
                  "--initial-cluster-state must be \"new\" or \"existing\", "
                  "not \"" +
                      c->initial_cluster_state + "\"");
  }
  for (const auto* list : {&c->listen_client_urls, &c->advertise_client_urls, &c->listen_peer_urls,
                           &c->initial_advertise_peer_urls}) {
    if (list->empty()) return Status(Code::kInvalidArgument, "a URL list flag is empty");
    for (const auto& url : *list) {
      if (auto u = ParseUrl(url); !u.ok()) return u.status();
    }
  }
  auto cluster = ParseInitialCluster(c->initial_cluster);
  if (!cluster.ok()) return cluster.status();
  auto self = cluster.value().find(c->name);
  if (self == cluster.value().end()) {
    return Status(Code::kInvalidArgument, "--initial-cluster has no member named \"" + c->name +
                                              "\" (couldn't find local name in the initial cluster "
                                              "configuration)");
  }
  std::vector<std::string> mine = self->second, advertised = c->initial_advertise_peer_urls;
  std::sort(mine.begin(), mine.end());
  std::sort(advertised.begin(), advertised.end());
  if (mine != advertised) {
    return Status(Code::kInvalidArgument,
                  "--initial-cluster gives \"" + c->name +
                      "\" other peer URLs than --initial-advertise-peer-urls");
  }
  if (c->heartbeat_interval_ms <= 0) {
    return Status(Code::kInvalidArgument, "--heartbeat-interval must be positive");
  }
  if (c->election_timeout_ms < 5 * c->heartbeat_interval_ms) {
    return Status(Code::kInvalidArgument,
                  "--election-timeout[" + std::to_string(c->election_timeout_ms) +
                      "ms] should be at least as 5 times as --heartbeat-interval[" +
                      std::to_string(c->heartbeat_interval_ms) + "ms]");
  }
  if (c->election_timeout_ms > 50000) {
    return Status(Code::kInvalidArgument, "--election-timeout is longer than 50000ms");
  }
  if (c->snapshot_count == 0) return Status(Code::kInvalidArgument, "--snapshot-count must be > 0");
  if (c->max_request_bytes == 0) {
    return Status(Code::kInvalidArgument, "--max-request-bytes must be > 0");
  }
  if (c->consensus != "raft" && c->consensus != "multi-paxos") {
    return Status(Code::kInvalidArgument,
                  "--consensus must be \"raft\" or \"multi-paxos\", not \"" + c->consensus + "\"");
  }
  return Status::Ok();
}

uint64_t MemberIdFor(const std::vector<std::string>& peer_urls, const std::string& token) {
  std::vector<std::string> sorted = peer_urls;
  std::sort(sorted.begin(), sorted.end());
  std::string key;
  for (const auto& u : sorted) key += u;
  key += token;
  const uint64_t id = Fnv1a(key);
  return id == 0 ? 1 : id;  // 0 means "no member"
}

uint64_t ClusterIdFor(const std::vector<uint64_t>& member_ids, const std::string& token) {
  std::vector<uint64_t> sorted = member_ids;
  std::sort(sorted.begin(), sorted.end());
  std::string key;
  for (uint64_t id : sorted) key += std::to_string(id) + ",";
  const uint64_t id = Fnv1a(key + token);
  return id == 0 ? 1 : id;
}

}  // namespace synod::server
