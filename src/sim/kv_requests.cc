#include "sim/kv_requests.h"

#include "base/assert.h"

namespace synod::sim {

kvpb::Request PutRequest(const std::string& key, const std::string& value) {
  kvpb::Request r;
  r.mutable_put()->set_key(key);
  r.mutable_put()->set_value(value);
  return r;
}

kvpb::Request CasRequest(const std::string& key, const std::optional<std::string>& expected,
                         const std::string& value, bool absent_by_create_revision) {
  kvpb::Request r;
  kvpb::TxnRequest* txn = r.mutable_txn();
  kvpb::Compare* cmp = txn->add_compare();
  cmp->set_key(key);
  cmp->set_result(kvpb::Compare::EQUAL);
  if (expected) {
    // etcd's rule: a VALUE compare on an absent key fails.
    cmp->set_target(kvpb::Compare::VALUE);
    cmp->set_value(*expected);
  } else if (absent_by_create_revision) {
    cmp->set_target(kvpb::Compare::CREATE);
    cmp->set_create_revision(0);
  } else {
    cmp->set_target(kvpb::Compare::VERSION);
    cmp->set_version(0);
  }
  kvpb::PutRequest* put = txn->add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  txn->add_failure()->mutable_request_range()->set_key(key);
  return r;
}

kvpb::Request DeleteRequest(const std::string& key, const std::string& range_end) {
  kvpb::Request r;
  r.mutable_delete_range()->set_key(key);
  r.mutable_delete_range()->set_range_end(range_end);
  return r;
}

kvpb::Request CompactionRequest(int64_t revision) {
  kvpb::Request r;
  r.mutable_compaction()->set_revision(revision);
  return r;
}

kvpb::RangeRequest GetRequest(const std::string& key) {
  kvpb::RangeRequest r;
  r.set_key(key);
  return r;
}

std::optional<std::string> ValueOf(const kvpb::RangeResponse& response) {
  SYNOD_ASSERT(response.kvs_size() <= 1, "a single-key range finds at most one key");
  if (response.kvs_size() == 0) return std::nullopt;
  return response.kvs(0).value();
}

CasOutcome CasOutcomeOf(const kvpb::Response& response) {
  SYNOD_ASSERT(response.has_txn(), "a compare-and-swap is answered by a txn response");
  const kvpb::TxnResponse& txn = response.txn();
  CasOutcome out;
  out.succeeded = txn.succeeded();
  if (!out.succeeded) {
    SYNOD_ASSERT(txn.responses_size() == 1 && txn.responses(0).has_response_range(),
                 "a failed compare-and-swap reads the key");
    out.read = ValueOf(txn.responses(0).response_range());
  }
  return out;
}

}  // namespace synod::sim
