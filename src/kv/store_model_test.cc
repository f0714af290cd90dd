// Model-based test: random Put/DeleteRange/Txn/Range (past revisions included)/Compact/lease
// grant and revoke against the RocksDB store and against a dumb in-memory reference model of
// etcd's semantics, compared after every step. Physical compaction steps, restarts and
// snapshot round trips are mixed in; none of them may change what the store answers.
//
// SYNOD_KV_MODEL_OPS (default 100000; 25000 under the sanitizers) sets the number of
// operations, SYNOD_KV_MODEL_SEED the seed (default fixed), SYNOD_KV_MODEL_VERBOSE=1 prints
// every operation. A failure prints the seed and the step to replay it.
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <set>

#include "base/rng.h"
#include "kv/errors.h"
#include "kv/kv_test_util.h"

namespace synod::kv {
namespace {

const std::string kAll(1, '\0');

// ---------------------------------------------------------------------------------------
// The reference model: every version of every key in a vector, every question answered by
// a linear scan. No overlay, no encoding, no backend — written from etcd's documentation.

struct Ver {
  int64_t rev = 0;
  int64_t sub = 0;
  bool tomb = false;
  int64_t create = 0;
  int64_t version = 0;
  int64_t lease = 0;
  std::string value;
};

struct Range {
  std::string key, end;
  bool Has(const std::string& k) const {
    if (end.empty()) return k == key;
    if (end == kAll) return k >= key;
    return k >= key && k < end;
  }
};

class Model {
 public:
  int64_t rev = 1;
  int64_t compact = -1;
  std::map<std::string, std::vector<Ver>> hist;
  std::map<int64_t, int64_t> leases;  // id -> granted TTL

  const Ver* At(const std::string& key, int64_t r) const {
    auto it = hist.find(key);
    if (it == hist.end()) return nullptr;
    // Versions are in revision order: the last one at or below r.
    const auto& vs = it->second;
    auto after = std::upper_bound(vs.begin(), vs.end(), r,
                                  [](int64_t x, const Ver& v) { return x < v.rev; });
    if (after == vs.begin()) return nullptr;
    const Ver* found = &*(after - 1);
    return found->tomb ? nullptr : found;
  }

  static kvpb::KeyValue Kv(const std::string& key, const Ver& v) {
    kvpb::KeyValue kv;
    kv.set_key(key);
    kv.set_create_revision(v.create);
    kv.set_mod_revision(v.rev);
    kv.set_version(v.version);
    kv.set_value(v.value);
    kv.set_lease(v.lease);
    return kv;
  }

  std::vector<kvpb::KeyValue> Live(const Range& range, int64_t r) const {
    std::vector<kvpb::KeyValue> out;
    for (const auto& [key, versions] : hist) {
      if (!range.Has(key)) continue;
      if (const Ver* v = At(key, r)) out.push_back(Kv(key, *v));
    }
    return out;
  }

