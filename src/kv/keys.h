// The layout of the MVCC store in the backend's single ordered keyspace (docs/kv.md).
//
//   c<key>                      current: the live version of every live key (a Record)
//   h<esc(key)><~rev, 8 BE>     history: every version and tombstone not yet compacted,
//                               newest first within a key (a Record)
//   r<rev, 8 BE><sub, 8 BE>     revision index: one entry per change, in revision order
//                               (an EventEntry: put/delete, the key and the log index of
//                               the entry that made the change) — the watch history, and
//                               where the newest revision and applied index are read back
//   l<lease id, 8 BE>           leases (a LeaseRecord)
//   k<lease id, 8 BE><key>      the keys attached to a lease
//   a<member, 8 BE><alarm type> active alarms
//   m<name>                     meta: applied index, revision, compaction, snapshot install
//
// esc() is an order-preserving, prefix-free escaping of arbitrary bytes (0x00 -> 00 FF, then
// the terminator 00 01), so that all versions of a key sort together and before the next key
// even when keys contain zero bytes. "~rev" is the bitwise complement, so that a seek to
// h<esc(key)><~R> lands on the newest version at or below revision R.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace synod::kv::keys {

inline constexpr char kCurrent = 'c';
inline constexpr char kHistory = 'h';
inline constexpr char kRevision = 'r';
inline constexpr char kLease = 'l';
inline constexpr char kLeaseKey = 'k';
inline constexpr char kAlarm = 'a';
inline constexpr char kMeta = 'm';

// Meta keys.
inline constexpr std::string_view kMetaAppliedIndex = "mapplied_index";
inline constexpr std::string_view kMetaRevision = "mrevision";
inline constexpr std::string_view kMetaCompactRevision = "mcompact_revision";
inline constexpr std::string_view kMetaCompactDone = "mcompact_done";
inline constexpr std::string_view kMetaFormat = "mformat";
inline constexpr std::string_view kMetaInstalling = "minstalling";
// 2: revision index entries carry the log index, and an entry that makes a revision writes
// no applied_index / revision meta (format 1 stores are read, and upgraded at open).
inline constexpr uint64_t kFormatVersion = 2;

// Fixed-width big-endian integers (order-preserving for unsigned values).
void PutBig64(std::string* out, uint64_t v);
uint64_t GetBig64(std::string_view in);  // in.size() >= 8

// Varints (LEB128) for record fields.
void PutVarint(std::string* out, uint64_t v);
bool GetVarint(std::string_view* in, uint64_t* v);

std::string EncodeU64(uint64_t v);  // 8 bytes BE, for meta values
std::optional<uint64_t> DecodeU64(std::string_view in);

// The order-preserving escape of a user key (see above).
void AppendEscaped(std::string* out, std::string_view key);
// Reads an escaped key from the front of `in`, advancing it; false if malformed.
bool ReadEscaped(std::string_view* in, std::string* key);

std::string Current(std::string_view key);
// The first key of the current table past every user key >= `key`'s range end. `end` empty
// means "no end".
std::string CurrentEnd(std::string_view end);

std::string History(std::string_view key, int64_t revision);
std::string HistoryKeyBegin(std::string_view key);  // before every version of `key`
std::string HistoryKeyEnd(std::string_view key);    // after every version of `key`
std::string HistoryEnd(std::string_view end);       // `end` empty: after the whole table
// Splits a history key into user key and revision.
bool ParseHistory(std::string_view hkey, std::string* key, int64_t* revision);

std::string Revision(int64_t main, int64_t sub);
bool ParseRevision(std::string_view rkey, int64_t* main, int64_t* sub);

std::string Lease(int64_t id);
std::string LeaseKey(int64_t id, std::string_view key);
std::string LeaseKeyPrefix(int64_t id);
std::string Alarm(uint64_t member, int type);

// The first key after every key that starts with `prefix` ("" if none exists).
std::string PrefixEnd(std::string_view prefix);

// A version of a key, or a tombstone, as stored under c... and h....
struct Record {
  bool tombstone = false;
  int64_t mod_revision = 0;
  int64_t sub = 0;  // position of this change within its revision
  int64_t create_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
  std::string value;
};
std::string EncodeRecord(const Record& record);
// Whether an encoded record is a tombstone, without decoding it (nullopt: malformed).
std::optional<bool> IsTombstone(std::string_view encoded);
bool DecodeRecord(std::string_view in, Record* record);

// The value of an r... entry: 'p' (put) or 'd' (delete), varint log index, key. Format 1
// stores wrote 'P' / 'D' and the key, without the index (read back as index 0).
struct EventEntry {
  bool is_delete = false;
  std::string key;
  uint64_t index = 0;  // the log entry that made the change
};
std::string EncodeEvent(const EventEntry& entry);
bool DecodeEvent(std::string_view in, EventEntry* entry);

struct LeaseRecord {
  int64_t ttl_s = 0;
};
std::string EncodeLease(const LeaseRecord& lease);
bool DecodeLease(std::string_view in, LeaseRecord* lease);

}  // namespace synod::kv::keys
