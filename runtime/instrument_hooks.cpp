// -finstrument-functions (P9): GCC calls __cyg_profile_func_enter/exit at
// every entry and exit of an instrumented function. Each call of a traced
// function becomes a span named after the function; the decision and the
// name are cached per function address (function_cache.hpp), never made per
// call.
//
// A longjmp skips the exit hooks of the frames it crosses. Each stack entry
// therefore keeps, beside the function's address, its *frame*: the entry
// hook's own frame address (__builtin_frame_address(0), which forces a frame
// pointer in the hook), i.e. the instrumented function's stack pointer at
// the hook call minus 16. GCC calls the entry hook from the function's body,
// after its prologue, so for a frame F with canonical frame address CFA(F)
// (the caller's stack pointer before the call):
//     E(F) <= CFA(F) - 24   and, for any G that F calls,  E(G) < E(F).
// The function address alone (or the call_site argument, the return address
// into the caller) cannot tell apart the frames of a recursion; E can.
//
// The exit hook comes two ways (x86-64 GCC -O2 does both):
//   called from the body, before the epilogue: its frame X == E(F) (lower
//     if F grew its frame meanwhile: alloca, a VLA);
//   tail-jumped to after the epilogue: then its return address is F's own
//     return address, i.e. the call_site argument, and X == CFA(F) - 16,
//     above every E of F and its callees and <= E of F's callers.
// Exit of f, from the top of the stack down:
//   called:       the first entry of f with E >= X is the one leaving;
//   tail-jumped:  of the entries with E < X (F and frames below it), the
//                 last entry of f is the one leaving.
// Every entry above it is closed as unfinished (a longjmp skipped it).
//
// Entry of g (frame E): an instrumented entry on top with a smaller E is a
// frame that is gone. One with the same E is gone too if it is a sibling:
// called from another call instruction (call_site differs) or the same
// function again. Same E and call_site but another function is g's caller
// with g inlined into it (GCC runs an inlined function's hooks in its
// container's frame, with the container's return address): kept. Gone
// entries are closed as unfinished before g is pushed, so g gets the right
// parent.
//
// API spans (frame kNoFrame, above all) on top stop both searches. Frames on
// another stack (swapcontext coroutines, sigaltstack handlers) compare
// arbitrarily; the shadow stack assumes one stack per thread.
#include <exception>

#include "exception_hook.hpp"
#include "function_cache.hpp"
#include "spans.hpp"

using namespace shmtrace::runtime;

#define SHMTRACE_HOOK extern "C" SHMTRACE_API __attribute__((no_instrument_function))

namespace {

// Exceptions in flight on this thread (std::uncaught_exceptions, read directly).
inline std::uint32_t in_flight(const ThreadState& t) noexcept {
  return t.uncaught_exceptions != nullptr ? *t.uncaught_exceptions
                                          : static_cast<std::uint32_t>(std::uncaught_exceptions());
}

// Entry side of the resynchronisation (see the top of this file).
__attribute__((noinline)) void close_gone_frames(ThreadState& t, Runtime& rt, std::uintptr_t code,
                                                 std::uintptr_t frame, std::uintptr_t site) noexcept {
  std::uint32_t keep = t.depth;
  while (keep > 0) {
    const StackEntry& e = t.stack[keep - 1];
    if (e.code == 0 || e.frame > frame) break;
    if (e.frame == frame && e.call_site == site && e.code != code) break;  // our inline container
    --keep;
  }
  if (keep < t.depth) close_spans_above(t, rt, keep);
}

// Exit side: the 1-based stack position of the frame leaving, 0 if none.
std::uint32_t leaving_frame(const ThreadState& t, std::uintptr_t code, std::uintptr_t frame, bool tail) noexcept {
  if (!tail) {
    std::uint32_t at = t.depth;
    while (at > 0 && !(t.stack[at - 1].code == code && t.stack[at - 1].frame >= frame)) --at;
    return at;
  }
  std::uint32_t found = 0;
  for (std::uint32_t at = t.depth; at > 0 && t.stack[at - 1].frame < frame; --at) {
    if (t.stack[at - 1].code == code) found = at;
  }
  return found;
}

}  // namespace

SHMTRACE_HOOK void __cyg_profile_func_enter(void* fn, void* call_site) {
  if (__builtin_expect(__atomic_load_n(&shmtrace_may_record_, __ATOMIC_RELAXED) == 0, 0)) return;
  Runtime* rt = current_runtime();
  if (rt == nullptr) return;
  const std::uintptr_t code = reinterpret_cast<std::uintptr_t>(fn);
  const FunctionInfo info = rt->functions->lookup(*rt, code);
  if (!info.traced) return;
  const std::uintptr_t frame = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
  const std::uintptr_t site = reinterpret_cast<std::uintptr_t>(call_site);
  ThreadState& t = tls_state;
  if (t.depth > 0 && __builtin_expect(t.stack[t.depth - 1].frame <= frame, 0)) close_gone_frames(t, *rt, code, frame, site);
  const std::uint32_t depth = t.depth;
  begin_span(t, *rt, info.group_id, info.name_id, code, frame, site);
  if (t.depth > depth) {
    // GCC calls the exit hook during unwinding too: more exceptions in flight
    // at exit than at entry means one is leaving the function.
    t.stack[t.depth - 1].uncaught = in_flight(t);
  }
}

SHMTRACE_HOOK void __cyg_profile_func_exit(void* fn, void* call_site) {
  if (__builtin_expect(__atomic_load_n(&shmtrace_may_record_, __ATOMIC_RELAXED) == 0, 0)) return;
  Runtime* rt = current_runtime();
  if (rt == nullptr) return;
  const std::uintptr_t code = reinterpret_cast<std::uintptr_t>(fn);
  const std::uintptr_t frame = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
  const bool tail = __builtin_return_address(0) == call_site;  // jumped to after F's epilogue
  ThreadState& t = tls_state;
  // The stack holds the frames of a recorded trace, and with statistics on
  // those of a sampled-out one too; else only a depth counts the latter.
  const bool stacked = shmtrace_unsampled_depth_ == 0 || t.stats_cache != nullptr;
  // The common case needs no lookup: the frame on top of the stack is the
  // one leaving. Otherwise it is a filtered-out function, or a longjmp
  // skipped the exits of the frames above it.
  bool on_top = false;
  if (stacked && t.depth > 0 && t.stack[t.depth - 1].code == code) {
    const std::uint64_t top = t.stack[t.depth - 1].frame;
    on_top = tail ? top < frame && (t.depth == 1 || t.stack[t.depth - 2].frame >= frame) : top == frame;
  }
  if (!on_top && !rt->functions->lookup(*rt, code).traced) return;
  if (!stacked) {
    --shmtrace_unsampled_depth_;
    return;
  }
  if (t.depth == 0) return;  // its entry came before tracing started
  if (__builtin_expect(!on_top, 0)) {
    const std::uint32_t at = leaving_frame(t, code, frame, tail);
    if (at == 0) return;  // not on our stack: its entry was not recorded
    close_spans_above(t, *rt, at);
  }
  StackEntry& top = t.stack[t.depth - 1];
  if (__builtin_expect(in_flight(t) > top.uncaught, 0)) {
    if (top.span_id != 0) top.error_ref = static_cast<std::uint32_t>(record_thrown_exception(t, *rt));
    end_top_span(t, *rt, SHMTRACE_ERR);
    return;
  }
  end_top_span(t, *rt, SHMTRACE_OK);
}
