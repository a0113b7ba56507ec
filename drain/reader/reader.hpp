// The reader library: attaches to a shmtrace segment and reads it back.
//
// Shared memory is hostile input (STYLE point 5): another process wrote it,
// may still be writing it, may have crashed halfway, or may be malicious.
// Every offset, length, index and count is checked before use, records are
// copied out of shared memory before they are decoded (so a value cannot
// change between check and use), and every failure is an Error value with a
// one-line message naming the segment and the field. Nothing here aborts.
//
// Two access modes:
//   kReadOnly  maps PROT_READ; never writes a byte (the dump utility).
//   kConsume   maps read-write; the single consumer (the drain, a test) that
//              hands slots back with commit_*() after it stored the records,
//              and publishes its heartbeat for the block policy.
#ifndef SHMTRACE_READER_READER_HPP
#define SHMTRACE_READER_READER_HPP

#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shmtrace/abi.hpp"

namespace shmtrace::reader {

struct Error {
  std::string message;  // one line, says what is wrong and where
};
template <class T>
using Result = std::expected<T, Error>;

enum class Access { kReadOnly, kConsume };

// Bounds on what a segment may declare, against hostile or broken producers
// (hostile segments): a segment over them is refused at attach with one line. They
// are process-wide (shmtrace-drain sets them from --max-rings and
// --max-segment-mb before it attaches anything); the defaults suit every
// segment the runtime can create.
struct SegmentLimits {
  // The runtime's own ceiling of SHMTRACE_MAX_THREADS (runtime/config.cpp):
  // a reader walks every ring, so max_rings bounds the work of each pass.
  static constexpr std::uint32_t kDefaultMaxRings = 4096;
  // Generous: the largest runtime geometry is about 4 TiB, the default one
  // 130 MiB. It bounds the address space one segment takes in the reader.
  static constexpr std::uint64_t kDefaultMaxSegmentBytes = 1ull << 40;  // 1 TiB

  std::uint32_t max_rings = kDefaultMaxRings;
  std::uint64_t max_segment_bytes = kDefaultMaxSegmentBytes;  // the file's size
};
void set_segment_limits(const SegmentLimits& limits);
SegmentLimits segment_limits();

// Survives segments truncated under the reader ("the drain never
// dies of SIGBUS"). Every segment and error chunk the reader maps is listed
// in a process-wide registry; a SIGBUS whose address lies in one of them
// (its owner shrank the file, so the page is past its end) maps anonymous
// zero pages over the rest of that mapping and marks it faulted, so the read
// completes with zeros, which the ABI reads as empty, and Segment::faulted()
// tells the caller to drop the segment. Any other SIGBUS goes on to the
// handler that was installed before (or the default action: the process
// dies as it would have). Installed by the first mapping; a program may
// call this earlier (to install it after a sanitizer's, whose handler then
// gets the foreign faults). Idempotent and thread-safe.
Result<void> install_fault_handler();

// Checks every field of a header against the size actually mapped: magic,
// ABI major (minor >= ours accepted), header and total size, each region's
// offset and size inside the segment and not overlapping, ring capacity and
// overflow capacity powers of two, ring stride large enough and page-aligned,
// string table capacity, enum values in range, NUL-terminated text fields,
// max_rings within segment_limits().
Result<void> validate_header(const abi::SegmentHeader& header, std::uint64_t mapped_size);

// Converts a segment's ticks to nanoseconds. For ClockKind::kTsc with
// ticks_per_second == 0 the reader calibrates the machine's TSC once per
// process (the TSC is machine-wide, so one calibration serves all segments).
class ClockConverter {
 public:
  explicit ClockConverter(const abi::SegmentHeader& header);
  // Nanoseconds since the Unix epoch (wall clock at the segment's reference
  // instant plus elapsed ticks).
  std::int64_t to_wall_ns(std::uint64_t ticks) const;
  // Elapsed nanoseconds between two tick values (b >= a).
  std::int64_t duration_ns(std::uint64_t a, std::uint64_t b) const;
  double ticks_per_ns() const { return ticks_per_ns_; }

