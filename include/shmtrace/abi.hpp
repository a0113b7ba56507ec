// shmtrace shared-memory ABI — the specification of the cross-process format.
//
// The producer runtime (libshmtrace.so), the drain and every tool read this
// one file. Anything written here is a promise between processes that may be
// built from different versions of the code, so:
//   * only fixed-width integer types, byte arrays and offsets (never pointers,
//     size_t, or in-process types);
//   * every shared struct is standard-layout and trivially copyable; atomic
//     access goes through std::atomic_ref on plain integer fields;
//   * every size, alignment and offset that matters is held by a static_assert
//     at the bottom of this file;
//   * all-zero memory reads as "empty" everywhere (a free ring, an unused
//     overflow slot, an unwritten string, an uncommitted error entry).
//
// ---------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------
// Each traced process image owns one *segment*: a POSIX shared-memory object
// named  /shmtrace.<pid>.<nonce as 16 hex digits>  (kSegmentNamePrefix), mode
// 0600, or  /shmtrace.<session>.<pid>.<nonce>  for a process of a session
// (a run of `shmtrace run`: SHMTRACE_SESSION, inherited by every descendant
// through the environment; session_id_valid below says what a session id may
// hold: never a '.', never only digits, so the two forms cannot be confused).
// A drain given a session takes only that session's segments; a drain given
// none takes only segments of no session. The nonce mixes the monotonic
// clock and random bits, so a recycled pid or an exec() of the same pid never
// reuses an older name. The segment has a
// fixed size chosen at creation; its regions are:
//
//   offset 0                 +----------------------------------+
//                            | SegmentHeader (4096 bytes)       |
//   header.strings_offset    +----------------------------------+
//                            | StringTableHeader | entries ...  |  interned names
//   header.modules_offset    +----------------------------------+
//                            | ModuleMapHeader | ModuleEntry[]  |  loaded objects
//   header.overflow_offset   +----------------------------------+
//                            | OverflowControl | OverflowSlot[] |  shared MPSC area
//   header.rings_offset      +----------------------------------+
//                            | ring slot 0:  RingControl        |
//                            |               Record[capacity]   |
//                            |               stats (P13)        |
//                            | ring slot 1 ...  (ring_stride)   |
//                            | ...  header.max_rings slots      |
//                            +----------------------------------+
//
// Errors never enter the rings. They go to the *error area*: a chain of
// separate shared-memory objects  <segment name>.err.<index>  (index from 0),
// each an ErrorChunkHeader followed by variable-size ErrorEntry records. The
// chain only grows; header.error_chunk_count says how many chunks exist. When
// shared memory is exhausted, entries are appended in the same byte format to
// the spill file  <header.spill_dir>/<segment name>.errors  (no chunk header).
// The spill directory (default /tmp/shmtrace-<euid>, private, 0700) may be
// one every user can write, so both sides open the spill file and the chunks
// without following links or blocking, and use them only when they are the
// segment owner's regular files with one link; anything else there is
// ignored, never written, never removed.
//
// ---------------------------------------------------------------------------
// Glossary
// ---------------------------------------------------------------------------
// producer  a thread of the traced process; owns at most one ring at a time.
// consumer  the single drain (or a test's reader) that moves records out.
// position  a 64-bit count of records ever written into a ring; the slot of
//           position p is p & (capacity - 1). Positions never wrap in
//           practice (2^64 records), so (segment, ring, position) is a unique
//           key for every record, which is what makes the drain idempotent.
// tick      a timestamp unit; see ClockKind and the calibration fields.
//
// ---------------------------------------------------------------------------
// Ring protocol (one producer thread, one consumer)
// ---------------------------------------------------------------------------
//   producer: p = head (private copy); if p + n - cached_tail > capacity,
//             reload tail (acquire, pairs with the consumer's release) and
//             fall back to the overflow area if still full; write records at
//             slots p..p+n-1; store head = p + n (release: publishes them).
//   consumer: h = head (acquire, pairs with the producer's release); copy
//             records [tail, h) out of shared memory, validate and commit
//             them; then store tail = h (release: hands the slots back).
// A record is therefore never overwritten before the consumer has committed
// it. Ring ownership (RingControl.state):
//
//        claim (CAS, producer)            thread exit (producer, release)
//   Free ---------------------> Claimed -------------------------> Released
//                                 ^                                   |
//                                 +------ claim (CAS, producer) ------+
//
// A released ring keeps its undrained records and its counters; the next
// thread to claim it continues at the same head after writing a ThreadStart
// record carrying the incremented generation, so the consumer always knows
// which thread wrote which record. That record must go into the ring itself:
// a claimer that finds the ring still full of undrained records stores
// Released back (release) and leaves the ring for later.
//
// ---------------------------------------------------------------------------
// Overflow protocol (many producers, one in-order consumer)
// ---------------------------------------------------------------------------
// A bounded queue of OverflowSlot. Slot i serves positions p with
// p & (capacity-1) == i; lap(p) = p / capacity. OverflowSlot.sequence is
//   2*lap     : free for position p of that lap (zero memory: free for lap 0)
//   2*lap + 1 : holds the published record of position p
// producer: p = enqueue_pos (relaxed); a group of n records needs slot
//           p+n-1 free for its lap (the consumer frees in order, so the slots
//           before it are free too); CAS enqueue_pos p -> p+n (acq_rel);
//           write each slot, then sequence = 2*lap+1 (release).
// consumer: at dequeue_pos d, slot published (acquire)? The first slot of a
//           group carries group_count; take the group only when all of its
//           slots are published. After commit: sequence = 2*(lap+1) (release),
//           dequeue_pos = d + n (release, informational).
//
// ---------------------------------------------------------------------------
// Counters and the accounting identity
// ---------------------------------------------------------------------------
// For every ring, each record its producers tried to emit increments exactly
// one of RingControl.head (stored in the ring: head counts every record ever
// written), .overflowed (stored in the overflow area) or .dropped (lost). Drop markers, ThreadStart and ThreadEnd
// are records too and count as written/overflowed, never as dropped. Drops are
// reported in-band by a DropMarker record written before the next record that
// fits; its count sums to `dropped`, except for drops still pending when a
// thread dies without another successful write (then `dropped` has them).
// Threads that found no free ring write straight to the overflow area and
// count in SegmentHeader.no_ring_overflowed / no_ring_dropped instead.
//
// ---------------------------------------------------------------------------
// Error entry protocol (many producers, signal handlers included)
// ---------------------------------------------------------------------------
// producer: off = fetch_add(chunk.used, size) (relaxed); if the entry fits,
//           write it with state 0, then state = kErrorCommitted (release).
//           If it straddles the end, write a kErrorPadding entry at off (when
//           off < capacity) and retry in the next chunk (created on demand;
//           the runtime creates chunk k+1 ahead once chunk k is half full).
// consumer: walks from kErrorChunkHeaderSize; at each offset reads state
//           (acquire): 0 = not yet written (stop), committed = decode,
//           padding = end of this chunk.
//
// ---------------------------------------------------------------------------
// Call-site statistics (P13; since minor 1)
// ---------------------------------------------------------------------------
// Every ring slot ends with a table of StatsSlot, header.ring_stats_bytes
// long (0: statistics off): slots 0 .. n-2 are call sites, slot n-1 is the
// "other" slot, n = ring_stats_bytes / sizeof(StatsSlot) (>= 2 when not 0).
//
//   ring slot  +--------------------+ ring_offset(h, i)
//              | RingControl        |   cache line 3: stats_used
//              | Record[capacity]   |
//              +--------------------+ ring_offset(h, i) + ring_stats_offset(h)
//              | StatsSlot 0        |   a call site: key + counters (line 0:
//              |                    |   what entry and end write), unfinished
//              |                    |   + reserved (line 1), histogram
//              | ...                |
//              | StatsSlot n-2      |
//              | StatsSlot n-1      |   "other": every call site that found
//              +--------------------+   the table full, summed
//
// A call site is an API span's interned name (kName, key = name id) or an
// instrumented function (kCode, key = its address). Statistics belong to the
// ring, not to a thread: they are cumulative over every thread that has
// owned the ring (a released ring's next owner adds to the same slots), so a
// reader reports deltas between snapshots. StatsSlot.last_tid names the last
// thread that used a slot.
//
// producer (the ring's owner only; no locked instruction):
//   first use of a call site by a thread: look the key up in [0, stats_used);
//     if absent and stats_used < n-1, write key, last_tid, min_ticks = ~0,
//     then kind (release), then stats_used + 1 (release); if the table is
//     full, use the "other" slot (its kind is set when the ring is claimed).
//   enter: calls += 1 (relaxed store).
//   end:   errors += 1 (ERR), self_ticks, total_ticks, min_ticks, max_ticks
//          (relaxed); self_ticks adds the call's duration minus the summed
//          durations of its ended children (API spans and instrumented
//          calls directly below it on the same thread's stack, sampled out
//          or dropped alike; an unfinished child adds nothing);
//          buckets[bucket_of(duration)] += 1 (release: pairs with the
//          reader's acquire load, so a reader that sees the bucket sees the
//          calls += 1 of the same call). The runtime defers this bump to the
//          thread's next end, or to the thread's exit (the exiting thread's
//          at process exit): the histogram may lag the other fields by one
//          call per thread, and a thread still running when its process
//          exits (other than the one calling exit), crashes or execs
//          leaves its last bump out.
//   a frame closed without its own end (a longjmp or an end of an outer
//   span skipped it): unfinished += 1 (release); no duration.
// consumer: loads stats_used (acquire, pairs with the producer's release);
//   per slot: kind (acquire), buckets and unfinished (acquire), then calls,
//   errors and the durations (relaxed). Every counter only grows, so deltas
//   between two snapshots never go negative; within one snapshot
//   sum(buckets) + unfinished <= calls (calls in flight make up the rest).
// Durations are in ticks of the segment's clock (ClockKind); the histogram's
// buckets are log-linear over ticks (stats_bucket_of below), so converting a
// bucket's bounds to nanoseconds keeps its relative width.
//
// Versioning: a reader rejects another abi_major and accepts any abi_minor
// >= its own (new minors only add fields in reserved space or new record
// kinds, which readers count and skip). Every record belongs to a segment and
// so carries that segment's ABI version.

