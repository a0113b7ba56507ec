// Span begin and end on the calling thread's stack: the hot path shared by
// the C API (code == 0) and the -finstrument-functions hooks (code = the
// function's address).
#ifndef SHMTRACE_RUNTIME_SPANS_HPP
#define SHMTRACE_RUNTIME_SPANS_HPP

#include <cstddef>
#include <cstring>

#include "clock.hpp"
#include "shmtrace/shmtrace.h"
#include "thread_state.hpp"

namespace shmtrace::runtime {

// Stores a span record as eight 8-byte words (no byte-sized stores, no copy
// through the stack): kind/flags/size/name, timestamp, span id, aux, the
// trace id, then the payload's last two words.
inline void store_span_record(abi::Record& r, abi::RecordKind kind, std::uint8_t flags, std::uint32_t name,
                              std::uint64_t timestamp, std::uint64_t span_id, std::uint64_t aux,
                              const TraceId& trace, std::uint64_t word6, std::uint32_t group,
                              std::uint32_t error_ref) noexcept {
  static_assert(offsetof(abi::SpanPayload, parent_span_id) == 16 && offsetof(abi::SpanPayload, group_id) == 24 &&
                offsetof(abi::SpanPayload, error_ref) == 28);
  const std::uint64_t head = static_cast<std::uint64_t>(kind) | static_cast<std::uint64_t>(flags) << 8 |
                             static_cast<std::uint64_t>(name) << 32;  // size (bits 16..31) is 0
  const std::uint64_t last = static_cast<std::uint64_t>(group) | static_cast<std::uint64_t>(error_ref) << 32;
  auto* out = reinterpret_cast<std::byte*>(&r);
  std::memcpy(out, &head, 8);
  std::memcpy(out + 8, &timestamp, 8);
  std::memcpy(out + 16, &span_id, 8);
  std::memcpy(out + 24, &aux, 8);
  std::memcpy(out + 32, trace.bytes, 16);
  std::memcpy(out + 48, &word6, 8);
  std::memcpy(out + 56, &last, 8);
}

// The frame of an API span: above every real one, so the hooks' "frame
// below ours is gone" test never picks it (instrument_hooks.cpp).
inline constexpr std::uint64_t kNoFrame = ~std::uint64_t{0};

// Opens a span; returns its id, 0 when it is not recorded (sampled out, or a
// thread that cannot record). `group` 0: the parent's group, or the
// executable's for a root. `code`, `frame`, `call_site`: an instrumented
// function's address, frame and call site (instrument_hooks.cpp); 0,
// kNoFrame, 0 for API spans.
//
// With statistics on (t.stats_cache set once the thread is ready) every call
// is counted here, before sampling, and a span of a sampled-out trace is
// pushed too (span_id 0, no record) so that its end can time it.
inline std::uint64_t begin_span(ThreadState& t, Runtime& rt, std::uint32_t group, std::uint32_t name,
                                std::uint64_t code, std::uint64_t frame = kNoFrame,
                                std::uint64_t call_site = 0) noexcept {
  if (shmtrace_unsampled_depth_ != 0 && t.stats_cache == nullptr) {
    ++shmtrace_unsampled_depth_;  // inside a sampled-out trace: only keep count
    return 0;
  }
  if (__builtin_expect(t.status != ThreadStatus::kReady, 0) && !ensure_thread(t, rt)) return 0;
  abi::StatsSlot* stats = nullptr;
  if (t.stats_cache != nullptr) {
    stats = stats_slot(t, code != 0 ? code : name_key(name));
    abi::counter_add(stats->calls, 1);  // at entry: a frame a longjmp skips still counts
  }
  std::uint64_t ticks = 0;
  if (__builtin_expect(shmtrace_unsampled_depth_ != 0, 0) ||
      (t.depth == 0 && !start_root(t, rt, group == 0 ? rt.default_group : group, ticks))) {
    // A sampled-out trace; statistics on (else we returned above, or this
    // is its root): keep the frame for its duration, write nothing.
    ++shmtrace_unsampled_depth_;
    if (stats == nullptr) return 0;
    if (__builtin_expect(t.depth == t.stack_capacity, 0) && !grow_stack(t)) return 0;
    t.stack[t.depth] = StackEntry{0, 0, now_ticks(), code, name, 0, 0, 0, stats, frame, call_site, 0};
    ++t.depth;
    return 0;
  }
  if (t.depth == 0) {
    if (group == 0) group = rt.default_group;
  } else {
    if (group == 0) group = t.stack[t.depth - 1].group_id;
    if (__builtin_expect(t.depth == t.stack_capacity, 0) && !grow_stack(t)) return 0;
    ticks = now_ticks();
  }
  std::uint64_t id = t.next_span_id++;
  if (__builtin_expect(id == 0, 0)) id = t.next_span_id++;
  const std::uint64_t parent = t.depth > 0 ? t.stack[t.depth - 1].span_id : t.root_parent;
  const std::uint8_t flags = (t.depth == 0 && t.root_remote) ? abi::kSpanRemoteParent : 0;
  t.stack[t.depth] = StackEntry{id, parent, ticks, code, name, group, 0, 0, stats, frame, call_site, 0};
  ++t.depth;
  emit_filled(t, rt, [&](abi::Record& r) {
    // SpanBegin: aux = parent, payload word 6 = the code address (abi.hpp).
    store_span_record(r, abi::RecordKind::kSpanBegin, flags, name, ticks, id, parent, t.trace, code, group, 0);
  });
  return id;
}

// Pops the top of the stack (the caller checked there is one) and writes its
// end: status OK or ERR, or with `unfinished` a frame closed without its
// own end (ERR + kSpanUnfinished, no duration in the statistics, nothing
// added to its parent's children's time). A frame of
// a sampled-out trace (span_id 0) only updates the statistics.
inline void pop_span(ThreadState& t, Runtime& rt, int status, bool unfinished) noexcept {
  const StackEntry top = t.stack[t.depth - 1];
  const std::uint64_t ticks = now_ticks();
  --t.depth;
  if (top.stats != nullptr) {
    if (__builtin_expect(unfinished, 0)) {
      stats_unfinished(*top.stats);
    } else {
      // Self time: the duration less the ended children's, which came from
      // the same clock reads, so it only goes negative on a clock that ran
      // backwards (then 0). The duration goes to the parent's children.
      // The parent's sum is found before the slot's stores, which the
      // compiler must assume may alias the thread state (no reload after);
      // a root adds to a sink instead, so that the common nested end takes
      // no branch here.
      std::uint64_t* parent_children =
          __builtin_expect(t.depth > 0, 1) ? &t.stack[t.depth - 1].child_ticks : &t.root_children;
      const std::uint64_t duration = __builtin_expect(ticks > top.begin_ticks, 1) ? ticks - top.begin_ticks : 0;
      const std::uint64_t self = duration > top.child_ticks ? duration - top.child_ticks : 0;
      *parent_children += duration;
      stats_end(*top.stats, duration, self, status != SHMTRACE_OK, t.stats_pending);
    }
  }
  if (__builtin_expect(top.span_id == 0, 0)) {
    --shmtrace_unsampled_depth_;
    return;
  }
  const std::uint8_t flags = unfinished ? abi::kStatusErr | abi::kSpanUnfinished
                             : status == SHMTRACE_OK ? 0
                                                     : abi::kStatusErr;
  emit_filled(t, rt, [&](abi::Record& r) {
    // SpanEnd: aux = begin time, payload word 6 = the parent.
    store_span_record(r, abi::RecordKind::kSpanEnd, flags, top.name_id, ticks, top.span_id, top.begin_ticks,
                      t.trace, top.parent_id, top.group_id, top.error_ref);
  });
}

// Ends the span on top of the stack (the caller checked there is one).
inline void end_top_span(ThreadState& t, Runtime& rt, int status) noexcept { pop_span(t, rt, status, false); }

// Closes, as unfinished, every span above stack position `keep` (they were
// left without an end: an early return past their end, a longjmp).
__attribute__((noinline)) inline void close_spans_above(ThreadState& t, Runtime& rt, std::uint32_t keep) noexcept {
  while (t.depth > keep) pop_span(t, rt, SHMTRACE_ERR, true);
}

// The end of a span inside a sampled-out trace. With statistics on, its
// frame is on top of the stack; otherwise only the depth counts it.
inline void end_unsampled_span(ThreadState& t, Runtime& rt, int status) noexcept {
  if (t.depth > 0 && t.stack[t.depth - 1].span_id == 0) {
    end_top_span(t, rt, status);
  } else {
    --shmtrace_unsampled_depth_;
  }
}

}  // namespace shmtrace::runtime

#endif