 private:
  std::uint64_t ref_ticks_;
  std::int64_t ref_wall_ns_;
  double ticks_per_ns_;
};

// A snapshot of one ring's control block (values may move on afterwards).
struct RingInfo {
  std::uint32_t index = 0;
  abi::RingState state = abi::RingState::kFree;
  std::uint32_t generation = 0;
  std::uint32_t tid = 0;
  std::string thread_name;
  std::uint64_t claimed_ticks = 0;  // when the owner claimed it (the segment's clock)
  std::uint64_t head = 0;
  std::uint64_t tail = 0;
  std::uint64_t written = 0;
  std::uint64_t overflowed = 0;
  std::uint64_t dropped = 0;
  std::uint64_t blocked_ns = 0;
};

// Raw records copied out of a ring: positions [first_position, end_position).
struct RingBatch {
  std::uint32_t ring = 0;
  std::uint64_t first_position = 0;
  std::uint64_t end_position = 0;
  std::vector<abi::Record> records;
};

// Raw records copied out of the overflow area, whole groups only.
struct OverflowEntry {
  std::uint64_t position = 0;  // overflow position of the record
  std::uint32_t ring_index = abi::kNoRing;
  std::uint32_t generation = 0;
  std::uint32_t tid = 0;
  abi::Record record{};
};
struct OverflowBatch {
  std::uint64_t first_position = 0;
  std::uint64_t end_position = 0;
  std::vector<OverflowEntry> entries;
};

// One decoded error entry (from a chunk or the spill file).
struct ErrorRecord {
  std::uint64_t sequence = 0;
  std::uint64_t timestamp = 0;
  std::uint64_t span_id = 0;
  std::uint8_t trace_id[16] = {};
  abi::ErrorKind kind = abi::ErrorKind::kExplicit;
  std::uint32_t tid = 0;
  std::uint32_t group_id = 0;
  std::uint32_t span_name_id = 0;
  std::uint32_t signal = 0;
  std::uint64_t fault_address = 0;
  std::vector<std::uint64_t> frames;
  std::string type;
  std::string message;
  std::string preview;
};

// Where an error reader stands: chunk index and byte offset in that chunk,
// then byte offset in the spill file. Persist it to resume exactly.
struct ErrorCursor {
  std::uint32_t chunk = 0;
  std::uint32_t offset = abi::kErrorChunkHeaderSize;
  std::uint64_t spill_offset = 0;
};
struct ErrorBatch {
  ErrorCursor next;  // cursor after the returned entries
  std::vector<ErrorRecord> errors;
  // Entries a dead process left half-written (reserved, never committed),
  // passed over (read_errors with writer_gone only).
  std::uint64_t abandoned = 0;
  // Not an error: something the caller should log once, e.g. a file at the
  // spill path that was refused (another user's, a FIFO, a link) and is
  // ignored. Given once per Segment object; empty otherwise.
  std::string warning;
};

// One loaded object from the segment's module map (P9), validated: enough to
// symbolize the process's code addresses after it is gone (drain/symbols).
struct ModuleRecord {
  std::uint64_t base;         // load bias (dl_iterate_phdr's dlpi_addr); 0 for a non-PIE executable
  std::uint64_t size;         // end of the highest PT_LOAD segment, relative to base
  std::string path;           // the object's file
  std::string build_id_hex;   // lowercase hex; empty when the object has none
};

// Call-site statistics (P13) of one slot of a ring's table, converted with
// the segment's clock. Counts are cumulative over every thread that owned
// the ring (abi.hpp); report deltas between snapshots keyed by (ring, kind,
// name_id/address).
//
// Consistency: the reader takes no lock; it loads each field once while the
// owning thread may be updating the slot, so one snapshot may be mid-update.
// What it guarantees:
//   * every count (calls, errors, unfinished, completed, each bucket) and
//     total only grows: a later snapshot's value is >= an earlier one's, so
//     deltas are never negative (min_ns only falls, max_ns only rises);
//   * completed + unfinished <= calls in every snapshot (the buckets are
//     loaded first, with acquire, then calls: a call's end is never seen
//     without its entry); calls - completed - unfinished are in flight (or
//     were open when their thread or process ended);
//   * total_ns, min_ns, max_ns and errors may run one call ahead of the
//     histogram: the runtime bumps a call's bucket at the thread's next
//     end, or when the thread exits (abi.hpp);
//   * a slot's kind and key never change once published.
struct HistogramBucket {
  std::uint32_t index = 0;  // abi::stats_bucket_of() of the durations in ticks
  std::uint64_t count = 0;
};
struct CallSiteStats {
  std::uint32_t ring = 0;
  std::uint32_t slot = 0;  // index in the ring's table; "other" is the last one
  std::uint32_t tid = 0;   // the last thread that used the slot
  abi::CallSiteKind kind = abi::CallSiteKind::kUnused;  // kName, kCode or kOther
  std::uint32_t name_id = 0;  // kName: StringTable id of the span's name
  std::uint64_t address = 0;  // kCode: the instrumented function's address
  std::uint64_t calls = 0;       // entries (sampled-out and dropped spans included)
  std::uint64_t errors = 0;      // ends with status ERR
  std::uint64_t unfinished = 0;  // frames closed without their end (longjmp)
  std::uint64_t completed = 0;   // ends with a duration: the histogram's total
  std::uint64_t total_ticks = 0;
  // Of total_ticks, the time outside traced callees: each ended call's
  // duration minus its ended children's (API spans and instrumented calls
  // directly below it on its thread's stack). An unfinished child's time
  // counts as its parent's own. <= total_ticks once the owner is quiet.
  std::uint64_t self_ticks = 0;
  std::uint64_t min_ticks = 0;   // 0 when completed == 0
  std::uint64_t max_ticks = 0;
  double total_ns = 0;
  double self_ns = 0;
  double min_ns = 0;
  double max_ns = 0;
  double ns_per_tick = 1;
  std::vector<HistogramBucket> histogram;  // the non-empty buckets, ascending