  // etcd's executeRange, at current revision `cur`.
  Status RangeAt(const kvpb::RangeRequest& q, int64_t cur, kvpb::RangeResponse* out) const {
    if (q.key().empty()) return ErrEmptyKey();
    if (q.revision() > cur) return ErrFutureRev();
    const int64_t r = q.revision() <= 0 ? cur : q.revision();
    if (r < compact) return ErrCompacted();
    auto kvs = Live({q.key(), q.range_end()}, r);
    const int64_t count = static_cast<int64_t>(kvs.size());
    if (q.count_only()) kvs.clear();
    std::erase_if(kvs, [&](const kvpb::KeyValue& kv) {
      return (q.max_mod_revision() != 0 && kv.mod_revision() > q.max_mod_revision()) ||
             (q.min_mod_revision() != 0 && kv.mod_revision() < q.min_mod_revision()) ||
             (q.max_create_revision() != 0 && kv.create_revision() > q.max_create_revision()) ||
             (q.min_create_revision() != 0 && kv.create_revision() < q.min_create_revision());
    });
    auto target = [&](const kvpb::KeyValue& kv) -> std::string {
      auto num = [](int64_t v) {  // order-preserving text of a non-negative number
        std::string s = std::to_string(v);
        return std::string(20 - s.size(), '0') + s;
      };
      switch (q.sort_target()) {
        case kvpb::RangeRequest::VERSION:
          return num(kv.version());
        case kvpb::RangeRequest::CREATE:
          return num(kv.create_revision());
        case kvpb::RangeRequest::MOD:
          return num(kv.mod_revision());
        case kvpb::RangeRequest::VALUE:
          return kv.value();
        default:
          return kv.key();
      }
    };
    // etcd's quirk, kept: without a sort order or filters, only limit + 1 keys (in key
    // order) are fetched — and then sorted, if the sort target is not the key.
    const bool filtered = q.min_mod_revision() != 0 || q.max_mod_revision() != 0 ||
                          q.min_create_revision() != 0 || q.max_create_revision() != 0;
    if (q.sort_order() == kvpb::RangeRequest::NONE && !filtered && q.limit() > 0 &&
        static_cast<int64_t>(kvs.size()) > q.limit() + 1) {
      kvs.resize(q.limit() + 1);
    }
    const bool sort =
        q.sort_order() != kvpb::RangeRequest::NONE || q.sort_target() != kvpb::RangeRequest::KEY;
    if (sort) {
      const bool desc = q.sort_order() == kvpb::RangeRequest::DESCEND;
      std::stable_sort(kvs.begin(), kvs.end(), [&](const auto& a, const auto& b) {
        return desc ? target(a) > target(b) : target(a) < target(b);
      });
    }
    out->Clear();
    if (q.limit() > 0 && static_cast<int64_t>(kvs.size()) > q.limit()) {
      kvs.resize(q.limit());
      out->set_more(true);
    }
    for (auto& kv : kvs) {
      if (q.keys_only()) kv.clear_value();
      *out->add_kvs() = kv;
    }
    out->set_count(count);
    out->mutable_header()->set_revision(cur);
    return Status::Ok();
  }

  // --- writes, within one applied request ---
  struct Writer {
    Model& m;
    int64_t begin;
    int64_t changes = 0;
    int64_t Cur() const { return begin + (changes > 0 ? 1 : 0); }
    void Put(const std::string& key, const std::string& value, int64_t lease) {
      Ver v{.rev = begin + 1,
            .sub = changes++,
            .create = begin + 1,
            .version = 1,
            .lease = lease,
            .value = value};
      if (const Ver* old = m.At(key, begin + 1)) {
        v.create = old->create;
        v.version = old->version + 1;
      }
      m.hist[key].push_back(v);
    }
    std::vector<kvpb::KeyValue> Delete(const Range& range) {
      auto live = m.Live(range, begin + 1);
      for (const auto& kv : live) {
        m.hist[kv.key()].push_back(Ver{.rev = begin + 1, .sub = changes++, .tomb = true});
      }
      return live;
    }
  };

  Status Put(Writer& w, const kvpb::PutRequest& p, kvpb::PutResponse* out) {
    const Ver* old = At(p.key(), w.begin + 1);
    const Ver prev = old != nullptr ? *old : Ver{};
    if ((p.ignore_value() || p.ignore_lease()) && old == nullptr) return ErrKeyNotFound();
    if (p.prev_kv() && old != nullptr) *out->mutable_prev_kv() = Kv(p.key(), prev);
    w.Put(p.key(), p.ignore_value() ? prev.value : p.value(),
          p.ignore_lease() ? prev.lease : p.lease());
    out->mutable_header()->set_revision(w.Cur());
    return Status::Ok();
  }

