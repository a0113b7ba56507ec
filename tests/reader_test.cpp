// The reader library against segments built in memory (and, for attach and
// the error area, real /dev/shm objects that each test removes).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "reader/reader.hpp"
#include "reader/segment_impl.hpp"
#include "support/segment_builder.hpp"

namespace shmtrace {
namespace {

using reader::Access;
using reader::Segment;
using test::ErrorChunkWriter;
using test::ErrorSpec;
using test::SegmentBuilder;
using test::ShmObject;

bool shm_exists(const std::string& name) {
  struct stat st {};
  return ::lstat(("/dev/shm/" + name).c_str(), &st) == 0;
}

Segment open_memory(const SegmentBuilder& b, Access access = Access::kConsume) {
  auto seg = Segment::from_memory(b.base(), b.size(), access);
  if (!seg) ADD_FAILURE() << seg.error().message;
  return std::move(*seg);
}

std::string from_memory_error(const SegmentBuilder& b) {
  auto seg = Segment::from_memory(b.base(), b.size(), Access::kReadOnly);
  if (seg) return "(accepted)";
  return seg.error().message;
}

// ---------------------------------------------------------------------------
// Header validation
// ---------------------------------------------------------------------------
TEST(ReaderHeader, ValidSegmentAcceptedAndEveryFieldReadBack) {
  SegmentBuilder b;
  abi::SegmentHeader& h = b.header();
  h.ppid = 4242;
  h.process_start_ticks = 777;
  h.clock_ref_ticks = 1000;
  h.clock_ref_mono_ns = 2000;
  h.clock_ref_wall_ns = 3000;
  h.policy = static_cast<std::uint32_t>(abi::FullPolicy::kBlock);
  h.block_timeout_ms = 250;
  h.sample_rate_ppm = 500'000;
  for (int i = 0; i < 16; ++i) h.trace_id[i] = static_cast<std::uint8_t>(i + 1);
  h.parent_span_id = 0xabcdef;
  h.trace_flags = 1;
  h.state = static_cast<std::uint32_t>(abi::ProcessState::kExited);
  h.exit_status = 3;
  h.errors_written = 11;
  h.errors_spilled = 2;
  h.no_ring_threads = 5;
  std::strcpy(h.exe, "/usr/bin/traced");
  std::memcpy(h.cmdline, "traced\0--fast", 13);
  h.cmdline_size = 13;

  auto seg = Segment::from_memory(b.base(), b.size(), Access::kReadOnly);
  ASSERT_TRUE(seg) << seg.error().message;
  EXPECT_EQ(0, std::memcmp(&seg->header(), b.base(), sizeof(abi::SegmentHeader)));
  const abi::SegmentHeader& r = seg->header();
  EXPECT_EQ(r.magic, abi::kSegmentMagic);
  EXPECT_EQ(r.abi_major, abi::kAbiMajor);
  EXPECT_EQ(r.header_size, abi::kHeaderSize);
  EXPECT_EQ(r.total_size, b.size());
  EXPECT_EQ(r.nonce, h.nonce);
  EXPECT_EQ(r.pid, static_cast<std::uint32_t>(::getpid()));
  EXPECT_EQ(r.ppid, 4242u);
  EXPECT_EQ(r.process_start_ticks, 777u);
  EXPECT_EQ(r.clock_ref_wall_ns, 3000u);
  EXPECT_EQ(r.ring_capacity, 64u);
  EXPECT_EQ(r.max_rings, 2u);
  EXPECT_EQ(r.overflow_capacity, 8u);
  EXPECT_EQ(r.ring_stride, 8192u);
  EXPECT_EQ(r.block_timeout_ms, 250u);
  EXPECT_EQ(r.trace_id[15], 16);
  EXPECT_EQ(r.parent_span_id, 0xabcdefu);
  EXPECT_STREQ(r.exe, "/usr/bin/traced");
  EXPECT_EQ(std::string(r.cmdline, r.cmdline_size), std::string("traced\0--fast", 13));
  EXPECT_EQ(seg->name(), b.name());
  EXPECT_EQ(seg->ring_count(), 2u);
  EXPECT_EQ(seg->state(), abi::ProcessState::kExited);
  EXPECT_EQ(seg->exit_status(), 3);
  EXPECT_EQ(seg->errors_written(), 11u);
  EXPECT_EQ(seg->errors_spilled(), 2u);
  EXPECT_EQ(seg->no_ring_threads(), 5u);
  EXPECT_EQ(seg->error_chunk_count(), 0u);
  // Live fields are reloaded, the copy is not.
  abi::atomic_store(h.state, static_cast<std::uint32_t>(abi::ProcessState::kCrashed),
                    std::memory_order_release);
  EXPECT_EQ(seg->state(), abi::ProcessState::kCrashed);
  EXPECT_EQ(seg->header().state, static_cast<std::uint32_t>(abi::ProcessState::kExited));
}

TEST(ReaderHeader, NewerMinorAccepted) {
  SegmentBuilder b;
  b.header().abi_minor = abi::kAbiMinor + 1;
  EXPECT_EQ(from_memory_error(b), "(accepted)");
}

TEST(ReaderHeader, ValidateHeaderUsesTheMappedSizeNotTheClaim) {
  SegmentBuilder b;
  EXPECT_TRUE(reader::validate_header(b.header(), b.size()));
  auto small = reader::validate_header(b.header(), b.size() - 1);
  ASSERT_FALSE(small);
  EXPECT_EQ(small.error().message,
            "invalid header: total_size " + std::to_string(b.size()) + " is larger than the " +
                std::to_string(b.size() - 1) + " bytes mapped");
}

struct Corruption {
  const char* name;
  std::function<void(SegmentBuilder&)> corrupt;
  std::string expected;  // substring of the error
};

class ReaderCorruption : public ::testing::TestWithParam<Corruption> {};

TEST_P(ReaderCorruption, RejectedWithMessageNamingTheField) {
  SegmentBuilder b;
  GetParam().corrupt(b);
  const std::string message = from_memory_error(b);
  EXPECT_NE(message.find(GetParam().expected), std::string::npos) << message;
  EXPECT_EQ(message.rfind("segment " , 0), 0u) << message;
}

INSTANTIATE_TEST_SUITE_P(
    Fields, ReaderCorruption,
    ::testing::Values(
        Corruption{"BadMagic", [](SegmentBuilder& b) { b.header().magic = 0x1122334455667788; },
                   "invalid header: bad magic 0x1122334455667788"},
        Corruption{"ZeroMagic", [](SegmentBuilder& b) { b.header().magic = 0; },
                   "not yet initialized (magic is 0)"},
        Corruption{"OtherMajor", [](SegmentBuilder& b) { b.header().abi_major = 3; },
                   "abi_major 3 is not supported"},
        // Major 1's statistics slots were smaller (no self_ticks).
        Corruption{"MajorOneSlots", [](SegmentBuilder& b) { b.header().abi_major = 1; },
                   "abi_major 1 is not supported"},
        Corruption{"HeaderSize", [](SegmentBuilder& b) { b.header().header_size = 2048; },
                   "header_size 2048, expected 4096"},
        Corruption{"TotalSizeTooLarge",
                   [](SegmentBuilder& b) { b.header().total_size = b.size() + 4096; },
                   "is larger than the"},
        Corruption{"StringsOutOfRange",
                   [](SegmentBuilder& b) { b.header().strings_offset = b.size() - 64; },
                   "strings_offset " },
        Corruption{"StringsInsideHeader",
                   [](SegmentBuilder& b) { b.header().strings_offset = 64; },
                   "strings_offset 64 lies inside the header"},
        Corruption{"OverflowOutOfRange",
                   [](SegmentBuilder& b) { b.header().overflow_offset = 1ull << 62; },
                   "overflow_offset 4611686018427387904 + size"},
        Corruption{"Overlap",
                   [](SegmentBuilder& b) { b.header().modules_offset = b.header().strings_offset + 64; },
                   "strings region [4096, 8192) overlaps modules region"},
        Corruption{"RingCapacityNotPowerOfTwo",
                   [](SegmentBuilder& b) { b.header().ring_capacity = 48; },
                   "ring_capacity 48 is not a power of two"},
        Corruption{"RingCapacityZero", [](SegmentBuilder& b) { b.header().ring_capacity = 0; },
                   "ring_capacity 0 is not a power of two"},
        Corruption{"RingStrideTooSmall", [](SegmentBuilder& b) { b.header().ring_stride = 4096; },
                   "ring_stride 4096 is too small for 64 records"},
        Corruption{"RingStrideNotPage", [](SegmentBuilder& b) { b.header().ring_stride = 8200; },
                   "ring_stride 8200 is not page-aligned"},
        Corruption{"TooManyRings", [](SegmentBuilder& b) { b.header().max_rings = 1000; },
                   "max_rings 1000 x ring_stride 8192 exceeds total_size"},
        Corruption{"OverflowCapacity",
                   [](SegmentBuilder& b) { b.header().overflow_capacity = 6; },
                   "overflow_capacity 6 is not a power of two"},
        Corruption{"OverflowTooSmall",
                   [](SegmentBuilder& b) { b.header().overflow_capacity = 16; },
                   "overflow_size 1216 is too small for 16 slots"},
        Corruption{"ClockKind", [](SegmentBuilder& b) { b.header().clock_kind = 9; },
                   "clock_kind 9 is unknown"},
        Corruption{"Policy", [](SegmentBuilder& b) { b.header().policy = 7; },
                   "policy 7 is unknown"},
        Corruption{"MaxFrames", [](SegmentBuilder& b) { b.header().max_frames = 65; },
                   "max_frames 65 exceeds 64"},
        Corruption{"StringTableBytes",
                   [](SegmentBuilder& b) { b.header().string_table_bytes = 2048; },
                   "string_table_bytes 2048 differs from strings_size 4096"},
        Corruption{"StringTableCapacity",
                   [](SegmentBuilder& b) {
                     b.at<abi::StringTableHeader>(b.header().strings_offset)->capacity = 1;
                   },
                   "string table capacity 1 differs from strings_size 4096"},
        Corruption{"OverflowControlCapacity",
                   [](SegmentBuilder& b) { b.overflow().capacity = 4; },
                   "overflow control capacity 4 differs from overflow_capacity 8"},
        Corruption{"ExeNotTerminated",
                   [](SegmentBuilder& b) { std::memset(b.header().exe, 'x', sizeof b.header().exe); },
                   "exe is not NUL-terminated"},
        Corruption{"SpillDirNotTerminated",
                   [](SegmentBuilder& b) {
                     std::memset(b.header().spill_dir, 'x', sizeof b.header().spill_dir);
                   },
                   "spill_dir is not NUL-terminated"},
        Corruption{"CmdlineSize", [](SegmentBuilder& b) { b.header().cmdline_size = 1021; },
                   "cmdline_size 1021 exceeds 1020"},
        Corruption{"ErrorChunkBytes",
                   [](SegmentBuilder& b) { b.header().error_chunk_bytes = 100; },
                   "error_chunk_bytes 100 is too small"}),
    [](const ::testing::TestParamInfo<Corruption>& info) { return std::string(info.param.name); });

// ---------------------------------------------------------------------------
// Rings
// ---------------------------------------------------------------------------
std::vector<std::uint64_t> timestamps(const reader::RingBatch& batch) {
  std::vector<std::uint64_t> out;
  for (const abi::Record& r : batch.records) out.push_back(r.timestamp);
  return out;
}

TEST(ReaderRing, ReadAndCommitWithWraparound) {
  SegmentBuilder b(test::Geometry{.ring_capacity = 8});
  Segment seg = open_memory(b);
  for (std::uint64_t t = 100; t < 106; ++t) b.push(1, test::make_record(abi::RecordKind::kCounter, t));
  auto first = seg.read_ring(1, 100);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first->ring, 1u);
  EXPECT_EQ(first->first_position, 0u);
  EXPECT_EQ(first->end_position, 6u);
  EXPECT_EQ(timestamps(*first), (std::vector<std::uint64_t>{100, 101, 102, 103, 104, 105}));
  ASSERT_TRUE(seg.commit_ring(1, 6));
  EXPECT_EQ(b.ring(1).tail, 6u);

