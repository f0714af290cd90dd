// The on-disk format of the write-ahead log: record framing, the segment header and segment
// file names. Pure functions over bytes, no I/O, so that every rule is unit-testable.
//
// A record is   [u32 length][u32 crc][u8 type][payload: `length` bytes]   (little-endian)
// where crc is the CRC32C of the type byte followed by the payload. The length is not
// covered by the checksum, but a damaged length moves the checksummed range, so it is caught
// all the same. Nine zero bytes are never a valid record (type 0 does not exist): that is how
// the zero-filled, preallocated end of a segment is told apart from data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace synod::storage {

enum class RecordType : uint8_t {
  kSegmentHeader = 1,  // first record of every segment: SegmentHeader
  kEntry = 2,          // a serialized consensuspb::Entry
  kHardState = 3,      // a serialized consensuspb::HardState
  kSnapshot = 4,       // a serialized consensuspb::SnapshotMetadata: entries <= index are
                       // covered by a snapshot kept elsewhere
};

inline constexpr size_t kRecordHeaderBytes = 9;                   // length + crc + type
inline constexpr uint64_t kSegmentMagic = 0x4C4157444F4E5953ULL;  // bytes "SYNODWAL" on disk
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr size_t kSegmentHeaderPayloadBytes = 8 + 4 + 8 + 8;

// Identifies a segment. `first_index` is the index the next entry written after the segment
// was created would have had (last index + 1 at creation): the log continues from there.
struct SegmentHeader {
  uint64_t seq = 0;
  uint64_t first_index = 0;
};

bool IsValidRecordType(uint8_t type);

// Appends one framed record to `out`.
void AppendRecord(RecordType type, std::string_view payload, std::string* out);
// Fills the header of a record whose `payload_bytes` of payload are already in place at
// `record + kRecordHeaderBytes` (lets a caller serialise straight into the output buffer).
void FillRecordHeader(RecordType type, size_t payload_bytes, char* record);

std::string EncodeSegmentHeader(const SegmentHeader& header);
// Returns nullopt and sets `why` when the payload is not a header of a version we read.
std::optional<SegmentHeader> DecodeSegmentHeader(std::string_view payload, std::string* why);

struct ParsedRecord {
  RecordType type = RecordType::kEntry;
  std::string_view payload;  // points into the parsed buffer
  size_t bytes = 0;          // framed size: header + payload
};

enum class ParseStatus {
  kRecord,     // a whole record with a good checksum
  kTruncated,  // the buffer ends inside the record (or its header)
  kBad,        // bad type, oversized length or checksum mismatch
};

// Parses the record starting at `offset` of `buffer`. On kTruncated / kBad, `why` says what
// was wrong. `record_bytes_max` bounds the payload length that is believed.
ParseStatus ParseRecord(std::string_view buffer, size_t offset, size_t record_bytes_max,
                        ParsedRecord* record, std::string* why);

// True when every byte of `bytes` is zero (the untouched preallocated area).
bool AllZero(std::string_view bytes);

// Segment files are named "<seq>-<first_index>.wal" with both numbers as 16 hex digits, so
// that a directory listing sorts them in log order.
std::string SegmentFileName(const SegmentHeader& header);
std::optional<SegmentHeader> ParseSegmentFileName(std::string_view name);
inline constexpr std::string_view kSegmentSuffix = ".wal";
inline constexpr std::string_view kTempSuffix = ".tmp";  // a segment being created

}  // namespace synod::storage
