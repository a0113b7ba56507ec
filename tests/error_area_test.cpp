// The error area (SPEC P5): entry encoding, the chain of real shared-memory
// chunks, padding at chunk ends, the spill file once the chain is at its
// bound, loss counting when even the spill file fails, and a burst from
// several threads that must lose nothing. The segment itself lives in
// anonymous memory (MemorySegment); its chunks and spill file are real and
// are named after the name the reader derives from the header, so the reader
// finds them. Every test removes what it created.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "error_area.hpp"
#include "support/memory_segment.hpp"

namespace shmtrace::test {
namespace {

using runtime::ErrorArea;
using runtime::ErrorDraft;

constexpr std::uint32_t kCommitted = static_cast<std::uint32_t>(abi::ErrorState::kCommitted);
constexpr std::uint32_t kPadding = static_cast<std::uint32_t>(abi::ErrorState::kPadding);

// A pid no live process has (pid_max <= 2^22), unique per test process and
// test, so concurrent runs of this binary never share chunk names: bit 31
// set, then this process's pid, then a counter.
constexpr std::uint32_t kTestPidBit = 0x80000000u;
std::uint32_t unique_pid() {
  static std::atomic<std::uint32_t> counter{0};
  return kTestPidBit | ((static_cast<std::uint32_t>(::getpid()) & 0x3fffffu) << 8) |
         (counter.fetch_add(1) & 0xffu);
}

constexpr char kSpillDirPrefix[] = "shmtrace-error-area-test.";

bool process_gone(unsigned long pid) {
  return pid != 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

// A test process that died (a crash, an abort under a sanitizer) ran no
// TearDown: remove the chunks and spill directories such processes left.
void remove_leftovers_of_dead_test_processes() {
  if (DIR* dir = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(dir)) {
      const std::string name = e->d_name;
      unsigned long fake_pid = 0;
      if (std::sscanf(name.c_str(), "shmtrace.%lu.0000000000001234.err.", &fake_pid) != 1) continue;
      if ((fake_pid & kTestPidBit) == 0 || fake_pid > 0xffffffffu) continue;
      if (process_gone((fake_pid >> 8) & 0x3fffffu)) ::shm_unlink(("/" + name).c_str());
    }
    ::closedir(dir);
  }
  if (DIR* dir = ::opendir("/tmp")) {
    std::vector<std::string> stale;
    while (dirent* e = ::readdir(dir)) {
      const std::string name = e->d_name;
      unsigned long pid = 0;
      if (!name.starts_with(kSpillDirPrefix)) continue;
      if (std::sscanf(name.c_str() + sizeof kSpillDirPrefix - 1, "%lu.", &pid) != 1) continue;
      if (process_gone(pid)) stale.push_back("/tmp/" + name);
    }
    ::closedir(dir);
    std::error_code ec;
    for (const std::string& path : stale) std::filesystem::remove_all(path, ec);
  }
}

std::string padded_text(const std::string& head, std::size_t length) {
  std::string s = head;
  s.resize(length, '.');
  return s;
}

// A read-only view of one chunk object, to check its bytes directly.
class ChunkView {
 public:
  explicit ChunkView(const std::string& object) {
    const int fd = ::open(("/dev/shm/" + object).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    struct stat st{};
    if (::fstat(fd, &st) == 0 && st.st_size > 0) {
      size_ = static_cast<std::size_t>(st.st_size);
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
      base_ = p == MAP_FAILED ? nullptr : static_cast<const std::byte*>(p);
    }
    ::close(fd);
  }
  ~ChunkView() {
    if (base_ != nullptr) ::munmap(const_cast<std::byte*>(base_), size_);
  }
  ChunkView(const ChunkView&) = delete;
  ChunkView& operator=(const ChunkView&) = delete;
  bool ok() const { return base_ != nullptr; }
  std::size_t size() const { return size_; }
  const abi::ErrorChunkHeader& header() const { return *reinterpret_cast<const abi::ErrorChunkHeader*>(base_); }
  const abi::ErrorEntry& entry(std::uint32_t offset) const {
    return *reinterpret_cast<const abi::ErrorEntry*>(base_ + offset);
  }

 private:
  const std::byte* base_ = nullptr;
  std::size_t size_ = 0;
};

// Every /dev/shm object whose name starts with `prefix`.
std::vector<std::string> shm_objects_with_prefix(const std::string& prefix) {
  std::vector<std::string> out;
  DIR* dir = ::opendir("/dev/shm");
  if (dir == nullptr) return out;
  while (dirent* e = ::readdir(dir)) {
    const std::string name = e->d_name;
    if (name.starts_with(prefix)) out.push_back(name);
  }
  ::closedir(dir);
  return out;
}

struct Harness {
  std::unique_ptr<MemorySegment> seg;
  std::unique_ptr<reader::Segment> reader;
  std::unique_ptr<ErrorArea> area;
  std::string name;
};

class ErrorAreaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    remove_leftovers_of_dead_test_processes();
    std::string dir = "/tmp/" + std::string(kSpillDirPrefix) + std::to_string(::getpid()) + ".XXXXXX";
    ASSERT_NE(::mkdtemp(dir.data()), nullptr);
    spill_dir_ = dir;
  }

