#include "kv/keys.h"

#include "base/assert.h"

namespace synod::kv::keys {

void PutBig64(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}

uint64_t GetBig64(std::string_view in) {
  SYNOD_ASSERT(in.size() >= 8, "a big-endian u64 needs 8 bytes");
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

bool GetVarint(std::string_view* in, uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift <= 63 && !in->empty(); shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return false;
}

std::string EncodeU64(uint64_t v) {
  std::string out;
  PutBig64(&out, v);
  return out;
}

std::optional<uint64_t> DecodeU64(std::string_view in) {
  if (in.size() != 8) return std::nullopt;
  return GetBig64(in);
}

void AppendEscaped(std::string* out, std::string_view key) {
  for (char c : key) {
    out->push_back(c);
    if (c == '\0') out->push_back('\xff');
  }
  out->push_back('\0');
  out->push_back('\x01');
}

bool ReadEscaped(std::string_view* in, std::string* key) {
  key->clear();
  size_t i = 0;
  while (i < in->size()) {
    const char c = (*in)[i];
    if (c != '\0') {
      key->push_back(c);
      ++i;
      continue;
    }
    if (i + 1 >= in->size()) return false;
    const char next = (*in)[i + 1];
    if (next == '\xff') {
      key->push_back('\0');
      i += 2;
    } else if (next == '\x01') {
      in->remove_prefix(i + 2);
      return true;
    } else {
      return false;
    }
  }
  return false;
}

std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<uint8_t>(end.back()) != 0xff) {
      end.back() = static_cast<char>(static_cast<uint8_t>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return end;
}

std::string Current(std::string_view key) {
  std::string out(1, kCurrent);
  out.append(key);
  return out;
}

std::string CurrentEnd(std::string_view end) {
  if (end.empty()) return std::string(1, kCurrent + 1);
  return Current(end);
}

std::string History(std::string_view key, int64_t revision) {
  std::string out(1, kHistory);
  AppendEscaped(&out, key);
  PutBig64(&out, ~static_cast<uint64_t>(revision));
  return out;
}

std::string HistoryKeyBegin(std::string_view key) {
  std::string out(1, kHistory);
  AppendEscaped(&out, key);
  return out;
}

std::string HistoryKeyEnd(std::string_view key) {
  // esc(key) ends with 00 01; every later key's escape is > esc(key)[..-1] 02 (it differs
  // before that point, or continues with 00 FF or a non-zero byte).
  std::string out = HistoryKeyBegin(key);
  out.back() = '\x02';
  return out;
}

std::string HistoryEnd(std::string_view end) {
  if (end.empty()) return std::string(1, kHistory + 1);
  return HistoryKeyBegin(end);
}

bool ParseHistory(std::string_view hkey, std::string* key, int64_t* revision) {
  if (hkey.empty() || hkey.front() != kHistory) return false;
  hkey.remove_prefix(1);
  if (!ReadEscaped(&hkey, key) || hkey.size() != 8) return false;
  *revision = static_cast<int64_t>(~GetBig64(hkey));
  return true;
}

std::string Revision(int64_t main, int64_t sub) {
  std::string out(1, kRevision);
  PutBig64(&out, static_cast<uint64_t>(main));
  PutBig64(&out, static_cast<uint64_t>(sub));
  return out;
}

bool ParseRevision(std::string_view rkey, int64_t* main, int64_t* sub) {
  if (rkey.size() != 17 || rkey.front() != kRevision) return false;
  *main = static_cast<int64_t>(GetBig64(rkey.substr(1)));
  *sub = static_cast<int64_t>(GetBig64(rkey.substr(9)));
  return true;
}

std::string Lease(int64_t id) {
  std::string out(1, kLease);
  PutBig64(&out, static_cast<uint64_t>(id));
  return out;
}

std::string LeaseKeyPrefix(int64_t id) {
  std::string out(1, kLeaseKey);
  PutBig64(&out, static_cast<uint64_t>(id));
  return out;
}

std::string LeaseKey(int64_t id, std::string_view key) {
  std::string out = LeaseKeyPrefix(id);
  out.append(key);
  return out;
}

std::string Alarm(uint64_t member, int type) {
  std::string out(1, kAlarm);
  PutBig64(&out, member);
  out.push_back(static_cast<char>(type));
  return out;
}

namespace {
constexpr uint8_t kTombstoneFlag = 1;
}

std::string EncodeRecord(const Record& r) {
  std::string out;
  out.reserve(32 + r.value.size());
  out.push_back(static_cast<char>(r.tombstone ? kTombstoneFlag : 0));
  PutVarint(&out, static_cast<uint64_t>(r.mod_revision));
  PutVarint(&out, static_cast<uint64_t>(r.sub));
  PutVarint(&out, static_cast<uint64_t>(r.create_revision));
  PutVarint(&out, static_cast<uint64_t>(r.version));
  PutVarint(&out, static_cast<uint64_t>(r.lease));
  out.append(r.value);
  return out;
}

std::optional<bool> IsTombstone(std::string_view in) {
  if (in.empty() || (static_cast<uint8_t>(in.front()) & ~kTombstoneFlag) != 0) {
    return std::nullopt;
  }
  return (static_cast<uint8_t>(in.front()) & kTombstoneFlag) != 0;
}

bool DecodeRecord(std::string_view in, Record* r) {
  if (in.empty()) return false;
  const uint8_t flags = static_cast<uint8_t>(in.front());
  in.remove_prefix(1);
  if ((flags & ~kTombstoneFlag) != 0) return false;
  r->tombstone = (flags & kTombstoneFlag) != 0;
  uint64_t mod = 0, sub = 0, create = 0, version = 0, lease = 0;
  if (!GetVarint(&in, &mod) || !GetVarint(&in, &sub) || !GetVarint(&in, &create) ||
      !GetVarint(&in, &version) || !GetVarint(&in, &lease)) {
    return false;
  }
  r->mod_revision = static_cast<int64_t>(mod);
  r->sub = static_cast<int64_t>(sub);
  r->create_revision = static_cast<int64_t>(create);
  r->version = static_cast<int64_t>(version);
  r->lease = static_cast<int64_t>(lease);
  r->value.assign(in.data(), in.size());
  return true;
}

std::string EncodeEvent(const EventEntry& e) {
  std::string out(1, e.is_delete ? 'd' : 'p');
  PutVarint(&out, e.index);
  out.append(e.key);
  return out;
}

bool DecodeEvent(std::string_view in, EventEntry* e) {
  if (in.empty()) return false;
  const char tag = in.front();
  in.remove_prefix(1);
  e->index = 0;
  if (tag == 'p' || tag == 'd') {
    if (!GetVarint(&in, &e->index)) return false;
  } else if (tag != 'P' && tag != 'D') {  // format 1
    return false;
  }
  e->is_delete = tag == 'd' || tag == 'D';
  e->key.assign(in.data(), in.size());
  return true;
}

std::string EncodeLease(const LeaseRecord& lease) {
  std::string out;
  PutVarint(&out, static_cast<uint64_t>(lease.ttl_s));
  return out;
}

bool DecodeLease(std::string_view in, LeaseRecord* lease) {
  uint64_t ttl = 0;
  if (!GetVarint(&in, &ttl) || !in.empty()) return false;
  lease->ttl_s = static_cast<int64_t>(ttl);
  return true;
}

}  // namespace synod::kv::keys
