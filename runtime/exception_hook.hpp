// C++ exceptions (P7): __cxa_throw is interposed to remember, per thread,
// what was last thrown (type, what(), throw-site frames). Nothing is written
// then: an exception caught inside its span costs no error record. When an
// exception leaves a span (shmtrace_span_end_exception), the runtime writes
// one error record for that throw and links every span it leaves to it.
#ifndef SHMTRACE_RUNTIME_EXCEPTION_HOOK_HPP
#define SHMTRACE_RUNTIME_EXCEPTION_HOOK_HPP

#include <cstdint>

#include "runtime.hpp"
#include "thread_state.hpp"

namespace shmtrace::runtime {

// The error sequence of the exception now leaving the thread's spans,
// written to the error area on first use; 0 when the runtime is off.
std::uint64_t record_thrown_exception(ThreadState& t, Runtime& rt) noexcept;

}  // namespace shmtrace::runtime

#endif
