// Per-thread producer state and the hot path.
//
// Each thread keeps its ring cursor, span stack and sampling state in one
// initial-exec TLS block (no __tls_get_addr call, no allocation). The hot
// path of a record is: compose 64 bytes in registers, one bounds check
// against a cached limit, one store into the ring, one release store of head.
// Anything unusual (first record of the thread, ring full, pending drop
// marker, block policy) takes the out-of-line slow path.
#ifndef SHMTRACE_RUNTIME_THREAD_STATE_HPP
#define SHMTRACE_RUNTIME_THREAD_STATE_HPP

#include <cstdint>
#include <cstring>

#include "call_stats.hpp"
#include "clock.hpp"
#include "runtime.hpp"
#include "shmtrace/shmtrace.h"
#include "shmtrace/abi.hpp"
#include "trace_context.hpp"

namespace shmtrace::runtime {

struct StackEntry {
  std::uint64_t span_id;
  std::uint64_t parent_id;
  std::uint64_t begin_ticks;
  std::uint64_t code;       // function address of an instrumented span, 0 for API spans
  std::uint32_t name_id;
  std::uint32_t group_id;
  std::uint32_t error_ref;  // last error recorded in this span
  std::uint32_t uncaught;   // instrumented spans: std::uncaught_exceptions() at entry
  abi::StatsSlot* stats;    // the call site's statistics slot, null when statistics are off
  // Instrumented spans: the hooks' frame address (the instrumented
  // function's stack pointer at its hook calls) and the hooks' call_site
  // argument (its return address); see instrument_hooks.cpp.
  std::uint64_t frame;
  std::uint64_t call_site;
  // With statistics on: the summed durations of this frame's ended children
  // (the frames pushed directly above it), for its self time at its end.
  std::uint64_t child_ticks;
};

enum class ThreadStatus : std::uint8_t { kNew = 0, kReady = 1, kExited = 2 };

struct ThreadState {
  // Ring cursor. `limit` is the first position we may not write without
  // reloading the consumer's tail; it is 0 while a drop marker is pending or
  // when the thread has no ring, which sends every write to the slow path.
  abi::Record* slots = nullptr;
  abi::RingControl* control = nullptr;
  std::uint64_t mask = 0;
  std::uint64_t head = 0;
  std::uint64_t limit = 0;

  // Call-site statistics (P13): the private slot cache (null: statistics
  // off), the ring's table (null: no ring; then a private dummy slot).
  StatsCacheEntry* stats_cache = nullptr;
  abi::StatsSlot* stats_table = nullptr;
  abi::StatsSlot* stats_dummy = nullptr;
  std::uint32_t stats_sites = 0;
  std::uint64_t* stats_pending = nullptr;  // histogram bucket of the last end, not yet bumped
  std::uint64_t root_children = 0;  // where a root's end adds its duration (no parent; never read)

  // Span stack; grows (mmap) without bound. With statistics on it also holds
  // the frames of a sampled-out trace (span_id 0, no records), to time them.
  StackEntry* stack = nullptr;
  std::uint32_t depth = 0;
  std::uint32_t stack_capacity = 0;
  ThreadStatus status = ThreadStatus::kNew;
  bool root_remote = false;  // the current root's parent came from another process

  std::uint64_t next_span_id = 0;
  std::uint64_t rng = 0;
  TraceId trace;             // trace of the spans on the stack
  std::uint64_t root_parent = 0;

  // Drops not yet reported by a marker.
  std::uint64_t pending_drops = 0;
  std::uint64_t first_drop_ticks = 0;
  std::uint64_t last_drop_ticks = 0;

  bool has_explicit = false;  // shmtrace_set_traceparent on this thread
  TraceParent explicit_parent;