  // Duration (ns) below which a fraction q (0..1) of the completed calls
  // lie: the midpoint of the bucket that holds that rank, clamped to
  // [min_ns, max_ns] (within 1.6 % + the clock's error of the true value).
  // 0 when no call completed.
  double quantile_ns(double q) const;
};

// Live header fields, each loaded once (see peek_live): a snapshot for
// tools that watch a segment without consuming it (shmtrace dump).
struct LiveFields {
  abi::ProcessState state = abi::ProcessState::kRunning;
  std::int32_t exit_status = 0;
  std::uint64_t end_ticks = 0;
  std::uint32_t exec_target_id = 0;
  std::uint32_t error_chunk_count = 0;
  std::uint64_t errors_written = 0;
  std::uint64_t errors_spilled = 0;
  std::uint64_t errors_lost = 0;
  std::uint64_t no_ring_threads = 0;
  std::uint64_t no_ring_overflowed = 0;
  std::uint64_t no_ring_dropped = 0;
  std::uint64_t strings_rejected = 0;
  std::uint32_t drain_pid = 0;
  std::uint64_t drain_heartbeat_ns = 0;  // CLOCK_MONOTONIC; 0 = never
  std::uint64_t overflow_enqueue = 0;    // OverflowControl.enqueue_pos
  std::uint64_t overflow_dequeue = 0;    // OverflowControl.dequeue_pos
};

// Records read without consuming them (peek_ring): positions
// [first_position, end_position), all of them stable while copied.
// `skipped` counts positions asked for (from `from`) that the consumer had
// already handed back to the producer, so they may hold newer records.
struct RingPeek {
  std::uint32_t ring = 0;
  std::uint64_t first_position = 0;
  std::uint64_t end_position = 0;
  std::uint64_t skipped = 0;
  std::vector<abi::Record> records;
};
// Whole overflow groups read without consuming them (peek_overflow).
struct OverflowPeek {
  std::uint64_t first_position = 0;
  std::uint64_t end_position = 0;
  std::uint64_t skipped = 0;  // positions freed by the consumer before we read them
  std::vector<std::vector<OverflowEntry>> groups;
};

class Segment {
 public:
  // Attaches to /dev/shm/<name> (name without the leading '/'), opened with
  // O_NOFOLLOW; refuses anything but a regular file, a file not owned by
  // `allowed_uid` (default: our own uid) and one larger than
  // segment_limits().max_segment_bytes. Validates the header, and refuses a
  // segment whose header, string table, module map or overflow area has
  // pages never written (the runtime writes them all before it publishes
  // the header).
  //
  // Sparse segments: reading a tmpfs hole through a shared mapping
  // allocates the page, so a segment declaring many rings but writing none
  // could fill /dev/shm through its reader. A ring slot is read only once
  // the file shows its pages allocated (SEEK_DATA / SEEK_HOLE): a ring whose
  // control block was never written reads as free and empty, untouched; one
  // whose records are not all allocated is untrusted. A slot seen whole is
  // remembered (pages stay allocated, short of a truncation, which the fault
  // handler catches), so a ring in use costs no system call; free rings cost
  // a few per walk over all rings in ascending order (the holes found for
  // one ring serve the later rings of the same walk).
  static Result<Segment> attach(const std::string& name, Access access,
                                std::optional<std::uint32_t> allowed_uid = std::nullopt);
  // Wraps memory the caller owns (tests build segments in anonymous memory).
  static Result<Segment> from_memory(void* base, std::uint64_t size, Access access);

