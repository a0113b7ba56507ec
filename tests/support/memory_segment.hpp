// A segment laid out by the runtime's own code in anonymous memory, for
// in-process tests of the producer pieces against the reader library.
#ifndef SHMTRACE_TESTS_MEMORY_SEGMENT_HPP
#define SHMTRACE_TESTS_MEMORY_SEGMENT_HPP

#include <sys/mman.h>

#include <stdexcept>

#include "reader/reader.hpp"
#include "segment_layout.hpp"

namespace shmtrace::test {

class MemorySegment {
 public:
  explicit MemorySegment(runtime::Config config, std::uint32_t pid = 4242) : config_(std::move(config)) {
    layout_ = runtime::compute_layout(config_);
    base_ = ::mmap(nullptr, layout_.total_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base_ == MAP_FAILED) throw std::runtime_error("mmap failed");
    runtime::ProcessInfo process;
    process.pid = pid;
    process.ppid = 1;
    process.exe = "/usr/bin/memory-segment";
    process.cmdline = std::string("memory-segment\0--flag", 21);
    runtime::initialize_segment(base_, layout_, config_, process, 0x1234, runtime::read_clock_reference(), {});
  }
  ~MemorySegment() { ::munmap(base_, layout_.total_size); }
  MemorySegment(const MemorySegment&) = delete;
  MemorySegment& operator=(const MemorySegment&) = delete;

  std::byte* base() const { return static_cast<std::byte*>(base_); }
  abi::SegmentHeader* header() const { return static_cast<abi::SegmentHeader*>(base_); }
  const runtime::SegmentLayout& layout() const { return layout_; }
  void* overflow() const { return base() + layout_.overflow_offset; }
  void* strings() const { return base() + layout_.strings_offset; }

  reader::Segment reader(reader::Access access = reader::Access::kConsume) const {
    auto s = reader::Segment::from_memory(base_, layout_.total_size, access);
    if (!s) throw std::runtime_error(s.error().message);
    return std::move(*s);
  }

 private:
  runtime::Config config_;
  runtime::SegmentLayout layout_;
  void* base_ = nullptr;
};

inline runtime::Config small_config() {
  runtime::Config c;
  c.ring_records = 64;
  c.max_threads = 4;
  c.overflow_records = 64;
  c.string_table_bytes = 65536;
  c.error_chunk_bytes = 65536;
  return c;
}

}  // namespace shmtrace::test

#endif