  void TearDown() override {
    harnesses_.clear();
    for (const std::string& name : names_) {
      for (const std::string& object : shm_objects_with_prefix(name + abi::kErrorChunkInfix)) {
        ::shm_unlink(("/" + object).c_str());
      }
      EXPECT_TRUE(shm_objects_with_prefix(name).empty()) << "left behind: " << name;
    }
    std::error_code ec;
    std::filesystem::remove_all(spill_dir_, ec);
    EXPECT_FALSE(std::filesystem::exists(spill_dir_));
  }

  // A segment in memory with `config` (spill dir pointed at this test's
  // directory unless `spill_dir` is given) and an ErrorArea over it.
  Harness& make(runtime::Config config, std::uint32_t max_chunks, const std::string& spill_dir = "") {
    config.spill_dir = spill_dir.empty() ? spill_dir_ : spill_dir;
    auto h = std::make_unique<Harness>();
    h->seg = std::make_unique<MemorySegment>(config, unique_pid());
    h->reader = std::make_unique<reader::Segment>(h->seg->reader());
    h->name = h->reader->name();
    names_.push_back(h->name);
    // Nothing of an earlier run may be in the way.
    for (const std::string& object : shm_objects_with_prefix(h->name + ".")) ::shm_unlink(("/" + object).c_str());
    h->area = std::make_unique<ErrorArea>(h->seg->header(), h->name, max_chunks);
    harnesses_.push_back(std::move(h));
    return *harnesses_.back();
  }

  static runtime::Config config_with_chunk(std::uint32_t chunk_bytes) {
    runtime::Config c = small_config();
    c.error_chunk_bytes = chunk_bytes;
    return c;
  }

  // Reads every error the reader can see, `batch` at a time.
  static std::vector<reader::ErrorRecord> read_all(const reader::Segment& r, std::size_t batch = 1000) {
    std::vector<reader::ErrorRecord> out;
    reader::ErrorCursor cursor;
    for (;;) {
      auto b = r.read_errors(cursor, batch);
      EXPECT_TRUE(b.has_value()) << (b ? "" : b.error().message);
      if (!b || b->errors.empty()) break;
      for (auto& e : b->errors) out.push_back(std::move(e));
      cursor = b->next;
    }
    return out;
  }

  std::string spill_dir_;
  std::vector<std::string> names_;
  std::vector<std::unique_ptr<Harness>> harnesses_;
};

ErrorDraft draft_with_message(std::string_view message) {
  ErrorDraft d;
  d.kind = abi::ErrorKind::kExplicit;
  d.message = message;
  return d;
}

// ---------------------------------------------------------------------------
// Encoding.
// ---------------------------------------------------------------------------
TEST(EncodeErrorEntry, ExactLayout) {
  const std::uint64_t frames[3] = {0x401000, 0x402000, 0x7fff00001234};
  ErrorDraft d;
  d.kind = abi::ErrorKind::kCrash;
  d.timestamp = 0x1111222233334444;
  d.span_id = 0x5555666677778888;
  for (int i = 0; i < 16; ++i) d.trace_id[i] = static_cast<std::uint8_t>(0xa0 + i);
  d.tid = 4321;
  d.group_id = 68;
  d.span_name_id = 132;
  d.signal = 11;
  d.fault_address = 0xdeadbeef;
  d.frames = frames;
  d.frame_count = 3;
  d.type = "std::runtime_error";  // 18
  d.message = "boom";             // 4
  d.preview = "x=1";              // 3
  alignas(8) std::byte out[runtime::kMaxErrorEntryBytes];
  std::memset(out, 0xaa, sizeof out);
  const std::uint32_t size = runtime::encode_error_entry(d, 42, 10, out);
  const std::uint32_t body = 96 + 3 * 8 + 18 + 4 + 3;  // 145
  ASSERT_EQ(size, 152u);
  abi::ErrorEntry e{};
  std::memcpy(&e, out, sizeof e);
  EXPECT_EQ(e.state, 0u);  // left unwritten: the writer commits it
  EXPECT_EQ(e.size, 152u);
  EXPECT_EQ(e.sequence, 42u);
  EXPECT_EQ(e.timestamp, 0x1111222233334444u);
  EXPECT_EQ(e.span_id, 0x5555666677778888u);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(e.trace_id[i], 0xa0 + i);
  EXPECT_EQ(e.kind, static_cast<std::uint32_t>(abi::ErrorKind::kCrash));
  EXPECT_EQ(e.tid, 4321u);
  EXPECT_EQ(e.group_id, 68u);
  EXPECT_EQ(e.span_name_id, 132u);
  EXPECT_EQ(e.signal, 11u);
  EXPECT_EQ(e.reserved0, 0u);
  EXPECT_EQ(e.fault_address, 0xdeadbeefu);
  EXPECT_EQ(e.frame_count, 3);
  EXPECT_EQ(e.type_length, 18);
  EXPECT_EQ(e.message_length, 4);
  EXPECT_EQ(e.preview_length, 3);
  EXPECT_EQ(e.reserved1, 0u);
  EXPECT_EQ(std::memcmp(out + 96, frames, 24), 0);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(out) + 120, 18), "std::runtime_error");
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(out) + 138, 4), "boom");
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(out) + 142, 3), "x=1");
  for (std::uint32_t i = body; i < size; ++i) EXPECT_EQ(out[i], std::byte{0}) << "padding byte " << i;
  EXPECT_EQ(out[size], std::byte{0xaa}) << "wrote past its size";
}

