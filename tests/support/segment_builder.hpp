// Test helper (header-only): lays out a valid segment in anonymous memory from
// a small geometry, mirroring abi.hpp, and writes into it the way producers
// do (ring records + head, interned strings, overflow groups). Also real
// /dev/shm objects for error chunks and attach() tests, and a temporary spill
// directory; every object created here is removed by its destructor.
#ifndef SHMTRACE_TESTS_SUPPORT_SEGMENT_BUILDER_HPP
#define SHMTRACE_TESTS_SUPPORT_SEGMENT_BUILDER_HPP

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "shmtrace/abi.hpp"

namespace shmtrace::test {

struct Geometry {
  std::uint32_t ring_capacity = 64;
  std::uint32_t max_rings = 2;
  std::uint32_t overflow_capacity = 8;
  std::uint32_t string_table_bytes = 4096;
  std::uint32_t module_capacity = 4;
  std::uint32_t error_chunk_bytes = 4096;
  std::uint64_t ring_stats_bytes = 0;
};

inline std::uint64_t round_up(std::uint64_t v, std::uint64_t to) { return (v + to - 1) / to * to; }

// A nonce no other test (or test process) uses at the same time.
inline std::uint64_t unique_nonce() {
  static std::atomic<std::uint64_t> counter{0};
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  const auto ns = static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull +
                  static_cast<std::uint64_t>(ts.tv_nsec);
  return (ns << 12) ^ (counter.fetch_add(1, std::memory_order_relaxed) << 52) ^
         static_cast<std::uint64_t>(::getpid());
}

inline std::string make_segment_name(std::uint32_t pid, std::uint64_t nonce) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%s%" PRIu32 ".%016" PRIx64, abi::kSegmentNamePrefix, pid,
                nonce);
  return buffer;
}

inline abi::Record make_record(abi::RecordKind kind, std::uint64_t timestamp,
                               std::uint32_t name_id = 0, std::uint64_t span_id = 0,
                               std::uint64_t aux = 0) {
  abi::Record r{};
  r.kind = static_cast<std::uint8_t>(kind);
  r.name_id = name_id;
  r.timestamp = timestamp;
  r.span_id = span_id;
  r.aux = aux;
  return r;
}

class SegmentBuilder {
 public:
  explicit SegmentBuilder(Geometry g = {}) : geometry_(g) {
    abi::SegmentHeader h{};
    h.abi_major = abi::kAbiMajor;
    h.abi_minor = abi::kAbiMinor;
    h.header_size = abi::kHeaderSize;
    h.nonce = unique_nonce();
    h.pid = static_cast<std::uint32_t>(::getpid());
    h.ppid = static_cast<std::uint32_t>(::getppid());
    h.uid = static_cast<std::uint32_t>(::geteuid());
    h.clock_kind = static_cast<std::uint32_t>(abi::ClockKind::kMonotonicNs);
    h.ticks_per_second = 1'000'000'000;
    h.ring_capacity = g.ring_capacity;
    h.max_rings = g.max_rings;
    h.overflow_capacity = g.overflow_capacity;
    h.error_chunk_bytes = g.error_chunk_bytes;
    h.string_table_bytes = g.string_table_bytes;
    h.max_repr = 1000;
    h.block_timeout_ms = 1000;
    h.max_frames = 10;
    h.sample_rate_ppm = 1'000'000;

    h.strings_offset = abi::kHeaderSize;
    h.strings_size = g.string_table_bytes;
    h.modules_offset = round_up(h.strings_offset + h.strings_size, abi::kCacheLine);
    h.modules_size = sizeof(abi::ModuleMapHeader) + std::uint64_t{g.module_capacity} * sizeof(abi::ModuleEntry);
    h.overflow_offset = round_up(h.modules_offset + h.modules_size, abi::kCacheLine);
    h.overflow_size = sizeof(abi::OverflowControl) +
                      std::uint64_t{g.overflow_capacity} * sizeof(abi::OverflowSlot);
    h.rings_offset = round_up(h.overflow_offset + h.overflow_size, abi::kPageSize);
    h.ring_stats_bytes = g.ring_stats_bytes;
    h.ring_stride = round_up(sizeof(abi::RingControl) +
                                 std::uint64_t{g.ring_capacity} * sizeof(abi::Record) +
                                 g.ring_stats_bytes,
                             abi::kPageSize);
    h.total_size = h.rings_offset + std::uint64_t{g.max_rings} * h.ring_stride;

    size_ = h.total_size;
    void* base = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) throw std::runtime_error("mmap failed");
    base_ = static_cast<std::byte*>(base);
    std::memcpy(base_, &h, sizeof h);

