// Trace context (SPEC P8): W3C traceparent parsing and formatting, the
// UUIDv7 layout of trace ids, and the per-thread random generator.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <unordered_set>

#include "trace_context.hpp"

namespace shmtrace::test {
namespace {

using runtime::TraceId;
using runtime::TraceParent;

constexpr char kValid[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
constexpr std::array<std::uint8_t, 16> kValidTrace = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
                                                      0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};

std::array<std::uint8_t, 16> bytes_of(const TraceId& id) {
  std::array<std::uint8_t, 16> out{};
  std::memcpy(out.data(), id.bytes, 16);
  return out;
}

std::string format(const TraceParent& tp) {
  char buf[56];
  std::memset(buf, 'X', sizeof buf);
  EXPECT_TRUE(runtime::format_traceparent(tp, buf, sizeof buf));
  EXPECT_EQ(buf[55], '\0');
  return std::string(buf);
}

TEST(ParseTraceparent, ValidExample) {
  const auto tp = runtime::parse_traceparent(kValid);
  ASSERT_TRUE(tp.has_value());
  EXPECT_EQ(bytes_of(tp->trace), kValidTrace);
  EXPECT_EQ(tp->span_id, 0x00f067aa0ba902b7ull);
  EXPECT_EQ(tp->flags, 0x01);
}

TEST(ParseTraceparent, FlagsAndExtremeIds) {
  auto tp = runtime::parse_traceparent("00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-ff");
  ASSERT_TRUE(tp.has_value());
  for (std::uint8_t b : tp->trace.bytes) EXPECT_EQ(b, 0xff);
  EXPECT_EQ(tp->span_id, ~0ull);
  EXPECT_EQ(tp->flags, 0xff);
  tp = runtime::parse_traceparent("00-00000000000000000000000000000001-0000000000000001-00");
  ASSERT_TRUE(tp.has_value());
  for (int i = 0; i < 15; ++i) EXPECT_EQ(tp->trace.bytes[i], 0) << i;
  EXPECT_EQ(tp->trace.bytes[15], 1);
  EXPECT_EQ(tp->span_id, 1u);
  EXPECT_EQ(tp->flags, 0);
  EXPECT_FALSE(tp->trace.empty());
}

TEST(ParseTraceparent, SurroundingSpacesTabsAndNewlineAreIgnored) {
  for (const std::string& text : {std::string("  ") + kValid, std::string(kValid) + "  ",
                                  std::string("\t") + kValid + "\t", std::string(kValid) + "\n",
                                  std::string(" \t") + kValid + " \t\n"}) {
    const auto tp = runtime::parse_traceparent(text);
    ASSERT_TRUE(tp.has_value()) << "'" << text << "'";
    EXPECT_EQ(bytes_of(tp->trace), kValidTrace);
    EXPECT_EQ(tp->span_id, 0x00f067aa0ba902b7ull);
  }
}

// The header promises "surrounding whitespace is ignored": a value read from
// a file written on another system ends in "\r\n", one built by a shell may
// start with a newline.
TEST(ParseTraceparent, OtherSurroundingWhitespaceIsIgnoredToo) {
  for (const std::string& text : {std::string(kValid) + "\r\n", std::string("\n") + kValid,
                                  std::string(kValid) + "\r", std::string("\r\n") + kValid + "\r\n"}) {
    const auto tp = runtime::parse_traceparent(text);
    EXPECT_TRUE(tp.has_value()) << "rejected with surrounding whitespace: '" << text << "'";
  }
}

TEST(ParseTraceparent, Invalid) {
  const std::string v = kValid;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"empty", ""},
      {"only whitespace", "   "},
      {"uppercase trace id", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"},
      {"one uppercase digit", "00-4bf92f3577b34da6a3ce929d0e0e473A-00f067aa0ba902b7-01"},
      {"uppercase span id", "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01"},
      {"uppercase flags", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A"},
      {"non-hex trace", "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01"},
      {"non-hex span", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01"},
      {"non-hex flags", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g"},
      {"non-hex version", "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
      {"version ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
      {"zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
      {"zero span id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"},
      {"trace 31 digits", "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"},
      {"trace 33 digits", "00-4bf92f3577b34da6a3ce929d0e0e47360-00f067aa0ba902b7-01"},
      {"span 15 digits", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01"},
      {"span 17 digits", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b70-01"},
      {"flags 1 digit", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"},
      {"flags 3 digits", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011"},
      {"version 1 digit", "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
      {"one char short", v.substr(0, 54)},
      {"one char long", v + "0"},
      {"trailing field", v + "-00"},
      {"underscore separators", "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01"},
      {"first separator", "00+4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
      {"second separator", "00-4bf92f3577b34da6a3ce929d0e0e4736.00f067aa0ba902b7-01"},
      {"third separator", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7:01"},
      {"no separators", "004bf92f3577b34da6a3ce929d0e0e473600f067aa0ba902b701"},
      {"space inside", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7 01"},
      {"space in an id", "00-4bf92f3577b34da6a3ce929d0e0e 736-00f067aa0ba902b7-01"},
      {"embedded NUL", std::string("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\0", 55)},
  };
  for (const auto& [what, text] : cases) {
    EXPECT_FALSE(runtime::parse_traceparent(text).has_value()) << what << ": '" << text << "'";
  }
}

TEST(FormatTraceparent, ExactString) {
  TraceParent tp;
  std::memcpy(tp.trace.bytes, kValidTrace.data(), 16);
  tp.span_id = 0x00f067aa0ba902b7ull;
  tp.flags = 1;
  EXPECT_EQ(format(tp), kValid);
  tp.flags = 0;
  tp.span_id = 0x0123456789abcdefull;
  for (int i = 0; i < 16; ++i) tp.trace.bytes[i] = static_cast<std::uint8_t>(i * 17);
  EXPECT_EQ(format(tp), "00-00112233445566778899aabbccddeeff-0123456789abcdef-00");
}

TEST(FormatTraceparent, RoundTrip) {
  std::uint64_t state = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < 1000; ++i) {
    TraceParent tp;
    const std::uint64_t a = runtime::next_random(state);
    const std::uint64_t b = runtime::next_random(state);
    std::memcpy(tp.trace.bytes, &a, 8);
    std::memcpy(tp.trace.bytes + 8, &b, 8);
    tp.span_id = runtime::next_random(state) | 1;
    tp.flags = static_cast<std::uint8_t>(i);
    const std::string text = format(tp);
    ASSERT_EQ(text.size(), 55u);
    const auto back = runtime::parse_traceparent(text);
    ASSERT_TRUE(back.has_value()) << text;
    EXPECT_EQ(bytes_of(back->trace), bytes_of(tp.trace)) << text;
    EXPECT_EQ(back->span_id, tp.span_id) << text;
    EXPECT_EQ(back->flags, tp.flags) << text;
    EXPECT_EQ(format(*back), text);
  }
}

TEST(FormatTraceparent, RefusesShortBuffers) {
  TraceParent tp;
  tp.trace.bytes[0] = 1;
  tp.span_id = 1;
  char buf[64];
  std::memset(buf, 'X', sizeof buf);
  EXPECT_FALSE(runtime::format_traceparent(tp, buf, 55));
  EXPECT_EQ(buf[0], 'X');  // nothing written
  EXPECT_FALSE(runtime::format_traceparent(tp, buf, 0));
  EXPECT_FALSE(runtime::format_traceparent(tp, nullptr, 64));
  EXPECT_TRUE(runtime::format_traceparent(tp, buf, 64));
  EXPECT_EQ(std::string(buf), "00-01000000000000000000000000000000-0000000000000001-00");
  EXPECT_EQ(buf[56], 'X');  // nothing past the NUL
}

TEST(TraceIdEmpty, OnlyAllZero) {
  TraceId id;
  EXPECT_TRUE(id.empty());
  for (int i = 0; i < 16; ++i) {
    TraceId one;
    one.bytes[i] = 0x80;
    EXPECT_FALSE(one.empty()) << i;
  }
}

// ---------------------------------------------------------------------------
// UUIDv7: 48-bit big-endian Unix milliseconds, version 7, variant 10, then
// 12 bits of random_a and 62 bits of random_b.
// ---------------------------------------------------------------------------
TEST(UuidV7, ExactLayout) {
  const TraceId id = runtime::make_uuid_v7(0x0123456789abull, 0xabcdull, 0x1122334455667788ull);
  const std::array<std::uint8_t, 16> expected = {
      0x01, 0x23, 0x45, 0x67, 0x89, 0xab,  // milliseconds, big-endian
      0x7d,                                // version 7 | random_a bits 0..3
      0xab,                                // random_a bits 8..15
      0x88,                                // variant 10 | random_b bits 0..5
      0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,  // random_b bytes 1..7
  };
  EXPECT_EQ(bytes_of(id), expected);
}

TEST(UuidV7, VersionAndVariantWhateverTheRandomBits) {
  std::uint64_t state = 12345;
  for (int i = 0; i < 10000; ++i) {
    const TraceId id = runtime::make_uuid_v7(runtime::next_random(state), runtime::next_random(state),
                                             runtime::next_random(state));
    EXPECT_EQ(id.bytes[6] >> 4, 7) << i;
    EXPECT_EQ(id.bytes[8] >> 6, 2) << i;
  }
  const TraceId zeros = runtime::make_uuid_v7(0, 0, 0);
  EXPECT_EQ(zeros.bytes[6], 0x70);
  EXPECT_EQ(zeros.bytes[8], 0x80);
  EXPECT_FALSE(zeros.empty());
  const TraceId ones = runtime::make_uuid_v7(~0ull, ~0ull, ~0ull);
  EXPECT_EQ(ones.bytes[6], 0x7f);
  EXPECT_EQ(ones.bytes[8], 0xbf);
}

TEST(UuidV7, TimestampIsTheFirst48BitsBigEndian) {
  for (std::uint64_t ms : {0ull, 1ull, 1700000000000ull, 0xffffffffffffull, 0x0000800000000001ull}) {
    const TraceId id = runtime::make_uuid_v7(ms, 0, 0);
    std::uint64_t back = 0;
    for (int i = 0; i < 6; ++i) back = back << 8 | id.bytes[i];
    EXPECT_EQ(back, ms);
  }
  // Bits above 48 are not representable and must not leak into the id.
  EXPECT_EQ(bytes_of(runtime::make_uuid_v7(0xffff000000000001ull, 0, 0)),
            bytes_of(runtime::make_uuid_v7(1, 0, 0)));
}

TEST(UuidV7, SortsByTime) {
  std::uint64_t state = 99;
  std::array<std::uint8_t, 16> previous{};
  for (std::uint64_t ms = 1700000000000ull; ms < 1700000000000ull + 2000; ++ms) {
    const auto now = bytes_of(runtime::make_uuid_v7(ms, runtime::next_random(state), runtime::next_random(state)));
    EXPECT_LT(previous, now) << ms;  // lexicographic byte order follows time
    previous = now;
  }
}

TEST(UuidV7, EveryOneOfThe74RandomBitsReachesTheId) {
  const auto base = bytes_of(runtime::make_uuid_v7(1, 0, 0));
  std::unordered_set<std::string> seen;
  int used = 0;
  for (int bit = 0; bit < 64; ++bit) {
    const auto a = bytes_of(runtime::make_uuid_v7(1, 1ull << bit, 0));
    const auto b = bytes_of(runtime::make_uuid_v7(1, 0, 1ull << bit));
    if (a != base) {
      ++used;
      EXPECT_TRUE(seen.insert(std::string(a.begin(), a.end())).second) << "random_a bit " << bit;
    }
    if (b != base) {
      ++used;
      EXPECT_TRUE(seen.insert(std::string(b.begin(), b.end())).second) << "random_b bit " << bit;
    }
  }
  EXPECT_EQ(used, 74);
}

// ---------------------------------------------------------------------------
// next_random: xorshift64*.
// ---------------------------------------------------------------------------
TEST(NextRandom, KnownSequenceFromOne) {
  std::uint64_t state = 1;
  EXPECT_EQ(runtime::next_random(state), 0x47e4ce4b896cdd1dull);
  EXPECT_EQ(state, 0x2000001ull);
  EXPECT_EQ(runtime::next_random(state), 0xabcfa6a8e079651dull);
  EXPECT_EQ(runtime::next_random(state), 0xb9d10d8feb731f57ull);
}

TEST(NextRandom, NoRepeatAndNeverZeroState) {
  for (std::uint64_t seed : {1ull, 0x8000000000000000ull, ~0ull, 0x123456789abcdefull}) {
    std::uint64_t state = seed;
    std::unordered_set<std::uint64_t> values;
    std::unordered_set<std::uint64_t> states;
    values.reserve(300000);
    states.reserve(300000);
    for (int i = 0; i < 300000; ++i) {
      const std::uint64_t v = runtime::next_random(state);
      ASSERT_NE(state, 0u) << "seed " << seed << " step " << i;
      ASSERT_TRUE(values.insert(v).second) << "repeated value at step " << i << " from seed " << seed;
      ASSERT_TRUE(states.insert(state).second) << "repeated state at step " << i << " from seed " << seed;
    }
  }
}

TEST(NextRandom, BitsAreBalanced) {
  std::uint64_t state = 42;
  std::array<int, 64> ones{};
  constexpr int kDraws = 100000;
  for (int i = 0; i < kDraws; ++i) {
    const std::uint64_t v = runtime::next_random(state);
    for (int b = 0; b < 64; ++b) ones[b] += static_cast<int>(v >> b & 1);
  }
  // Each bit is set about half the time: 50000 +- 5 sigma (sigma ~ 158).
  for (int b = 0; b < 64; ++b) {
    EXPECT_GT(ones[b], 49200) << "bit " << b;
    EXPECT_LT(ones[b], 50800) << "bit " << b;
  }
}

}  // namespace
}  // namespace shmtrace::test
