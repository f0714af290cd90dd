// Everything the command line sets, with the defaults documented in bench/README.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace synod::bench {

using Clock = std::chrono::steady_clock;
using Time = Clock::time_point;
using Nanos = std::chrono::nanoseconds;

struct Options {
  std::string workload;  // put, range, txn-put, txn-mixed, watch, lock, lease, mixed

  // Where and how hard.
  std::vector<std::string> endpoints = {"127.0.0.1:2379"};  // host:port, http:// stripped
  int conns = 1;                             // gRPC channels, each its own TCP connection
  int clients = 1;                           // concurrent closed-loop clients over the channels
  int64_t total = 0;                         // operations; 0: run for `duration`
  Nanos duration{0};                         // 0 and total == 0: 10 s
  double rate = 0;                           // ops/s over all clients; 0: closed loop
  Nanos timeout = std::chrono::seconds(10);  // per RPC

  // Keys and values.
  std::string prefix = "synod-bench/";
  int64_t key_space = 10000;
  int key_size = 32;  // whole key, prefix included (grown to fit the index)
  int val_size = 256;
  bool seq_keys = false;
  int64_t preload = -1;       // -1: key_space for range and mixed, 0 otherwise
  bool serializable = false;  // --consistency s

  // Workload knobs.
  double read_ratio = 0.9;   // mixed
  int max_retries = 100;     // txn-mixed
  int watchers = 100;        // watch
  int locks = 1;             // lock
  int64_t lease_ttl_s = 60;  // lock and lease
  int keepalives = 1;        // lease: keep-alives per granted lease

  // Output.
  bool json = false;
  bool quiet = false;  // no progress lines on stderr
  uint64_t seed = 0;

  // The flags as (name, JSON value) pairs, for --json.
  std::vector<std::pair<std::string, std::string>> AsJsonFields() const;
};

// "10s", "250ms", "1.5m", "2h", "500us"; a bare number is seconds.
std::optional<Nanos> ParseDuration(const std::string& text);
std::string FormatDuration(Nanos d);

// "http://host:port" -> "host:port"; std::nullopt for https:// (no TLS here) or garbage.
std::optional<std::string> NormalizeEndpoint(std::string text);

}  // namespace synod::bench
