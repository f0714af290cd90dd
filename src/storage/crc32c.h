// CRC32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum of every WAL record.
//
// Chosen over CRC32 because x86 (SSE4.2) and ARMv8 compute it in hardware, and because it
// detects more error patterns at record sizes we write. `Crc32c` uses the SSE4.2 `crc32`
// instruction when the CPU has it (checked once at run time) and a portable slicing-by-8
// table otherwise; both give identical results, which a test checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace synod::storage {

// Extends `crc` (the CRC of earlier bytes, 0 for none) over `size` bytes at `data`, so that
// Crc32c(Crc32c(0, a), b) == Crc32c(0, a + b).
uint32_t Crc32c(uint32_t crc, const void* data, size_t size);

inline uint32_t Crc32c(std::string_view bytes) { return Crc32c(0, bytes.data(), bytes.size()); }

// The two implementations behind `Crc32c`, exposed so tests can compare them.
uint32_t Crc32cPortable(uint32_t crc, const void* data, size_t size);
// Requires Crc32cHardwareAvailable().
uint32_t Crc32cHardware(uint32_t crc, const void* data, size_t size);
bool Crc32cHardwareAvailable();

}  // namespace synod::storage