  // Positions 6..12 occupy slots 6, 7, 0, 1, 2, 3, 4.
  for (std::uint64_t t = 106; t < 113; ++t) b.push(1, test::make_record(abi::RecordKind::kCounter, t));
  auto part = seg.read_ring(1, 3);
  ASSERT_TRUE(part);
  EXPECT_EQ(part->first_position, 6u);
  EXPECT_EQ(part->end_position, 9u);
  EXPECT_EQ(timestamps(*part), (std::vector<std::uint64_t>{106, 107, 108}));
  ASSERT_TRUE(seg.commit_ring(1, 9));
  auto rest = seg.read_ring(1, 100);
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest->first_position, 9u);
  EXPECT_EQ(rest->end_position, 13u);
  EXPECT_EQ(timestamps(*rest), (std::vector<std::uint64_t>{109, 110, 111, 112}));
  // An uncommitted read is repeated.
  auto again = seg.read_ring(1, 100);
  ASSERT_TRUE(again);
  EXPECT_EQ(timestamps(*again), timestamps(*rest));
  EXPECT_TRUE(seg.commit_ring(1, 13));
  auto empty = seg.read_ring(1, 100);
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->records.empty());
  EXPECT_EQ(empty->first_position, 13u);
  // Ring 0 was never touched.
  auto zero = seg.read_ring(0, 100);
  ASSERT_TRUE(zero);
  EXPECT_TRUE(zero->records.empty());
}

TEST(ReaderRing, CommitRefusesPositionsOutsideTailAndHead) {
  SegmentBuilder b(test::Geometry{.ring_capacity = 8});
  Segment seg = open_memory(b);
  for (std::uint64_t t = 0; t < 4; ++t) b.push(0, test::make_record(abi::RecordKind::kCounter, t));
  auto beyond = seg.commit_ring(0, 5);
  ASSERT_FALSE(beyond);
  EXPECT_NE(beyond.error().message.find("ring 0: commit position 5 outside [tail 0, head 4]"),
            std::string::npos)
      << beyond.error().message;
  ASSERT_TRUE(seg.commit_ring(0, 3));
  auto before = seg.commit_ring(0, 2);
  ASSERT_FALSE(before);
  EXPECT_NE(before.error().message.find("commit position 2 outside [tail 3, head 4]"),
            std::string::npos);
  EXPECT_EQ(b.ring(0).tail, 3u);
}

TEST(ReaderRing, ReadOnlyAccessCannotCommit) {
  SegmentBuilder b(test::Geometry{.ring_capacity = 8});
  Segment seg = open_memory(b, Access::kReadOnly);
  b.push(0, test::make_record(abi::RecordKind::kCounter, 1));
  auto ok = seg.commit_ring(0, 1);
  ASSERT_FALSE(ok);
  EXPECT_NE(ok.error().message.find("commit_ring needs consume access"), std::string::npos);
  EXPECT_EQ(b.ring(0).tail, 0u);
  seg.heartbeat();  // a no-op without consume access
  EXPECT_EQ(b.header().drain_heartbeat_ns, 0u);
}

TEST(ReaderRing, HeadTooFarAheadOfTailIsUntrusted) {
  SegmentBuilder b(test::Geometry{.ring_capacity = 8});
  Segment seg = open_memory(b);
  b.ring(0).tail = 10;
  b.ring(0).head = 19;
  auto far = seg.read_ring(0, 100);
  ASSERT_FALSE(far);
  EXPECT_NE(far.error().message.find("ring 0 untrusted: head 19 - tail 10 exceeds capacity 8"),
            std::string::npos)
      << far.error().message;
  b.ring(0).head = 9;
  auto behind = seg.read_ring(0, 100);
  ASSERT_FALSE(behind);
  EXPECT_NE(behind.error().message.find("untrusted: head 9 - tail 10"), std::string::npos);
  b.ring(0).head = 18;  // exactly full is fine
  auto full = seg.read_ring(0, 100);
  ASSERT_TRUE(full);
  EXPECT_EQ(full->records.size(), 8u);
}

