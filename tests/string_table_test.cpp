// The string table: the runtime's lock-free interning against the reader's
// validated lookups, over a segment laid out in memory.
#include <gtest/gtest.h>

#include <algorithm>
#include <barrier>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "string_table.hpp"
#include "support/memory_segment.hpp"

namespace shmtrace::test {
namespace {

using runtime::StringTable;

const abi::StringTableHeader& control(const MemorySegment& seg) {
  return *static_cast<const abi::StringTableHeader*>(seg.strings());
}

std::string read_back(const reader::Segment& r, std::uint32_t id) {
  auto text = r.string(id);
  EXPECT_TRUE(text.has_value()) << "id " << id << ": " << (text ? "" : text.error().message);
  return text ? std::string(*text) : std::string("<unreadable>");
}

std::uint8_t flags_back(const reader::Segment& r, std::uint32_t id) {
  auto flags = r.string_flags(id);
  EXPECT_TRUE(flags.has_value()) << "id " << id << ": " << (flags ? "" : flags.error().message);
  return flags ? *flags : 0xff;
}

void expect_well_formed_id(std::uint32_t id) {
  EXPECT_NE(id, 0u);
  EXPECT_EQ(id % 4, 0u) << id;
  EXPECT_GE(id, sizeof(abi::StringTableHeader)) << id;
}

TEST(StringTable, EqualTextEqualIdDistinctTextDistinctId) {
  MemorySegment seg(small_config());
  StringTable table(seg.strings(), seg.header());
  const std::uint32_t a = table.intern("alpha", 0);
  const std::uint32_t b = table.intern("beta", 0);
  const std::uint32_t a2 = table.intern(std::string("alp") + "ha", 0);
  const std::uint32_t ab = table.intern("alphabeta", 0);
  const std::uint32_t prefix = table.intern("alph", 0);
  for (std::uint32_t id : {a, b, ab, prefix}) expect_well_formed_id(id);
  EXPECT_EQ(a, a2);
  EXPECT_EQ(std::set<std::uint32_t>({a, b, ab, prefix}).size(), 4u);
  // The first entry sits right after the table header; entries are packed.
  EXPECT_EQ(a, sizeof(abi::StringTableHeader));
  EXPECT_EQ(b, a + 4 + 8);   // "alpha": 4 + 5 bytes, padded to 12
  EXPECT_EQ(ab, b + 4 + 4);  // "beta": 4 + 4 bytes
  EXPECT_EQ(control(seg).count, 4u);
  EXPECT_EQ(control(seg).used, prefix + 4 + 4);
  EXPECT_EQ(table.text(a), "alpha");
  EXPECT_EQ(table.text(prefix), "alph");
  EXPECT_EQ(table.text(0), "");
  EXPECT_EQ(seg.header()->strings_rejected, 0u);
}

TEST(StringTable, ReaderReadsBackExactTextAndFlags) {
  MemorySegment seg(small_config());
  StringTable table(seg.strings(), seg.header());
  const std::string binary("a\0b\xff\x01z", 6);
  const std::uint32_t plain = table.intern("http.request", 0);
  const std::uint32_t secret = table.intern("password", abi::kStringSensitive);
  const std::uint32_t bin = table.intern(binary, 0);
  const std::uint32_t empty = table.intern("", 0);
  const std::uint32_t utf8 = table.intern("caf\xc3\xa9::r\xc3\xa9sum\xc3\xa9", 0);
  for (std::uint32_t id : {plain, secret, bin, empty, utf8}) expect_well_formed_id(id);
  EXPECT_EQ(std::set<std::uint32_t>({plain, secret, bin, empty, utf8}).size(), 5u);

  reader::Segment r = seg.reader();
  EXPECT_EQ(read_back(r, plain), "http.request");
  EXPECT_EQ(read_back(r, secret), "password");
  EXPECT_EQ(read_back(r, bin), binary);
  EXPECT_EQ(read_back(r, empty), "");
  EXPECT_EQ(read_back(r, utf8), "caf\xc3\xa9::r\xc3\xa9sum\xc3\xa9");
  EXPECT_EQ(flags_back(r, plain), 0);
  EXPECT_EQ(flags_back(r, secret), abi::kStringSensitive);
  EXPECT_EQ(flags_back(r, bin), 0);
  EXPECT_EQ(table.flags(secret), abi::kStringSensitive);
  EXPECT_EQ(table.flags(plain), 0);
  // An id that is not an entry start is refused by the reader.
  EXPECT_FALSE(r.string(plain + 2).has_value());
  EXPECT_FALSE(r.string(control(seg).used).has_value());
}

TEST(StringTable, TruncatesAtMaxLength) {
  MemorySegment seg(small_config());
  StringTable table(seg.strings(), seg.header());
  std::string exact(abi::kMaxStringLength, 'x');
  for (std::size_t i = 0; i < exact.size(); ++i) exact[i] = static_cast<char>('a' + i % 26);
  const std::string longer = exact + "-and-more";
  const std::string other_longer = exact + "-different-tail";
  const std::string one_short = exact.substr(0, abi::kMaxStringLength - 1);

  const std::uint32_t id_exact = table.intern(exact, 0);
  const std::uint32_t id_longer = table.intern(longer, 0);
  const std::uint32_t id_other = table.intern(other_longer, 0);
  const std::uint32_t id_short = table.intern(one_short, 0);
  for (std::uint32_t id : {id_exact, id_longer, id_other, id_short}) expect_well_formed_id(id);
  // Texts equal in their first kMaxStringLength bytes are one name.
  EXPECT_EQ(id_longer, id_exact);
  EXPECT_EQ(id_other, id_exact);
  EXPECT_NE(id_short, id_exact);

  reader::Segment r = seg.reader();
  EXPECT_EQ(read_back(r, id_exact), exact);
  EXPECT_EQ(read_back(r, id_short), one_short);
  EXPECT_EQ(table.text(id_exact).size(), abi::kMaxStringLength);

  // A long text interned first is stored cut, and found by its cut form.
  MemorySegment seg2(small_config());
  StringTable table2(seg2.strings(), seg2.header());
  const std::uint32_t first = table2.intern(std::string(10000, 'q'), abi::kStringSensitive);
  EXPECT_EQ(table2.intern(std::string(abi::kMaxStringLength, 'q'), 0), first);
  reader::Segment r2 = seg2.reader();
  EXPECT_EQ(read_back(r2, first), std::string(abi::kMaxStringLength, 'q'));
  EXPECT_EQ(flags_back(r2, first), abi::kStringSensitive);
}

TEST(StringTable, FullTableRejectsAndCountsExactly) {
  MemorySegment seg(small_config());  // 65536-byte table: 64 header + 4092 entries of 16 bytes
  ASSERT_EQ(control(seg).capacity, 65536u);
  StringTable table(seg.strings(), seg.header());
  auto name = [](int i) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "name%08d", i);  // 12 bytes: entry of 16
    return std::string(buf);
  };
  constexpr int kFit = (65536 - 64) / 16;
  std::vector<std::uint32_t> ids;
  for (int i = 0; i < kFit; ++i) {
    const std::uint32_t id = table.intern(name(i), 0);
    ASSERT_NE(id, 0u) << "refused entry " << i << " of " << kFit;
    EXPECT_EQ(id, 64u + 16u * static_cast<std::uint32_t>(i));
    ids.push_back(id);
  }
  EXPECT_EQ(control(seg).used, 65536u);
  EXPECT_EQ(seg.header()->strings_rejected, 0u);