  void Delete(Writer& w, const kvpb::DeleteRangeRequest& d, kvpb::DeleteRangeResponse* out) {
    auto prev = w.Delete({d.key(), d.range_end()});
    out->set_deleted(static_cast<int64_t>(prev.size()));
    if (d.prev_kv()) {
      for (auto& kv : prev) *out->add_prev_kvs() = kv;
    }
    out->mutable_header()->set_revision(w.Cur());
  }

  bool Compare(const kvpb::Compare& c, int64_t at) const {
    auto kvs = Live({c.key(), c.range_end()}, at);
    if (kvs.empty()) {
      if (c.target() == kvpb::Compare::VALUE) return false;
      kvs.emplace_back();
    }
    for (const auto& kv : kvs) {
      int cmp = 0;
      auto three = [](auto a, auto b) { return a < b ? -1 : (a > b ? 1 : 0); };
      switch (c.target()) {
        case kvpb::Compare::VALUE:
          cmp = three(kv.value(), c.value());
          break;
        case kvpb::Compare::VERSION:
          cmp = three(kv.version(), c.version());
          break;
        case kvpb::Compare::CREATE:
          cmp = three(kv.create_revision(), c.create_revision());
          break;
        case kvpb::Compare::MOD:
          cmp = three(kv.mod_revision(), c.mod_revision());
          break;
        case kvpb::Compare::LEASE:
          cmp = three(kv.lease(), c.lease());
          break;
        default:
          break;
      }
      const bool ok = c.result() == kvpb::Compare::EQUAL       ? cmp == 0
                      : c.result() == kvpb::Compare::NOT_EQUAL ? cmp != 0
                      : c.result() == kvpb::Compare::GREATER   ? cmp > 0
                                                               : cmp < 0;
      if (!ok) return false;
    }
    return true;
  }

  // Decides every branch up front, on the state before the txn.
  void Path(const kvpb::TxnRequest& t, int64_t at, std::vector<bool>* path) const {
    bool ok = std::all_of(t.compare().begin(), t.compare().end(),
                          [&](const auto& c) { return Compare(c, at); });
    path->push_back(ok);
    for (const auto& op : ok ? t.success() : t.failure()) {
      if (op.has_request_txn()) Path(op.request_txn(), at, path);
    }
  }

  Status Check(const kvpb::TxnRequest& t, const std::vector<bool>& path, size_t* pos,
               int64_t at) const {
    const bool ok = path[(*pos)++];
    for (const auto& op : ok ? t.success() : t.failure()) {
      if (op.has_request_range()) {
        const int64_t r = op.request_range().revision();
        if (r != 0 && r > at) return ErrFutureRev();
        if (r != 0 && r < compact) return ErrCompacted();
      } else if (op.has_request_put()) {
        const auto& p = op.request_put();
        if ((p.ignore_value() || p.ignore_lease()) && At(p.key(), at) == nullptr) {
          return ErrKeyNotFound();
        }
        if (p.lease() != 0 && !leases.contains(p.lease())) return ErrLeaseNotFound();
      } else if (op.has_request_txn()) {
        Status s = Check(op.request_txn(), path, pos, at);
        if (!s.ok()) return s;
      }
    }
    return Status::Ok();
  }

  Status Exec(Writer& w, const kvpb::TxnRequest& t, const std::vector<bool>& path, size_t* pos,
              kvpb::TxnResponse* out) {
    const bool ok = path[(*pos)++];
    out->set_succeeded(ok);
    out->mutable_header();
    for (const auto& op : ok ? t.success() : t.failure()) {
      auto* r = out->add_responses();
      Status s;
      if (op.has_request_range()) {
        s = RangeAt(op.request_range(), w.Cur(), r->mutable_response_range());
      } else if (op.has_request_put()) {
        s = Put(w, op.request_put(), r->mutable_response_put());
      } else if (op.has_request_delete_range()) {
        Delete(w, op.request_delete_range(), r->mutable_response_delete_range());
      } else if (op.has_request_txn()) {
        s = Exec(w, op.request_txn(), path, pos, r->mutable_response_txn());
      }
      if (!s.ok()) return s;
    }
    return Status::Ok();
  }