TEST(ReaderRing, RingIndexOutOfRange) {
  SegmentBuilder b;
  Segment seg = open_memory(b);
  auto bad = seg.read_ring(2, 1);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("ring 2 out of range (max_rings 2)"), std::string::npos);
  EXPECT_FALSE(seg.ring_info(2));
  EXPECT_FALSE(seg.commit_ring(7, 0));
}

TEST(ReaderRing, RingInfoSnapshot) {
  SegmentBuilder b;
  abi::RingControl& c = b.ring(1);
  c.state = static_cast<std::uint32_t>(abi::RingState::kReleased);
  c.generation = 3;
  c.tid = 1234;
  std::memcpy(c.thread_name, "worker-7", 8);
  c.overflowed = 2;
  c.dropped = 1;
  c.blocked_ns = 99;
  c.head = 40;
  c.tail = 38;
  Segment seg = open_memory(b);
  auto info = seg.ring_info(1);
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(info->index, 1u);
  EXPECT_EQ(info->state, abi::RingState::kReleased);
  EXPECT_EQ(info->generation, 3u);
  EXPECT_EQ(info->tid, 1234u);
  EXPECT_EQ(info->thread_name, "worker-7");
  EXPECT_EQ(info->head, 40u);
  EXPECT_EQ(info->tail, 38u);
  EXPECT_EQ(info->written, 40u);
  EXPECT_EQ(info->overflowed, 2u);
  EXPECT_EQ(info->dropped, 1u);
  EXPECT_EQ(info->blocked_ns, 99u);
  std::memset(c.thread_name, 'n', sizeof c.thread_name);  // no NUL: cut at 16
  c.state = 9;
  auto bad = seg.ring_info(1);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("ring 1 state 9 is unknown"), std::string::npos);
  c.state = 1;
  EXPECT_EQ(seg.ring_info(1)->thread_name, std::string(16, 'n'));
}

TEST(ReaderRing, HeartbeatPublishesPidAndTime) {
  SegmentBuilder b;
  Segment seg = open_memory(b);
  EXPECT_TRUE(seg.heartbeat());
  EXPECT_EQ(b.header().drain_pid, static_cast<std::uint32_t>(::getpid()));
  EXPECT_GT(b.header().drain_heartbeat_ns, 0u);
  EXPECT_TRUE(seg.is_consumer());
  EXPECT_EQ(seg.consumer_pid(), static_cast<std::uint32_t>(::getpid()));
}

// Another live process (init, pid 1, stands for another drain) holds the
// segment: it keeps it however late its heartbeat (a drain starved of CPU
// still holds records it read); a holder whose process is gone, or whose pid
// now names a process started after its last heartbeat, is taken over; once
// another consumer has taken the segment from us, our heartbeat writes
// nothing and says so.
TEST(ReaderRing, ConsumerClaimAndTakeOver) {
  SegmentBuilder b;
  Segment seg = open_memory(b);
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const std::uint64_t now_ns = static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000u + now.tv_nsec;
  b.header().drain_pid = 1;
  b.header().drain_heartbeat_ns = now_ns;
  EXPECT_FALSE(seg.claim_consumer()) << "a live holder with a fresh heartbeat keeps it";
  EXPECT_FALSE(seg.heartbeat());
  EXPECT_EQ(b.header().drain_heartbeat_ns, now_ns) << "nothing written for another holder";
  EXPECT_EQ(b.header().drain_pid, 1u);
  // pid 1 started at boot, long before this heartbeat of an hour ago... if
  // the machine has been up that long; a minute ago holds on any machine
  // that ran these tests.
  b.header().drain_heartbeat_ns = now_ns - 60'000'000'000ull;
  EXPECT_FALSE(seg.claim_consumer()) << "a live holder with a late heartbeat keeps it";
  EXPECT_EQ(b.header().drain_pid, 1u);
  // A pid reused: the process under it started after the holder's last
  // heartbeat (we did, well after a heartbeat at time 1).
  b.header().drain_pid = static_cast<std::uint32_t>(::getppid());
  b.header().drain_heartbeat_ns = 1;
  EXPECT_TRUE(seg.holder_gone(b.header().drain_pid)) << "the parent started after a heartbeat at boot";
  // A holder whose process is gone.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  b.header().drain_pid = static_cast<std::uint32_t>(child);
  b.header().drain_heartbeat_ns = now_ns;
  EXPECT_TRUE(seg.claim_consumer()) << "a holder whose process is gone is taken over";
  EXPECT_EQ(b.header().drain_pid, static_cast<std::uint32_t>(::getpid()));
  EXPECT_GE(b.header().drain_heartbeat_ns, now_ns) << "the heartbeat is fresh as soon as the claim is visible";
  EXPECT_TRUE(seg.heartbeat());
  b.header().drain_pid = 1;  // taken from us
  EXPECT_FALSE(seg.is_consumer());
  EXPECT_FALSE(seg.heartbeat());
  b.header().drain_pid = 0;  // released: an unclaimed segment is claimed by the heartbeat
  EXPECT_TRUE(seg.heartbeat());
  EXPECT_TRUE(seg.is_consumer());
}

// ---------------------------------------------------------------------------
// Strings
// ---------------------------------------------------------------------------
TEST(ReaderStrings, InternedStringsAndFlags) {
  SegmentBuilder b;
  const std::uint32_t alpha = b.intern("alpha");
  const std::uint32_t secret = b.intern("password", abi::kStringSensitive);
  const std::uint32_t empty = b.intern("");
  Segment seg = open_memory(b);
  EXPECT_EQ(alpha, 64u);
  EXPECT_EQ(secret, 76u);
  EXPECT_EQ(*seg.string(alpha), "alpha");
  EXPECT_EQ(*seg.string(secret), "password");
  EXPECT_EQ(*seg.string(empty), "");
  EXPECT_EQ(*seg.string(0), "");
  EXPECT_EQ(*seg.string_flags(secret), abi::kStringSensitive);
  EXPECT_EQ(*seg.string_flags(alpha), 0);
  // Served from the reader's copy once read: a later scribble is not seen.
  std::memcpy(b.base() + b.header().strings_offset + alpha + 4, "XXXXX", 5);
  EXPECT_EQ(*seg.string(alpha), "alpha");
}

TEST(ReaderStrings, BadIdsRejected) {
  SegmentBuilder b;
  const std::uint32_t ok = b.intern("ok");
  const std::uint32_t pending = b.intern("pending", 0, /*ready=*/false);
  const std::uint32_t long_one = b.intern("long");
  Segment seg = open_memory(b);
  auto out = seg.string(4000);
  ASSERT_FALSE(out);
  EXPECT_NE(out.error().message.find("string id 4000 is out of range (table used 92)"),
            std::string::npos)
      << out.error().message;
  auto misaligned = seg.string(ok + 2);
  ASSERT_FALSE(misaligned);
  EXPECT_NE(misaligned.error().message.find("is misaligned"), std::string::npos);
  EXPECT_FALSE(seg.string(8));  // inside the table header
  auto not_ready = seg.string(pending);
  ASSERT_FALSE(not_ready);
  EXPECT_NE(not_ready.error().message.find("string id " + std::to_string(pending) + " is not ready"),
            std::string::npos);
  EXPECT_FALSE(seg.string_flags(pending));
  b.string_entry(long_one).length = 200;  // past `used`
  auto past = seg.string(long_one);
  ASSERT_FALSE(past);
  EXPECT_NE(past.error().message.find("length 200 runs past the end of the table"),
            std::string::npos)
      << past.error().message;
}

// ---------------------------------------------------------------------------
// Overflow
// ---------------------------------------------------------------------------
std::vector<abi::Record> counters(std::uint64_t first, std::size_t n) {
  std::vector<abi::Record> out;
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(test::make_record(abi::RecordKind::kCounter, first + i));
  }
  return out;
}

