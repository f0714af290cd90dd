#include "storage/wal_format.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "base/assert.h"
#include "storage/crc32c.h"

namespace synod::storage {
namespace {

void PutLe32(uint32_t v, std::string* out) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

void PutLe64(uint64_t v, std::string* out) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

uint32_t GetLe32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<uint8_t>(p[i])} << (8 * i);
  return v;
}

uint64_t GetLe64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<uint8_t>(p[i])} << (8 * i);
  return v;
}

uint32_t RecordCrc(uint8_t type, std::string_view payload) {
  return Crc32c(Crc32c(0, &type, 1), payload.data(), payload.size());
}

}  // namespace

bool IsValidRecordType(uint8_t type) {
  return type >= static_cast<uint8_t>(RecordType::kSegmentHeader) &&
         type <= static_cast<uint8_t>(RecordType::kSnapshot);
}

void FillRecordHeader(RecordType type, size_t payload_bytes, char* record) {
  SYNOD_ASSERT(payload_bytes <= UINT32_MAX, "caller bounds record size (record_bytes_max)");
  const auto type_byte = static_cast<uint8_t>(type);
  const std::string_view payload(record + kRecordHeaderBytes, payload_bytes);
  std::string header;
  PutLe32(static_cast<uint32_t>(payload_bytes), &header);
  PutLe32(RecordCrc(type_byte, payload), &header);
  header.push_back(static_cast<char>(type_byte));
  std::memcpy(record, header.data(), kRecordHeaderBytes);
}

void AppendRecord(RecordType type, std::string_view payload, std::string* out) {
  const size_t at = out->size();
  out->resize(at + kRecordHeaderBytes);
  out->append(payload);
  FillRecordHeader(type, payload.size(), out->data() + at);
}

std::string EncodeSegmentHeader(const SegmentHeader& header) {
  std::string out;
  PutLe64(kSegmentMagic, &out);
  PutLe32(kFormatVersion, &out);
  PutLe64(header.seq, &out);
  PutLe64(header.first_index, &out);
  return out;
}

std::optional<SegmentHeader> DecodeSegmentHeader(std::string_view payload, std::string* why) {
  if (payload.size() != kSegmentHeaderPayloadBytes) {
    *why = "segment header has " + std::to_string(payload.size()) + " bytes, want " +
           std::to_string(kSegmentHeaderPayloadBytes);
    return std::nullopt;
  }
  if (GetLe64(payload.data()) != kSegmentMagic) {
    *why = "bad segment magic";
    return std::nullopt;
  }
  const uint32_t version = GetLe32(payload.data() + 8);
  if (version != kFormatVersion) {
    *why = "unsupported WAL format version " + std::to_string(version);
    return std::nullopt;
  }
  return SegmentHeader{.seq = GetLe64(payload.data() + 12),
                       .first_index = GetLe64(payload.data() + 20)};
}

ParseStatus ParseRecord(std::string_view buffer, size_t offset, size_t record_bytes_max,
                        ParsedRecord* record, std::string* why) {
  SYNOD_ASSERT(offset <= buffer.size(), "offset inside the buffer");
  const size_t remaining = buffer.size() - offset;
  if (remaining < kRecordHeaderBytes) {
    *why = "partial record header (" + std::to_string(remaining) + " bytes)";
    return ParseStatus::kTruncated;
  }
  const char* p = buffer.data() + offset;
  const uint32_t length = GetLe32(p);
  const uint32_t crc = GetLe32(p + 4);
  const auto type = static_cast<uint8_t>(p[8]);
  if (!IsValidRecordType(type)) {
    *why = "bad record type " + std::to_string(type);
    return ParseStatus::kBad;
  }
  if (length > record_bytes_max) {
    *why = "record length " + std::to_string(length) + " exceeds the maximum";
    return ParseStatus::kBad;
  }
  if (remaining - kRecordHeaderBytes < length) {
    *why = "partial record: length " + std::to_string(length) + " but only " +
           std::to_string(remaining - kRecordHeaderBytes) + " bytes follow";
    return ParseStatus::kTruncated;
  }
  const std::string_view payload(p + kRecordHeaderBytes, length);
  if (RecordCrc(type, payload) != crc) {
    *why = "checksum mismatch";
    return ParseStatus::kBad;
  }
  *record = ParsedRecord{.type = static_cast<RecordType>(type),
                         .payload = payload,
                         .bytes = kRecordHeaderBytes + length};
  return ParseStatus::kRecord;
}

bool AllZero(std::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == 0; });
}

std::string SegmentFileName(const SegmentHeader& header) {
  char name[64];
  std::snprintf(name, sizeof name, "%016" PRIx64 "-%016" PRIx64 ".wal", header.seq,
                header.first_index);
  return name;
}

std::optional<SegmentHeader> ParseSegmentFileName(std::string_view name) {
  constexpr size_t kNameBytes = 16 + 1 + 16 + 4;
  if (name.size() != kNameBytes || name.substr(33) != kSegmentSuffix || name[16] != '-') {
    return std::nullopt;
  }
  auto hex = [](std::string_view digits, uint64_t* value) {
    *value = 0;
    for (char c : digits) {
      int d;
      if (c >= '0' && c <= '9') {
        d = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        d = c - 'a' + 10;
      } else {
        return false;
      }
      *value = (*value << 4) | static_cast<uint64_t>(d);
    }
    return true;
  };
  SegmentHeader header;
  if (!hex(name.substr(0, 16), &header.seq) || !hex(name.substr(17, 16), &header.first_index)) {
    return std::nullopt;
  }
  return header;
}

}  // namespace synod::storage
