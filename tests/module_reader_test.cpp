// The module map (P9) read back by Segment::modules(), over a segment laid
// out in memory by the runtime's own code. Entries are written here by hand,
// as the runtime's writer will: entry, then count with a release store.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "string_table.hpp"
#include "support/memory_segment.hpp"

namespace shmtrace::test {
namespace {

class ModuleMap {
 public:
  explicit ModuleMap(MemorySegment& seg)
      : seg_(seg), strings_(seg.strings(), seg.header()) {}

  abi::ModuleMapHeader& header() {
    return *reinterpret_cast<abi::ModuleMapHeader*>(seg_.base() + seg_.layout().modules_offset);
  }
  abi::ModuleEntry& entry(std::uint32_t i) {
    return reinterpret_cast<abi::ModuleEntry*>(&header() + 1)[i];
  }

  // Appends an entry and publishes it.
  std::uint32_t add(std::uint64_t base, std::uint64_t size, std::string_view path,
                    std::vector<std::uint8_t> build_id) {
    const std::uint32_t i = header().count;
    abi::ModuleEntry& e = entry(i);
    e.base = base;
    e.size = size;
    e.path_id = strings_.intern(path, 0);
    e.build_id_size = static_cast<std::uint32_t>(build_id.size());
    // memcpy from an empty vector's null data() is undefined even for 0 bytes.
    if (!build_id.empty()) std::memcpy(e.build_id, build_id.data(), build_id.size());
    // Release: publishes the entry to the reader's acquire load of count.
    abi::atomic_store(header().count, i + 1, std::memory_order_release);
    return i;
  }