TEST(ReaderOverflow, GroupsReadWholeOnlyWhenComplete) {
  SegmentBuilder b;  // overflow capacity 8
  Segment seg = open_memory(b);
  const auto group = counters(500, 3);
  b.push_overflow_group(group, 1, 4, 777, /*publish=*/2);
  auto partial = seg.read_overflow(100);
  ASSERT_TRUE(partial) << partial.error().message;
  EXPECT_TRUE(partial->entries.empty());
  EXPECT_EQ(partial->first_position, 0u);
  EXPECT_EQ(partial->end_position, 0u);

  b.publish_overflow(2);
  auto whole = seg.read_overflow(100);
  ASSERT_TRUE(whole);
  ASSERT_EQ(whole->entries.size(), 3u);
  EXPECT_EQ(whole->end_position, 3u);
  for (std::size_t k = 0; k < 3; ++k) {
    EXPECT_EQ(whole->entries[k].position, k);
    EXPECT_EQ(whole->entries[k].ring_index, 1u);
    EXPECT_EQ(whole->entries[k].generation, 4u);
    EXPECT_EQ(whole->entries[k].tid, 777u);
    EXPECT_EQ(whole->entries[k].record.timestamp, 500 + k);
  }
  ASSERT_TRUE(seg.commit_overflow(*whole));
  EXPECT_EQ(b.overflow().dequeue_pos, 3u);
  for (std::uint64_t p = 0; p < 3; ++p) EXPECT_EQ(b.overflow_slot(p).sequence, 2u);
  EXPECT_EQ(b.overflow_slot(3).sequence, 0u);
  // Committing the same batch twice is refused.
  auto twice = seg.commit_overflow(*whole);
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().message.find("does not start at dequeue_pos 3"), std::string::npos);
}

TEST(ReaderOverflow, WholeGroupsAcrossLapsAndBatchLimits) {
  SegmentBuilder b;
  Segment seg = open_memory(b);
  // Lap 0: positions 0..5 in two groups of 3, committed.
  b.push_overflow_group(counters(0, 3), 0, 1, 10);
  b.push_overflow_group(counters(3, 3), 0, 1, 10);
  auto limited = seg.read_overflow(4);  // the second group does not fit whole
  ASSERT_TRUE(limited);
  EXPECT_EQ(limited->entries.size(), 3u);
  ASSERT_TRUE(seg.commit_overflow(*limited));
  auto second = seg.read_overflow(4);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->first_position, 3u);
  EXPECT_EQ(second->end_position, 6u);
  ASSERT_TRUE(seg.commit_overflow(*second));
  // Positions 6..10 wrap into lap 1 (slots 6, 7, 0, 1, 2).
  b.push_overflow_group(counters(6, 5), 1, 2, 20);
  auto wrapped = seg.read_overflow(100);
  ASSERT_TRUE(wrapped) << wrapped.error().message;
  ASSERT_EQ(wrapped->entries.size(), 5u);
  EXPECT_EQ(wrapped->entries[4].position, 10u);
  EXPECT_EQ(wrapped->entries[4].record.timestamp, 10u);
  ASSERT_TRUE(seg.commit_overflow(*wrapped));
  EXPECT_EQ(b.overflow_slot(7).sequence, 2u);  // position 7, lap 0 -> free for lap 1
  EXPECT_EQ(b.overflow_slot(8).sequence, 4u);  // position 8, lap 1 -> free for lap 2
  EXPECT_EQ(b.overflow().dequeue_pos, 11u);
  // A group larger than the batch limit is still taken alone.
  b.push_overflow_group(counters(11, 4), 0, 1, 10);
  auto big = seg.read_overflow(2);
  ASSERT_TRUE(big);
  EXPECT_EQ(big->entries.size(), 4u);
}

TEST(ReaderOverflow, BadGroupCountsAndSequencesRejected) {
  SegmentBuilder b;
  Segment seg = open_memory(b);
  b.push_overflow_group(counters(0, 1), 0, 1, 10);
  b.overflow_slot(0).group_count = 0;
  auto zero = seg.read_overflow(10);
  ASSERT_FALSE(zero);
  EXPECT_NE(zero.error().message.find("overflow group at position 0: group_count 0"),
            std::string::npos)
      << zero.error().message;
  b.overflow_slot(0).group_count = 9;
  auto big = seg.read_overflow(10);
  ASSERT_FALSE(big);
  EXPECT_NE(big.error().message.find("group_count 9 / group_index 0 invalid (capacity 8)"),
            std::string::npos);
  b.overflow_slot(0).group_count = 1;
  b.overflow_slot(0).sequence = 5;  // lap 2 while the consumer is at lap 0
  auto seq = seg.read_overflow(10);
  ASSERT_FALSE(seq);
  EXPECT_NE(seq.error().message.find("overflow slot 0 sequence 5 is invalid at position 0"),
            std::string::npos);
}

// ---------------------------------------------------------------------------
// Error area
// ---------------------------------------------------------------------------
ErrorSpec error_spec(std::uint64_t sequence) {
  ErrorSpec s;
  s.sequence = sequence;
  s.kind = abi::ErrorKind::kException;
  s.timestamp = 1000 + sequence;
  s.span_id = 50 + sequence;
  s.tid = 9;
  s.frames = {0x401000 + sequence, 0x402000};
  s.type = "std::runtime_error";
  s.message = "failure " + std::to_string(sequence);
  s.preview = "x=1";
  return s;
}

std::vector<std::uint64_t> sequences(const reader::ErrorBatch& batch) {
  std::vector<std::uint64_t> out;
  for (const reader::ErrorRecord& e : batch.errors) out.push_back(e.sequence);
  return out;
}