  for (int i = 0; i < 7; ++i) EXPECT_EQ(table.intern(name(kFit + i), 0), 0u) << i;
  EXPECT_EQ(table.intern("x", 0), 0u);
  EXPECT_EQ(seg.header()->strings_rejected, 8u);
  // Known names still resolve, and cost no rejection.
  EXPECT_EQ(table.intern(name(0), 0), ids[0]);
  EXPECT_EQ(table.intern(name(kFit - 1), 0), ids.back());
  EXPECT_EQ(seg.header()->strings_rejected, 8u);
  EXPECT_EQ(control(seg).count, static_cast<std::uint32_t>(kFit));

  reader::Segment r = seg.reader();
  for (int i = 0; i < kFit; ++i) ASSERT_EQ(read_back(r, ids[i]), name(i)) << i;
}

TEST(StringTable, EntryTooBigForTheRestIsRejectedAndEarlierEntriesStayReadable) {
  MemorySegment seg(small_config());
  StringTable table(seg.strings(), seg.header());
  // Fill all but 8 bytes: 4091 entries of 16 bytes leave 16; one of 8 leaves 8.
  std::vector<std::uint32_t> ids;
  for (int i = 0; i < 4091; ++i) ids.push_back(table.intern("n" + std::to_string(100000000 + i) + "x", 0));
  ids.push_back(table.intern("abcd", 0));  // 4 + 4 = 8 bytes
  for (std::uint32_t id : ids) ASSERT_NE(id, 0u);
  EXPECT_EQ(control(seg).used, 65536u - 8u);
  EXPECT_EQ(table.intern("123456789", 0), 0u);  // needs 16
  EXPECT_EQ(seg.header()->strings_rejected, 1u);
  // `used` may overshoot the capacity; the table stays full, the reader clamps.
  EXPECT_EQ(table.intern("ab", 0), 0u);
  EXPECT_EQ(seg.header()->strings_rejected, 2u);
  reader::Segment r = seg.reader();
  EXPECT_EQ(read_back(r, ids.back()), "abcd");
  EXPECT_EQ(read_back(r, ids.front()), "n100000000x");
}

