// Segment creation (SPEC P1): initialize_segment over zeroed memory read back
// field by field through the reader, what read_process_info records, and the
// shared-memory objects SharedObject creates (mode 0600, exclusive creation,
// reservation bounds). Every object created here is unlinked.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "clock.hpp"
#include "process_info.hpp"
#include "reader/reader.hpp"
#include "segment.hpp"
#include "segment_layout.hpp"

namespace shmtrace::test {
namespace {

using runtime::SharedObject;

// Zeroed anonymous memory of a layout's size.
class ZeroedMemory {
 public:
  explicit ZeroedMemory(std::uint64_t size) : size_(size) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    base_ = p == MAP_FAILED ? nullptr : p;
  }
  ~ZeroedMemory() {
    if (base_ != nullptr) ::munmap(base_, size_);
  }
  ZeroedMemory(const ZeroedMemory&) = delete;
  ZeroedMemory& operator=(const ZeroedMemory&) = delete;
  void* base() const { return base_; }
  std::uint64_t size() const { return size_; }

 private:
  void* base_ = nullptr;
  std::uint64_t size_ = 0;
};

runtime::Config custom_config() {
  runtime::Config c;
  c.ring_records = 128;
  c.max_threads = 3;
  c.overflow_records = 256;
  c.policy = abi::FullPolicy::kBlock;
  c.block_timeout_ms = 250;
  c.error_chunk_bytes = 131072;
  c.string_table_bytes = 70000;  // rounded up to whole pages
  c.max_repr = 2000;
  c.max_frames = 12;
  c.sample_rate = 0.25;
  c.spill_dir = "/var/tmp/shmtrace-spill";
  return c;
}

runtime::ProcessInfo custom_process() {
  runtime::ProcessInfo p;
  p.pid = 777;
  p.ppid = 555;
  p.uid = 1000;
  p.start_ticks = 987654321;
  p.exe = "/opt/app/bin/server";
  p.cmdline = std::string("server\0--port\0" "8080", 19);
  p.exe_name = "server";
  return p;
}

TEST(InitializeSegment, ZeroMemoryIsNotASegment) {
  const runtime::SegmentLayout layout = runtime::compute_layout(custom_config());
  ZeroedMemory mem(layout.total_size);
  ASSERT_NE(mem.base(), nullptr);
  EXPECT_FALSE(reader::validate_header(*static_cast<abi::SegmentHeader*>(mem.base()), mem.size()));
  EXPECT_FALSE(reader::Segment::from_memory(mem.base(), mem.size(), reader::Access::kReadOnly));
}

TEST(InitializeSegment, ReaderAcceptsItAndReadsBackEveryField) {
  const runtime::Config config = custom_config();
  const runtime::SegmentLayout layout = runtime::compute_layout(config);
  ZeroedMemory mem(layout.total_size);
  ASSERT_NE(mem.base(), nullptr);
  const runtime::ProcessInfo process = custom_process();
  const runtime::ClockReference clock{111111, 222222, 333333};
  runtime::TraceContextSeed seed;
  for (int i = 0; i < 16; ++i) seed.trace_id[i] = static_cast<std::uint8_t>(0xf0 - i);
  seed.parent_span_id = 0x0abcdef012345678;
  seed.flags = 1;
  runtime::initialize_segment(mem.base(), layout, config, process, 0xfeedface12345678ull, clock, seed);

  const auto& live = *static_cast<const abi::SegmentHeader*>(mem.base());
  auto valid = reader::validate_header(live, mem.size());
  ASSERT_TRUE(valid.has_value()) << valid.error().message;
  // One byte short of the layout: refused.
  EXPECT_FALSE(reader::validate_header(live, mem.size() - 1));

  auto seg = reader::Segment::from_memory(mem.base(), mem.size(), reader::Access::kReadOnly);
  ASSERT_TRUE(seg.has_value()) << seg.error().message;
  const abi::SegmentHeader& h = seg->header();
  EXPECT_EQ(seg->name(), "shmtrace.777.feedface12345678");
  EXPECT_EQ(h.magic, abi::kSegmentMagic);
  EXPECT_EQ(h.abi_major, abi::kAbiMajor);
  EXPECT_EQ(h.abi_minor, abi::kAbiMinor);
  EXPECT_EQ(h.header_size, abi::kHeaderSize);
  EXPECT_EQ(h.total_size, layout.total_size);
  EXPECT_EQ(h.nonce, 0xfeedface12345678ull);
  EXPECT_EQ(h.pid, 777u);
  EXPECT_EQ(h.ppid, 555u);
  EXPECT_EQ(h.uid, 1000u);
  EXPECT_EQ(h.process_start_ticks, 987654321u);

  EXPECT_EQ(h.clock_kind, static_cast<std::uint32_t>(runtime::kClockKind));
  EXPECT_EQ(h.clock_ref_ticks, 111111u);
  EXPECT_EQ(h.clock_ref_mono_ns, 222222u);
  EXPECT_EQ(h.clock_ref_wall_ns, 333333u);
  EXPECT_EQ(h.ticks_per_second, runtime::kClockKind == abi::ClockKind::kTsc ? 0u : 1000000000u);

  EXPECT_EQ(h.ring_capacity, 128u);
  EXPECT_EQ(h.max_rings, 3u);
  EXPECT_EQ(h.overflow_capacity, 256u);
  EXPECT_EQ(h.error_chunk_bytes, 131072u);
  EXPECT_EQ(h.string_table_bytes, 73728u);
  EXPECT_EQ(h.max_repr, 2000u);
  EXPECT_EQ(h.policy, static_cast<std::uint32_t>(abi::FullPolicy::kBlock));
  EXPECT_EQ(h.block_timeout_ms, 250u);
  EXPECT_EQ(h.max_frames, 12u);
  EXPECT_EQ(h.sample_rate_ppm, 250000u);

  EXPECT_EQ(h.strings_offset, layout.strings_offset);
  EXPECT_EQ(h.strings_size, 73728u);
  EXPECT_EQ(h.modules_offset, layout.modules_offset);
  EXPECT_EQ(h.modules_size, layout.modules_size);
  EXPECT_EQ(h.overflow_offset, layout.overflow_offset);
  EXPECT_EQ(h.overflow_size, layout.overflow_size);
  EXPECT_EQ(h.rings_offset, layout.rings_offset);
  EXPECT_EQ(h.ring_stride, layout.ring_stride);
  EXPECT_EQ(h.ring_stats_bytes, layout.ring_stats_bytes);

  for (int i = 0; i < 16; ++i) EXPECT_EQ(h.trace_id[i], 0xf0 - i) << i;
  EXPECT_EQ(h.parent_span_id, 0x0abcdef012345678u);
  EXPECT_EQ(h.trace_flags, 1u);

  EXPECT_EQ(seg->state(), abi::ProcessState::kRunning);
  EXPECT_EQ(seg->exit_status(), 0);
  EXPECT_EQ(h.end_ticks, 0u);
  EXPECT_EQ(seg->error_chunk_count(), 0u);
  EXPECT_EQ(seg->errors_written(), 0u);
  EXPECT_EQ(seg->errors_spilled(), 0u);
  EXPECT_EQ(h.errors_lost, 0u);
  EXPECT_EQ(seg->no_ring_threads(), 0u);
  EXPECT_EQ(h.strings_rejected, 0u);
  EXPECT_EQ(h.drain_heartbeat_ns, 0u);
  EXPECT_EQ(h.drain_pid, 0u);

  EXPECT_STREQ(h.spill_dir, "/var/tmp/shmtrace-spill");
  EXPECT_STREQ(h.exe, "/opt/app/bin/server");
  EXPECT_EQ(h.cmdline_size, 19u);
  EXPECT_EQ(std::string(h.cmdline, h.cmdline_size), std::string("server\0--port\0" "8080", 19));

  // Reserved space stays zero for future minors.
  for (std::uint8_t b : h.reserved_tail) ASSERT_EQ(b, 0);
  EXPECT_EQ(h.reserved0 | h.reserved1 | h.reserved2 | h.reserved3 | h.reserved4 | h.reserved5, 0u);

  // Region headers.
  const auto* base = static_cast<const std::byte*>(mem.base());
  const auto& strings = *reinterpret_cast<const abi::StringTableHeader*>(base + layout.strings_offset);
  EXPECT_EQ(strings.used, sizeof(abi::StringTableHeader));
  EXPECT_EQ(strings.capacity, 73728u);
  EXPECT_EQ(strings.count, 0u);
  const auto& modules = *reinterpret_cast<const abi::ModuleMapHeader*>(base + layout.modules_offset);
  EXPECT_EQ(modules.capacity, runtime::kModuleCapacity);
  EXPECT_EQ(modules.count, 0u);
  const auto& overflow = *reinterpret_cast<const abi::OverflowControl*>(base + layout.overflow_offset);
  EXPECT_EQ(overflow.capacity, 256u);
  EXPECT_EQ(overflow.enqueue_pos, 0u);
  EXPECT_EQ(overflow.dequeue_pos, 0u);

  // Every ring starts free and empty.
  ASSERT_EQ(seg->ring_count(), 3u);
  for (std::uint32_t i = 0; i < 3; ++i) {
    auto info = seg->ring_info(i);
    ASSERT_TRUE(info.has_value()) << info.error().message;
    EXPECT_EQ(info->state, abi::RingState::kFree);
    EXPECT_EQ(info->head, 0u);
    EXPECT_EQ(info->tail, 0u);
    EXPECT_EQ(info->generation, 0u);
  }
  auto empty_overflow = seg->read_overflow(100);
  ASSERT_TRUE(empty_overflow.has_value()) << empty_overflow.error().message;
  EXPECT_TRUE(empty_overflow->entries.empty());
}

TEST(InitializeSegment, LongTextIsTruncated) {
  runtime::Config config = custom_config();
  config.spill_dir = "/" + std::string(300, 's');  // longer than the parser allows
  const runtime::SegmentLayout layout = runtime::compute_layout(config);
  ZeroedMemory mem(layout.total_size);
  runtime::ProcessInfo process = custom_process();
  process.exe = "/" + std::string(400, 'e');
  process.cmdline.clear();
  for (int i = 0; i < 300; ++i) {
    process.cmdline += "arg" + std::to_string(i);
    process.cmdline.push_back('\0');
  }
  process.cmdline.pop_back();
  ASSERT_GT(process.cmdline.size(), 1020u);
  runtime::initialize_segment(mem.base(), layout, config, process, 1, {}, {});
  auto seg = reader::Segment::from_memory(mem.base(), mem.size(), reader::Access::kReadOnly);
  ASSERT_TRUE(seg.has_value()) << seg.error().message;
  const abi::SegmentHeader& h = seg->header();
  EXPECT_EQ(std::string(h.exe), process.exe.substr(0, 255));
  EXPECT_EQ(std::string(h.spill_dir), config.spill_dir.substr(0, 191));
  EXPECT_EQ(h.cmdline_size, 1020u);
  EXPECT_EQ(std::string(h.cmdline, 1020), process.cmdline.substr(0, 1020));
  // No inherited context: all zero.
  for (std::uint8_t b : h.trace_id) EXPECT_EQ(b, 0);
  EXPECT_EQ(h.parent_span_id, 0u);
  EXPECT_EQ(h.trace_flags, 0u);
}

TEST(InitializeSegment, SampleRateInPartsPerMillion) {
  for (const auto& [rate, ppm] : std::vector<std::pair<double, std::uint32_t>>{
           {0.0, 0}, {1.0, 1000000}, {0.5, 500000}, {1.0 / 3.0, 333333}, {2.0 / 3.0, 666667}, {1e-6, 1},
           {0.0000004, 0}}) {
    runtime::Config config = custom_config();
    config.sample_rate = rate;
    const runtime::SegmentLayout layout = runtime::compute_layout(config);
    ZeroedMemory mem(layout.total_size);
    runtime::initialize_segment(mem.base(), layout, config, custom_process(), 1, {}, {});
    auto seg = reader::Segment::from_memory(mem.base(), mem.size(), reader::Access::kReadOnly);
    ASSERT_TRUE(seg.has_value()) << seg.error().message;
    EXPECT_EQ(seg->header().sample_rate_ppm, ppm) << rate;
  }
}

TEST(InitializeSegment, DefaultAndSmallestConfigsValidate) {
  runtime::Config smallest;
  smallest.ring_records = 64;
  smallest.max_threads = 1;
  smallest.overflow_records = 64;
  smallest.string_table_bytes = 65536;
  smallest.error_chunk_bytes = 65536;
  smallest.max_frames = 0;
  for (const runtime::Config& config : {runtime::Config{}, smallest}) {
    const runtime::SegmentLayout layout = runtime::compute_layout(config);
    ZeroedMemory mem(layout.total_size);
    ASSERT_NE(mem.base(), nullptr);
    runtime::initialize_segment(mem.base(), layout, config, runtime::read_process_info(), 42,
                                runtime::read_clock_reference(), {});
    auto seg = reader::Segment::from_memory(mem.base(), mem.size(), reader::Access::kReadOnly);
    ASSERT_TRUE(seg.has_value()) << seg.error().message;
    EXPECT_EQ(seg->header().total_size, layout.total_size);
  }
}

TEST(ClockReference, ReadsNowOnEveryClock) {
  const std::uint64_t mono_before = runtime::clock_ns(CLOCK_MONOTONIC);
  const std::uint64_t wall_before = runtime::clock_ns(CLOCK_REALTIME);
  const std::uint64_t ticks_before = runtime::now_ticks();
  const runtime::ClockReference c = runtime::read_clock_reference();
  const std::uint64_t ticks_after = runtime::now_ticks();
  const std::uint64_t wall_after = runtime::clock_ns(CLOCK_REALTIME);
  const std::uint64_t mono_after = runtime::clock_ns(CLOCK_MONOTONIC);
  EXPECT_GE(c.mono_ns, mono_before);
  EXPECT_LE(c.mono_ns, mono_after);
  EXPECT_GE(c.wall_ns, wall_before);
  EXPECT_LE(c.wall_ns, wall_after);
  EXPECT_GE(c.ticks, ticks_before);
  EXPECT_LE(c.ticks, ticks_after);
}

// ---------------------------------------------------------------------------
// Process information.
// ---------------------------------------------------------------------------
std::string slurp(const char* path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(ProcessInfo, MatchesProcSelf) {
  const runtime::ProcessInfo p = runtime::read_process_info();
  EXPECT_EQ(p.pid, static_cast<std::uint32_t>(::getpid()));
  EXPECT_EQ(p.ppid, static_cast<std::uint32_t>(::getppid()));
  EXPECT_EQ(p.uid, static_cast<std::uint32_t>(::geteuid()));
  char exe[4096];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe);
  ASSERT_GT(n, 0);
  EXPECT_EQ(p.exe, std::string(exe, static_cast<std::size_t>(n)));
  EXPECT_EQ(p.exe_name, p.exe.substr(p.exe.rfind('/') + 1));
  EXPECT_EQ(p.exe_name, "segment_layout_test");
  std::string cmdline = slurp("/proc/self/cmdline");
  while (!cmdline.empty() && cmdline.back() == '\0') cmdline.pop_back();
  EXPECT_EQ(p.cmdline, cmdline);
  EXPECT_EQ(p.cmdline.substr(0, p.cmdline.find('\0')), ::testing::internal::GetArgvs()[0]);
  // Field 22 of /proc/self/stat, counted after the ')' that ends the comm field.
  const std::string stat = slurp("/proc/self/stat");
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  for (int i = 3; i <= 22; ++i) fields >> field;
  EXPECT_EQ(p.start_ticks, std::stoull(field));
  EXPECT_GT(p.start_ticks, 0u);
}

TEST(ProcessInfo, RandomBitsDiffer) {
  std::set<std::uint64_t> seen;
  for (int i = 0; i < 10000; ++i) EXPECT_TRUE(seen.insert(runtime::random_u64()).second);
}

// ---------------------------------------------------------------------------
// SharedObject.
// ---------------------------------------------------------------------------
std::string unique_object_name() {
  static std::atomic<int> counter{0};
  // Not in the segment pattern, so no drain ever takes it for a segment.
  return "shmtrace-unit-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
}

bool shm_exists(const std::string& name) {
  struct stat st{};
  return ::stat(("/dev/shm/" + name).c_str(), &st) == 0;
}

// Unlinks the object at scope exit, whatever the test did.
struct Unlinker {
  std::string name;
  ~Unlinker() { ::shm_unlink(("/" + name).c_str()); }
};

TEST(SharedObject, CreatesMode0600OfTheExactSizeMappedReadWrite) {
  const std::string name = unique_object_name();
  Unlinker cleanup{name};
  const mode_t old_umask = ::umask(0);  // the mode must not depend on the umask
  bool created = false;
  auto object = SharedObject::create(name, 3 * 4096 + 100, 4096, SharedObject::Mode::kCreate, &created);
  ::umask(old_umask);
  ASSERT_TRUE(object.has_value()) << object.error();
  EXPECT_TRUE(created);
  EXPECT_EQ(object->name(), name);
  EXPECT_EQ(object->size(), 3u * 4096u + 100u);
  ASSERT_NE(object->base(), nullptr);
  struct stat st{};
  ASSERT_EQ(::stat(("/dev/shm/" + name).c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, ::geteuid());
  EXPECT_EQ(st.st_size, 3 * 4096 + 100);
  // Zero-filled, writable, and the same memory another mapping sees.
  auto* bytes = static_cast<unsigned char*>(object->base());
  for (std::size_t i = 0; i < object->size(); ++i) ASSERT_EQ(bytes[i], 0) << i;
  bytes[0] = 0x5a;
  bytes[object->size() - 1] = 0xa5;
  const int fd = ::open(("/dev/shm/" + name).c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  unsigned char first = 0;
  unsigned char last = 0;
  EXPECT_EQ(::pread(fd, &first, 1, 0), 1);
  EXPECT_EQ(::pread(fd, &last, 1, static_cast<off_t>(object->size() - 1)), 1);
  ::close(fd);
  EXPECT_EQ(first, 0x5a);
  EXPECT_EQ(last, 0xa5);
  // The reservation is real: the first page has blocks in the filesystem.
  EXPECT_GE(st.st_blocks * 512, 4096);
}

TEST(SharedObject, CreateRefusesAnExistingNameAndLeavesItAlone) {
  const std::string name = unique_object_name();
  Unlinker cleanup{name};
  auto first = SharedObject::create(name, 8192, 0, SharedObject::Mode::kCreate);
  ASSERT_TRUE(first.has_value()) << first.error();
  static_cast<unsigned char*>(first->base())[10] = 0x77;
  bool created = true;
  auto second = SharedObject::create(name, 4096, 0, SharedObject::Mode::kCreate, &created);
  ASSERT_FALSE(second.has_value());
  EXPECT_NE(second.error().find(name), std::string::npos) << second.error();
  EXPECT_EQ(second.error().find('\n'), std::string::npos);
  // Untouched: still there, same size, same content.
  struct stat st{};
  ASSERT_EQ(::stat(("/dev/shm/" + name).c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 8192);
  EXPECT_EQ(static_cast<unsigned char*>(first->base())[10], 0x77);

  // kCreateOrOpen opens it and shares the memory.
  auto opened = SharedObject::create(name, 8192, 0, SharedObject::Mode::kCreateOrOpen, &created);
  ASSERT_TRUE(opened.has_value()) << opened.error();
  EXPECT_FALSE(created);
  EXPECT_EQ(static_cast<unsigned char*>(opened->base())[10], 0x77);
  static_cast<unsigned char*>(opened->base())[11] = 0x66;
  EXPECT_EQ(static_cast<unsigned char*>(first->base())[11], 0x66);
}

TEST(SharedObject, CreateOrOpenCreatesWhenMissing) {
  const std::string name = unique_object_name();
  Unlinker cleanup{name};
  bool created = false;
  auto object = SharedObject::create(name, 4096, 4096, SharedObject::Mode::kCreateOrOpen, &created);
  ASSERT_TRUE(object.has_value()) << object.error();
  EXPECT_TRUE(created);
  struct stat st{};
  ASSERT_EQ(::stat(("/dev/shm/" + name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST(SharedObject, ReserveStaysWithinTheObject) {
  const std::string name = unique_object_name();
  Unlinker cleanup{name};
  auto object = SharedObject::create(name, 16384, 0, SharedObject::Mode::kCreate);
  ASSERT_TRUE(object.has_value()) << object.error();
  EXPECT_TRUE(object->reserve(0, 16384));
  EXPECT_TRUE(object->reserve(4096, 8192));
  EXPECT_TRUE(object->reserve(12288, 4096));
  EXPECT_FALSE(object->reserve(0, 16385));
  EXPECT_FALSE(object->reserve(12288, 8192));
  EXPECT_FALSE(object->reserve(16385, 1));
  EXPECT_FALSE(object->reserve(~0ull, 2));
  EXPECT_FALSE(object->reserve(8192, ~0ull));
  // The object kept its size: a failed reserve never grows it.
  struct stat st{};
  ASSERT_EQ(::stat(("/dev/shm/" + name).c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 16384);
  SharedObject empty;
  EXPECT_FALSE(empty.reserve(0, 4096));
}

TEST(SharedObject, FailedReservationAtCreationLeavesNothingBehind) {
  const std::string name = unique_object_name();
  Unlinker cleanup{name};
  auto object = SharedObject::create(name, 4096, 8192, SharedObject::Mode::kCreate);
  ASSERT_FALSE(object.has_value());
  EXPECT_NE(object.error().find(name), std::string::npos) << object.error();
  EXPECT_FALSE(shm_exists(name));
}

TEST(SharedObject, InvalidNameIsAnErrorNotAThrow) {
  auto object = SharedObject::create("no/such/dir/object", 4096, 0, SharedObject::Mode::kCreate);
  EXPECT_FALSE(object.has_value());
}

TEST(SharedObject, MoveKeepsTheMapping) {
  const std::string name = unique_object_name();
  Unlinker cleanup{name};
  auto object = SharedObject::create(name, 4096, 4096, SharedObject::Mode::kCreate);
  ASSERT_TRUE(object.has_value()) << object.error();
  void* base = object->base();
  SharedObject moved = std::move(*object);
  EXPECT_EQ(moved.base(), base);
  EXPECT_EQ(moved.size(), 4096u);
  static_cast<unsigned char*>(moved.base())[0] = 1;
  EXPECT_TRUE(moved.reserve(0, 4096));
  EXPECT_EQ(static_cast<unsigned char*>(moved.base())[0], 1);  // touching kept the data
}

}  // namespace
}  // namespace shmtrace::test