TEST(ReaderErrors, TwoChunksThenSpillFileInOrder) {
  SegmentBuilder b;
  test::TempDir spill;
  test::set_spill_dir(b, spill.path());
  ErrorChunkWriter chunk0(b, 0);
  chunk0.append(error_spec(1));
  chunk0.append(error_spec(2));
  chunk0.pad();
  ErrorChunkWriter chunk1(b, 1);
  chunk1.append(error_spec(3));
  const std::uint32_t fourth = chunk1.append(error_spec(4));
  const auto e5 = test::encode_error(error_spec(5));
  const auto e6 = test::encode_error(error_spec(6));
  const std::string spill_path = spill.path() + "/" + b.name() + abi::kSpillSuffix;
  test::append_to_file(spill_path, e5);
  test::append_to_file(spill_path, e6);

  Segment seg = open_memory(b);
  EXPECT_EQ(seg.error_chunk_count(), 2u);
  auto all = seg.read_errors({}, 100);
  ASSERT_TRUE(all) << all.error().message;
  EXPECT_EQ(sequences(*all), (std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(all->next.chunk, 1u);
  EXPECT_EQ(all->next.offset, fourth + test::encode_error(error_spec(4)).size());
  EXPECT_EQ(all->next.spill_offset, e5.size() + e6.size());
  const reader::ErrorRecord& first = all->errors[0];
  EXPECT_EQ(first.kind, abi::ErrorKind::kException);
  EXPECT_EQ(first.timestamp, 1001u);
  EXPECT_EQ(first.span_id, 51u);
  EXPECT_EQ(first.tid, 9u);
  EXPECT_EQ(first.frames, (std::vector<std::uint64_t>{0x401001, 0x402000}));
  EXPECT_EQ(first.type, "std::runtime_error");
  EXPECT_EQ(first.message, "failure 1");
  EXPECT_EQ(first.preview, "x=1");
  EXPECT_EQ(all->errors[5].message, "failure 6");

  // In small batches, resuming from the cursor.
  auto a = seg.read_errors({}, 3);
  ASSERT_TRUE(a);
  EXPECT_EQ(sequences(*a), (std::vector<std::uint64_t>{1, 2, 3}));
  auto rest = seg.read_errors(a->next, 3);
  ASSERT_TRUE(rest);
  EXPECT_EQ(sequences(*rest), (std::vector<std::uint64_t>{4, 5, 6}));
  // Nothing new; then one more in chunk 1 and one more spilled.
  auto none = seg.read_errors(rest->next, 10);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->errors.empty());
  chunk1.append(error_spec(7));
  test::append_to_file(spill_path, test::encode_error(error_spec(8)));
  auto more = seg.read_errors(none->next, 10);
  ASSERT_TRUE(more);
  EXPECT_EQ(sequences(*more), (std::vector<std::uint64_t>{7, 8}));
}

TEST(ReaderErrors, StopsAtEntryStillBeingWrittenAndAtTornSpillTail) {
  SegmentBuilder b;
  test::TempDir spill;
  test::set_spill_dir(b, spill.path());
  ErrorChunkWriter chunk0(b, 0);
  chunk0.append(error_spec(1));
  chunk0.append(error_spec(2), /*commit=*/false);
  chunk0.append(error_spec(3));
  const std::string spill_path = spill.path() + "/" + b.name() + abi::kSpillSuffix;
  auto torn = test::encode_error(error_spec(4));
  torn.resize(torn.size() - 8);
  test::append_to_file(spill_path, torn);
  Segment seg = open_memory(b);
  auto batch = seg.read_errors({}, 10);
  ASSERT_TRUE(batch) << batch.error().message;
  EXPECT_EQ(sequences(*batch), (std::vector<std::uint64_t>{1}));
  EXPECT_EQ(batch->next.spill_offset, 0u);
  // The writer finishes: both streams continue.
  abi::atomic_store(*reinterpret_cast<std::uint32_t*>(chunk0.data() + batch->next.offset),
                    static_cast<std::uint32_t>(abi::ErrorState::kCommitted),
                    std::memory_order_release);
  ::truncate(spill_path.c_str(), 0);
  test::append_to_file(spill_path, test::encode_error(error_spec(4)));
  auto after = seg.read_errors(batch->next, 10);
  ASSERT_TRUE(after);
  EXPECT_EQ(sequences(*after), (std::vector<std::uint64_t>{2, 3, 4}));
}

TEST(ReaderErrors, InvalidEntriesNameChunkAndOffset) {
  SegmentBuilder b;
  ErrorChunkWriter chunk0(b, 0);
  chunk0.append(error_spec(1));
  auto bytes = test::encode_error(error_spec(2));
  abi::ErrorEntry e{};
  std::memcpy(&e, bytes.data(), sizeof e);
  e.size = 100;  // not a multiple of 8
  std::memcpy(bytes.data(), &e, sizeof e);
  const std::uint32_t offset = chunk0.append_bytes(bytes);
  Segment seg = open_memory(b);
  auto bad_size = seg.read_errors({}, 10);
  ASSERT_FALSE(bad_size);
  EXPECT_NE(bad_size.error().message.find("error chunk 0 offset " + std::to_string(offset) +
                                          ": invalid error entry: size 100 is not a multiple of 8"),
            std::string::npos)
      << bad_size.error().message;

  e.size = static_cast<std::uint32_t>(bytes.size());
  e.frame_count = 65;
  std::memcpy(chunk0.data() + offset, &e, sizeof e);
  auto frames = seg.read_errors({}, 10);
  ASSERT_FALSE(frames);
  EXPECT_NE(frames.error().message.find("invalid error entry: frame_count 65 exceeds 64"),
            std::string::npos)
      << frames.error().message;

  e.frame_count = 20;  // within the limit, but more than the entry holds
  std::memcpy(chunk0.data() + offset, &e, sizeof e);
  auto overrun = seg.read_errors({}, 10);
  ASSERT_FALSE(overrun);
  EXPECT_NE(overrun.error().message.find("frames and text need"), std::string::npos);

  e.frame_count = 2;
  e.size = 8192;  // past the chunk's end
  std::memcpy(chunk0.data() + offset, &e, sizeof e);
  auto past = seg.read_errors({}, 10);
  ASSERT_FALSE(past);
  EXPECT_NE(past.error().message.find("size 8192 runs past the end"), std::string::npos);
}

TEST(ReaderErrors, ChunkHeaderChecked) {
  SegmentBuilder b;
  ErrorChunkWriter chunk0(b, 0);
  chunk0.append(error_spec(1));
  chunk0.header().segment_nonce ^= 1;
  Segment seg = open_memory(b);
  auto wrong = seg.read_errors({}, 10);
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message.find("error chunk 0 (/dev/shm/" + chunk0.name() +
                                       "): segment_nonce does not match"),
            std::string::npos)
      << wrong.error().message;
  chunk0.header().segment_nonce ^= 1;
  chunk0.header().index = 3;
  Segment seg2 = open_memory(b);
  auto index = seg2.read_errors({}, 10);
  ASSERT_FALSE(index);
  EXPECT_NE(index.error().message.find("index 3 in header"), std::string::npos);
}

TEST(ReaderErrors, MissingChunkAndBadCursorAreErrors) {
  SegmentBuilder b;
  b.header().error_chunk_count = 1;  // counted, never created
  Segment seg = open_memory(b);
  auto missing = seg.read_errors({}, 10);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("error chunk /dev/shm/" + b.name() +
                                         ".err.0: cannot open: No such file or directory"),
            std::string::npos)
      << missing.error().message;
  ErrorChunkWriter chunk0(b, 0);
  reader::ErrorCursor odd;
  odd.offset = 68;  // not 8-aligned
  auto bad = seg.read_errors(odd, 10);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("error chunk 0 offset 68: cursor offset out of range"),
            std::string::npos)
      << bad.error().message;
}

// ---------------------------------------------------------------------------
// Attaching to real shm objects, listing and unlinking
// ---------------------------------------------------------------------------
std::unique_ptr<ShmObject> publish_segment(const SegmentBuilder& b) {
  auto shm = std::make_unique<ShmObject>(b.name(), b.size());
  std::memcpy(shm->data(), b.base(), b.size());
  return shm;
}

TEST(ReaderAttach, AttachesToARealSegment) {
  SegmentBuilder b;
  b.push(0, test::make_record(abi::RecordKind::kCounter, 42));
  auto shm = publish_segment(b);
  for (Access access : {Access::kReadOnly, Access::kConsume}) {
    auto seg = Segment::attach(b.name(), access);
    ASSERT_TRUE(seg) << seg.error().message;
    EXPECT_EQ(seg->name(), b.name());
    EXPECT_EQ(0, std::memcmp(&seg->header(), b.base(), sizeof(abi::SegmentHeader)));
    auto batch = seg->read_ring(0, 10);
    ASSERT_TRUE(batch);
    ASSERT_EQ(batch->records.size(), 1u);
    EXPECT_EQ(batch->records[0].timestamp, 42u);
  }
  auto consumer = Segment::attach(b.name(), Access::kConsume);
  ASSERT_TRUE(consumer);
  ASSERT_TRUE(consumer->commit_ring(0, 1));
  EXPECT_EQ(reinterpret_cast<abi::RingControl*>(shm->data() + abi::ring_offset(b.header(), 0))->tail,
            1u);
}

TEST(ReaderAttach, RefusesSymlink) {
  SegmentBuilder b;
  ShmObject target("shmtrace-target-" + std::to_string(b.header().nonce), b.size());
  std::memcpy(target.data(), b.base(), b.size());
  const std::string link = "/dev/shm/" + b.name();
  ASSERT_EQ(::symlink(target.path().c_str(), link.c_str()), 0);
  auto seg = Segment::attach(b.name(), Access::kReadOnly);
  auto listing = reader::list_segments(b.header().pid);
  ::unlink(link.c_str());
  ASSERT_FALSE(seg);
  EXPECT_EQ(seg.error().message, "segment " + link + ": is a symbolic link, refused");
  ASSERT_TRUE(listing);
  for (const auto& entry : *listing) EXPECT_NE(entry.name, b.name());
}