  // Applies one request. Every error is found before the first write (as in etcd, whose
  // txn checks run before the txn), so a failed request leaves the model as it was.
  Status Apply(const kvpb::Request& q, kvpb::Response* out) {
    Writer w{*this, rev};
    Status s = ApplyInner(w, q, out);
    if (!s.ok()) {
      EXPECT_EQ(w.changes, 0) << "the model wrote before failing";
      out->Clear();
      return s;
    }
    rev = w.Cur();
    return s;
  }

  Status ApplyInner(Writer& w, const kvpb::Request& q, kvpb::Response* out) {
    if (q.has_range()) return RangeAt(q.range(), rev, out->mutable_range());
    if (q.has_put()) {
      const auto& p = q.put();
      if (p.key().empty()) return ErrEmptyKey();
      if (p.ignore_value() && !p.value().empty()) return ErrValueProvided();
      if (p.ignore_lease() && p.lease() != 0) return ErrLeaseProvided();
      if (p.lease() != 0 && !leases.contains(p.lease())) return ErrLeaseNotFound();
      return Put(w, p, out->mutable_put());
    }
    if (q.has_delete_range()) {
      if (q.delete_range().key().empty()) return ErrEmptyKey();
      Delete(w, q.delete_range(), out->mutable_delete_range());
      return Status::Ok();
    }
    if (q.has_txn()) {
      if (HasDuplicatePut(q.txn())) return ErrDuplicateKey();
      std::vector<bool> path;
      Path(q.txn(), rev, &path);
      size_t pos = 0;
      Status s = Check(q.txn(), path, &pos, rev);
      if (!s.ok()) return s;
      pos = 0;
      s = Exec(w, q.txn(), path, &pos, out->mutable_txn());
      if (!s.ok()) return s;
      out->mutable_txn()->mutable_header()->set_revision(w.Cur());
      return Status::Ok();
    }
    if (q.has_compaction()) {
      const int64_t r = q.compaction().revision();
      if (r <= compact) return ErrCompacted();
      if (r > rev) return ErrFutureRev();
      compact = r;
      out->mutable_compaction()->mutable_header()->set_revision(rev);
      return Status::Ok();
    }
    if (q.has_lease_grant()) {
      const int64_t id = q.lease_grant().id();
      int64_t ttl = q.lease_grant().ttl();
      if (ttl > 9000000000) return ErrLeaseTTLTooLarge();
      ttl = std::max<int64_t>(ttl, 2);
      if (leases.contains(id)) return ErrLeaseExist();
      leases[id] = ttl;
      auto* g = out->mutable_lease_grant();
      g->set_id(id);
      g->set_ttl(ttl);
      g->mutable_header()->set_revision(rev);
      return Status::Ok();
    }
    if (q.has_lease_revoke()) {
      const int64_t id = q.lease_revoke().id();
      if (!leases.contains(id)) return ErrLeaseNotFound();
      for (const auto& key : LeaseKeys(id)) w.Delete({key, ""});
      leases.erase(id);
      out->mutable_lease_revoke()->mutable_header()->set_revision(w.Cur());
      return Status::Ok();
    }
    return Status(Code::kInvalidArgument, "kv: empty request");
  }

  // The generator only ever produces one kind of duplicate: a key put twice at the top.
  static bool HasDuplicatePut(const kvpb::TxnRequest& t) {
    for (const auto* ops : {&t.success(), &t.failure()}) {
      std::set<std::string> seen;
      for (const auto& op : *ops) {
        if (op.has_request_put() && !seen.insert(op.request_put().key()).second) return true;
      }
    }
    return false;
  }