 private:
  MemorySegment& seg_;
  runtime::StringTable strings_;
};

std::vector<std::uint8_t> id_bytes(std::uint8_t first, std::size_t size) {
  std::vector<std::uint8_t> bytes(size);
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::uint8_t>(first + i);
  return bytes;
}

std::string error_of(const reader::Result<std::vector<reader::ModuleRecord>>& r) {
  return r ? std::string("<no error>") : r.error().message;
}

TEST(ModuleReader, EmptyMapReadsAsNoModules) {
  MemorySegment seg(small_config());
  auto modules = seg.reader(reader::Access::kReadOnly).modules();
  ASSERT_TRUE(modules.has_value()) << error_of(modules);
  EXPECT_TRUE(modules->empty());
}

TEST(ModuleReader, ReadsBackEveryFieldExactly) {
  MemorySegment seg(small_config());
  ModuleMap map(seg);
  map.add(0x55d4c0de0000, 0x5238, "/usr/bin/app", id_bytes(0xa0, 20));
  map.add(0x7f1200000000, 0x21f0a8, "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", id_bytes(0x01, 8));
  map.add(0, 0x4a1000, "/opt/legacy/non-pie", {});

  reader::Segment r = seg.reader(reader::Access::kReadOnly);
  auto modules = r.modules();
  ASSERT_TRUE(modules.has_value()) << error_of(modules);
  ASSERT_EQ(modules->size(), 3u);
  const reader::ModuleRecord& app = (*modules)[0];
  EXPECT_EQ(app.base, 0x55d4c0de0000u);
  EXPECT_EQ(app.size, 0x5238u);
  EXPECT_EQ(app.path, "/usr/bin/app");
  EXPECT_EQ(app.build_id_hex, "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3");
  EXPECT_EQ((*modules)[1].base, 0x7f1200000000u);
  EXPECT_EQ((*modules)[1].size, 0x21f0a8u);
  EXPECT_EQ((*modules)[1].path, "/usr/lib/x86_64-linux-gnu/libstdc++.so.6");
  EXPECT_EQ((*modules)[1].build_id_hex, "0102030405060708");
  EXPECT_EQ((*modules)[2].base, 0u);
  EXPECT_EQ((*modules)[2].path, "/opt/legacy/non-pie");
  EXPECT_EQ((*modules)[2].build_id_hex, "");
}

TEST(ModuleReader, OnlyPublishedEntriesAreRead) {
  MemorySegment seg(small_config());
  ModuleMap map(seg);
  map.add(0x1000, 0x100, "/lib/one.so", id_bytes(1, 20));
  // Written but not yet published: count still says 1.
  abi::ModuleEntry& pending = map.entry(1);
  pending.base = 0x2000;
  pending.size = 0x100;
  pending.build_id_size = 99;  // garbage while being written; must not be looked at
  auto modules = seg.reader().modules();
  ASSERT_TRUE(modules.has_value()) << error_of(modules);
  ASSERT_EQ(modules->size(), 1u);
  EXPECT_EQ((*modules)[0].path, "/lib/one.so");
}

TEST(ModuleReader, FullMapAtCapacityIsAccepted) {
  MemorySegment seg(small_config());
  ModuleMap map(seg);
  const std::uint32_t capacity = map.header().capacity;
  ASSERT_GT(capacity, 0u);
  for (std::uint32_t i = 0; i < capacity; ++i) {
    map.add(0x10000ull * (i + 1), 0x1000, "/lib/m" + std::to_string(i) + ".so", id_bytes(0, 4));
  }
  auto modules = seg.reader().modules();
  ASSERT_TRUE(modules.has_value()) << error_of(modules);
  ASSERT_EQ(modules->size(), capacity);
  EXPECT_EQ(modules->back().path, "/lib/m" + std::to_string(capacity - 1) + ".so");
  EXPECT_EQ(modules->back().base, 0x10000ull * capacity);
}

TEST(ModuleReader, CountAboveCapacityIsRejected) {
  MemorySegment seg(small_config());
  ModuleMap map(seg);
  map.add(0x1000, 0x100, "/lib/one.so", {});
  map.header().count = map.header().capacity + 1;
  const std::string error = error_of(seg.reader().modules());
  EXPECT_NE(error.find("count " + std::to_string(map.header().capacity + 1) + " exceeds capacity " +
                       std::to_string(map.header().capacity)),
            std::string::npos)
      << error;
}

TEST(ModuleReader, CapacityLargerThanTheRegionIsRejected) {
  MemorySegment seg(small_config());
  ModuleMap map(seg);
  const std::uint64_t room =
      (seg.layout().modules_size - sizeof(abi::ModuleMapHeader)) / sizeof(abi::ModuleEntry);
  // The reader validates the capacity when it reads the map, not at attach.
  reader::Segment r = seg.reader();
  map.header().capacity = static_cast<std::uint32_t>(room + 1);
  const std::string error = error_of(r.modules());
  EXPECT_NE(error.find("capacity " + std::to_string(room + 1) + " does not fit modules_size"),
            std::string::npos)
      << error;
  map.header().capacity = static_cast<std::uint32_t>(room);
  EXPECT_TRUE(r.modules().has_value());
}

TEST(ModuleReader, BadPathIdIsRejected) {
  MemorySegment seg(small_config());
  ModuleMap map(seg);
  map.add(0x1000, 0x100, "/lib/one.so", {});
  const std::uint32_t i = map.add(0x2000, 0x100, "/lib/two.so", {});
  reader::Segment r = seg.reader();

  map.entry(i).path_id = 60000;  // beyond the used part of the table
  std::string error = error_of(r.modules());
  EXPECT_NE(error.find("entry 1: path_id 60000"), std::string::npos) << error;
  EXPECT_NE(error.find("out of range"), std::string::npos) << error;

  map.entry(i).path_id = 66;  // not a multiple of 4
  error = error_of(r.modules());
  EXPECT_NE(error.find("entry 1: path_id 66"), std::string::npos) << error;

  map.entry(i).path_id = 0;
  error = error_of(r.modules());
  EXPECT_NE(error.find("entry 1: path_id is 0"), std::string::npos) << error;
}

TEST(ModuleReader, BuildIdSizeAbove20IsRejected) {
  MemorySegment seg(small_config());
  ModuleMap map(seg);
  const std::uint32_t i = map.add(0x1000, 0x100, "/lib/one.so", id_bytes(0, 20));
  reader::Segment r = seg.reader();
  ASSERT_TRUE(r.modules().has_value());
  map.entry(i).build_id_size = 21;
  const std::string error = error_of(r.modules());
  EXPECT_NE(error.find("entry 0: build_id_size 21 exceeds 20"), std::string::npos) << error;
}

TEST(ModuleReader, EmptyOrWrappingRangeIsRejected) {
  MemorySegment seg(small_config());
  ModuleMap map(seg);
  const std::uint32_t i = map.add(0x1000, 0x100, "/lib/one.so", {});
  reader::Segment r = seg.reader();
  map.entry(i).size = 0;
  std::string error = error_of(r.modules());
  EXPECT_NE(error.find("entry 0: size 0"), std::string::npos) << error;
  map.entry(i).base = UINT64_MAX - 0x10;
  map.entry(i).size = 0x20;
  error = error_of(r.modules());
  EXPECT_NE(error.find("entry 0: size 32"), std::string::npos) << error;
  EXPECT_NE(error.find("wraps"), std::string::npos) << error;
}

}  // namespace
}  // namespace shmtrace::test