    auto* table = at<abi::StringTableHeader>(h.strings_offset);
    table->used = sizeof(abi::StringTableHeader);
    table->capacity = g.string_table_bytes;
    at<abi::ModuleMapHeader>(h.modules_offset)->capacity = g.module_capacity;
    overflow().capacity = g.overflow_capacity;
    // Release: the creator's publication of the whole image.
    abi::atomic_store(header().magic, abi::kSegmentMagic, std::memory_order_release);
  }
  SegmentBuilder(const SegmentBuilder&) = delete;
  SegmentBuilder& operator=(const SegmentBuilder&) = delete;
  ~SegmentBuilder() { ::munmap(base_, size_); }

  abi::SegmentHeader& header() const { return *at<abi::SegmentHeader>(0); }
  std::byte* base() const { return base_; }
  std::uint64_t size() const { return size_; }
  const Geometry& geometry() const { return geometry_; }
  std::string name() const { return make_segment_name(header().pid, header().nonce); }

  template <class T>
  T* at(std::uint64_t offset) const {
    return reinterpret_cast<T*>(base_ + offset);
  }

  // -- rings ------------------------------------------------------------------
  abi::RingControl& ring(std::uint32_t i) const {
    return *at<abi::RingControl>(abi::ring_offset(header(), i));
  }
  abi::Record* ring_records(std::uint32_t i) const {
    return at<abi::Record>(abi::ring_offset(header(), i) + abi::ring_records_offset());
  }
  // Writes the slot of the current head, then publishes it (release).
  void push(std::uint32_t i, const abi::Record& record) const {
    abi::RingControl& c = ring(i);
    const std::uint64_t head = c.head;
    std::memcpy(&ring_records(i)[head & (geometry_.ring_capacity - 1)], &record, sizeof record);
    abi::atomic_store(c.head, head + 1, std::memory_order_release);
  }
  void push_all(std::uint32_t i, std::span<const abi::Record> records) const {
    for (const abi::Record& r : records) push(i, r);
  }

  // -- strings ----------------------------------------------------------------
  std::uint32_t intern(std::string_view text, std::uint8_t flags = 0, bool ready = true) const {
    auto* table = at<abi::StringTableHeader>(header().strings_offset);
    const std::uint32_t id = table->used;
    const auto bytes = static_cast<std::uint32_t>(
        round_up(sizeof(abi::StringEntry) + text.size(), 4));
    if (std::uint64_t{id} + bytes > table->capacity) throw std::runtime_error("string table full");
    std::byte* entry = base_ + header().strings_offset + id;
    abi::StringEntry e{};
    e.length = static_cast<std::uint16_t>(text.size());
    e.flags = flags;
    std::memcpy(entry, &e, sizeof e);
    std::memcpy(entry + sizeof e, text.data(), text.size());
    table->used = id + bytes;
    ++table->count;
    if (ready) {
      abi::atomic_store(reinterpret_cast<abi::StringEntry*>(entry)->ready, std::uint8_t{1},
                        std::memory_order_release);
    }
    return id;
  }
  abi::StringEntry& string_entry(std::uint32_t id) const {
    return *at<abi::StringEntry>(header().strings_offset + id);
  }

  // -- overflow ---------------------------------------------------------------
  abi::OverflowControl& overflow() const {
    return *at<abi::OverflowControl>(header().overflow_offset);
  }
  abi::OverflowSlot& overflow_slot(std::uint64_t position) const {
    return at<abi::OverflowSlot>(header().overflow_offset + sizeof(abi::OverflowControl))
        [position & (geometry_.overflow_capacity - 1)];
  }
  // Enqueues a group at enqueue_pos; publishes only its first `publish`
  // slots (all by default). Returns the group's first position.
  std::uint64_t push_overflow_group(std::span<const abi::Record> records, std::uint32_t ring_index,
                                    std::uint32_t generation, std::uint32_t tid,
                                    std::size_t publish = SIZE_MAX) const {
    abi::OverflowControl& c = overflow();
    const std::uint64_t first = c.enqueue_pos;
    c.enqueue_pos = first + records.size();
    for (std::size_t k = 0; k < records.size(); ++k) {
      abi::OverflowSlot& s = overflow_slot(first + k);
      s.ring_index = ring_index;
      s.generation = generation;
      s.tid = tid;
      s.group_count = k == 0 ? static_cast<std::uint16_t>(records.size()) : 0;
      s.group_index = static_cast<std::uint16_t>(k);
      s.record = records[k];
      if (k < publish) publish_overflow(first + k);
    }
    return first;
  }
  void publish_overflow(std::uint64_t position) const {
    const std::uint64_t lap = position / geometry_.overflow_capacity;
    abi::atomic_store(overflow_slot(position).sequence, 2 * lap + 1, std::memory_order_release);
  }

  // An image of the segment, to copy into a real shm object.
  std::vector<std::byte> image() const { return std::vector<std::byte>(base_, base_ + size_); }

 private:
  Geometry geometry_;
  std::byte* base_ = nullptr;
  std::uint64_t size_ = 0;
};

