// The requests simulated clients send, built as the real key-value requests (kvpb::Request)
// that a server proposes, and what their responses mean to the clients.
//
// The linearizability checker models each checked key as a register with put, get and
// compare-and-swap; compare-and-swap is written as an etcd client writes it, a Txn. Deletes
// have no place in that model: they go to other keys, and the replica fingerprints
// (invariants.h) check them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "synod/kv.pb.h"

namespace synod::sim {

kvpb::Request PutRequest(const std::string& key, const std::string& value);

// Compare-and-swap: a Txn that puts `value` if the key's value is `expected` (VALUE compare),
// or, with `expected` nullopt, if the key is absent (a VERSION or, with
// `absent_by_create_revision`, a CREATE compare against 0); otherwise it reads the key.
kvpb::Request CasRequest(const std::string& key, const std::optional<std::string>& expected,
                         const std::string& value, bool absent_by_create_revision);

// Deletes the key, or every key of [key, range_end) if range_end is not empty.
kvpb::Request DeleteRequest(const std::string& key, const std::string& range_end);

// etcd's compaction: history before `revision` is dropped.
kvpb::Request CompactionRequest(int64_t revision);

kvpb::RangeRequest GetRequest(const std::string& key);

// The value a single-key range found (nullopt: the key is absent).
std::optional<std::string> ValueOf(const kvpb::RangeResponse& response);

// What a CasRequest's response says: whether it swapped, and if not, the value it read then.
struct CasOutcome {
  bool succeeded = false;
  std::optional<std::string> read;  // when !succeeded
};
CasOutcome CasOutcomeOf(const kvpb::Response& response);

}  // namespace synod::sim