#ifndef SHMTRACE_ABI_HPP
#define SHMTRACE_ABI_HPP

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace shmtrace::abi {

inline constexpr std::uint64_t kSegmentMagic = 0x31454741'4d485354ULL;  // "TSHMAGE1"
inline constexpr std::uint64_t kErrorChunkMagic = 0x314b4e48'43525245ULL;  // "ERRCHNK1"
inline constexpr std::uint16_t kAbiMajor = 2;  // 2: StatsSlot.self_ticks (the slot grew)
// Minors count on across majors (the "minor N" notes below stay true):
// 1: call-site statistics, kSpanUnfinished; 2: session.
inline constexpr std::uint16_t kAbiMinor = 2;
inline constexpr char kSegmentNamePrefix[] = "shmtrace.";
inline constexpr char kErrorChunkInfix[] = ".err.";
inline constexpr char kSpillSuffix[] = ".errors";
inline constexpr std::uint32_t kMaxSessionLength = 32;

// A session id: 1 to 32 of [A-Za-z0-9_-], the first a letter.
inline constexpr bool session_id_valid(const char* text, std::size_t length) noexcept {
  if (length == 0 || length > kMaxSessionLength) return false;
  const char first = text[0];
  if (!((first >= 'a' && first <= 'z') || (first >= 'A' && first <= 'Z'))) return false;
  for (std::size_t i = 0; i < length; ++i) {
    const char c = text[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}
inline constexpr std::uint32_t kCacheLine = 64;
inline constexpr std::uint32_t kPageSize = 4096;
inline constexpr std::uint32_t kHeaderSize = 4096;

// ---------------------------------------------------------------------------
// Atomic access to shared fields. Every call site names its memory order and
// says which operation it pairs with.
// ---------------------------------------------------------------------------
template <class T>
inline T atomic_load(const T& field, std::memory_order order) noexcept {
  return std::atomic_ref<T>(const_cast<T&>(field)).load(order);
}
template <class T>
inline void atomic_store(T& field, T value, std::memory_order order) noexcept {
  std::atomic_ref<T>(field).store(value, order);
}
template <class T>
inline T atomic_fetch_add(T& field, T delta, std::memory_order order) noexcept {
  return std::atomic_ref<T>(field).fetch_add(delta, order);
}
// On failure `expected` receives the current value with the acquire half of
// `order` (a loser of an acq_rel CAS may read what the winner published).
template <class T>
inline bool atomic_cas(T& field, T& expected, T desired, std::memory_order order) noexcept {
  const std::memory_order failure =
      order == std::memory_order_acq_rel || order == std::memory_order_acquire ? std::memory_order_acquire
      : order == std::memory_order_seq_cst                                     ? std::memory_order_seq_cst
                                                                               : std::memory_order_relaxed;
  return std::atomic_ref<T>(field).compare_exchange_strong(expected, desired, order, failure);
}
// Single-writer counter bump: only the owning thread writes, readers load
// relaxed; a plain load+store keeps the hot path free of locked instructions
// while the 64-bit store stays untorn for the reader.
inline void counter_add(std::uint64_t& field, std::uint64_t delta) noexcept {
  atomic_store(field, atomic_load(field, std::memory_order_relaxed) + delta,
               std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------
// Enumerations
// ---------------------------------------------------------------------------
enum class ClockKind : std::uint32_t {
  kTsc = 1,          // x86 rdtsc ticks; convert with the calibration fields
  kMonotonicNs = 2,  // CLOCK_MONOTONIC nanoseconds (platforms without a TSC)
};

enum class ProcessState : std::uint32_t {
  kRunning = 0,  // zero memory: running (or not yet published)
  kExited = 1,   // exit_status holds the exit code
  kCrashed = 2,  // exit_status holds the signal number
  kExeced = 3,   // the image exec'd; exec_target_id names the new program
};

enum class FullPolicy : std::uint32_t {
  kDrop = 0,   // ring and overflow full: count and drop (default)
  kBlock = 1,  // wait while a drain makes progress, then drop (P4)
};

// One list defines the record kinds: value, name, and whether a kind may be
// followed by Continuation records. Readers count and skip unknown kinds.
#define SHMTRACE_RECORD_KINDS(X)                                              \
  X(kSpanBegin, 1, "span_begin", false)                                       \
  X(kSpanEnd, 2, "span_end", false)                                           \
  X(kEvent, 3, "event", true)                                                 \
  X(kCounter, 4, "counter", false)                                            \
  X(kArg, 5, "arg", true)                                                     \
  X(kContinuation, 6, "continuation", false)                                  \
  X(kDropMarker, 7, "drop_marker", false)                                     \
  X(kThreadStart, 8, "thread_start", false)                                   \
  X(kThreadEnd, 9, "thread_end", false)                                       \
  X(kProcessStart, 16, "process_start", false)                                \
  X(kFork, 17, "fork", false)                                                 \
  X(kExec, 18, "exec", false)                                                 \
  X(kExit, 19, "exit", false)

enum class RecordKind : std::uint8_t {
  kEmpty = 0,  // never written: a reader treats it as corruption
#define SHMTRACE_KIND_ENUM(name, value, text, continued) name = value,
  SHMTRACE_RECORD_KINDS(SHMTRACE_KIND_ENUM)
#undef SHMTRACE_KIND_ENUM
};

inline constexpr const char* record_kind_name(RecordKind kind) noexcept {
  switch (kind) {
#define SHMTRACE_KIND_NAME(name, value, text, continued) \
  case RecordKind::name:                                 \
    return text;
    SHMTRACE_RECORD_KINDS(SHMTRACE_KIND_NAME)
#undef SHMTRACE_KIND_NAME
    case RecordKind::kEmpty:
      break;
  }
  return "unknown";
}

inline constexpr bool record_kind_known(std::uint8_t value) noexcept {
  switch (value) {
#define SHMTRACE_KIND_KNOWN(name, v, text, continued) case v:
    SHMTRACE_RECORD_KINDS(SHMTRACE_KIND_KNOWN)
#undef SHMTRACE_KIND_KNOWN
    return true;
    default:
      return false;
  }
}

inline constexpr bool record_kind_continued(RecordKind kind) noexcept {
  switch (kind) {
#define SHMTRACE_KIND_CONT(name, value, text, continued) \
  case RecordKind::name:                                 \
    return continued;
    SHMTRACE_RECORD_KINDS(SHMTRACE_KIND_CONT)
#undef SHMTRACE_KIND_CONT
    case RecordKind::kEmpty:
      break;
  }
  return false;
}

// Record.flags for span end and event records.
inline constexpr std::uint8_t kStatusErr = 0x01;       // span/event status ERR (else OK)
inline constexpr std::uint8_t kSpanRemoteParent = 0x02;  // parent came from TRACEPARENT
// SpanEnd of a frame closed without its own end (minor 1): a longjmp skipped
// its exit hook, or an end of an outer span closed it. Always with
// kStatusErr, so readers of minor 0 see an ERR span; the end time is when
// the runtime noticed, not when the frame was left.
inline constexpr std::uint8_t kSpanUnfinished = 0x04;

// Record.flags of Fork records (minor 2): how the child was started; 0: fork().
inline constexpr std::uint8_t kForkViaVfork = 0x10;  // vfork(): name_id = what the child exec'd, if it did
inline constexpr std::uint8_t kForkViaSpawn = 0x20;  // posix_spawn/posix_spawnp: name_id = the program
inline constexpr std::uint8_t kForkViaClone = 0x40;  // clone() without CLONE_THREAD

// Record.flags for Arg records: value type in the low nibble, then bits.
enum class ValueType : std::uint8_t {
  kInt = 1,     // int64 in aux
  kUint = 2,    // uint64 in aux
  kDouble = 3,  // IEEE double bits in aux
  kBool = 4,    // 0/1 in aux
  kString = 5,  // UTF-8 bytes: payload then continuations; aux = length
  kBytes = 6,   // raw bytes, same layout as kString
  kRepr = 7,    // textual summary of a non-scalar (type, size, first items)
};
inline constexpr std::uint8_t kValueTypeMask = 0x0f;
inline constexpr std::uint8_t kArgResult = 0x10;     // an output/result, not an input
inline constexpr std::uint8_t kArgMasked = 0x20;     // value replaced by "***"
inline constexpr std::uint8_t kArgTruncated = 0x40;  // value cut at max_repr

// Counter records: value type in flags (kInt or kDouble), bits in aux.

// DropMarker.aux causes, kept as separate counts in the payload.
// ---------------------------------------------------------------------------
// Record: the fixed 64-byte unit of every ring and overflow slot.
// ---------------------------------------------------------------------------
// Field use per kind (written by the producer, read by the consumer):
//   kind          name_id          timestamp   span_id      aux               payload
//   SpanBegin     span name        begin       span         parent span       SpanPayload
//   SpanEnd       span name        end         span         begin timestamp   SpanPayload
//   Event         event name       at          cur. span    message length    first bytes
//   Counter       counter name     at          cur. span    value bits        -
//   Arg           argument name    at          owner span   value or length   first bytes
//   DropMarker    0                next rec.   0            records dropped   DropPayload
//   ThreadStart   thread name id   at          0            tid               ThreadPayload
//   ThreadEnd     0                at          0            tid               ThreadPayload
//   ProcessStart  0                at          cur. span    ppid              -
//   Fork          target or 0      at          cur. span    child pid         -
//                 (flags: how the child was started, kForkVia* above; a
//                 spawn's or vfork child's program in name_id)
//   Exec          target           at          cur. span    pid that exec'd   -
//                 (a failed exec only, with kStatusErr, in the image that
//                 tried; or written by the parent for the exec of a vfork
//                 or posix_spawn child, kStatusErr if it failed. A
//                 successful exec of the image itself leaves no record: its
//                 header's state kExeced and exec_target_id say it)
//   Exit          0                at          cur. span    exit status       -
// Values longer than the payload continue in the next records of the same
// ring (or overflow group), each a ContinuationRecord carrying 56 bytes;
// `size` of the head record is the number of inline payload bytes used.
struct Record {
  std::uint8_t kind;    // RecordKind
  std::uint8_t flags;   // per kind, see above
  std::uint16_t size;   // inline payload bytes used (value kinds)
  std::uint32_t name_id;  // StringTable id, 0 = none
  std::uint64_t timestamp;
  std::uint64_t span_id;
  std::uint64_t aux;
  std::uint8_t payload[32];
};

inline constexpr std::uint32_t kInlinePayload = 32;
inline constexpr std::uint32_t kContinuationPayload = 56;

struct ContinuationRecord {
  std::uint8_t kind;    // kContinuation
  std::uint8_t flags;   // 0
  std::uint16_t size;   // bytes used in `bytes`
  std::uint32_t index;  // 1 for the first continuation of a value, then 2, ...
  std::uint8_t bytes[56];
};

// Payload of SpanBegin and SpanEnd: self-describing, so a span whose begin
// record was dropped is still complete from its end record alone.
struct SpanPayload {
  std::uint8_t trace_id[16];     // UUIDv7 layout, big-endian bytes
  std::uint64_t parent_span_id;  // SpanEnd: parent; SpanBegin: code address (0 for API spans)
  std::uint32_t group_id;        // process group, StringTable id
  std::uint32_t error_ref;       // SpanEnd: low 32 bits of the error sequence, 0 = none
};

struct DropPayload {
  std::uint64_t first_drop_timestamp;
  std::uint64_t last_drop_timestamp;
  std::uint64_t dropped_total;  // this producer's dropped counter after these drops
  std::uint64_t reserved;
};

struct ThreadPayload {
  char name[16];              // pthread name, NUL-padded
  std::uint32_t generation;   // RingControl.generation of this claim
  std::uint32_t ring_index;   // kNoRing for a thread without a ring
  std::uint64_t reserved;
};

inline constexpr std::uint32_t kNoRing = 0xffffffffu;

// ---------------------------------------------------------------------------
// SegmentHeader: page 0 of every segment.
// ---------------------------------------------------------------------------
// Written once by the creating process before `magic` is stored (release);
// a reader loads `magic` (acquire) first and treats anything else as not yet
// valid. Fields marked [live] change afterwards, with the access noted.
struct SegmentHeader {
  // -- identity and geometry (creator, once) --------------------------------
  std::uint64_t magic;         // kSegmentMagic, stored last (release)
  std::uint16_t abi_major;
  std::uint16_t abi_minor;
  std::uint32_t header_size;   // kHeaderSize
  std::uint64_t total_size;    // bytes of the whole segment object
  std::uint64_t nonce;         // the name's nonce
  std::uint32_t pid;
  std::uint32_t ppid;
  std::uint32_t uid;
  std::uint32_t reserved0;
  std::uint64_t process_start_ticks;  // /proc/self/stat field 22: tells pid reuse apart

  // -- clock (creator, once) -------------------------------------------------
  std::uint32_t clock_kind;          // ClockKind
  std::uint32_t reserved1;
  std::uint64_t clock_ref_ticks;     // tick counter at creation
  std::uint64_t clock_ref_mono_ns;   // CLOCK_MONOTONIC at the same instant
  std::uint64_t clock_ref_wall_ns;   // CLOCK_REALTIME at the same instant
  std::uint64_t ticks_per_second;    // 0: the reader calibrates (TSC is machine-wide)

  // -- configuration snapshot (creator, once) --------------------------------
  std::uint32_t ring_capacity;       // records per ring, power of two
  std::uint32_t max_rings;
  std::uint32_t overflow_capacity;   // overflow slots, power of two
  std::uint32_t error_chunk_bytes;   // size of each error chunk object
  std::uint32_t string_table_bytes;
  std::uint32_t max_repr;            // longest argument value, bytes
  std::uint32_t policy;              // FullPolicy
  std::uint32_t block_timeout_ms;
  std::uint32_t max_frames;          // stack frames per error entry
  std::uint32_t sample_rate_ppm;     // global sampling rate, parts per million

  // -- regions (creator, once); every offset is from the segment start -------
  std::uint64_t strings_offset;
  std::uint64_t strings_size;
  std::uint64_t modules_offset;
  std::uint64_t modules_size;
  std::uint64_t overflow_offset;
  std::uint64_t overflow_size;
  std::uint64_t rings_offset;
  std::uint64_t ring_stride;         // bytes per ring slot, multiple of kPageSize
  std::uint64_t ring_stats_bytes;    // per-ring call-site statistics (P13), 0 = none; else
                                     // n * sizeof(StatsSlot), n >= 2 (n-1 sites + "other")

  // -- trace context inherited at start (creator, once; P8) ------------------
  std::uint8_t trace_id[16];         // zero: none inherited
  std::uint64_t parent_span_id;
  std::uint32_t trace_flags;         // W3C flags (bit 0 sampled)
  std::uint32_t reserved2;

  // -- process fate [live] ---------------------------------------------------
  std::uint32_t state;               // ProcessState; runtime store (release), reader acquire
  std::int32_t exit_status;          // written before `state`
  std::uint64_t end_ticks;           // written before `state`
  std::uint32_t exec_target_id;      // StringTable id of the exec'd program
  std::uint32_t reserved3;

  // -- error area [live] -----------------------------------------------------
  std::uint32_t error_chunk_count;   // chunks created; runtime CAS-max (release)
  std::uint32_t reserved4;
  std::uint64_t errors_written;      // sequence source; fetch_add (relaxed)
  std::uint64_t errors_spilled;      // entries that went to the spill file
  std::uint64_t errors_lost;         // entries neither shm nor spill could hold

  // -- process-wide counters [live]; relaxed, readers tolerate staleness ------
  std::uint64_t no_ring_threads;     // threads that found no free ring
  std::uint64_t no_ring_overflowed;  // their records stored in the overflow area (fetch_add)
  std::uint64_t no_ring_dropped;     // their records lost (fetch_add)
  std::uint64_t strings_rejected;    // intern calls refused by a full table

  // -- drain side [live]; written by the consumer only -----------------------
  std::uint64_t drain_heartbeat_ns;  // CLOCK_MONOTONIC of the drain's last progress (release)
  std::uint32_t drain_pid;
  std::uint32_t reserved5;

  // -- text (creator, once) --------------------------------------------------
  char spill_dir[192];               // NUL-terminated
  char exe[256];                     // /proc/self/exe, NUL-terminated, truncated
  std::uint32_t cmdline_size;        // bytes used in cmdline
  char cmdline[1020];                // argv joined by NUL bytes, truncated
  char session[40];                  // session id, NUL-padded; "" = none (minor 2; the
                                     // segment's name carries it too)

  std::uint8_t reserved_tail[2240];  // room for future minors, zero
};

// ---------------------------------------------------------------------------
// String table: interned names. Append-only, many producers.
// ---------------------------------------------------------------------------
// An id is the byte offset of a StringEntry from the table start; ids are
// 4-aligned and >= sizeof(StringTableHeader), so 0 means "no name".
// producer: off = fetch_add(used, entry_bytes) (relaxed); write length, flags
//           and bytes; store ready = 1 (release). A record carrying the id is
//           published after that on the same thread, or after an acquire load
//           of a call-site cache that another thread filled after interning.
// consumer: checks id < used, the entry fits, ready == 1 (acquire).
struct StringTableHeader {
  std::uint32_t used;       // bytes allocated, from the table start [live]
  std::uint32_t capacity;   // == SegmentHeader.strings_size
  std::uint32_t count;      // entries interned [live, relaxed]
  std::uint32_t reserved[13];
};

struct StringEntry {
  std::uint16_t length;  // bytes of text that follow (no NUL)
  std::uint8_t flags;    // kStringSensitive, ...
  std::uint8_t ready;    // 0 while written, 1 once complete (release)
  // char text[length], then padding to 4 bytes
};
inline constexpr std::uint8_t kStringSensitive = 0x01;  // values under this name are masked
inline constexpr std::uint32_t kMaxStringLength = 4096;

// ---------------------------------------------------------------------------
// Module map (P9): loaded objects, so code addresses can be symbolized after
// the process is gone. Filled by the preload (issue 3); append-only.
// ---------------------------------------------------------------------------
struct ModuleMapHeader {
  std::uint32_t count;       // entries published [live]; store (release) after the entry
  std::uint32_t capacity;
  std::uint64_t generation;  // bumped on dlopen/dlclose [live]
  std::uint64_t reserved[6];
};

struct ModuleEntry {
  std::uint64_t base;       // load address
  std::uint64_t size;       // bytes mapped
  std::uint32_t path_id;    // StringTable id of the object's path
  std::uint32_t build_id_size;
  std::uint8_t build_id[20];
  std::uint32_t reserved;
  std::uint64_t reserved2[2];
};

// ---------------------------------------------------------------------------
// Overflow area: shared by all producer threads (MPSC, see protocol above).
// ---------------------------------------------------------------------------
struct OverflowControl {
  std::uint64_t enqueue_pos;   // producers: CAS (acq_rel)
  std::uint64_t reserved0[7];
  std::uint64_t dequeue_pos;   // consumer: store (release) after commit
  std::uint64_t reserved1[7];
  std::uint32_t capacity;      // slots, power of two (creator, once)
  std::uint32_t reserved2[15];
};

struct OverflowSlot {
  std::uint64_t sequence;      // see protocol; producer store (release) / consumer store (release)
  std::uint32_t ring_index;    // producing thread's ring, or kNoRing
  std::uint32_t generation;    // that ring's generation at write time
  std::uint32_t tid;           // producing thread id
  std::uint16_t group_count;   // records in this group (first slot), else 0
  std::uint16_t group_index;   // 0 for the first slot of a group, then 1, ...
  std::uint8_t reserved[40];
  Record record;
};

// ---------------------------------------------------------------------------
// Ring slot: RingControl, then Record[capacity], then stats bytes (P13).
// ---------------------------------------------------------------------------
enum class RingState : std::uint32_t {
  kFree = 0,      // never claimed (zero memory)
  kClaimed = 1,   // a live thread writes it
  kReleased = 2,  // its thread exited; may hold undrained records
};

struct RingControl {
  // Cache line 0: producer-owned. Counters: single writer, relaxed.
  std::uint64_t head;        // next position to write; store (release) publishes records.
                             // It is also the count of records ever stored in this ring.
  std::uint64_t reserved_w;  // zero
  std::uint64_t overflowed;  // records this ring's producers stored in the overflow area
  std::uint64_t dropped;     // records lost
  std::uint64_t blocked_ns;  // time spent waiting under the block policy
  std::uint64_t reserved0[3];
  // Cache line 1: consumer-owned.
  std::uint64_t tail;        // first position not yet consumed; store (release) after commit
  std::uint64_t reserved1[7];
  // Cache line 2: ownership; producer writes, consumer reads.
  std::uint32_t state;       // RingState; claim by CAS (acquire), release by store (release)
  std::uint32_t generation;  // +1 per claim; generation, tid and thread_name are written after
                             // the claim CAS and published by the release store of claimed_ticks
  std::uint32_t tid;         // owner's kernel thread id
  std::uint32_t reserved2;
  char thread_name[16];
  std::uint64_t claimed_ticks;  // store (release) last of a claim; the reader acquires it first
  std::uint64_t reserved3[3];
  // Cache line 3: call-site statistics (P13); producer writes, consumer reads.
  std::uint32_t stats_used;  // call-site slots assigned (the "other" slot excluded);
                             // store (release) after the slot's kind
  std::uint32_t reserved4;
  std::uint64_t reserved5[7];
};

// ---------------------------------------------------------------------------
// Call-site statistics (P13): one StatsSlot per call site, see the protocol
// at the top. Single writer (the ring's owner), relaxed 64-bit stores.
// ---------------------------------------------------------------------------
enum class CallSiteKind : std::uint32_t {
  kUnused = 0,  // zero memory: not assigned yet
  kName = 1,    // API span: key = StringTable id of its name
  kCode = 2,    // instrumented function: key = its address
  kOther = 3,   // the last slot: every call site that found the table full
};

// Histogram: log-linear over durations in ticks. Values 0 .. 63 have a bucket
// each; above, every power of two [2^e, 2^(e+1)) is split into 32 equal
// buckets, so a bucket is at most 1/32 of its lower bound wide and its
// midpoint is within 1.6 % of any value in it (the 3 % of P13 with room for
// the clock conversion). The last bucket, [63 * 2^36, inf), starts at
// 4.3e12 ticks: over 20 minutes at 3.5 GHz, 72 minutes in nanoseconds.
inline constexpr std::uint32_t kStatsSubBucketBits = 5;
inline constexpr std::uint32_t kStatsSubBuckets = 1u << kStatsSubBucketBits;  // 32
inline constexpr std::uint32_t kStatsMaxExponent = 41;  // the last exact octave: [2^41, 2^42)
inline constexpr std::uint32_t kStatsBuckets =
    (kStatsMaxExponent - kStatsSubBucketBits + 1) * kStatsSubBuckets + kStatsSubBuckets;  // 1216

// Bucket of a duration: shift = max(0, floor(log2 v) - 5), bucket =
// shift * 32 + (v >> shift); the top 6 bits of v pick it.
inline constexpr std::uint32_t stats_bucket_of(std::uint64_t ticks) noexcept {
  if (ticks < 2 * kStatsSubBuckets) return static_cast<std::uint32_t>(ticks);
  const std::uint32_t exponent = 63u - static_cast<std::uint32_t>(__builtin_clzll(ticks));
  if (exponent > kStatsMaxExponent) return kStatsBuckets - 1;
  const std::uint32_t shift = exponent - kStatsSubBucketBits;
  return shift * kStatsSubBuckets + static_cast<std::uint32_t>(ticks >> shift);
}
// Smallest duration in a bucket (bucket < kStatsBuckets).
inline constexpr std::uint64_t stats_bucket_lower(std::uint32_t bucket) noexcept {
  if (bucket < 2 * kStatsSubBuckets) return bucket;
  const std::uint32_t shift = bucket / kStatsSubBuckets - 1;
  return static_cast<std::uint64_t>(bucket - shift * kStatsSubBuckets) << shift;
}
// Largest duration in a bucket, inclusive (the last bucket is open-ended).
inline constexpr std::uint64_t stats_bucket_upper(std::uint32_t bucket) noexcept {
  if (bucket >= kStatsBuckets - 1) return ~0ull;
  if (bucket < 2 * kStatsSubBuckets) return bucket;
  const std::uint32_t shift = bucket / kStatsSubBuckets - 1;
  return stats_bucket_lower(bucket) + (std::uint64_t{1} << shift) - 1;
}

// Major 2 added self_ticks. Every field a call's end writes (errors,
// self_ticks, total_ticks, min_ticks, max_ticks) shares the first cache line
// with calls (written at entry), so an end still touches one line of the
// slot besides its histogram bucket; unfinished, written only when a longjmp
// or a missing end closes a frame, moved to the second line to make room.
// The second line's rest is reserved (zero) for future minors, and keeps the
// slot a whole number of cache lines, so every slot's first line is one line.
struct StatsSlot {
  std::uint32_t kind;          // CallSiteKind; store (release) after key (assignment)
  std::uint32_t last_tid;      // kernel tid of the last thread that used the slot
  std::uint64_t key;           // name id (kName) or code address (kCode); 0 for kOther
  std::uint64_t calls;         // entries, counted at entry (sampled out and dropped included)
  std::uint64_t errors;        // ends with status ERR (an exception, an explicit ERR)
  std::uint64_t self_ticks;    // sum over ended calls of duration minus their children's durations
  std::uint64_t total_ticks;   // sum of the durations of ended calls
  std::uint64_t min_ticks;     // ~0 until the first end
  std::uint64_t max_ticks;
  std::uint64_t unfinished;    // frames closed without their end; store (release)
  std::uint64_t reserved[7];   // zero
  std::uint64_t buckets[kStatsBuckets];  // ended calls per duration bucket; store (release)
};
inline constexpr std::uint64_t kStatsSlotBytes = 128 + 8ull * kStatsBuckets;  // 9856

// ---------------------------------------------------------------------------
// Error area: chunk objects and entries (see protocol above).
// ---------------------------------------------------------------------------
struct ErrorChunkHeader {
  std::uint64_t magic;         // kErrorChunkMagic
  std::uint64_t segment_nonce; // SegmentHeader.nonce of the owner
  std::uint32_t index;         // position in the chain
  std::uint32_t capacity;      // bytes of the chunk object, header included
  std::uint32_t used;          // bump offset from the chunk start [live]; fetch_add (relaxed)
  std::uint32_t reserved0;
  std::uint64_t reserved[4];
};
inline constexpr std::uint32_t kErrorChunkHeaderSize = 64;

enum class ErrorState : std::uint32_t {
  kUnwritten = 0,
  kCommitted = 0x45525231,  // "1RRE": entry complete (release)
  kPadding = 0x44415031,    // "1PAD": rest of the chunk is unused
};

enum class ErrorKind : std::uint32_t {
  kExplicit = 1,   // shmtrace_error()
  kException = 2,  // C++ exception left a span (P7)
  kCrash = 3,      // fatal signal (P6)
  kSpanError = 4,  // span ended with status ERR without other detail
};

// Entry: header, then u64 frames[frame_count], then type, message and preview
// bytes (no NULs), padded so `size` is a multiple of 8.
struct ErrorEntry {
  std::uint32_t state;         // ErrorState; stored last (release)
  std::uint32_t size;          // bytes of the whole entry
  std::uint64_t sequence;      // 1-based, from SegmentHeader.errors_written
  std::uint64_t timestamp;
  std::uint64_t span_id;       // 0: outside any span
  std::uint8_t trace_id[16];
  std::uint32_t kind;          // ErrorKind
  std::uint32_t tid;
  std::uint32_t group_id;      // StringTable ids
  std::uint32_t span_name_id;
  std::uint32_t signal;        // kCrash
  std::uint32_t reserved0;
  std::uint64_t fault_address; // kCrash
  std::uint16_t frame_count;
  std::uint16_t type_length;
  std::uint16_t message_length;
  std::uint16_t preview_length;
  std::uint64_t reserved1;
};
inline constexpr std::uint32_t kMaxErrorMessage = 500;
inline constexpr std::uint32_t kMaxErrorType = 256;
inline constexpr std::uint32_t kMaxErrorPreview = 1024;
inline constexpr std::uint32_t kMaxErrorFrames = 64;

// ---------------------------------------------------------------------------
// Layout facts. A change here is an ABI change: bump kAbiMajor (fields added
// in reserved space, new flags and new tables are a new minor).
// ---------------------------------------------------------------------------
template <class T>
inline constexpr bool kSharedType =
    std::is_standard_layout_v<T> && std::is_trivially_copyable_v<T>;

static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic_ref<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic_ref<std::uint8_t>::is_always_lock_free);

static_assert(kSharedType<Record> && sizeof(Record) == 64 && alignof(Record) == 8);
static_assert(offsetof(Record, kind) == 0 && offsetof(Record, name_id) == 4);
static_assert(offsetof(Record, timestamp) == 8 && offsetof(Record, span_id) == 16);
static_assert(offsetof(Record, aux) == 24 && offsetof(Record, payload) == 32);
static_assert(kSharedType<ContinuationRecord> && sizeof(ContinuationRecord) == 64);
static_assert(offsetof(ContinuationRecord, kind) == 0 && offsetof(ContinuationRecord, bytes) == 8);
static_assert(sizeof(ContinuationRecord::bytes) == kContinuationPayload);
static_assert(sizeof(Record::payload) == kInlinePayload);
static_assert(kSharedType<SpanPayload> && sizeof(SpanPayload) == kInlinePayload);
static_assert(kSharedType<DropPayload> && sizeof(DropPayload) == kInlinePayload);
static_assert(kSharedType<ThreadPayload> && sizeof(ThreadPayload) == kInlinePayload);

static_assert(kSharedType<SegmentHeader> && sizeof(SegmentHeader) == kHeaderSize);
static_assert(offsetof(SegmentHeader, magic) == 0 && offsetof(SegmentHeader, abi_major) == 8);
static_assert(offsetof(SegmentHeader, header_size) == 12 && offsetof(SegmentHeader, total_size) == 16);
static_assert(offsetof(SegmentHeader, errors_written) % 8 == 0);
static_assert(offsetof(SegmentHeader, drain_heartbeat_ns) % 8 == 0);
static_assert(offsetof(SegmentHeader, state) % 4 == 0);
static_assert(sizeof(SegmentHeader::session) > kMaxSessionLength);
static_assert(session_id_valid("run-1", 5) && !session_id_valid("123", 3) && !session_id_valid("a.b", 3));

static_assert(kSharedType<StringTableHeader> && sizeof(StringTableHeader) == 64);
static_assert(kSharedType<StringEntry> && sizeof(StringEntry) == 4);
static_assert(kSharedType<ModuleMapHeader> && sizeof(ModuleMapHeader) == 64);
static_assert(kSharedType<ModuleEntry> && sizeof(ModuleEntry) == 64);

static_assert(kSharedType<OverflowControl> && sizeof(OverflowControl) == 3 * kCacheLine);
static_assert(offsetof(OverflowControl, dequeue_pos) == kCacheLine);
static_assert(kSharedType<OverflowSlot> && sizeof(OverflowSlot) == 2 * kCacheLine);
static_assert(offsetof(OverflowSlot, record) == kCacheLine);

static_assert(kSharedType<RingControl> && sizeof(RingControl) == 4 * kCacheLine);
static_assert(offsetof(RingControl, head) == 0);
static_assert(offsetof(RingControl, tail) == kCacheLine);  // indices never share a line
static_assert(offsetof(RingControl, state) == 2 * kCacheLine);
static_assert(offsetof(RingControl, stats_used) == 3 * kCacheLine);

static_assert(kSharedType<StatsSlot> && sizeof(StatsSlot) == kStatsSlotBytes && alignof(StatsSlot) == 8);
static_assert(offsetof(StatsSlot, calls) == 16 && offsetof(StatsSlot, self_ticks) == 32);
static_assert(offsetof(StatsSlot, max_ticks) == 56 && offsetof(StatsSlot, unfinished) == kCacheLine);
static_assert(offsetof(StatsSlot, buckets) == 2 * kCacheLine && kStatsSlotBytes % kCacheLine == 0);
static_assert(kStatsBuckets == 1216);
static_assert(stats_bucket_of(63) == 63 && stats_bucket_of(64) == 64 && stats_bucket_lower(64) == 64);
static_assert(stats_bucket_of(~0ull) == kStatsBuckets - 1);
static_assert(stats_bucket_lower(kStatsBuckets - 1) == 63ull << 36);
static_assert(stats_bucket_upper(kStatsBuckets - 2) + 1 == stats_bucket_lower(kStatsBuckets - 1));

static_assert(kSharedType<ErrorChunkHeader> && sizeof(ErrorChunkHeader) == kErrorChunkHeaderSize);
static_assert(kSharedType<ErrorEntry> && sizeof(ErrorEntry) == 96 && alignof(ErrorEntry) == 8);
static_assert(offsetof(ErrorEntry, state) == 0 && offsetof(ErrorEntry, size) == 4);

// Where ring slot i starts, for a header already validated by its reader.
inline constexpr std::uint64_t ring_offset(const SegmentHeader& h, std::uint32_t i) noexcept {
  return h.rings_offset + static_cast<std::uint64_t>(i) * h.ring_stride;
}
inline constexpr std::uint64_t ring_records_offset() noexcept { return sizeof(RingControl); }
// Where a ring slot's statistics table starts, from the ring slot's start.
inline constexpr std::uint64_t ring_stats_offset(const SegmentHeader& h) noexcept {
  return sizeof(RingControl) + static_cast<std::uint64_t>(h.ring_capacity) * sizeof(Record);
}
// StatsSlots per ring, the "other" slot included; 0 = statistics off.
inline constexpr std::uint64_t stats_slot_count(const SegmentHeader& h) noexcept {
  return h.ring_stats_bytes / sizeof(StatsSlot);
}

}  // namespace shmtrace::abi

#endif  // SHMTRACE_ABI_HPP
