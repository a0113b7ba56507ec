// -finstrument-functions (P9): GCC calls __cyg_profile_func_enter/exit at
// every entry and exit of an instrumented function. Each call of a traced
// function becomes a span named after the function; the decision and the
// name are cached per function address (function_cache.hpp), never made per
// call. An exit that does not match the top of the stack (a longjmp skipped
// the exits of the frames it crossed) closes the skipped frames first.
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

}  // namespace

SHMTRACE_HOOK void __cyg_profile_func_enter(void* fn, void* /*call_site*/) {
  if (__builtin_expect(__atomic_load_n(&shmtrace_may_record_, __ATOMIC_RELAXED) == 0, 0)) return;
  Runtime* rt = current_runtime();
  if (rt == nullptr) return;
  const FunctionInfo info = rt->functions->lookup(*rt, reinterpret_cast<std::uintptr_t>(fn));
  if (!info.traced) return;
  ThreadState& t = tls_state;
  if (begin_span(t, *rt, info.group_id, info.name_id, reinterpret_cast<std::uintptr_t>(fn)) != 0) {
    // GCC calls the exit hook during unwinding too: more exceptions in flight
    // at exit than at entry means one is leaving the function.
    t.stack[t.depth - 1].uncaught = in_flight(t);
  }
}

SHMTRACE_HOOK void __cyg_profile_func_exit(void* fn, void* /*call_site*/) {
  if (__builtin_expect(__atomic_load_n(&shmtrace_may_record_, __ATOMIC_RELAXED) == 0, 0)) return;
  Runtime* rt = current_runtime();
  if (rt == nullptr) return;
  const std::uintptr_t code = reinterpret_cast<std::uintptr_t>(fn);
  ThreadState& t = tls_state;
  // The common case needs no lookup: the function on top of the stack is
  // the one leaving. Otherwise it is a filtered-out function, or a longjmp
  // skipped the exits of the frames above it.
  const bool on_top = shmtrace_unsampled_depth_ == 0 && t.depth > 0 && t.stack[t.depth - 1].code == code;
  if (!on_top && !rt->functions->lookup(*rt, code).traced) return;
  if (shmtrace_unsampled_depth_ != 0) {
    --shmtrace_unsampled_depth_;
    return;
  }
  if (t.depth == 0) return;  // its entry came before tracing started
  if (__builtin_expect(!on_top, 0)) {
    std::uint32_t at = t.depth;
    while (at > 0 && t.stack[at - 1].code != code) --at;
    if (at == 0) return;  // not on our stack: its entry was not recorded
    close_spans_above(t, *rt, at);
  }
  StackEntry& top = t.stack[t.depth - 1];
  if (__builtin_expect(in_flight(t) > top.uncaught, 0)) {
    top.error_ref = static_cast<std::uint32_t>(record_thrown_exception(t, *rt));
    end_top_span(t, *rt, SHMTRACE_ERR);
    return;
  }
  end_top_span(t, *rt, SHMTRACE_OK);
}