  std::vector<std::string> LeaseKeys(int64_t id) const {
    std::vector<std::string> out;
    for (const auto& [key, versions] : hist) {
      const Ver* v = At(key, rev);
      if (v != nullptr && v->lease == id) out.push_back(key);
    }
    return out;
  }

  std::vector<kvpb::Event> Events(int64_t start, const Range& range) const {
    std::vector<std::tuple<int64_t, int64_t, std::string, const Ver*>> changes;
    for (const auto& [key, versions] : hist) {
      if (!range.Has(key)) continue;
      auto first = std::lower_bound(versions.begin(), versions.end(), start,
                                    [](const Ver& v, int64_t x) { return v.rev < x; });
      for (auto v = first; v != versions.end(); ++v) {
        changes.emplace_back(v->rev, v->sub, key, &*v);
      }
    }
    std::sort(changes.begin(), changes.end());
    std::vector<kvpb::Event> out;
    for (const auto& [r, sub, key, v] : changes) {
      kvpb::Event e;
      if (v->tomb) {
        e.set_type(kvpb::Event::DELETE);
        e.mutable_kv()->set_key(key);
        e.mutable_kv()->set_mod_revision(r);
      } else {
        *e.mutable_kv() = Kv(key, *v);
      }
      if (r - 1 >= compact) {
        if (const Ver* prev = At(key, r - 1)) *e.mutable_prev_kv() = Kv(key, *prev);
      }
      out.push_back(e);
    }
    return out;
  }
};

// ---------------------------------------------------------------------------------------
// The random workload.

class Workload {
 public:
  explicit Workload(uint64_t seed) : rng_(seed) {}

  std::string Key() {
    static const char* kKeys[] = {"a", "a/1", "a/2", "b", "b/1", "c", "d", "e", "f", "g"};
    if (rng_.Chance(0.05)) return std::string("a\0z", 3);  // a zero byte inside
    return kKeys[rng_.Below(10)];
  }
  std::string Value() {
    static const char* kValues[] = {"", "x", "y", "z", "xx", "long value with spaces"};
    return kValues[rng_.Below(6)];
  }
  Range AnyRange() {
    switch (rng_.Below(5)) {
      case 0:
      case 1:
        return {Key(), ""};
      case 2:
        return {"a/", "a0"};  // a prefix
      case 3:
        return {Key(), kAll};
      default: {
        std::string x = Key(), y = Key();
        if (y < x) std::swap(x, y);
        return {x, y};
      }
    }
  }
  int64_t Lease(const Model& m) {
    if (rng_.Chance(0.7)) return 0;
    if (!m.leases.empty() && rng_.Chance(0.9)) {
      auto it = m.leases.begin();
      std::advance(it, rng_.Below(m.leases.size()));
      return it->first;
    }
    return static_cast<int64_t>(rng_.Between(1, 8));  // may not exist
  }
  int64_t Revision(const Model& m) {
    if (rng_.Chance(0.4)) return 0;
    const int64_t lo = std::max<int64_t>(1, m.compact - 2);
    return lo + static_cast<int64_t>(rng_.Below(static_cast<uint64_t>(m.rev + 2 - lo)));
  }