  Segment(Segment&&) noexcept;
  Segment& operator=(Segment&&) noexcept;
  ~Segment();

  const std::string& name() const;
  // A SIGBUS hit the segment's or one of its error chunks' mapping: the file
  // was truncated under us (install_fault_handler), and what was read since
  // may be zeros. Drop the segment: store nothing read from it in the same
  // pass, hand nothing back.
  bool faulted() const;
  // The validated copy of the header's write-once fields.
  const abi::SegmentHeader& header() const;
  // The session the process belongs to ("" for none), from the header.
  std::string session() const;
  // Live fields, reloaded on each call (acquire).
  abi::ProcessState state() const;
  std::int32_t exit_status() const;
  std::uint32_t error_chunk_count() const;
  std::uint64_t errors_written() const;
  std::uint64_t errors_spilled() const;
  std::uint64_t no_ring_threads() const;
  std::uint64_t no_ring_dropped() const;  // records lost by threads without a ring
  // The process consuming the segment (a drain), 0 when none has claimed it.
  std::uint32_t consumer_pid() const;
  const ClockConverter& clock() const;

  std::uint32_t ring_count() const;  // == header().max_rings
  Result<RingInfo> ring_info(std::uint32_t ring) const;

  // Copies up to max_records published records from the consumer's tail.
  // Checks head - tail <= capacity (else: error, ring untrusted).
  Result<RingBatch> read_ring(std::uint32_t ring, std::size_t max_records) const;
  // kConsume only: hands positions before end_position back to the producer.
  Result<void> commit_ring(std::uint32_t ring, std::uint64_t end_position);

  Result<OverflowBatch> read_overflow(std::size_t max_records) const;
  Result<void> commit_overflow(const OverflowBatch& batch);

  // Reads committed error entries after `from`, across chunks and then the
  // spill file, at most max_errors. Stops at the first entry still being
  // written, unless the writing process is gone (writer_gone): then such an
  // entry will never be committed, and it is passed over by its size, or,
  // when even that was not written, with the rest of its chunk (counted in
  // ErrorBatch::abandoned), so the entries after it are not lost.
  Result<ErrorBatch> read_errors(const ErrorCursor& from, std::size_t max_errors, bool writer_gone = false) const;

  // Read-only peeking (segment_peek.cpp), for tools that look without
  // consuming: no byte of the segment is written, no tail moved.
  LiveFields peek_live() const;
  // Published records of a ring from position max(from, tail) to head, at
  // most max_records. Only [tail, head) is stable: the producer overwrites
  // a slot only once the consumer's tail has passed it. tail is loaded again
  // after the copy; records below it were handed back meanwhile and are
  // dropped from the result (counted in `skipped`, with the positions
  // between `from` and the first tail).
  Result<RingPeek> peek_ring(std::uint32_t ring, std::uint64_t from, std::size_t max_records) const;
  // Published overflow groups from max(from, dequeue_pos): each slot's
  // sequence is checked before and after its copy, so a slot the consumer
  // freed and a producer reused meanwhile is never returned.
  Result<OverflowPeek> peek_overflow(std::uint64_t from, std::size_t max_records) const;