// A default draft: every text an empty string_view whose data() is null,
// no frames. memcpy from null is undefined even for zero bytes (UBSan).
TEST(EncodeErrorEntry, DefaultDraftWithNoTextAtAll) {
  const ErrorDraft d;
  ASSERT_EQ(d.type.data(), nullptr);
  ASSERT_EQ(d.message.data(), nullptr);
  ASSERT_EQ(d.preview.data(), nullptr);
  alignas(8) std::byte out[runtime::kMaxErrorEntryBytes];
  std::memset(out, 0xaa, sizeof out);
  const std::uint32_t size = runtime::encode_error_entry(d, 3, 10, out);
  EXPECT_EQ(size, sizeof(abi::ErrorEntry));
  abi::ErrorEntry e{};
  std::memcpy(&e, out, sizeof e);
  EXPECT_EQ(e.size, sizeof(abi::ErrorEntry));
  EXPECT_EQ(e.sequence, 3u);
  EXPECT_EQ(e.kind, static_cast<std::uint32_t>(abi::ErrorKind::kExplicit));
  EXPECT_EQ(e.frame_count, 0);
  EXPECT_EQ(e.type_length, 0);
  EXPECT_EQ(e.message_length, 0);
  EXPECT_EQ(e.preview_length, 0);
  EXPECT_EQ(out[size], std::byte{0xaa});
}

TEST(EncodeErrorEntry, SizeIsAlwaysAMultipleOf8) {
  alignas(8) std::byte out[runtime::kMaxErrorEntryBytes];
  for (std::size_t m = 0; m < 40; ++m) {
    for (std::size_t t = 0; t < 9; ++t) {
      const std::string message(m, 'm');
      const std::string type(t, 't');
      ErrorDraft d = draft_with_message(message);
      d.type = type;
      const std::uint32_t size = runtime::encode_error_entry(d, 1, 10, out);
      EXPECT_EQ(size % 8, 0u);
      EXPECT_EQ(size, (96 + m + t + 7) / 8 * 8) << "m " << m << " t " << t;
    }
  }
}

TEST(EncodeErrorEntry, CapsEveryLength) {
  std::vector<std::uint64_t> frames(100);
  for (std::size_t i = 0; i < frames.size(); ++i) frames[i] = 0x1000 + i;
  std::string message(600, 'm');
  message[499] = 'L';  // the last kept byte
  const std::string type(300, 't');
  const std::string preview(2000, 'p');
  ErrorDraft d = draft_with_message(message);
  d.type = type;
  d.preview = preview;
  d.frames = frames.data();
  d.frame_count = 100;
  alignas(8) std::byte out[runtime::kMaxErrorEntryBytes];

  std::uint32_t size = runtime::encode_error_entry(d, 7, abi::kMaxErrorFrames, out);
  abi::ErrorEntry e{};
  std::memcpy(&e, out, sizeof e);
  EXPECT_EQ(e.frame_count, abi::kMaxErrorFrames);
  EXPECT_EQ(e.type_length, 256);
  EXPECT_EQ(e.message_length, 500);
  EXPECT_EQ(e.preview_length, 1024);
  EXPECT_EQ(size, (96u + 64u * 8u + 256u + 500u + 1024u + 7u) / 8u * 8u);
  EXPECT_LE(size, runtime::kMaxErrorEntryBytes);
  const char* text = reinterpret_cast<const char*>(out) + 96 + 64 * 8;
  EXPECT_EQ(std::string(text, 256), std::string(256, 't'));
  EXPECT_EQ(std::string(text + 256, 500), message.substr(0, 500));
  EXPECT_EQ(std::string(text + 756, 1024), std::string(1024, 'p'));
  std::uint64_t last_frame = 0;
  std::memcpy(&last_frame, out + 96 + 63 * 8, 8);
  EXPECT_EQ(last_frame, 0x1000u + 63u);

  // The segment's max_frames caps below kMaxErrorFrames.
  size = runtime::encode_error_entry(d, 7, 10, out);
  std::memcpy(&e, out, sizeof e);
  EXPECT_EQ(e.frame_count, 10);
  EXPECT_EQ(size, (96u + 10u * 8u + 256u + 500u + 1024u + 7u) / 8u * 8u);
  size = runtime::encode_error_entry(d, 7, 0, out);
  std::memcpy(&e, out, sizeof e);
  EXPECT_EQ(e.frame_count, 0);

  // Exactly at the caps: nothing cut.
  const std::string m500(500, 'x');
  ErrorDraft exact = draft_with_message(m500);
  const std::string t256(256, 'y');
  exact.type = t256;
  runtime::encode_error_entry(exact, 1, 10, out);
  std::memcpy(&e, out, sizeof e);
  EXPECT_EQ(e.message_length, 500);
  EXPECT_EQ(e.type_length, 256);

  // A frame count without frames writes none.
  ErrorDraft no_frames = draft_with_message("x");
  no_frames.frame_count = 5;
  size = runtime::encode_error_entry(no_frames, 1, 10, out);
  std::memcpy(&e, out, sizeof e);
  EXPECT_EQ(e.frame_count, 0);
  EXPECT_EQ(size, 104u);
}

