#include "error_area.hpp"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "clock.hpp"

namespace shmtrace::runtime {
namespace {

constexpr std::uintptr_t kCreating = 1;

std::uint32_t padded(std::uint32_t n) { return (n + 7u) & ~7u; }

// memcpy from a null pointer is undefined even for 0 bytes (an empty
// string_view has no data).
void copy_bytes(std::byte* dst, const void* src, std::size_t n) noexcept {
  if (n > 0) std::memcpy(dst, src, n);
}

abi::ErrorChunkHeader* header_of(std::uintptr_t slot) {
  return static_cast<abi::ErrorChunkHeader*>(reinterpret_cast<SharedObject*>(slot)->base());
}

}  // namespace

std::uint32_t encode_error_entry(const ErrorDraft& d, std::uint64_t sequence, std::uint32_t max_frames,
                                 std::byte* out) noexcept {
  abi::ErrorEntry e{};
  e.sequence = sequence;
  e.timestamp = d.timestamp;
  e.span_id = d.span_id;
  std::memcpy(e.trace_id, d.trace_id, sizeof e.trace_id);
  e.kind = static_cast<std::uint32_t>(d.kind);
  e.tid = d.tid;
  e.group_id = d.group_id;
  e.span_name_id = d.span_name_id;
  e.signal = d.signal;
  e.fault_address = d.fault_address;
  const std::uint32_t frames = std::min({d.frame_count, max_frames, abi::kMaxErrorFrames});
  e.frame_count = static_cast<std::uint16_t>(d.frames == nullptr ? 0 : frames);
  e.type_length = static_cast<std::uint16_t>(std::min<std::size_t>(d.type.size(), abi::kMaxErrorType));
  e.message_length = static_cast<std::uint16_t>(std::min<std::size_t>(d.message.size(), abi::kMaxErrorMessage));
  e.preview_length = static_cast<std::uint16_t>(std::min<std::size_t>(d.preview.size(), abi::kMaxErrorPreview));
  std::uint32_t at = sizeof e;
  copy_bytes(out + at, d.frames, e.frame_count * sizeof(std::uint64_t));
  at += e.frame_count * 8u;
  copy_bytes(out + at, d.type.data(), e.type_length);
  at += e.type_length;
  copy_bytes(out + at, d.message.data(), e.message_length);
  at += e.message_length;
  copy_bytes(out + at, d.preview.data(), e.preview_length);
  at += e.preview_length;
  const std::uint32_t size = padded(at);
  std::memset(out + at, 0, size - at);
  e.size = size;
  std::memcpy(out, &e, sizeof e);
  return size;
}

ErrorArea::ErrorArea(abi::SegmentHeader* header, std::string segment_name, std::uint32_t max_chunks)
    : header_(header),
      segment_name_(std::move(segment_name)),
      spill_path_(std::string(header->spill_dir) + "/" + segment_name_ + abi::kSpillSuffix),
      max_chunks_(std::max<std::uint32_t>(1, max_chunks)),
      chunk_bytes_(header->error_chunk_bytes),
      chunks_(new std::uintptr_t[std::max<std::uint32_t>(1, max_chunks)]()) {}

ErrorArea::~ErrorArea() {
  // The runtime's ErrorArea lives as long as the process; tests destroy
  // theirs after every writer stopped.
  for (std::uint32_t i = 0; i < max_chunks_; ++i) {
    if (chunks_[i] > kCreating) delete reinterpret_cast<SharedObject*>(chunks_[i]);
  }
  if (spill_fd_ >= 0) ::close(spill_fd_);
}

bool ErrorArea::prepare() noexcept { return chunk(0, true) != nullptr; }

SharedObject* ErrorArea::create_chunk(std::uint32_t index) noexcept {
  const std::string name = segment_name_ + abi::kErrorChunkInfix + std::to_string(index);
  auto object = SharedObject::create(name, chunk_bytes_, chunk_bytes_, SharedObject::Mode::kCreate);
  if (!object) return nullptr;
  auto* chunk = static_cast<abi::ErrorChunkHeader*>(object->base());
  chunk->segment_nonce = header_->nonce;
  chunk->index = index;
  chunk->capacity = chunk_bytes_;
  chunk->used = abi::kErrorChunkHeaderSize;
  // Publishes the chunk header; pairs with the reader's acquire load of magic.
  abi::atomic_store(chunk->magic, abi::kErrorChunkMagic, std::memory_order_release);
  auto* kept = new (std::nothrow) SharedObject(std::move(*object));
  if (kept == nullptr) return nullptr;
  // Tells readers the chain is longer; pairs with their acquire load.
  std::uint32_t count = abi::atomic_load(header_->error_chunk_count, std::memory_order_relaxed);
  while (count < index + 1 &&
         !abi::atomic_cas(header_->error_chunk_count, count, index + 1, std::memory_order_release)) {
  }
  return kept;
}

abi::ErrorChunkHeader* ErrorArea::chunk(std::uint32_t index, bool may_create) noexcept {
  if (index >= max_chunks_) return nullptr;
  std::uintptr_t& slot = chunks_[index];
  // Pairs with the release store after creation below.
  std::uintptr_t value = abi::atomic_load(slot, std::memory_order_acquire);
  if (value > kCreating) return header_of(value);
  if (!may_create) return nullptr;
  if (value == 0) {
    std::uintptr_t expected = 0;
    if (abi::atomic_cas(slot, expected, kCreating, std::memory_order_acq_rel)) {
      SharedObject* made = create_chunk(index);
      // Publishes the mapping to the other threads of this process.
      abi::atomic_store(slot, reinterpret_cast<std::uintptr_t>(made), std::memory_order_release);
      return made == nullptr ? nullptr : static_cast<abi::ErrorChunkHeader*>(made->base());
    }
  }
  // Another thread is creating it: a few hundred microseconds of syscalls.
  // Bounded, so a thread stopped in the middle cannot stall us for long.
  const std::uint64_t deadline = clock_ns(CLOCK_MONOTONIC) + 500'000'000ull;
  for (;;) {
    value = abi::atomic_load(slot, std::memory_order_acquire);
    if (value > kCreating) return header_of(value);
    if (value == 0 || clock_ns(CLOCK_MONOTONIC) > deadline) return nullptr;
    sched_yield();
  }
}

bool ErrorArea::spill(const std::byte* entry, std::uint32_t size) noexcept {
  int fd = abi::atomic_load(spill_fd_, std::memory_order_acquire);
  if (fd < 0) {
    const int opened = ::open(spill_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (opened < 0) return false;
    int expected = -1;
    // Publishes the descriptor; a losing opener closes its own.
    if (abi::atomic_cas(spill_fd_, expected, opened, std::memory_order_acq_rel)) {
      fd = opened;
    } else {
      ::close(opened);
      fd = expected;
    }
  }
  // One write per entry: O_APPEND keeps concurrent entries whole.
  ssize_t n;
  do {
    n = ::write(fd, entry, size);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(size);
}

std::uint64_t ErrorArea::append(const ErrorDraft& draft, bool may_create) noexcept {
  alignas(8) std::byte buffer[kMaxErrorEntryBytes];
  const std::uint64_t sequence =
      abi::atomic_fetch_add(header_->errors_written, std::uint64_t{1}, std::memory_order_relaxed) + 1;
  const std::uint32_t size = encode_error_entry(draft, sequence, header_->max_frames, buffer);

  std::uint32_t index = abi::atomic_load(current_, std::memory_order_acquire);
  while (size <= chunk_bytes_ - abi::kErrorChunkHeaderSize) {
    abi::ErrorChunkHeader* c = chunk(index, may_create);
    if (c == nullptr) break;
    const std::uint32_t offset = abi::atomic_fetch_add(c->used, size, std::memory_order_relaxed);
    auto* base = reinterpret_cast<std::byte*>(c);
    if (offset <= c->capacity && size <= c->capacity - offset) {
      std::memcpy(base + offset + sizeof(std::uint32_t), buffer + sizeof(std::uint32_t),
                  size - sizeof(std::uint32_t));
      // Publishes the entry; pairs with the reader's acquire load of state.
      abi::atomic_store(*reinterpret_cast<std::uint32_t*>(base + offset),
                        static_cast<std::uint32_t>(abi::ErrorState::kCommitted), std::memory_order_release);
      // Keep one chunk ahead, so a crash handler never has to create one.
      if (may_create && offset > c->capacity / 2) (void)chunk(index + 1, true);
      return sequence;
    }
    if (offset < c->capacity) {
      // We straddle the end: mark the rest of this chunk as padding.
      auto* pad = reinterpret_cast<abi::ErrorEntry*>(base + offset);
      pad->size = c->capacity - offset;
      abi::atomic_store(pad->state, static_cast<std::uint32_t>(abi::ErrorState::kPadding),
                        std::memory_order_release);
    }
    std::uint32_t expected = index;
    // Moves every writer on to the next chunk; losing the race is fine.
    abi::atomic_cas(current_, expected, index + 1, std::memory_order_acq_rel);
    index = std::max(index + 1, expected);
  }
  auto* e = reinterpret_cast<abi::ErrorEntry*>(buffer);
  e->state = static_cast<std::uint32_t>(abi::ErrorState::kCommitted);
  if (spill(buffer, size)) {
    abi::atomic_fetch_add(header_->errors_spilled, std::uint64_t{1}, std::memory_order_relaxed);
  } else {
    abi::atomic_fetch_add(header_->errors_lost, std::uint64_t{1}, std::memory_order_relaxed);
  }
  return sequence;
}

}  // namespace shmtrace::runtime