// A real /dev/shm object, created exclusively (0600), mapped read-write, and
// removed on destruction.
class ShmObject {
 public:
  ShmObject(std::string name, std::uint64_t size) : name_(std::move(name)), size_(size) {
    fd_ = ::open(path().c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd_ < 0) throw std::runtime_error("cannot create " + path());
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) throw std::runtime_error("ftruncate");
    if (size > 0) {
      void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
      if (base == MAP_FAILED) throw std::runtime_error("mmap " + path());
      base_ = static_cast<std::byte*>(base);
    }
  }
  ShmObject(const ShmObject&) = delete;
  ShmObject& operator=(const ShmObject&) = delete;
  ~ShmObject() {
    if (base_ != nullptr) ::munmap(base_, size_);
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path().c_str());
  }
  std::string path() const { return "/dev/shm/" + name_; }
  const std::string& name() const { return name_; }
  std::byte* data() const { return base_; }
  std::uint64_t size() const { return size_; }
  int fd() const { return fd_; }

 private:
  std::string name_;
  std::uint64_t size_ = 0;
  int fd_ = -1;
  std::byte* base_ = nullptr;
};

// -- error entries -------------------------------------------------------------
struct ErrorSpec {
  std::uint64_t sequence = 0;
  abi::ErrorKind kind = abi::ErrorKind::kExplicit;
  std::uint64_t timestamp = 0;
  std::uint64_t span_id = 0;
  std::uint32_t tid = 0;
  std::uint32_t signal = 0;
  std::uint64_t fault_address = 0;
  std::vector<std::uint64_t> frames;
  std::string type;
  std::string message;
  std::string preview;
};

// The entry's bytes, committed, size padded to a multiple of 8.
inline std::vector<std::byte> encode_error(const ErrorSpec& spec) {
  abi::ErrorEntry e{};
  e.state = static_cast<std::uint32_t>(abi::ErrorState::kCommitted);
  e.sequence = spec.sequence;
  e.timestamp = spec.timestamp;
  e.span_id = spec.span_id;
  e.kind = static_cast<std::uint32_t>(spec.kind);
  e.tid = spec.tid;
  e.signal = spec.signal;
  e.fault_address = spec.fault_address;
  e.frame_count = static_cast<std::uint16_t>(spec.frames.size());
  e.type_length = static_cast<std::uint16_t>(spec.type.size());
  e.message_length = static_cast<std::uint16_t>(spec.message.size());
  e.preview_length = static_cast<std::uint16_t>(spec.preview.size());
  const std::size_t body = spec.frames.size() * 8 + spec.type.size() + spec.message.size() +
                           spec.preview.size();
  e.size = static_cast<std::uint32_t>(round_up(sizeof e + body, 8));
  std::vector<std::byte> out(e.size);
  std::memcpy(out.data(), &e, sizeof e);
  std::byte* p = out.data() + sizeof e;
  if (!spec.frames.empty()) std::memcpy(p, spec.frames.data(), spec.frames.size() * 8);
  p += spec.frames.size() * 8;
  for (const std::string* text : {&spec.type, &spec.message, &spec.preview}) {
    std::memcpy(p, text->data(), text->size());
    p += text->size();
  }
  return out;
}