// ---------------------------------------------------------------------------
// Chunks, padding, spill, loss.
// ---------------------------------------------------------------------------
TEST_F(ErrorAreaTest, EveryFieldReadsBackAndTheChunkHeaderIsRight) {
  Harness& h = make(config_with_chunk(65536), ErrorArea::kDefaultMaxChunks);
  EXPECT_EQ(h.reader->error_chunk_count(), 0u);
  ASSERT_TRUE(h.area->prepare());
  EXPECT_EQ(h.reader->error_chunk_count(), 1u);
  EXPECT_TRUE(read_all(*h.reader).empty());

  std::vector<std::uint64_t> frames(12);
  for (std::size_t i = 0; i < frames.size(); ++i) frames[i] = 0xabc000 + i;
  ErrorDraft d;
  d.kind = abi::ErrorKind::kException;
  d.timestamp = 123456789;
  d.span_id = 77;
  for (int i = 0; i < 16; ++i) d.trace_id[i] = static_cast<std::uint8_t>(i + 1);
  d.tid = 555;
  d.group_id = 64;
  d.span_name_id = 80;
  d.signal = 0;
  d.fault_address = 0;
  d.frames = frames.data();
  d.frame_count = 12;  // the segment's max_frames (10) caps it
  d.type = "std::out_of_range";
  d.message = "vector::_M_range_check: __n (which is 5) >= this->size() (which is 3)";
  d.preview = "index=5";
  EXPECT_EQ(h.area->append(d), 1u);
  ErrorDraft crash = draft_with_message("SIGSEGV");
  crash.kind = abi::ErrorKind::kCrash;
  crash.signal = 11;
  crash.fault_address = 0x10;
  EXPECT_EQ(h.area->append(crash, false), 2u);

  const auto errors = read_all(*h.reader);
  ASSERT_EQ(errors.size(), 2u);
  const reader::ErrorRecord& e = errors[0];
  EXPECT_EQ(e.sequence, 1u);
  EXPECT_EQ(e.timestamp, 123456789u);
  EXPECT_EQ(e.span_id, 77u);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(e.trace_id[i], i + 1);
  EXPECT_EQ(e.kind, abi::ErrorKind::kException);
  EXPECT_EQ(e.tid, 555u);
  EXPECT_EQ(e.group_id, 64u);
  EXPECT_EQ(e.span_name_id, 80u);
  EXPECT_EQ(e.frames, std::vector<std::uint64_t>(frames.begin(), frames.begin() + 10));
  EXPECT_EQ(e.type, "std::out_of_range");
  EXPECT_EQ(e.message, d.message);
  EXPECT_EQ(e.preview, "index=5");
  EXPECT_EQ(errors[1].sequence, 2u);
  EXPECT_EQ(errors[1].kind, abi::ErrorKind::kCrash);
  EXPECT_EQ(errors[1].signal, 11u);
  EXPECT_EQ(errors[1].fault_address, 0x10u);
  EXPECT_EQ(errors[1].message, "SIGSEGV");
  EXPECT_TRUE(errors[1].frames.empty());

  EXPECT_EQ(h.reader->errors_written(), 2u);
  EXPECT_EQ(h.reader->errors_spilled(), 0u);
  EXPECT_EQ(h.seg->header()->errors_lost, 0u);
  EXPECT_FALSE(std::filesystem::exists(h.area->spill_path()));

  ChunkView chunk(h.name + ".err.0");
  ASSERT_TRUE(chunk.ok());
  EXPECT_EQ(chunk.size(), 65536u);
  EXPECT_EQ(chunk.header().magic, abi::kErrorChunkMagic);
  EXPECT_EQ(chunk.header().segment_nonce, 0x1234u);
  EXPECT_EQ(chunk.header().index, 0u);
  EXPECT_EQ(chunk.header().capacity, 65536u);
  const auto first_size = static_cast<std::uint32_t>((96 + 80 + d.type.size() + d.message.size() + d.preview.size() + 7) / 8 * 8);
  EXPECT_EQ(chunk.entry(64).state, kCommitted);
  EXPECT_EQ(chunk.entry(64).size, first_size);
  EXPECT_EQ(chunk.entry(64 + first_size).state, kCommitted);
  EXPECT_EQ(chunk.header().used, 64u + first_size + (96u + 7u + 7u) / 8u * 8u);

  struct stat st{};
  ASSERT_EQ(::stat(("/dev/shm/" + h.name + ".err.0").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

// 264-byte entries fill a 65536-byte chunk exactly: (65536 - 64) / 264 = 248.
TEST_F(ErrorAreaTest, ExactFillAcrossSeveralChunksInOrder) {
  Harness& h = make(config_with_chunk(65536), ErrorArea::kDefaultMaxChunks);
  constexpr int kErrors = 1000;
  for (int i = 1; i <= kErrors; ++i) {
    ASSERT_EQ(h.area->append(draft_with_message(padded_text("error " + std::to_string(i), 168))),
              static_cast<std::uint64_t>(i));
  }
  // Chunks 0..4 hold the entries (248 each); chunk 4 is not half full, so no
  // chunk 5 was made ahead.
  EXPECT_EQ(h.reader->error_chunk_count(), 5u);
  EXPECT_EQ(h.reader->errors_written(), static_cast<std::uint64_t>(kErrors));
  EXPECT_EQ(h.reader->errors_spilled(), 0u);

  for (std::uint32_t c = 0; c < 4; ++c) {
    ChunkView chunk(h.name + ".err." + std::to_string(c));
    ASSERT_TRUE(chunk.ok()) << c;
    EXPECT_EQ(chunk.header().index, c);
    EXPECT_GE(chunk.header().used, 65536u) << c;
    EXPECT_EQ(chunk.entry(64 + 247 * 264).state, kCommitted) << c;
    EXPECT_EQ(chunk.entry(64 + 247 * 264).sequence, c * 248u + 248u) << c;
  }
  ChunkView last(h.name + ".err.4");
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last.header().used, 64u + (1000u - 4u * 248u) * 264u);

  // The cursor stops exactly at the chunk end, then moves on.
  auto first = h.reader->read_errors({}, 248);
  ASSERT_TRUE(first.has_value()) << first.error().message;
  ASSERT_EQ(first->errors.size(), 248u);
  EXPECT_EQ(first->errors.back().sequence, 248u);
  EXPECT_EQ(first->next.chunk, 0u);
  EXPECT_EQ(first->next.offset, 65536u);
  auto second = h.reader->read_errors(first->next, 1);
  ASSERT_TRUE(second.has_value()) << second.error().message;
  ASSERT_EQ(second->errors.size(), 1u);
  EXPECT_EQ(second->errors[0].sequence, 249u);
  EXPECT_EQ(second->next.chunk, 1u);
  EXPECT_EQ(second->next.offset, 64u + 264u);

  const auto errors = read_all(*h.reader, 97);
  ASSERT_EQ(errors.size(), static_cast<std::size_t>(kErrors));
  for (int i = 0; i < kErrors; ++i) {
    EXPECT_EQ(errors[i].sequence, static_cast<std::uint64_t>(i + 1));
    EXPECT_EQ(errors[i].message, padded_text("error " + std::to_string(i + 1), 168));
  }
}

// 200-byte entries: 327 fit, leaving 72 bytes that become a padding entry.
TEST_F(ErrorAreaTest, PaddingAtChunkEndIsSkipped) {
  Harness& h = make(config_with_chunk(65536), ErrorArea::kDefaultMaxChunks);
  constexpr int kErrors = 700;
  for (int i = 1; i <= kErrors; ++i) {
    h.area->append(draft_with_message(padded_text("e" + std::to_string(i), 104)));
  }
  ChunkView chunk0(h.name + ".err.0");
  ASSERT_TRUE(chunk0.ok());
  EXPECT_EQ(chunk0.entry(64 + 326 * 200).sequence, 327u);
  EXPECT_EQ(chunk0.entry(65464).state, kPadding);
  EXPECT_EQ(chunk0.entry(65464).size, 72u);

  auto first = h.reader->read_errors({}, 327);
  ASSERT_TRUE(first.has_value()) << first.error().message;
  ASSERT_EQ(first->errors.size(), 327u);
  EXPECT_EQ(first->next.chunk, 0u);
  EXPECT_EQ(first->next.offset, 65464u);
  auto second = h.reader->read_errors(first->next, 1);
  ASSERT_TRUE(second.has_value()) << second.error().message;
  ASSERT_EQ(second->errors.size(), 1u);
  EXPECT_EQ(second->errors[0].sequence, 328u);
  EXPECT_EQ(second->next.chunk, 1u);
  EXPECT_EQ(second->next.offset, 264u);

  const auto errors = read_all(*h.reader);
  ASSERT_EQ(errors.size(), static_cast<std::size_t>(kErrors));
  for (int i = 0; i < kErrors; ++i) {
    EXPECT_EQ(errors[i].sequence, static_cast<std::uint64_t>(i + 1));
    EXPECT_EQ(errors[i].message, padded_text("e" + std::to_string(i + 1), 104));
  }
}

// A thread that died between reserving an entry and committing it (its
// process crashed) leaves state 0 below the chunk's used offset. A live
// writer's reader stops there; once the writer is gone the reader passes
// over it by its size, or with the rest of the chunk when the size was never
// written, and counts what it passed over.
TEST_F(ErrorAreaTest, HalfWrittenEntriesOfADeadWriterArePassedOverAndCounted) {
  Harness& h = make(config_with_chunk(65536), ErrorArea::kDefaultMaxChunks);
  for (int i = 1; i <= 5; ++i) h.area->append(draft_with_message(padded_text("e" + std::to_string(i), 104)));
  for (int i = 6; i <= 400; ++i) h.area->append(draft_with_message(padded_text("e" + std::to_string(i), 104)));
  ASSERT_EQ(h.reader->error_chunk_count(), 2u);  // 327 entries of 200 bytes in chunk 0
  const int fd = ::open(("/dev/shm/" + h.name + ".err.0").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto write_u32 = [fd](off_t at, std::uint32_t v) { ASSERT_EQ(::pwrite(fd, &v, 4, at), 4); };
  write_u32(64 + 1 * 200, 0);      // entry 2: state never stored, size was
  auto messages_of = [](const reader::ErrorBatch& b) {
    std::vector<std::uint64_t> sequences;
    for (const auto& e : b.errors) sequences.push_back(e.sequence);
    return sequences;
  };

  auto live = h.reader->read_errors({}, 1000);
  ASSERT_TRUE(live) << live.error().message;
  EXPECT_EQ(messages_of(*live), std::vector<std::uint64_t>{1}) << "a live writer may still commit it";
  EXPECT_EQ(live->abandoned, 0u);

  auto gone = h.reader->read_errors({}, 1000, true);
  ASSERT_TRUE(gone) << gone.error().message;
  EXPECT_EQ(gone->errors.size(), 399u);
  EXPECT_EQ(gone->errors[1].sequence, 3u);
  EXPECT_EQ(gone->errors.back().sequence, 400u);
  EXPECT_EQ(gone->abandoned, 1u);

  write_u32(64 + 3 * 200, 0);      // entry 4: neither state nor size
  write_u32(64 + 3 * 200 + 4, 0);
  auto rest_lost = h.reader->read_errors({}, 1000, true);
  ASSERT_TRUE(rest_lost) << rest_lost.error().message;
  EXPECT_EQ(rest_lost->abandoned, 2u);
  ASSERT_EQ(rest_lost->errors.size(), 2u + (400u - 327u));  // 1, 3, then chunk 1 from 328
  EXPECT_EQ(rest_lost->errors[1].sequence, 3u);
  EXPECT_EQ(rest_lost->errors[2].sequence, 328u);
  EXPECT_EQ(rest_lost->next.chunk, 1u);
  ::close(fd);
}

// 1336-byte entries: 49 fit, leaving 8 bytes, less than an entry header.
TEST_F(ErrorAreaTest, PaddingSmallerThanAnEntryHeader) {
  Harness& h = make(config_with_chunk(65536), ErrorArea::kDefaultMaxChunks);
  const std::string preview(740, 'p');
  constexpr int kErrors = 120;
  for (int i = 1; i <= kErrors; ++i) {
    const std::string message = padded_text("big " + std::to_string(i), 500);
    ErrorDraft d = draft_with_message(message);
    d.preview = preview;
    h.area->append(d);
  }
  ChunkView chunk0(h.name + ".err.0");
  ASSERT_TRUE(chunk0.ok());
  EXPECT_EQ(chunk0.entry(64).size, 1336u);
  EXPECT_EQ(chunk0.entry(65528).state, kPadding);
  EXPECT_EQ(chunk0.entry(65528).size, 8u);
  const auto errors = read_all(*h.reader, 10);
  ASSERT_EQ(errors.size(), static_cast<std::size_t>(kErrors));
  for (int i = 0; i < kErrors; ++i) {
    EXPECT_EQ(errors[i].sequence, static_cast<std::uint64_t>(i + 1));
    EXPECT_EQ(errors[i].message, padded_text("big " + std::to_string(i + 1), 500));
    EXPECT_EQ(errors[i].preview, preview);
  }
}

TEST_F(ErrorAreaTest, MaxChunksReachedThenSpillFileAfterChunks) {
  Harness& h = make(config_with_chunk(65536), 2);
  constexpr int kErrors = 600;  // 496 fit in two chunks of 248
  for (int i = 1; i <= kErrors; ++i) {
    ASSERT_EQ(h.area->append(draft_with_message(padded_text("s" + std::to_string(i), 168))),
              static_cast<std::uint64_t>(i));
  }
  EXPECT_EQ(h.reader->error_chunk_count(), 2u);
  EXPECT_EQ(h.reader->errors_written(), 600u);
  EXPECT_EQ(h.reader->errors_spilled(), 104u);
  EXPECT_EQ(h.seg->header()->errors_lost, 0u);
  EXPECT_EQ(h.area->spill_path(), spill_dir_ + "/" + h.name + ".errors");
  struct stat st{};
  ASSERT_EQ(::stat(h.area->spill_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 104 * 264);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(shm_objects_with_prefix(h.name + ".err.2").empty());

  for (std::size_t batch : {std::size_t{7}, std::size_t{1000}}) {
    const auto errors = read_all(*h.reader, batch);
    ASSERT_EQ(errors.size(), static_cast<std::size_t>(kErrors)) << "batch " << batch;
    for (int i = 0; i < kErrors; ++i) {
      EXPECT_EQ(errors[i].sequence, static_cast<std::uint64_t>(i + 1));
      EXPECT_EQ(errors[i].message, padded_text("s" + std::to_string(i + 1), 168));
    }
  }
}

TEST_F(ErrorAreaTest, WithoutChunkCreationErrorsGoStraightToTheSpillFile) {
  Harness& h = make(config_with_chunk(65536), ErrorArea::kDefaultMaxChunks);
  EXPECT_EQ(h.area->append(draft_with_message("from a signal handler"), false), 1u);
  EXPECT_EQ(h.reader->error_chunk_count(), 0u);
  EXPECT_TRUE(shm_objects_with_prefix(h.name + ".").empty());
  EXPECT_EQ(h.reader->errors_spilled(), 1u);
  ASSERT_TRUE(h.area->prepare());
  EXPECT_EQ(h.area->append(draft_with_message("into chunk 0"), false), 2u);
  EXPECT_EQ(h.reader->errors_spilled(), 1u);
  EXPECT_EQ(h.reader->error_chunk_count(), 1u);
  const auto errors = read_all(*h.reader);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0].sequence, 2u);  // chunks first, then the spill file
  EXPECT_EQ(errors[0].message, "into chunk 0");
  EXPECT_EQ(errors[1].sequence, 1u);
  EXPECT_EQ(errors[1].message, "from a signal handler");
}

TEST_F(ErrorAreaTest, UnwritableSpillDirCountsEveryLostError) {
  Harness& h = make(config_with_chunk(65536), 1, spill_dir_ + "/missing/deeper");
  constexpr int kErrors = 300;  // 248 fit in the single chunk
  for (int i = 1; i <= kErrors; ++i) {
    ASSERT_EQ(h.area->append(draft_with_message(padded_text("l" + std::to_string(i), 168))),
              static_cast<std::uint64_t>(i));
  }
  EXPECT_EQ(h.reader->errors_written(), 300u);
  EXPECT_EQ(h.reader->errors_spilled(), 0u);
  EXPECT_EQ(h.seg->header()->errors_lost, 52u);
  const auto errors = read_all(*h.reader);
  ASSERT_EQ(errors.size(), 248u);
  for (int i = 0; i < 248; ++i) EXPECT_EQ(errors[i].sequence, static_cast<std::uint64_t>(i + 1));
}

TEST_F(ErrorAreaTest, SpillPathThroughARegularFileCountsLost) {
  const std::string file = spill_dir_ + "/not-a-dir";
  std::FILE* f = std::fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  Harness& h = make(config_with_chunk(65536), 1, file);
  for (int i = 0; i < 250; ++i) h.area->append(draft_with_message(padded_text("x", 168)));
  EXPECT_EQ(h.seg->header()->errors_lost, 2u);
  EXPECT_EQ(h.reader->errors_spilled(), 0u);
}

// Many threads crossing many small chunks at once: padding races, chunk
// creation races, nothing lost, each thread's entries in its own order.
TEST_F(ErrorAreaTest, ConcurrentWritersAcrossSmallChunksLoseNothing) {
  Harness& h = make(config_with_chunk(65536), ErrorArea::kDefaultMaxChunks);
  constexpr int kThreads = 4;
  constexpr int kPer = 20000;
  std::barrier start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int i = 0; i < kPer; ++i) {
        // Sizes vary from 104 to 400 bytes, so chunk ends fall anywhere.
        const std::string message = padded_text(std::to_string(t) + ":" + std::to_string(i), 8 + (i * 37) % 297);
        ErrorDraft d = draft_with_message(message);
        d.tid = static_cast<std::uint32_t>(t);
        h.area->append(d);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(h.reader->errors_written(), static_cast<std::uint64_t>(kThreads * kPer));
  EXPECT_EQ(h.reader->errors_spilled(), 0u);
  EXPECT_EQ(h.seg->header()->errors_lost, 0u);
  const auto errors = read_all(*h.reader, 5000);
  ASSERT_EQ(errors.size(), static_cast<std::size_t>(kThreads * kPer));
  std::vector<int> next(kThreads, 0);
  std::vector<bool> sequence_seen(kThreads * kPer + 1, false);
  for (const auto& e : errors) {
    ASSERT_LT(e.tid, static_cast<std::uint32_t>(kThreads));
    ASSERT_GE(e.sequence, 1u);
    ASSERT_LE(e.sequence, static_cast<std::uint64_t>(kThreads * kPer));
    EXPECT_FALSE(sequence_seen[e.sequence]) << "sequence twice: " << e.sequence;
    sequence_seen[e.sequence] = true;
    const int i = next[e.tid]++;
    const std::string expected =
        padded_text(std::to_string(e.tid) + ":" + std::to_string(i), 8 + (i * 37) % 297);
    ASSERT_EQ(e.message, expected) << "thread " << e.tid;
  }
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(next[t], kPer);
}

// The drain reads while producers write: it stops at entries still being
// written and resumes there, and in the end has every entry exactly once.
TEST_F(ErrorAreaTest, LiveReaderSeesEveryEntryOnceWhileWritersRun) {
  Harness& h = make(config_with_chunk(65536), ErrorArea::kDefaultMaxChunks);
  constexpr int kThreads = 4;
  constexpr int kPer = 20000;
  std::atomic<int> running{kThreads};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) {
        const std::string message = padded_text(std::to_string(t) + ":" + std::to_string(i), 8 + (i * 13) % 150);
        ErrorDraft d = draft_with_message(message);
        d.tid = static_cast<std::uint32_t>(t);
        h.area->append(d);
      }
      running.fetch_sub(1);
    });
  }
  std::vector<int> next(kThreads, 0);
  std::uint64_t total = 0;
  reader::ErrorCursor cursor;
  // A failed assertion returns from the lambda, and the writers are still joined.
  auto consume = [&] {
    for (;;) {
      const bool last = running.load() == 0;  // read once more after the writers stopped
      auto batch = h.reader->read_errors(cursor, 997);
      ASSERT_TRUE(batch.has_value()) << batch.error().message;
      for (const auto& e : batch->errors) {
        ASSERT_LT(e.tid, static_cast<std::uint32_t>(kThreads));
        const int i = next[e.tid]++;
        ASSERT_EQ(e.message, padded_text(std::to_string(e.tid) + ":" + std::to_string(i), 8 + (i * 13) % 150));
      }
      total += batch->errors.size();
      cursor = batch->next;
      if (last && batch->errors.empty()) break;
    }
  };
  consume();
  for (auto& th : threads) th.join();
  EXPECT_EQ(total, static_cast<std::uint64_t>(kThreads * kPer));
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(next[t], kPer);
  EXPECT_EQ(h.seg->header()->errors_lost, 0u);
}

