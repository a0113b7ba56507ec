// Span begin and end on the calling thread's stack: the hot path shared by
// the C API (code == 0) and the -finstrument-functions hooks (code = the
// function's address).
#ifndef SHMTRACE_RUNTIME_SPANS_HPP
#define SHMTRACE_RUNTIME_SPANS_HPP

#include <cstring>

#include "clock.hpp"
#include "shmtrace/shmtrace.h"
#include "thread_state.hpp"

namespace shmtrace::runtime {

// Opens a span; returns its id, 0 when it is not recorded (sampled out, or a
// thread that cannot record). `group` 0: the parent's group, or the
// executable's for a root.
inline std::uint64_t begin_span(ThreadState& t, Runtime& rt, std::uint32_t group, std::uint32_t name,
                                std::uint64_t code) noexcept {
  if (shmtrace_unsampled_depth_ != 0) {
    ++shmtrace_unsampled_depth_;  // inside a sampled-out trace: only keep count
    return 0;
  }
  if (__builtin_expect(t.status != ThreadStatus::kReady, 0) && !ensure_thread(t, rt)) return 0;
  std::uint64_t ticks;
  if (t.depth == 0) {
    if (group == 0) group = rt.default_group;
    if (!start_root(t, rt, group, ticks)) {
      shmtrace_unsampled_depth_ = 1;
      return 0;
    }
  } else {
    if (group == 0) group = t.stack[t.depth - 1].group_id;
    if (__builtin_expect(t.depth == t.stack_capacity, 0) && !grow_stack(t)) return 0;
    ticks = now_ticks();
  }
  std::uint64_t id = t.next_span_id++;
  if (__builtin_expect(id == 0, 0)) id = t.next_span_id++;
  const std::uint64_t parent = t.depth > 0 ? t.stack[t.depth - 1].span_id : t.root_parent;
  const std::uint8_t flags = (t.depth == 0 && t.root_remote) ? abi::kSpanRemoteParent : 0;
  t.stack[t.depth] = StackEntry{id, parent, ticks, code, name, group, 0, 0};
  ++t.depth;
  emit_filled(t, rt, [&](abi::Record& r) {
    r.kind = static_cast<std::uint8_t>(abi::RecordKind::kSpanBegin);
    r.flags = flags;
    r.size = 0;
    r.name_id = name;
    r.timestamp = ticks;
    r.span_id = id;
    r.aux = parent;
    abi::SpanPayload p;
    std::memcpy(p.trace_id, t.trace.bytes, sizeof p.trace_id);
    p.parent_span_id = code;  // SpanBegin: the code address (abi.hpp)
    p.group_id = group;
    p.error_ref = 0;
    std::memcpy(r.payload, &p, sizeof p);
  });
  return id;
}

// Ends the span on top of the stack (the caller checked there is one).
inline void end_top_span(ThreadState& t, Runtime& rt, int status) noexcept {
  const StackEntry top = t.stack[t.depth - 1];
  const std::uint64_t ticks = now_ticks();
  --t.depth;
  emit_filled(t, rt, [&](abi::Record& r) {
    r.kind = static_cast<std::uint8_t>(abi::RecordKind::kSpanEnd);
    r.flags = status == SHMTRACE_OK ? 0 : abi::kStatusErr;
    r.size = 0;
    r.name_id = top.name_id;
    r.timestamp = ticks;
    r.span_id = top.span_id;
    r.aux = top.begin_ticks;
    abi::SpanPayload p;
    std::memcpy(p.trace_id, t.trace.bytes, sizeof p.trace_id);
    p.parent_span_id = top.parent_id;
    p.group_id = top.group_id;
    p.error_ref = top.error_ref;
    std::memcpy(r.payload, &p, sizeof p);
  });
}

// Ends, as ERR, every span above stack position `keep` (they were left
// without an end: an early return past their end, a longjmp).
__attribute__((noinline)) inline void close_spans_above(ThreadState& t, Runtime& rt, std::uint32_t keep) noexcept {
  while (t.depth > keep) end_top_span(t, rt, SHMTRACE_ERR);
}

}  // namespace shmtrace::runtime

#endif