TEST(ReaderAttach, RefusesOtherOwner) {
  SegmentBuilder b;
  auto shm = publish_segment(b);
  ASSERT_EQ(::fchown(shm->fd(), 65534, 65534), 0);
  auto seg = Segment::attach(b.name(), Access::kReadOnly);
  ASSERT_FALSE(seg);
  EXPECT_EQ(seg.error().message, "segment " + shm->path() + ": owned by uid 65534, only uid " +
                                     std::to_string(::geteuid()) + " is permitted, refused");
  // Permitted explicitly, it attaches.
  auto allowed = Segment::attach(b.name(), Access::kReadOnly, 65534u);
  EXPECT_TRUE(allowed) << allowed.error().message;
}

TEST(ReaderAttach, RefusesTooSmallUninitializedAndMismatchedName) {
  SegmentBuilder b;
  {
    ShmObject tiny(b.name(), 100);
    auto seg = Segment::attach(b.name(), Access::kReadOnly);
    ASSERT_FALSE(seg);
    EXPECT_EQ(seg.error().message,
              "segment " + tiny.path() + ": file size 100 is smaller than the minimum 4096");
  }
  {
    ShmObject blank(b.name(), b.size());
    auto seg = Segment::attach(b.name(), Access::kReadOnly);
    ASSERT_FALSE(seg);
    EXPECT_EQ(seg.error().message, "segment " + b.name() + ": not yet initialized (magic is 0)");
  }
  {
    const std::string other = test::make_segment_name(b.header().pid, b.header().nonce + 1);
    ShmObject wrong(other, b.size());
    std::memcpy(wrong.data(), b.base(), b.size());
    auto seg = Segment::attach(other, Access::kReadOnly);
    ASSERT_FALSE(seg);
    EXPECT_NE(seg.error().message.find("nonce do not match the name"), std::string::npos);
  }
  auto missing = Segment::attach(b.name(), Access::kReadOnly);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("cannot open: No such file or directory"),
            std::string::npos);
  EXPECT_FALSE(Segment::attach("../etc/passwd", Access::kReadOnly));
}

// The session is in the name and in the header; a drain filters by the name,
// so a segment whose header names another session (or none) is refused, and
// one whose header names a session under a plain name too.
TEST(ReaderAttach, RefusesANameAndHeaderThatDisagreeOnTheSession) {
  SegmentBuilder b;
  const std::string plain = b.name();
  const std::string of_a = "shmtrace.runA." + plain.substr(std::string("shmtrace.").size());
  struct Case {
    std::string name, header_session;
    bool attaches;
  };
  for (const Case& c : std::vector<Case>{{of_a, "runB", false},
                                         {of_a, "", false},
                                         {plain, "runA", false},
                                         {of_a, "runAx", false},
                                         {of_a, "runA", true},
                                         {plain, "", true}}) {
    std::memset(b.header().session, 0, sizeof b.header().session);
    std::memcpy(b.header().session, c.header_session.data(), c.header_session.size());
    ShmObject shm(c.name, b.size());
    std::memcpy(shm.data(), b.base(), b.size());
    auto seg = Segment::attach(c.name, Access::kConsume);
    ASSERT_EQ(seg.has_value(), c.attaches) << c.name << " / " << c.header_session;
    if (c.attaches) {
      EXPECT_EQ(seg->session(), c.header_session);
      EXPECT_EQ(seg->name(), c.name);
    } else {
      EXPECT_EQ(seg.error().message,
                "segment " + c.name + ": header session '" + c.header_session + "' does not match the name");
    }
  }
}

TEST(ReaderAttach, ListSegmentsSkipsChunksAndOtherNames) {
  SegmentBuilder b;
  auto shm = publish_segment(b);
  ErrorChunkWriter chunk0(b, 0);
  ShmObject odd("shmtrace.notapid.0000000000000000", 64);
  auto listing = reader::list_segments();
  ASSERT_TRUE(listing) << listing.error().message;
  int found = 0;
  for (const auto& entry : *listing) {
    EXPECT_EQ(entry.name.find(".err."), std::string::npos);
    EXPECT_NE(entry.name, odd.name());
    if (entry.name == b.name()) {
      ++found;
      EXPECT_EQ(entry.pid, b.header().pid);
      EXPECT_EQ(entry.owner_uid, static_cast<std::uint32_t>(::geteuid()));
    }
  }
  EXPECT_EQ(found, 1);
  auto other_pid = reader::list_segments(b.header().pid + 1);
  ASSERT_TRUE(other_pid);
  for (const auto& entry : *other_pid) EXPECT_NE(entry.name, b.name());
}

TEST(ReaderAttach, UnlinkRemovesSegmentChunksAndSpill) {
  SegmentBuilder b;
  test::TempDir spill;
  test::set_spill_dir(b, spill.path());
  ErrorChunkWriter chunk0(b, 0);
  ErrorChunkWriter chunk1(b, 1);
  ErrorChunkWriter chunk2(b, 2, /*count_it=*/false);  // created, count not yet raised
  const std::string spill_path = spill.path() + "/" + b.name() + abi::kSpillSuffix;
  test::append_to_file(spill_path, test::encode_error(error_spec(1)));
  auto shm = publish_segment(b);
  auto seg = Segment::attach(b.name(), Access::kConsume);
  ASSERT_TRUE(seg) << seg.error().message;
  ASSERT_TRUE(seg->unlink());
  EXPECT_FALSE(shm_exists(b.name()));
  EXPECT_FALSE(shm_exists(chunk0.name()));
  EXPECT_FALSE(shm_exists(chunk1.name()));
  EXPECT_FALSE(shm_exists(chunk2.name()));
  EXPECT_NE(::access(spill_path.c_str(), F_OK), 0);
  EXPECT_TRUE(seg->unlink());  // nothing left: still fine
}

TEST(ReaderAttach, UnlinkSurvivesAHostileChunkCount) {
  SegmentBuilder b;
  ErrorChunkWriter chunk0(b, 0);
  b.header().error_chunk_count = 0xffffffffu;
  Segment seg = open_memory(b);
  EXPECT_TRUE(seg.unlink());  // stops after a run of missing chunks
  EXPECT_FALSE(shm_exists(chunk0.name()));
}