// SPEC P5: "never drops". One million errors from four threads, 1 MiB chunks.
TEST_F(ErrorAreaTest, BurstOfAMillionErrorsFromFourThreadsLosesNothing) {
  Harness& h = make(config_with_chunk(1u << 20), ErrorArea::kDefaultMaxChunks);
  constexpr int kThreads = 4;
  constexpr int kPer = 250000;
  const auto began = std::chrono::steady_clock::now();
  std::barrier start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      char text[32];
      ErrorDraft d;
      d.tid = static_cast<std::uint32_t>(t);
      start.arrive_and_wait();
      for (int i = 0; i < kPer; ++i) {
        const int n = std::snprintf(text, sizeof text, "t%d-%d", t, i);
        d.message = std::string_view(text, static_cast<std::size_t>(n));
        h.area->append(d);
      }
    });
  }
  for (auto& th : threads) th.join();
  const auto written = std::chrono::steady_clock::now();
  EXPECT_EQ(h.reader->errors_written(), 1'000'000u);
  EXPECT_EQ(h.reader->errors_spilled(), 0u);
  EXPECT_EQ(h.seg->header()->errors_lost, 0u);

  std::vector<int> next(kThreads, 0);
  std::vector<bool> sequence_seen(1'000'001, false);
  std::uint64_t total = 0;
  reader::ErrorCursor cursor;
  for (;;) {
    auto batch = h.reader->read_errors(cursor, 100000);
    ASSERT_TRUE(batch.has_value()) << batch.error().message;
    if (batch->errors.empty()) break;
    for (const auto& e : batch->errors) {
      ASSERT_LT(e.tid, static_cast<std::uint32_t>(kThreads));
      ASSERT_GE(e.sequence, 1u);
      ASSERT_LE(e.sequence, 1'000'000u);
      ASSERT_FALSE(sequence_seen[e.sequence]) << "sequence twice: " << e.sequence;
      sequence_seen[e.sequence] = true;
      // Each thread's errors come back once each, in the order it wrote them.
      const int i = next[e.tid]++;
      ASSERT_EQ(e.message, "t" + std::to_string(e.tid) + "-" + std::to_string(i));
    }
    total += batch->errors.size();
    cursor = batch->next;
  }
  EXPECT_EQ(total, 1'000'000u);
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(next[t], kPer) << "thread " << t;
  const auto read = std::chrono::steady_clock::now();
  using ms = std::chrono::milliseconds;
  std::printf("burst: write %lld ms, read back %lld ms, %u chunks\n",
              static_cast<long long>(std::chrono::duration_cast<ms>(written - began).count()),
              static_cast<long long>(std::chrono::duration_cast<ms>(read - written).count()),
              h.reader->error_chunk_count());
}

}  // namespace
}  // namespace shmtrace::test
