#include "error_area.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "clock.hpp"
#include "config.hpp"

namespace shmtrace::runtime {
namespace {

constexpr std::uintptr_t kCreating = 1;
constexpr int kSpillRefused = -2;  // spill_fd_: the spill path failed a check; never retried

// Flags for the spill file: no symlink followed, no blocking on a FIFO.
constexpr int kSpillFlags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;

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
      spill_dir_(header->spill_dir),
      spill_path_(spill_dir_ + "/" + segment_name_ + abi::kSpillSuffix),
      private_dir_(spill_dir_ == default_spill_dir()),
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

// Async-signal-safe (a crash handler may spill): syscalls, fixed texts and
// a stack buffer only.
void ErrorArea::refuse_spill(const char* what, const char* why) noexcept {
  int expected = -1;
  // Only from "not opened yet": a thread that opened a good file meanwhile wins.
  abi::atomic_cas(spill_fd_, expected, kSpillRefused, std::memory_order_acq_rel);
  std::uint32_t said = 0;
  if (!abi::atomic_cas(refusal_said_, said, std::uint32_t{1}, std::memory_order_relaxed)) return;
  char line[512];
  std::size_t n = 0;
  auto put = [&](const char* text) {
    for (; *text != '\0' && n < sizeof line - 1; ++text) line[n++] = *text;
  };
  put("shmtrace: ");
  put(what);
  put(": ");
  put(why);
  put("; refused, errors that do not fit in shared memory are counted as lost");
  line[n++] = '\n';
  [[maybe_unused]] const ssize_t written = ::write(STDERR_FILENO, line, n);
}

// The spill file's descriptor, or -1 (nothing written; a failure that may
// pass, such as a missing directory, is tried again on the next spill).
int ErrorArea::open_spill() noexcept {
  const uid_t me = ::geteuid();
  struct stat st {};
  int fd = -1;
  if (private_dir_) {
    // Created on the first spill, not at start: start-up stays cheap.
    if (::mkdir(spill_dir_.c_str(), 0700) != 0 && errno != EEXIST) return -1;
    const int dir = ::open(spill_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (dir < 0) {
      refuse_spill(spill_dir_.c_str(), "not a directory that can be opened (a symbolic link or a file?)");
      return -1;
    }
    if (::fstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != me || (st.st_mode & 077) != 0) {
      ::close(dir);
      refuse_spill(spill_dir_.c_str(), "not a directory of this user's with mode 0700 (another user's?)");
      return -1;
    }
    // Relative to the directory just checked, so it cannot be swapped meanwhile.
    fd = ::openat(dir, spill_path_.c_str() + spill_dir_.size() + 1, kSpillFlags, 0600);
    ::close(dir);
  } else {
    fd = ::open(spill_path_.c_str(), kSpillFlags, 0600);
  }
  if (fd < 0) {
    const int err = errno;
    if (err == ELOOP) refuse_spill(spill_path_.c_str(), "is a symbolic link");
    if (err == ENXIO || err == EAGAIN) refuse_spill(spill_path_.c_str(), "is a FIFO or a device");
    if (err == EISDIR) refuse_spill(spill_path_.c_str(), "is a directory");
    if (err == EACCES || err == EPERM) refuse_spill(spill_path_.c_str(), "exists and is not ours to write");
    return -1;
  }
  const char* bad = nullptr;
  if (::fstat(fd, &st) != 0) {
    bad = "cannot be checked (fstat failed)";
  } else if (!S_ISREG(st.st_mode)) {
    bad = "is not a regular file";
  } else if (st.st_uid != me) {
    bad = "is owned by another user";
  } else if (st.st_nlink != 1) {
    bad = "has more than one hard link";
  }
  if (bad != nullptr) {
    ::close(fd);
    refuse_spill(spill_path_.c_str(), bad);
    return -1;
  }
  return fd;
}

bool ErrorArea::spill(const std::byte* entry, std::uint32_t size) noexcept {
  int fd = abi::atomic_load(spill_fd_, std::memory_order_acquire);
  if (fd == kSpillRefused) return false;
  if (fd < 0) {
    const int opened = open_spill();
    if (opened < 0) return false;
    int expected = -1;
    // Publishes the descriptor; a losing opener closes its own.
    if (abi::atomic_cas(spill_fd_, expected, opened, std::memory_order_acq_rel)) {
      fd = opened;
    } else {
      ::close(opened);
      if (expected < 0) return false;  // refused meanwhile
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