  // Call-site statistics (P13) of one ring: the assigned slots in order,
  // then the "other" slot; empty when the segment keeps none or the ring was
  // never claimed. Checks stats_used against the table, each slot's kind and
  // key, min <= max and completed + unfinished <= calls; a bad value fails
  // the ring, naming the slot and the field.
  Result<std::vector<CallSiteStats>> call_site_stats(std::uint32_t ring) const;
  // Every ring's, in ring order (free rings contribute nothing).
  Result<std::vector<CallSiteStats>> call_site_stats() const;

  // Interned string by id; validated (bounds, length, ready flag).
  Result<std::string_view> string(std::uint32_t id) const;
  Result<std::uint8_t> string_flags(std::uint32_t id) const;

  // The module map's published entries, in the order the runtime added them
  // (append-only: an object dlclosed and another loaded at the same address
  // both stay listed). Checks count <= capacity, the capacity against
  // modules_size, each path id and build_id_size; any bad field fails the
  // whole map, naming the entry and the field. Empty when modules_size is 0.
  Result<std::vector<ModuleRecord>> modules() const;

  // kConsume only: publishes the consumer heartbeat (drain_heartbeat_ns)
  // that producers under the block policy wait on, if we are the segment's
  // consumer (drain_pid; an unclaimed segment is claimed first). False, and
  // nothing written, when another process holds it: it took the segment over
  // (our heartbeat had gone stale), and we must hand nothing back any more.
  bool heartbeat();
  // kConsume only: drain_pid names us.
  bool is_consumer() const;

  // kConsume only: makes this process the segment's one consumer, for good.
  // Refused (false) while another consumer's process is alive, however late
  // its heartbeat: a drain starved of CPU or stopped still holds records it
  // read and has not handed back, and taking over would split the segment's
  // records between two databases. Taken over once that process is gone, or
  // its pid was reused (the process now under it started after the holder's
  // last heartbeat). The claim is a compare-and-swap of drain_pid, so two
  // drains attaching at once cannot both win.
  bool claim_consumer();
  // The consumer `holder` (a drain_pid) is no longer running.
  bool holder_gone(std::uint32_t holder) const;

  // Removes the segment object, its error chunks and its spill file; a file
  // under one of those names that is not the owner's regular file with one
  // link (another user planted it) is left alone.
  Result<void> unlink() const;

 private:
  struct Impl;
  explicit Segment(std::unique_ptr<Impl> impl);
  void publish_heartbeat();
  std::unique_ptr<Impl> impl_;
};

// Names of segments in /dev/shm (error chunks excluded). Symlinks and
// non-regular files are skipped; optionally only those of one pid.
struct SegmentListing {
  std::string name;
  std::string session;  // "" for a segment of no session
  std::uint32_t pid = 0;
  std::uint32_t owner_uid = 0;
};
Result<std::vector<SegmentListing>> list_segments(std::optional<std::uint32_t> pid = std::nullopt);

// ---------------------------------------------------------------------------
// Decoding: raw records -> typed events, continuation values reassembled.
// ---------------------------------------------------------------------------
struct DecodedRecord {
  abi::RecordKind kind = abi::RecordKind::kEmpty;
  std::uint8_t flags = 0;
  std::uint32_t name_id = 0;
  std::uint64_t timestamp = 0;
  std::uint64_t span_id = 0;
  std::uint64_t aux = 0;
  abi::SpanPayload span{};      // kSpanBegin, kSpanEnd
  abi::DropPayload drop{};      // kDropMarker
  abi::ThreadPayload thread{};  // kThreadStart, kThreadEnd
  std::string value;            // kEvent message, kArg string/bytes/repr value
  std::uint32_t record_count = 1;  // head + continuations
};

struct DecodeStats {
  std::uint64_t unknown_kinds = 0;          // counted and skipped
  std::uint64_t broken_continuations = 0;   // continuation without head, bad index, short value
  std::uint64_t empty_records = 0;          // kind 0 (all-zero memory): never written, corruption
};

// Decodes a sequence of raw records from one producer (a ring batch, or the
// overflow entries of one group). A value whose continuations are cut off by
// the end of the span is reported broken, not invented.
std::vector<DecodedRecord> decode(std::span<const abi::Record> records, DecodeStats& stats);

}  // namespace shmtrace::reader

#endif  // SHMTRACE_READER_READER_HPP
