// The error area, consumer side: the chain of chunk objects
// <segment>.err.<index>, then the spill file <spill_dir>/<segment>.errors
// (protocol at the top of abi.hpp). Entries are copied out and validated
// before any length in them is used.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "reader/segment_impl.hpp"

namespace shmtrace::reader {
namespace {

constexpr std::uint32_t kCommitted = static_cast<std::uint32_t>(abi::ErrorState::kCommitted);
constexpr std::uint32_t kPadding = static_cast<std::uint32_t>(abi::ErrorState::kPadding);
// Beyond any spill file a producer writes (errors are hundreds of bytes):
// a bigger one is refused rather than read.
constexpr std::uint64_t kMaxSpillBytes = std::uint64_t{1} << 40;

// Checks an entry header (already copied out) against the room it may use.
Result<void> validate_entry(const abi::ErrorEntry& e, std::uint64_t room, const std::string& where) {
  auto fail = [&](const std::string& what) {
    return std::unexpected(Error{where + ": invalid error entry: " + what});
  };
  if (e.size % 8 != 0 || e.size < sizeof(abi::ErrorEntry)) {
    return fail("size " + std::to_string(e.size) + " is not a multiple of 8 of at least " +
                std::to_string(sizeof(abi::ErrorEntry)));
  }
  if (e.size > room) {
    return fail("size " + std::to_string(e.size) + " runs past the end (" + std::to_string(room) +
                " bytes left)");
  }
  if (e.frame_count > abi::kMaxErrorFrames) {
    return fail("frame_count " + std::to_string(e.frame_count) + " exceeds " +
                std::to_string(abi::kMaxErrorFrames));
  }
  if (e.type_length > abi::kMaxErrorType) {
    return fail("type_length " + std::to_string(e.type_length) + " exceeds " +
                std::to_string(abi::kMaxErrorType));
  }
  if (e.message_length > abi::kMaxErrorMessage) {
    return fail("message_length " + std::to_string(e.message_length) + " exceeds " +
                std::to_string(abi::kMaxErrorMessage));
  }
  if (e.preview_length > abi::kMaxErrorPreview) {
    return fail("preview_length " + std::to_string(e.preview_length) + " exceeds " +
                std::to_string(abi::kMaxErrorPreview));
  }
  const std::uint64_t needed = sizeof(abi::ErrorEntry) + std::uint64_t{e.frame_count} * 8 +
                               e.type_length + e.message_length + e.preview_length;
  if (needed > e.size) {
    return fail("frames and text need " + std::to_string(needed) + " bytes, size is " +
                std::to_string(e.size));
  }
  if (e.kind < static_cast<std::uint32_t>(abi::ErrorKind::kExplicit) ||
      e.kind > static_cast<std::uint32_t>(abi::ErrorKind::kSpanError)) {
    return fail("kind " + std::to_string(e.kind) + " is unknown");
  }
  return {};
}

// Builds the record from a private copy of a validated entry.
ErrorRecord decode_entry(const abi::ErrorEntry& e, const std::byte* body) {
  ErrorRecord r;
  r.sequence = e.sequence;
  r.timestamp = e.timestamp;
  r.span_id = e.span_id;
  std::memcpy(r.trace_id, e.trace_id, sizeof r.trace_id);
  r.kind = static_cast<abi::ErrorKind>(e.kind);
  r.tid = e.tid;
  r.group_id = e.group_id;
  r.span_name_id = e.span_name_id;
  r.signal = e.signal;
  r.fault_address = e.fault_address;
  r.frames.resize(e.frame_count);
  // An empty vector's data() may be null, and memcpy from or to null is
  // undefined even for zero bytes.
  if (e.frame_count > 0) std::memcpy(r.frames.data(), body, std::size_t{e.frame_count} * 8);
  const char* text = reinterpret_cast<const char*>(body) + std::size_t{e.frame_count} * 8;
  r.type.assign(text, e.type_length);
  text += e.type_length;
  r.message.assign(text, e.message_length);
  text += e.message_length;
  r.preview.assign(text, e.preview_length);
  return r;
}

// Maps chunk `index` (cached); validates its header against the segment.
Result<const detail::Mapping*> chunk_mapping(const detail::SegmentState& impl, std::uint32_t index) {
  std::lock_guard lock(impl.mutex);
  if (impl.chunks.size() > index && impl.chunks[index]) return impl.chunks[index].get();
  const std::string object = impl.name + abi::kErrorChunkInfix + std::to_string(index);
  const std::string path = std::string(detail::kShmDir) + "/" + object;
  // Read-only even for a consumer: nothing in a chunk is ours to write. The
  // producer sizes a chunk to error_chunk_bytes exactly; a page of slack.
  const std::uint64_t max_size = std::uint64_t{impl.header.error_chunk_bytes} + abi::kPageSize;
  auto file = detail::open_checked(path, false, impl.allowed_uid, abi::kErrorChunkHeaderSize, max_size);
  if (!file) return std::unexpected(Error{impl.where() + "error chunk " + file.error().error.message});
  auto mapping = detail::map_file(*file, false, path);
  if (!mapping) return std::unexpected(Error{impl.where() + "error chunk " + mapping.error().message});
  abi::ErrorChunkHeader header{};
  detail::copy_shared(&header, mapping->base(), sizeof header);
  auto fail = [&](const std::string& what) {
    return std::unexpected(Error{impl.where() + "error chunk " + std::to_string(index) + " (" +
                                 path + "): " + what});
  };
  if (header.magic != abi::kErrorChunkMagic) return fail("bad chunk magic");
  if (header.segment_nonce != impl.header.nonce) return fail("segment_nonce does not match");
  if (header.index != index) return fail("index " + std::to_string(header.index) + " in header");
  if (header.capacity != impl.header.error_chunk_bytes || header.capacity > mapping->size()) {
    return fail("capacity " + std::to_string(header.capacity) + " differs from error_chunk_bytes " +
                std::to_string(impl.header.error_chunk_bytes) + " or exceeds the file size " +
                std::to_string(mapping->size()));
  }
  if (impl.chunks.size() <= index) impl.chunks.resize(std::size_t{index} + 1);
  impl.chunks[index] = std::make_unique<detail::Mapping>(std::move(*mapping));
  return impl.chunks[index].get();
}

enum class Step { kEntry, kEndOfChunk, kStop };

// One step of the walk through chunk `cursor.chunk`.
Result<Step> chunk_step(const detail::SegmentState& impl, const detail::Mapping& chunk,
                        ErrorCursor& cursor, std::vector<ErrorRecord>& out, bool writer_gone,
                        std::uint64_t& abandoned) {
  const std::uint32_t capacity = impl.header.error_chunk_bytes;  // == chunk header, checked
  const std::string where = impl.where() + "error chunk " + std::to_string(cursor.chunk) +
                            " offset " + std::to_string(cursor.offset);
  if (cursor.offset < abi::kErrorChunkHeaderSize || cursor.offset % 8 != 0 ||
      cursor.offset > capacity) {
    return std::unexpected(Error{where + ": cursor offset out of range"});
  }
  if (cursor.offset == capacity) return Step::kEndOfChunk;
  const std::byte* at = chunk.base() + cursor.offset;
  // Acquire: pairs with the producer's release store of state after it wrote
  // the entry (or the padding marker).
  const std::uint32_t state =
      abi::atomic_load(*reinterpret_cast<const std::uint32_t*>(at), std::memory_order_acquire);
  if (state == 0) {
    if (!writer_gone) return Step::kStop;  // being written, or nothing yet
    // The writer is gone: space below `used` was reserved by a thread that
    // died before committing it; above it, nothing was ever written.
    const auto& header = *reinterpret_cast<const abi::ErrorChunkHeader*>(chunk.base());
    const std::uint32_t used = abi::atomic_load(header.used, std::memory_order_relaxed);
    if (cursor.offset >= used) return Step::kStop;
    ++abandoned;
    // Relaxed: the dead writer's plain store, if it got that far.
    const std::uint32_t size =
        abi::atomic_load(reinterpret_cast<const abi::ErrorEntry*>(at)->size, std::memory_order_relaxed);
    if (size >= sizeof(abi::ErrorEntry) && size % 8 == 0 && size <= capacity - cursor.offset &&
        cursor.offset + size <= used) {
      cursor.offset += size;
      return Step::kEntry;
    }
    return Step::kEndOfChunk;
  }
  if (state == kPadding) return Step::kEndOfChunk;
  if (state != kCommitted) {
    return std::unexpected(Error{where + ": invalid error entry: state " + std::to_string(state)});
  }
  const std::uint64_t room = capacity - cursor.offset;
  if (room < sizeof(abi::ErrorEntry)) {
    return std::unexpected(Error{where + ": invalid error entry: no room for an entry header"});
  }
  abi::ErrorEntry entry{};
  std::memcpy(&entry, at, sizeof entry);
  if (auto ok = validate_entry(entry, room, where); !ok) return std::unexpected(ok.error());
  std::vector<std::byte> body(entry.size - sizeof(abi::ErrorEntry));
  if (!body.empty()) std::memcpy(body.data(), at + sizeof entry, body.size());
  out.push_back(decode_entry(entry, body.data()));
  cursor.offset += entry.size;
  return Step::kEntry;
}

// Reads spill-file entries from cursor.spill_offset; a torn tail ends it.
// The spill directory may be one every user can write (SHMTRACE_SPILL_DIR),
// so whatever lies at the spill path may have been planted by someone else:
// a file that is not the owner's one-link regular file is ignored, reported
// once in `warning`, and never vetoes the segment.
Result<void> read_spill(const detail::SegmentState& impl, ErrorCursor& cursor, std::size_t max_errors,
                        std::vector<ErrorRecord>& out, std::string& warning) {
  const std::string spill_dir(impl.header.spill_dir);  // validated NUL-terminated
  if (spill_dir.empty()) return {};
  const std::string path = spill_dir + "/" + impl.name + abi::kSpillSuffix;
  auto file = detail::open_checked(path, false, impl.allowed_uid, 0, kMaxSpillBytes);
  if (!file) {
    if (file.error().missing) return {};
    if (!impl.spill_refusal_reported.exchange(true, std::memory_order_relaxed)) {
      warning = impl.where() + "spill file " + file.error().error.message +
                "; ignored (errors in shared memory are still stored)";
    }
    return {};
  }
  while (out.size() < max_errors) {
    const std::uint64_t offset = cursor.spill_offset;
    if (offset % 8 != 0 || offset > file->size) {
      return std::unexpected(Error{impl.where() + "spill file " + path + " offset " +
                                   std::to_string(offset) + ": cursor out of range"});
    }
    const std::uint64_t room = file->size - offset;
    if (room < sizeof(abi::ErrorEntry)) break;
    abi::ErrorEntry entry{};
    const ssize_t got = ::pread(file->fd.get(), &entry, sizeof entry, static_cast<off_t>(offset));
    if (got != static_cast<ssize_t>(sizeof entry)) break;  // torn tail or truncated meanwhile
    if (entry.state != kCommitted) break;                    // torn tail
    const std::string where = impl.where() + "spill file " + path + " offset " +
                              std::to_string(offset);
    if (entry.size > room && entry.size % 8 == 0 && entry.size >= sizeof entry) break;  // torn tail
    if (auto ok = validate_entry(entry, room, where); !ok) return std::unexpected(ok.error());
    std::vector<std::byte> body(entry.size - sizeof(abi::ErrorEntry));
    const ssize_t body_got = ::pread(file->fd.get(), body.data(), body.size(),
                                     static_cast<off_t>(offset + sizeof entry));
    if (body_got != static_cast<ssize_t>(body.size())) break;
    out.push_back(decode_entry(entry, body.data()));
    cursor.spill_offset = offset + entry.size;
  }
  return {};
}

}  // namespace

Result<ErrorBatch> Segment::read_errors(const ErrorCursor& from, std::size_t max_errors, bool writer_gone) const {
  ErrorBatch batch;
  batch.next = from;
  ErrorCursor& cursor = batch.next;
  const std::uint32_t chunk_count = error_chunk_count();
  while (batch.errors.size() < max_errors && cursor.chunk < chunk_count) {
    auto chunk = chunk_mapping(*impl_, cursor.chunk);
    if (!chunk) return std::unexpected(chunk.error());
    auto step = chunk_step(*impl_, **chunk, cursor, batch.errors, writer_gone, batch.abandoned);
    if (!step) return std::unexpected(step.error());
    if (*step == Step::kStop) break;
    if (*step == Step::kEndOfChunk) {
      ++cursor.chunk;
      cursor.offset = abi::kErrorChunkHeaderSize;
    }
  }
  // The spill file is a separate stream: what shared memory could not hold.
  if (auto ok = read_spill(*impl_, cursor, max_errors, batch.errors, batch.warning); !ok) {
    return std::unexpected(ok.error());
  }
  return batch;
}

}  // namespace shmtrace::reader