// ---------------------------------------------------------------------------
// Clock conversion
// ---------------------------------------------------------------------------
TEST(ReaderClock, MonotonicTicksAreNanoseconds) {
  abi::SegmentHeader h{};
  h.clock_kind = static_cast<std::uint32_t>(abi::ClockKind::kMonotonicNs);
  h.clock_ref_ticks = 1'000'000;
  h.clock_ref_wall_ns = 1'700'000'000'000'000'000;
  reader::ClockConverter clock(h);
  EXPECT_EQ(clock.ticks_per_ns(), 1.0);
  EXPECT_EQ(clock.to_wall_ns(1'000'500), 1'700'000'000'000'000'500);
  EXPECT_EQ(clock.to_wall_ns(999'000), 1'699'999'999'999'999'000);  // before the reference
  EXPECT_EQ(clock.duration_ns(100, 350), 250);
}

TEST(ReaderClock, TscWithKnownRate) {
  abi::SegmentHeader h{};
  h.clock_kind = static_cast<std::uint32_t>(abi::ClockKind::kTsc);
  h.ticks_per_second = 2'000'000'000;
  h.clock_ref_ticks = 10'000;
  h.clock_ref_wall_ns = 5'000'000;
  reader::ClockConverter clock(h);
  EXPECT_DOUBLE_EQ(clock.ticks_per_ns(), 2.0);
  EXPECT_EQ(clock.to_wall_ns(12'000), 5'001'000);
  EXPECT_EQ(clock.to_wall_ns(8'000), 4'999'000);
  EXPECT_EQ(clock.duration_ns(0, 3'000), 1'500);
}

TEST(ReaderClock, TscCalibratedWhenRateUnknown) {
  abi::SegmentHeader h{};
  h.clock_kind = static_cast<std::uint32_t>(abi::ClockKind::kTsc);
  reader::ClockConverter clock(h);
  // Any real TSC runs between 100 MHz and 10 GHz.
  EXPECT_GT(clock.ticks_per_ns(), 0.1);
  EXPECT_LT(clock.ticks_per_ns(), 10.0);
  reader::ClockConverter again(h);  // calibrated once per process
  EXPECT_EQ(again.ticks_per_ns(), clock.ticks_per_ns());
}

// ---------------------------------------------------------------------------
// Files another user may have planted in a shared directory
// ---------------------------------------------------------------------------
TEST(ReaderOpenChecked, FifoIsRefusedAtOnceInsteadOfBlocking) {
  test::TempDir dir;
  const std::string fifo = dir.path() + "/planted";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  // In a child with an alarm: an open that waited for a writer (none will
  // come) is killed by SIGALRM instead of hanging the test.
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(5);
    auto file = reader::detail::open_checked(fifo, false, static_cast<std::uint32_t>(::geteuid()), 0);
    const bool refused = !file && !file.error().missing &&
                         file.error().error.message.find("not a regular file") != std::string::npos;
    ::_exit(refused ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0)
                                 << " (SIGALRM: open_checked blocked on the FIFO)";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "open_checked did not refuse the FIFO as not a regular file";
}

TEST(ReaderOpenChecked, SecondHardLinkAndOversizeAreRefused) {
  test::TempDir dir;
  const std::string path = dir.path() + "/file";
  const std::string link = dir.path() + "/link";
  test::append_to_file(path, std::vector<std::byte>(64, std::byte{1}));
  const auto me = static_cast<std::uint32_t>(::geteuid());
  ASSERT_TRUE(reader::detail::open_checked(path, false, me, 0));
  ASSERT_EQ(::link(path.c_str(), link.c_str()), 0) << std::strerror(errno);
  for (const std::string& name : {path, link}) {
    auto file = reader::detail::open_checked(name, false, me, 0);
    ASSERT_FALSE(file) << name;
    EXPECT_FALSE(file.error().missing);
    EXPECT_NE(file.error().error.message.find("has 2 hard links"), std::string::npos) << file.error().error.message;
  }
  ASSERT_EQ(::unlink(link.c_str()), 0);
  ASSERT_TRUE(reader::detail::open_checked(path, false, me, 0, 64));
  auto big = reader::detail::open_checked(path, false, me, 0, 63);
  ASSERT_FALSE(big);
  EXPECT_NE(big.error().error.message.find("exceeds the maximum 63"), std::string::npos) << big.error().error.message;
}

// A FIFO (or any file that fails the checks) at the spill path is not an
// error of the segment: its chunks are read, the refusal is a warning given
// once, and unlink leaves the planted file where it is.
TEST(ReaderErrors, RefusedSpillFileIsOneWarningNotAnError) {
  SegmentBuilder b;
  test::TempDir spill;
  test::set_spill_dir(b, spill.path());
  ErrorChunkWriter chunk0(b, 0);
  chunk0.append(error_spec(1));
  chunk0.append(error_spec(2));
  const std::string spill_path = spill.path() + "/" + b.name() + abi::kSpillSuffix;
  ASSERT_EQ(::mkfifo(spill_path.c_str(), 0600), 0) << std::strerror(errno);
  auto shm = publish_segment(b);
  auto seg = Segment::attach(b.name(), Access::kConsume);
  ASSERT_TRUE(seg) << seg.error().message;
  auto first = seg->read_errors({}, 100);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(sequences(*first), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_NE(first->warning.find(spill_path + ": not a regular file"), std::string::npos) << first->warning;
  auto again = seg->read_errors(first->next, 100);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_TRUE(again->errors.empty());
  EXPECT_EQ(again->warning, "") << "once per segment, not at every read";
  ASSERT_TRUE(seg->unlink());
  EXPECT_FALSE(shm_exists(b.name()));
  struct stat st {};
  ASSERT_EQ(::lstat(spill_path.c_str(), &st), 0) << "the FIFO is not the owner's file: left in place";
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  ::unlink(spill_path.c_str());
}

// ---------------------------------------------------------------------------
// Truncated and sparse segments: the SIGBUS guard and residency
// ---------------------------------------------------------------------------
// Bytes of the file actually allocated (tmpfs pages), from st_blocks.
std::int64_t allocated_bytes(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return -1;
  return static_cast<std::int64_t>(st.st_blocks) * 512;
}

// A /dev/shm object holding only some ranges of an image (the rest: holes),
// `size` bytes long; removed on destruction.
class SparseObject {
 public:
  SparseObject(const std::string& name, std::uint64_t size) : path_("/dev/shm/" + name) {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd_ < 0 || ::ftruncate(fd_, static_cast<off_t>(size)) != 0) ADD_FAILURE() << path_ << ": " << std::strerror(errno);
  }
  SparseObject(const SparseObject&) = delete;
  SparseObject& operator=(const SparseObject&) = delete;
  ~SparseObject() {
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path_.c_str());
  }
  void write(const std::byte* image, std::uint64_t offset, std::uint64_t size) const {
    ASSERT_EQ(::pwrite(fd_, image + offset, size, static_cast<off_t>(offset)), static_cast<ssize_t>(size))
        << std::strerror(errno);
  }
  int fd() const { return fd_; }

 private:
  std::string path_;
  int fd_ = -1;
};

TEST(ReaderFaults, ASegmentTruncatedAfterAttachReadsAsFaultedNotACrash) {
  SegmentBuilder b;
  b.push(0, test::make_record(abi::RecordKind::kCounter, 1));
  b.push(1, test::make_record(abi::RecordKind::kCounter, 2));
  auto shm = publish_segment(b);
  for (Access access : {Access::kReadOnly, Access::kConsume}) {
    SCOPED_TRACE(access == Access::kConsume ? "consume" : "read-only");
    ASSERT_EQ(::ftruncate(shm->fd(), static_cast<off_t>(b.size())), 0);
    std::memcpy(shm->data(), b.base(), b.size());
    auto seg = Segment::attach(b.name(), access);
    ASSERT_TRUE(seg) << seg.error().message;
    auto before = seg->read_ring(1, 10);
    ASSERT_TRUE(before) << before.error().message;
    EXPECT_EQ(before->records.size(), 1u);
    EXPECT_FALSE(seg->faulted());
    // The owner shrinks the file to its header and a page: the rings are
    // past its end now, and touching them raises SIGBUS.
    ASSERT_EQ(::ftruncate(shm->fd(), 2 * abi::kPageSize), 0);
    auto info = seg->ring_info(1);  // survived, reading zeros
    ASSERT_TRUE(info) << info.error().message;
    EXPECT_EQ(info->head, 0u);
    EXPECT_TRUE(seg->faulted());
    auto after = seg->read_ring(1, 10);
    ASSERT_TRUE(after) << after.error().message;
    EXPECT_TRUE(after->records.empty());
    if (access == Access::kConsume) {
      EXPECT_TRUE(seg->commit_ring(1, 0));  // a write lands on the zero page, not in the file
    }
    EXPECT_EQ(seg->state(), abi::ProcessState::kRunning) << "the header page is still in the file";
  }
}

TEST(ReaderFaults, ATruncatedErrorChunkFaultsItsSegment) {
  SegmentBuilder b;
  ErrorChunkWriter chunk0(b, 0);
  chunk0.append(error_spec(1));
  auto shm = publish_segment(b);
  auto seg = Segment::attach(b.name(), Access::kConsume);
  ASSERT_TRUE(seg) << seg.error().message;
  auto first = seg->read_errors({}, 100);
  ASSERT_TRUE(first) << first.error().message;
  ASSERT_EQ(first->errors.size(), 1u);
  EXPECT_FALSE(seg->faulted());
  // The chunk keeps its header but loses the page the next entry goes to.
  const int fd = ::open(("/dev/shm/" + chunk0.name()).c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 0), 0);
  ::close(fd);
  auto again = seg->read_errors(first->next, 100);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_TRUE(again->errors.empty());
  EXPECT_TRUE(seg->faulted());
}

TEST(ReaderFaults, AFaultOutsideEveryReaderMappingStillKills) {
  SegmentBuilder b;
  auto shm = publish_segment(b);
  auto seg = Segment::attach(b.name(), Access::kReadOnly);  // the handler is in
  ASSERT_TRUE(seg) << seg.error().message;
  ASSERT_EQ(::ftruncate(shm->fd(), abi::kPageSize), 0);
  // The writer's own mapping is none of the reader's: its fault goes on to
  // the default action (or a sanitizer's handler), as without the reader.
  const auto died = [](int status) { return WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0); };
  EXPECT_EXIT(
      {
        volatile std::byte sink = shm->data()[b.size() - 1];
        (void)sink;
        std::_Exit(0);
      },
      died, "");
  EXPECT_FALSE(seg->faulted());
}

TEST(ReaderSparse, RingsNeverWrittenAreReadAsEmptyWithoutAllocatingThem) {
  test::Geometry g;
  g.max_rings = 64;
  g.ring_capacity = 1024;  // 68 KiB slots
  g.ring_stats_bytes = 2 * sizeof(abi::StatsSlot);
  SegmentBuilder b(g);
  constexpr std::uint32_t kUsed = 5;
  b.ring(kUsed).state = static_cast<std::uint32_t>(abi::RingState::kReleased);
  b.ring(kUsed).tid = 77;
  for (std::uint64_t i = 0; i < 10; ++i) b.push(kUsed, test::make_record(abi::RecordKind::kCounter, i));
  // Written: the fixed part and one ring's slot, as the runtime leaves it.
  SparseObject file(b.name(), b.size());
  const abi::SegmentHeader& h = b.header();
  file.write(b.base(), 0, h.rings_offset);
  file.write(b.base(), abi::ring_offset(h, kUsed), h.ring_stride);
  const std::int64_t allocated = allocated_bytes(file.fd());
  ASSERT_LT(allocated, static_cast<std::int64_t>(h.rings_offset + 2 * h.ring_stride));

  for (Access access : {Access::kReadOnly, Access::kConsume}) {
    auto seg = Segment::attach(b.name(), access);
    ASSERT_TRUE(seg) << seg.error().message;
    for (int pass = 0; pass < 2; ++pass) {
      for (std::uint32_t r = 0; r < seg->ring_count(); ++r) {
        SCOPED_TRACE("ring " + std::to_string(r));
        auto info = seg->ring_info(r);
        ASSERT_TRUE(info) << info.error().message;
        auto batch = seg->read_ring(r, 100);
        ASSERT_TRUE(batch) << batch.error().message;
        if (r == kUsed) {
          EXPECT_EQ(info->tid, 77u);
          EXPECT_EQ(batch->records.size(), 10u);
        } else {
          EXPECT_EQ(info->state, abi::RingState::kFree);
          EXPECT_TRUE(batch->records.empty());
          if (access == Access::kConsume) EXPECT_TRUE(seg->commit_ring(r, 0));
        }
      }
      auto stats = seg->call_site_stats();
      EXPECT_TRUE(stats) << stats.error().message;
    }
    EXPECT_EQ(allocated_bytes(file.fd()), allocated) << "no hole was allocated by reading";
  }
}

// A thread claims its ring before it reserves the ring's pages: a claimed
// ring whose statistics table is still a hole has counted nothing yet. It
// reads as no statistics, not as corruption (which dropped whole segments of
// busy producers), and nothing of the hole is allocated.
TEST(ReaderSparse, AClaimedRingWhoseStatisticsAreStillAHoleHasNoneYet) {
  test::Geometry g;
  g.max_rings = 2;
  g.ring_capacity = 1024;
  g.ring_stats_bytes = 2 * sizeof(abi::StatsSlot);
  SegmentBuilder b(g);
  b.ring(1).state = static_cast<std::uint32_t>(abi::RingState::kClaimed);
  const abi::SegmentHeader& h = b.header();
  SparseObject file(b.name(), b.size());
  file.write(b.base(), 0, h.rings_offset);
  file.write(b.base(), abi::ring_offset(h, 1), abi::kPageSize);  // the claim's control block only
  const std::int64_t allocated = allocated_bytes(file.fd());
  auto seg = Segment::attach(b.name(), Access::kConsume);
  ASSERT_TRUE(seg) << seg.error().message;
  auto stats = seg->call_site_stats(1);
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_TRUE(stats->empty());
  auto all = seg->call_site_stats();
  ASSERT_TRUE(all) << all.error().message;
  EXPECT_TRUE(all->empty());
  EXPECT_EQ(allocated_bytes(file.fd()), allocated);
}

TEST(ReaderSparse, RecordsInAHoleAreUntrustedAndHoleyRegionsRefused) {
  test::Geometry g;
  g.max_rings = 2;
  g.ring_capacity = 1024;
  SegmentBuilder b(g);
  for (std::uint64_t i = 0; i < 100; ++i) b.push(1, test::make_record(abi::RecordKind::kCounter, i));
  const abi::SegmentHeader& h = b.header();
  {
    // Ring 1's control block says 100 records, but their pages were never
    // written.
    SparseObject file(b.name(), b.size());
    file.write(b.base(), 0, h.rings_offset);
    file.write(b.base(), abi::ring_offset(h, 1), abi::kPageSize);
    const std::int64_t allocated = allocated_bytes(file.fd());
    auto seg = Segment::attach(b.name(), Access::kConsume);
    ASSERT_TRUE(seg) << seg.error().message;
    auto info = seg->ring_info(1);
    ASSERT_TRUE(info) << info.error().message;
    EXPECT_EQ(info->head, 100u);
    auto batch = seg->read_ring(1, 1000);
    ASSERT_FALSE(batch);
    EXPECT_NE(batch.error().message.find("ring 1 untrusted: records [0, 100) lie in pages never written"),
              std::string::npos)
        << batch.error().message;
    EXPECT_EQ(allocated_bytes(file.fd()), allocated);
  }
  {
    // The module map and overflow area (on the page after the string
    // table) are a hole: refused at attach.
    SparseObject file(b.name(), b.size());
    ASSERT_EQ(h.modules_offset % abi::kPageSize, 0u);
    file.write(b.base(), 0, h.modules_offset);
    auto seg = Segment::attach(b.name(), Access::kReadOnly);
    ASSERT_FALSE(seg);
    EXPECT_NE(seg.error().message.find("modules region [" + std::to_string(h.modules_offset)), std::string::npos)
        << seg.error().message;
    EXPECT_NE(seg.error().message.find("has pages never written"), std::string::npos) << seg.error().message;
  }
  {
    // A header page not yet allocated reads as a segment being created.
    SparseObject file(b.name(), b.size());
    auto seg = Segment::attach(b.name(), Access::kReadOnly);
    ASSERT_FALSE(seg);
    EXPECT_EQ(seg.error().message, "segment " + b.name() + ": not yet initialized (magic is 0)");
    EXPECT_EQ(allocated_bytes(file.fd()), 0);
  }
}

TEST(ReaderSparse, MaxRingsAndSegmentSizeAreBounded) {
  SegmentBuilder b;  // 2 rings
  auto shm = publish_segment(b);
  const reader::SegmentLimits defaults = reader::segment_limits();
  EXPECT_EQ(defaults.max_rings, 4096u);
  reader::set_segment_limits({1, defaults.max_segment_bytes});
  auto refused = Segment::attach(b.name(), Access::kReadOnly);
  auto refused_memory = Segment::from_memory(b.base(), b.size(), Access::kReadOnly);
  reader::set_segment_limits({defaults.max_rings, b.size() - 1});
  auto too_big = Segment::attach(b.name(), Access::kReadOnly);
  reader::set_segment_limits(defaults);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("max_rings 2 exceeds the bound 1"), std::string::npos)
      << refused.error().message;
  ASSERT_FALSE(refused_memory);
  ASSERT_FALSE(too_big);
  EXPECT_NE(too_big.error().message.find("file size " + std::to_string(b.size()) + " exceeds the maximum"),
            std::string::npos)
      << too_big.error().message;
  EXPECT_TRUE(Segment::attach(b.name(), Access::kReadOnly));
}

}  // namespace
}  // namespace shmtrace