  kvpb::PutRequest Put(const Model& m, const std::string& key) {
    kvpb::PutRequest p;
    p.set_key(key);
    p.set_value(Value());
    p.set_lease(Lease(m));
    p.set_prev_kv(rng_.Chance(0.3));
    if (rng_.Chance(0.08)) {
      p.set_ignore_value(true);
      p.clear_value();
    }
    if (rng_.Chance(0.08)) {
      p.set_ignore_lease(true);
      p.clear_lease();
    }
    return p;
  }
  kvpb::DeleteRangeRequest Delete() {
    kvpb::DeleteRangeRequest d;
    Range r = AnyRange();
    d.set_key(r.key);
    d.set_range_end(r.end);
    d.set_prev_kv(rng_.Chance(0.5));
    return d;
  }
  kvpb::RangeRequest RangeQ(const Model& m) {
    kvpb::RangeRequest q;
    Range r = AnyRange();
    q.set_key(r.key);
    q.set_range_end(r.end);
    q.set_revision(Revision(m));
    if (rng_.Chance(0.3)) q.set_limit(static_cast<int64_t>(rng_.Between(1, 4)));
    if (rng_.Chance(0.3)) {
      q.set_sort_order(static_cast<kvpb::RangeRequest::SortOrder>(rng_.Below(3)));
      q.set_sort_target(static_cast<kvpb::RangeRequest::SortTarget>(rng_.Below(5)));
    }
    q.set_count_only(rng_.Chance(0.1));
    q.set_keys_only(rng_.Chance(0.1));
    if (rng_.Chance(0.1)) q.set_min_mod_revision(Revision(m));
    if (rng_.Chance(0.1)) q.set_max_mod_revision(Revision(m));
    if (rng_.Chance(0.1)) q.set_min_create_revision(Revision(m));
    if (rng_.Chance(0.1)) q.set_max_create_revision(Revision(m));
    return q;
  }
  kvpb::Compare Cmp(const Model& m) {
    kvpb::Compare c;
    Range r = rng_.Chance(0.8) ? Range{Key(), ""} : AnyRange();
    c.set_key(r.key);
    c.set_range_end(r.end);
    c.set_result(static_cast<kvpb::Compare::CompareResult>(rng_.Below(4)));
    c.set_target(static_cast<kvpb::Compare::CompareTarget>(rng_.Below(5)));
    switch (c.target()) {
      case kvpb::Compare::VALUE:
        c.set_value(Value());
        break;
      case kvpb::Compare::VERSION:
        c.set_version(static_cast<int64_t>(rng_.Below(4)));
        break;
      case kvpb::Compare::CREATE:
        c.set_create_revision(Revision(m));
        break;
      case kvpb::Compare::MOD:
        c.set_mod_revision(Revision(m));
        break;
      default:
        c.set_lease(Lease(m));
    }
    return c;
  }
  // Writes only keys nobody else in the txn writes, except for a deliberate duplicate now
  // and then: what etcd's duplicate rule allows.
  kvpb::TxnRequest Txn(const Model& m, int depth, std::set<std::string>* used) {
    kvpb::TxnRequest t;
    const int compares = static_cast<int>(rng_.Below(3));
    for (int i = 0; i < compares; ++i) *t.add_compare() = Cmp(m);
    for (auto* branch : {t.mutable_success(), t.mutable_failure()}) {
      const int ops = static_cast<int>(rng_.Below(4));
      for (int i = 0; i < ops; ++i) {
        const uint64_t kind = rng_.Below(depth < 2 ? 4 : 3);
        kvpb::RequestOp op;
        if (kind == 0) {
          *op.mutable_request_range() = RangeQ(m);
        } else if (kind == 1) {
          const std::string key = Key();
          if (used->contains(key)) continue;
          used->insert(key);
          *op.mutable_request_put() = Put(m, key);
        } else if (kind == 2) {
          // Deletes of single keys nobody puts (a range delete would need interval checks).
          const std::string key = Key();
          if (used->contains(key)) continue;
          used->insert(key);
          *op.mutable_request_delete_range() = kvpb::DeleteRangeRequest();
          op.mutable_request_delete_range()->set_key(key);
          op.mutable_request_delete_range()->set_prev_kv(rng_.Chance(0.5));
        } else {
          *op.mutable_request_txn() = Txn(m, depth + 1, used);
        }
        *branch->Add() = op;
      }
    }
    if (depth == 0 && rng_.Chance(0.03)) {
      *t.add_success() = OpPut("dup", "1");
      *t.add_success() = OpPut("dup", "2");
    }
    return t;
  }