TEST(StringTable, ConcurrentInterningFromFourThreadsAgreesOnOneIdPerName) {
  constexpr int kThreads = 4;
  constexpr int kNames = 2000;
  std::vector<std::string> names;
  for (int i = 0; i < kNames; ++i) names.push_back("group" + std::to_string(i % 17) + "::fn_" + std::to_string(i));
  for (int round = 0; round < 10; ++round) {
    runtime::Config config = small_config();
    config.string_table_bytes = 1u << 20;
    MemorySegment seg(config);
    StringTable table(seg.strings(), seg.header());
    std::vector<std::map<std::string, std::uint32_t>> seen(kThreads);
    std::barrier start(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        // Each thread covers a window of 1250 names starting at t*250, in its
        // own order, twice: the windows overlap, so every name is raced on.
        std::vector<int> order;
        for (int k = 0; k < 1250; ++k) order.push_back((t * 250 + k) % kNames);
        std::mt19937 rng(static_cast<unsigned>(round * 10 + t));
        std::shuffle(order.begin(), order.end(), rng);
        start.arrive_and_wait();
        for (int pass = 0; pass < 2; ++pass) {
          for (int i : order) {
            const std::uint32_t id = table.intern(names[i], 0);
            auto [it, fresh] = seen[t].emplace(names[i], id);
            if (!fresh && it->second != id) {
              ADD_FAILURE() << "thread " << t << " got ids " << it->second << " and " << id << " for "
                            << names[i];
            }
          }
        }
      });
    }
    for (auto& th : threads) th.join();

    std::map<std::string, std::uint32_t> agreed;
    for (int t = 0; t < kThreads; ++t) {
      EXPECT_EQ(seen[t].size(), 1250u);
      for (const auto& [name, id] : seen[t]) {
        expect_well_formed_id(id);
        auto [it, fresh] = agreed.emplace(name, id);
        EXPECT_EQ(it->second, id) << "threads disagree on " << name;
      }
    }
    ASSERT_EQ(agreed.size(), static_cast<std::size_t>(kNames));
    std::set<std::uint32_t> distinct;
    for (const auto& [name, id] : agreed) distinct.insert(id);
    EXPECT_EQ(distinct.size(), static_cast<std::size_t>(kNames));

    reader::Segment r = seg.reader();
    for (const auto& [name, id] : agreed) ASSERT_EQ(read_back(r, id), name);
    EXPECT_EQ(seg.header()->strings_rejected, 0u);
    EXPECT_GE(control(seg).count, static_cast<std::uint32_t>(kNames));  // lost races waste entries
    // A later intern from this thread finds the agreed id.
    for (int i = 0; i < kNames; i += 97) EXPECT_EQ(table.intern(names[i], 0), agreed[names[i]]);
  }
}

}  // namespace
}  // namespace shmtrace::test