// Error chunk <segment>.err.<index> as a real shm object; raises the
// segment's error_chunk_count to include it (unless told not to).
class ErrorChunkWriter {
 public:
  ErrorChunkWriter(const SegmentBuilder& segment, std::uint32_t index, bool count_it = true)
      : shm_(segment.name() + abi::kErrorChunkInfix + std::to_string(index),
             segment.header().error_chunk_bytes) {
    abi::ErrorChunkHeader& h = header();
    h.magic = abi::kErrorChunkMagic;
    h.segment_nonce = segment.header().nonce;
    h.index = index;
    h.capacity = segment.header().error_chunk_bytes;
    h.used = abi::kErrorChunkHeaderSize;
    if (count_it && segment.header().error_chunk_count < index + 1) {
      // Release: as the runtime publishes a new chunk.
      abi::atomic_store(segment.header().error_chunk_count, index + 1, std::memory_order_release);
    }
  }
  abi::ErrorChunkHeader& header() const { return *reinterpret_cast<abi::ErrorChunkHeader*>(shm_.data()); }
  std::byte* data() const { return shm_.data(); }
  const std::string& name() const { return shm_.name(); }

  // Appends raw entry bytes at `used`; `commit` false leaves state 0.
  std::uint32_t append_bytes(std::vector<std::byte> bytes, bool commit = true) {
    const std::uint32_t offset = header().used;
    if (offset + bytes.size() > header().capacity) throw std::runtime_error("chunk full");
    std::uint32_t state = 0;
    std::memcpy(&state, bytes.data(), sizeof state);
    std::memset(bytes.data(), 0, sizeof state);
    std::memcpy(shm_.data() + offset, bytes.data(), bytes.size());
    header().used = offset + static_cast<std::uint32_t>(bytes.size());
    if (commit) {
      abi::atomic_store(*reinterpret_cast<std::uint32_t*>(shm_.data() + offset), state,
                        std::memory_order_release);
    }
    return offset;
  }
  std::uint32_t append(const ErrorSpec& spec, bool commit = true) {
    return append_bytes(encode_error(spec), commit);
  }
  // A padding entry: the rest of the chunk is unused.
  void pad() {
    const std::uint32_t offset = header().used;
    if (offset >= header().capacity) return;
    abi::ErrorEntry pad{};
    pad.size = header().capacity - offset;
    std::memcpy(shm_.data() + offset, &pad, sizeof(std::uint64_t));
    abi::atomic_store(*reinterpret_cast<std::uint32_t*>(shm_.data() + offset),
                      static_cast<std::uint32_t>(abi::ErrorState::kPadding),
                      std::memory_order_release);
    header().used = header().capacity;
  }

 private:
  ShmObject shm_;
};

// A temporary directory (for spill files), removed with its files.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/shmtrace-reader-test-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp");
    path_ = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    if (DIR* dir = ::opendir(path_.c_str())) {
      while (const dirent* e = ::readdir(dir)) {
        const std::string name = e->d_name;
        if (name != "." && name != "..") ::unlink((path_ + "/" + name).c_str());
      }
      ::closedir(dir);
    }
    ::rmdir(path_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Appends bytes to a file (the spill file is written this way).
inline void append_to_file(const std::string& path, std::span<const std::byte> bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot open " + path);
  const ssize_t n = ::write(fd, bytes.data(), bytes.size());
  ::close(fd);
  if (n != static_cast<ssize_t>(bytes.size())) throw std::runtime_error("short write " + path);
}

inline void set_spill_dir(const SegmentBuilder& segment, const std::string& dir) {
  std::snprintf(segment.header().spill_dir, sizeof segment.header().spill_dir, "%s", dir.c_str());
}

}  // namespace shmtrace::test

#endif  // SHMTRACE_TESTS_SUPPORT_SEGMENT_BUILDER_HPP
