#include "storage/crc32c.h"

#include <array>
#include <bit>
#include <cstring>

#include "base/assert.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace synod::storage {
namespace {

constexpr uint32_t kPolynomial = 0x82F63B78;  // CRC32C, bit-reversed

// kTables[k][b]: the CRC of byte b followed by k zero bytes. Slicing-by-8 folds eight input
// bytes per step with eight lookups instead of one lookup per byte.
using Tables = std::array<std::array<uint32_t, 256>, 8>;

constexpr Tables MakeTables() {
  Tables t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t crc = b;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1) ? kPolynomial : 0);
    t[0][b] = crc;
  }
  for (uint32_t b = 0; b < 256; ++b) {
    for (int k = 1; k < 8; ++k) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xff];
  }
  return t;
}

constexpr Tables kTables = MakeTables();

uint64_t LoadLe64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);  // x86 and ARM are little-endian; the static_assert below
  return v;                      // keeps a big-endian port from silently breaking this
}
static_assert(std::endian::native == std::endian::little, "slicing-by-8 assumes little-endian");

}  // namespace

uint32_t Crc32cPortable(uint32_t crc, const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  for (; size >= 8; size -= 8, p += 8) {
    const uint64_t word = LoadLe64(p) ^ crc;
    crc = kTables[7][word & 0xff] ^ kTables[6][(word >> 8) & 0xff] ^
          kTables[5][(word >> 16) & 0xff] ^ kTables[4][(word >> 24) & 0xff] ^
          kTables[3][(word >> 32) & 0xff] ^ kTables[2][(word >> 40) & 0xff] ^
          kTables[1][(word >> 48) & 0xff] ^ kTables[0][word >> 56];
  }
  for (; size > 0; --size, ++p) crc = (crc >> 8) ^ kTables[0][(crc ^ *p) & 0xff];
  return ~crc;
}

#if defined(__x86_64__)

__attribute__((target("sse4.2"))) uint32_t Crc32cHardware(uint32_t crc, const void* data,
                                                          size_t size) {
  SYNOD_ASSERT(Crc32cHardwareAvailable(), "caller must check for SSE4.2 first");
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t c = ~crc;
  for (; size >= 8; size -= 8, p += 8) c = _mm_crc32_u64(c, LoadLe64(p));
  auto c32 = static_cast<uint32_t>(c);
  for (; size > 0; --size, ++p) c32 = _mm_crc32_u8(c32, *p);
  return ~c32;
}

bool Crc32cHardwareAvailable() {
  static const bool available = __builtin_cpu_supports("sse4.2");
  return available;
}

#else

uint32_t Crc32cHardware(uint32_t, const void*, size_t) {
  SYNOD_ASSERT(false, "no hardware CRC32C on this architecture");
  return 0;
}

bool Crc32cHardwareAvailable() { return false; }

#endif

uint32_t Crc32c(uint32_t crc, const void* data, size_t size) {
  static const bool hardware = Crc32cHardwareAvailable();
  return hardware ? Crc32cHardware(crc, data, size) : Crc32cPortable(crc, data, size);
}

}  // namespace synod::storage