  std::uint32_t ring_index = abi::kNoRing;
  std::uint32_t generation = 0;
  std::uint32_t tid = 0;
  std::uint64_t ms_cache_ticks = 0;  // UUIDv7 milliseconds, refreshed every ~1e6 ticks
  std::uint64_t ms_cache_value = 0;
  bool block_gave_up = false;             // stop waiting until the heartbeat moves
  std::uint64_t block_gave_up_heartbeat = 0;
  abi::Record* scratch = nullptr;    // room for one argument value's records
  // This thread's count of exceptions in flight, inside the C++ runtime's
  // per-thread globals (Itanium C++ ABI: __cxa_eh_globals { caught; unsigned
  // uncaught; }): std::uncaught_exceptions() without a call.
  const unsigned* uncaught_exceptions = nullptr;
};

// constinit: no TLS init-function check on the hot path.
extern constinit thread_local ThreadState tls_state __attribute__((tls_model("initial-exec")));

// Slow paths (thread_state.cpp).
bool ensure_thread(ThreadState& t, Runtime& rt) noexcept;
void emit_slow(ThreadState& t, Runtime& rt, const abi::Record* records, std::uint32_t count) noexcept;
// Decides sampling for a new root span and sets the trace; when kept, reads
// the tick counter once into `ticks` for the begin record too.
bool start_root(ThreadState& t, Runtime& rt, std::uint32_t group_id, std::uint64_t& ticks) noexcept;
bool grow_stack(ThreadState& t) noexcept;
// Statistics (call_stats.cpp): the private cache, set up by ensure_thread;
// the ring's table, attached when the thread claims a ring; the slow path
// of a slot lookup; the forgetting of slot pointers when a thread ends.
bool prepare_thread_stats(ThreadState& t, Runtime& rt) noexcept;
void attach_ring_stats(ThreadState& t, Runtime& rt, std::uint32_t ring) noexcept;
abi::StatsSlot* stats_slot_slow(ThreadState& t, std::uint64_t key) noexcept;
void detach_thread_stats(ThreadState& t) noexcept;

// The statistics slot of a call site (the caller checked stats_cache).
inline abi::StatsSlot* stats_slot(ThreadState& t, std::uint64_t key) noexcept {
  const StatsCacheEntry& e = t.stats_cache[stats_cache_index(key)];
  if (__builtin_expect(e.key == key, 1)) return e.slot;
  return stats_slot_slow(t, key);
}
void end_thread(ThreadState& t, Runtime& rt) noexcept;
// Forgets the ring of a thread inherited through fork(); keeps its trace.
void reset_thread_after_fork(ThreadState& t) noexcept;

// Writes `count` records (a head and its continuations) as one unit.
inline void emit(ThreadState& t, Runtime& rt, const abi::Record* records, std::uint32_t count) noexcept {
  if (__builtin_expect(t.head + count <= t.limit, 1)) {
    for (std::uint32_t i = 0; i < count; ++i) t.slots[(t.head + i) & t.mask] = records[i];
    t.head += count;
    // Publishes the records; pairs with the consumer's acquire load of head.
    abi::atomic_store(t.control->head, t.head, std::memory_order_release);
    return;
  }
  emit_slow(t, rt, records, count);
}

inline void emit_one(ThreadState& t, Runtime& rt, const abi::Record& record) noexcept {
  if (__builtin_expect(t.head < t.limit, 1)) {
    t.slots[t.head & t.mask] = record;
    ++t.head;
    // Publishes the record; pairs with the consumer's acquire load of head.
    abi::atomic_store(t.control->head, t.head, std::memory_order_release);
    return;
  }
  emit_slow(t, rt, &record, 1);
}

// Writes one record that `fill` composes, straight into the ring slot when
// there is room (no copy through the stack), else through the slow path.
// `fill` must set all 64 bytes: the slot holds an older record.
template <class Fill>
inline void emit_filled(ThreadState& t, Runtime& rt, Fill&& fill) noexcept {
  if (__builtin_expect(t.head < t.limit, 1)) {
    fill(t.slots[t.head & t.mask]);
    ++t.head;
    // Publishes the record; pairs with the consumer's acquire load of head.
    abi::atomic_store(t.control->head, t.head, std::memory_order_release);
    return;
  }
  abi::Record r;
  fill(r);
  emit_slow(t, rt, &r, 1);
}

// The recorded span an error belongs to: the top of the stack, or null
// outside any span or inside a sampled-out trace.
inline StackEntry* recorded_top(ThreadState& t) noexcept {
  return (t.depth > 0 && shmtrace_unsampled_depth_ == 0) ? &t.stack[t.depth - 1] : nullptr;
}

// Fills where an error happened: kind, time, thread, and the recorded span
// (with its trace, group and name) if there is one, else the default group.
// Async-signal-safe.
inline void describe_error(ErrorDraft& d, abi::ErrorKind kind, ThreadState& t, const Runtime& rt) noexcept {
  d.kind = kind;
  d.timestamp = now_ticks();
  d.tid = t.tid;
  d.group_id = rt.default_group;
  if (const StackEntry* top = recorded_top(t)) {
    d.span_id = top->span_id;
    std::memcpy(d.trace_id, t.trace.bytes, sizeof d.trace_id);
    d.group_id = top->group_id;
    d.span_name_id = top->name_id;
  }
}

inline std::uint64_t current_span(const ThreadState& t) noexcept {
  return t.depth > 0 ? t.stack[t.depth - 1].span_id : 0;
}

}  // namespace shmtrace::runtime

#endif
