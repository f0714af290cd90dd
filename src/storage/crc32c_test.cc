#include "storage/crc32c.h"

#include <gtest/gtest.h>

#include <string>

#include "base/rng.h"

namespace synod::storage {
namespace {

TEST(Crc32cTest, StandardCheckValue) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32cPortable(0, "123456789", 9), 0xE3069283u);
  if (Crc32cHardwareAvailable()) {
    EXPECT_EQ(Crc32cHardware(0, "123456789", 9), 0xE3069283u);
  }
}

TEST(Crc32cTest, KnownVectorsFromRfc3720) {
  // iSCSI (RFC 3720, B.4): 32 bytes of zeros, of ones, and ascending bytes.
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(""), 0u);
}

TEST(Crc32cTest, ExtendsIncrementally) {
  const std::string text = "The quick brown fox jumps over the lazy dog, twice over.";
  for (size_t split = 0; split <= text.size(); ++split) {
    const uint32_t head = Crc32c(0, text.data(), split);
    EXPECT_EQ(Crc32c(head, text.data() + split, text.size() - split), Crc32c(text)) << split;
  }
}

TEST(Crc32cTest, HardwareAndPortableAgreeOnEveryLengthAndAlignment) {
  if (!Crc32cHardwareAvailable()) GTEST_SKIP() << "no SSE4.2 on this CPU";
  Rng rng(42);
  std::string buffer(4096 + 16, '\0');
  for (char& c : buffer) c = static_cast<char>(rng.Next());
  for (size_t align = 0; align < 8; ++align) {
    for (size_t length = 0; length < 300; ++length) {
      ASSERT_EQ(Crc32cHardware(7, buffer.data() + align, length),
                Crc32cPortable(7, buffer.data() + align, length))
          << "align " << align << " length " << length;
    }
  }
  EXPECT_EQ(Crc32cHardware(0, buffer.data(), 4096), Crc32cPortable(0, buffer.data(), 4096));
}

}  // namespace
}  // namespace synod::storage
