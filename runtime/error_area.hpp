// Producer side of the error area (P5): a chain of shared-memory chunks that
// only grows, then a spill file on disk when shared memory runs out. Errors
// are never dropped while either can take them; what neither can take is
// counted in SegmentHeader.errors_lost.
//
// The spill file lies in a directory other users may write (/tmp/spill with
// SHMTRACE_SPILL_DIR=..., or a squatted /tmp/shmtrace-<euid>), so it is
// opened without following a link or blocking on a FIFO and used only when
// it is our own regular file with one link; the default directory
// (default_spill_dir()) is created 0700 on the first spill and used only
// when it is a real directory of ours with no group or other permissions.
// Anything else disables the spill file for good, with one stderr line:
// errors are never written into a file someone else planted.
#ifndef SHMTRACE_RUNTIME_ERROR_AREA_HPP
#define SHMTRACE_RUNTIME_ERROR_AREA_HPP

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "segment.hpp"
#include "shmtrace/abi.hpp"

namespace shmtrace::runtime {

struct ErrorDraft {
  abi::ErrorKind kind = abi::ErrorKind::kExplicit;
  std::uint64_t timestamp = 0;
  std::uint64_t span_id = 0;
  std::uint8_t trace_id[16] = {};
  std::uint32_t tid = 0;
  std::uint32_t group_id = 0;
  std::uint32_t span_name_id = 0;
  std::uint32_t signal = 0;
  std::uint64_t fault_address = 0;
  const std::uint64_t* frames = nullptr;
  std::uint32_t frame_count = 0;
  std::string_view type;
  std::string_view message;
  std::string_view preview;
};

// Largest entry: header, kMaxErrorFrames frames and the longest texts.
inline constexpr std::uint32_t kMaxErrorEntryBytes =
    sizeof(abi::ErrorEntry) + abi::kMaxErrorFrames * 8 + abi::kMaxErrorType + abi::kMaxErrorMessage +
    abi::kMaxErrorPreview + 8;

class ErrorArea {
 public:
  // `max_chunks` bounds the chain (tests use a small bound to reach the
  // spill file); the runtime uses kDefaultMaxChunks.
  static constexpr std::uint32_t kDefaultMaxChunks = 4096;
  ErrorArea(abi::SegmentHeader* header, std::string segment_name, std::uint32_t max_chunks);
  ~ErrorArea();
  ErrorArea(const ErrorArea&) = delete;
  ErrorArea& operator=(const ErrorArea&) = delete;

  // Creates chunk 0 (the runtime calls it at start so the first error, or a
  // crash, finds a chunk ready). False when shared memory is full.
  bool prepare() noexcept;

  // Appends an error; returns its sequence number (>= 1). With
  // may_create == false (signal handlers) no chunk is created: a full chain
  // goes straight to the spill file.
  std::uint64_t append(const ErrorDraft& draft, bool may_create = true) noexcept;

  const std::string& spill_path() const { return spill_path_; }

 private:
  abi::ErrorChunkHeader* chunk(std::uint32_t index, bool may_create) noexcept;
  SharedObject* create_chunk(std::uint32_t index) noexcept;
  bool spill(const std::byte* entry, std::uint32_t size) noexcept;
  int open_spill() noexcept;
  void refuse_spill(const char* what, const char* why) noexcept;

  abi::SegmentHeader* header_;
  std::string segment_name_;
  std::string spill_dir_;
  std::string spill_path_;
  bool private_dir_;  // spill_dir_ is default_spill_dir(): created and checked here
  std::uint32_t max_chunks_;
  std::uint32_t chunk_bytes_;
  std::uint32_t current_ = 0;     // chunk being filled; atomic_ref access
  int spill_fd_ = -1;             // atomic_ref access; kSpillRefused once refused
  std::uint32_t refusal_said_ = 0;  // atomic_ref access: the one stderr line is out
  // Per chunk: 0 none, 1 being created, else a SharedObject* that stays
  // alive (and so mapped, and reachable for leak checkers) for the process.
  std::unique_ptr<std::uintptr_t[]> chunks_;
};

// Serialises an entry (state left kUnwritten) into `out`, which holds at
// least kMaxErrorEntryBytes. Returns its size.
std::uint32_t encode_error_entry(const ErrorDraft& draft, std::uint64_t sequence, std::uint32_t max_frames,
                                 std::byte* out) noexcept;

}  // namespace shmtrace::runtime

#endif