  kvpb::Request Next(const Model& m) {
    kvpb::Request q;
    const uint64_t dice = rng_.Below(100);
    if (dice < 30) {
      *q.mutable_put() = Put(m, Key());
    } else if (dice < 40) {
      *q.mutable_delete_range() = Delete();
    } else if (dice < 60) {
      std::set<std::string> used;
      *q.mutable_txn() = Txn(m, 0, &used);
    } else if (dice < 75) {
      *q.mutable_range() = RangeQ(m);
    } else if (dice < 80) {
      const int64_t lo = std::max<int64_t>(0, m.compact - 1);
      q.mutable_compaction()->set_revision(
          lo + static_cast<int64_t>(rng_.Below(static_cast<uint64_t>(m.rev + 2 - lo))));
    } else if (dice < 90) {
      q.mutable_lease_grant()->set_id(static_cast<int64_t>(rng_.Between(1, 8)));
      q.mutable_lease_grant()->set_ttl(static_cast<int64_t>(rng_.Below(20)));
    } else {
      q.mutable_lease_revoke()->set_id(static_cast<int64_t>(rng_.Between(1, 8)));
    }
    return q;
  }

  Rng& rng() { return rng_; }

 private:
  Rng rng_;
};

std::string Text(const google::protobuf::Message& m) { return m.ShortDebugString(); }

bool Same(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

// About 20 s on a slow machine either way: sanitizers make every operation ~4x slower.
#if defined(__SANITIZE_ADDRESS__)
constexpr uint64_t kDefaultOps = 25000;
#else
constexpr uint64_t kDefaultOps = 100000;
#endif

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

// Everything the store can be asked, compared with the model.
void CompareState(Store& store, const Model& m, Workload& w, bool deep) {
  ASSERT_EQ(store.Revision(), m.rev);
  ASSERT_EQ(store.CompactRevision(), m.compact);
  kvpb::RangeRequest all;
  all.set_key(kAll);
  all.set_range_end(kAll);
  kvpb::RangeResponse want;
  ASSERT_TRUE(m.RangeAt(all, m.rev, &want).ok());
  auto got = store.Range(all);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_TRUE(Same(got.value(), want))
      << "current state\n got  " << Text(got.value()) << "\n want " << Text(want);
  if (!deep) return;
  // A past revision, all keys.
  all.set_revision(std::max<int64_t>(1, m.compact) +
                   static_cast<int64_t>(w.rng().Below(
                       static_cast<uint64_t>(m.rev - std::max<int64_t>(1, m.compact) + 1))));
  ASSERT_TRUE(m.RangeAt(all, m.rev, &want).ok());
  got = store.Range(all);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_TRUE(Same(got.value(), want)) << "at revision " << all.revision() << "\n got  "
                                       << Text(got.value()) << "\n want " << Text(want);
  // The watch history from a recent revision.
  const int64_t start =
      std::max<int64_t>({1, m.compact, m.rev - static_cast<int64_t>(w.rng().Below(30))});
  const Range range = w.AnyRange();
  auto events = store.EventsSince(start, range.key, range.end, true, 1 << 20);
  ASSERT_TRUE(events.ok()) << events.status().ToString();
  const auto want_events = m.Events(start, range);
  ASSERT_EQ(events.value().events.size(), want_events.size()) << "events since " << start;
  for (size_t i = 0; i < want_events.size(); ++i) {
    ASSERT_TRUE(Same(events.value().events[i], want_events[i]))
        << "event " << i << " since " << start << "\n got  " << Text(events.value().events[i])
        << "\n want " << Text(want_events[i]);
  }
  // Leases and their keys.
  auto leases = store.LeaseLeases();
  ASSERT_EQ(static_cast<size_t>(leases.leases_size()), m.leases.size());
  for (const auto& [id, ttl] : m.leases) {
    kvpb::LeaseTimeToLiveRequest q;
    q.set_id(id);
    q.set_keys(true);
    auto t = store.LeaseTimeToLive(q, 0);
    ASSERT_TRUE(t.ok());
    ASSERT_EQ(t.value().grantedttl(), ttl);
    const auto keys = m.LeaseKeys(id);
    ASSERT_EQ(std::vector<std::string>(t.value().keys().begin(), t.value().keys().end()), keys)
        << "lease " << id;
  }
}

TEST(KvModel, TheStoreAnswersLikeTheReferenceModel) {
  const uint64_t seed = EnvOr("SYNOD_KV_MODEL_SEED", 20261126);
  const uint64_t ops = EnvOr("SYNOD_KV_MODEL_OPS", kDefaultOps);
  const bool verbose = EnvOr("SYNOD_KV_MODEL_VERBOSE", 0) != 0;
  std::cout << "kv model test: seed " << seed << ", " << ops << " operations\n";
  Workload w(seed);
  Model m;
  auto store = std::make_unique<TestStore>();
  const auto started = std::chrono::steady_clock::now();
  uint64_t restarts = 0, snapshots = 0, compact_steps = 0, failures = 0;
  for (uint64_t step = 0; step < ops; ++step) {
    SCOPED_TRACE("seed " + std::to_string(seed) + ", step " + std::to_string(step) +
                 " (rerun with SYNOD_KV_MODEL_SEED=" + std::to_string(seed) +
                 " SYNOD_KV_MODEL_OPS=" + std::to_string(step + 1) + ")");
    const kvpb::Request q = w.Next(m);
    if (verbose) std::cout << step << ": " << Text(q) << "\n";
    kvpb::Response want;
    const Status want_status = m.Apply(q, &want);
    if (q.has_range() && w.rng().Chance(0.5)) {
      // Half of the reads go straight to Store::Range, not through the log.
      auto got = (*store)->Range(q.range());
      ASSERT_EQ(got.ok() ? "" : got.status().message(), want_status.message()) << Text(q);
      if (got.ok()) {
        ASSERT_TRUE(Same(got.value(), want.range()))
            << Text(q) << "\n got  " << Text(got.value()) << "\n want " << Text(want.range());
      }
    } else {
      ApplyResult got = store->Apply(q);
      ASSERT_EQ(got.status.message(), want_status.message()) << Text(q);
      failures += got.status.ok() ? 0 : 1;
      ASSERT_TRUE(Same(got.response, want))
          << Text(q) << "\n got  " << Text(got.response) << "\n want " << Text(want);
    }
    CompareState(**store, m, w, step % 8 == 0);
    if (::testing::Test::HasFatalFailure()) return;

    if (w.rng().Chance(0.05)) {
      auto p = (*store)->CompactStep(1 + w.rng().Below(40));
      if (verbose) {
        std::cout << "   compact step: target " << p.value().target_revision << " removed "
                  << p.value().removed << (p.value().done ? " done" : "") << "\n";
      }
      ASSERT_TRUE(p.ok()) << p.status().ToString();
      ++compact_steps;
    }
    if (w.rng().Chance(0.0005)) {
      store->Reopen();
      ++restarts;
    }
    if (w.rng().Chance(0.0002)) {
      StringSnapshotSink sink;
      ASSERT_TRUE((*store)->WriteSnapshot(sink).ok());
      auto fresh = store->Sibling();
      StringSnapshotSource in(sink.data());
      ASSERT_TRUE((*fresh)->InstallSnapshot(in).ok());
      fresh->next_index = store->next_index;
      store = std::move(fresh);
      ++snapshots;
    }
  }
  CompareState(**store, m, w, true);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << "kv model test: " << ops << " operations (" << failures
            << " refused as etcd would) at revision " << m.rev << ", " << compact_steps
            << " compaction steps, " << restarts << " restarts, " << snapshots
            << " snapshot round trips, in " << seconds << " s\n";
}

}  // namespace
}  // namespace synod::kv
