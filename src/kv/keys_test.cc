#include "kv/keys.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "base/rng.h"

namespace synod::kv::keys {
namespace {

std::string RandomKey(Rng& rng) {
  std::string key;
  const size_t n = rng.Below(5);
  for (size_t i = 0; i < n; ++i) {
    // Mostly the bytes that matter to the escaping: 00, 01, FF.
    const uint8_t choices[] = {0x00, 0x01, 0x02, 0xff, 'a'};
    key.push_back(static_cast<char>(choices[rng.Below(5)]));
  }
  return key;
}

TEST(KvKeys, EscapedKeysSortLikeTheKeysThemselves) {
  Rng rng(7);
  for (int i = 0; i < 20000; ++i) {
    const std::string a = RandomKey(rng), b = RandomKey(rng);
    std::string ea, eb;
    AppendEscaped(&ea, a);
    AppendEscaped(&eb, b);
    EXPECT_EQ(a < b, ea < eb) << i;
    EXPECT_EQ(a == b, ea == eb) << i;
  }
}

TEST(KvKeys, AllVersionsOfAKeySortBeforeTheNextKeyNewestFirst) {
  Rng rng(11);
  std::vector<std::tuple<std::string, int64_t, std::string>> entries;
  for (int i = 0; i < 5000; ++i) {
    const std::string key = RandomKey(rng);
    const int64_t rev = static_cast<int64_t>(rng.Between(1, 1000));
    entries.emplace_back(key, rev, History(key, rev));
  }
  std::sort(entries.begin(), entries.end(),
            [](const auto& x, const auto& y) { return std::get<2>(x) < std::get<2>(y); });
  for (size_t i = 1; i < entries.size(); ++i) {
    const auto& [k0, r0, h0] = entries[i - 1];
    const auto& [k1, r1, h1] = entries[i];
    EXPECT_TRUE(k0 < k1 || (k0 == k1 && r0 >= r1)) << i;
    // Every version of k0 lies in [HistoryKeyBegin, HistoryKeyEnd).
    EXPECT_GE(h0, HistoryKeyBegin(k0));
    EXPECT_LT(h0, HistoryKeyEnd(k0));
    if (k0 != k1) {
      EXPECT_LE(HistoryKeyEnd(k0), h1);
    }
  }
}

TEST(KvKeys, HistoryKeysParseBackToKeyAndRevision) {
  Rng rng(3);
  for (int i = 0; i < 1000; ++i) {
    const std::string key = RandomKey(rng);
    const int64_t rev = static_cast<int64_t>(rng.Next() >> 1);
    std::string parsed;
    int64_t parsed_rev = 0;
    ASSERT_TRUE(ParseHistory(History(key, rev), &parsed, &parsed_rev));
    EXPECT_EQ(parsed, key);
    EXPECT_EQ(parsed_rev, rev);
  }
}

TEST(KvKeys, RecordsRoundTrip) {
  Record r{.tombstone = false,
           .mod_revision = 1234567890123,
           .sub = 3,
           .create_revision = 5,
           .version = 99,
           .lease = -42,
           .value = std::string("v\0alue", 6)};
  Record back;
  ASSERT_TRUE(DecodeRecord(EncodeRecord(r), &back));
  EXPECT_EQ(back.mod_revision, r.mod_revision);
  EXPECT_EQ(back.sub, r.sub);
  EXPECT_EQ(back.create_revision, r.create_revision);
  EXPECT_EQ(back.version, r.version);
  EXPECT_EQ(back.lease, r.lease);
  EXPECT_EQ(back.value, r.value);
  EXPECT_FALSE(back.tombstone);
  EXPECT_FALSE(DecodeRecord("", &back));
  EXPECT_FALSE(DecodeRecord("\x07", &back));
}

TEST(KvKeys, RevisionKeysSortByMainThenSub) {
  EXPECT_LT(Revision(1, 5), Revision(2, 0));
  EXPECT_LT(Revision(2, 0), Revision(2, 1));
  EXPECT_LT(Revision(255, 0), Revision(256, 0));
  int64_t main = 0, sub = 0;
  ASSERT_TRUE(ParseRevision(Revision(77, 8), &main, &sub));
  EXPECT_EQ(main, 77);
  EXPECT_EQ(sub, 8);
}

TEST(KvKeys, PrefixEndIsTheFirstKeyAfterThePrefix) {
  EXPECT_EQ(PrefixEnd("abc"), "abd");
  EXPECT_EQ(PrefixEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(PrefixEnd(std::string("\xff\xff", 2)), "");
}

}  // namespace
}  // namespace synod::kv::keys
