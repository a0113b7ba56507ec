// Crash capture (P6); see crash_handler.cpp.
#ifndef SHMTRACE_RUNTIME_CRASH_HANDLER_HPP
#define SHMTRACE_RUNTIME_CRASH_HANDLER_HPP

namespace shmtrace::runtime {

// Installs the fatal-signal handlers once per process (a forked child keeps
// them), remembering the handlers they replace, and gives the calling thread
// an alternate signal stack so a stack overflow is still recorded.
void install_crash_handlers() noexcept;

// A forked child may crash on its own, even if its parent already did.
void reset_crash_state_after_fork() noexcept;

// Gives the calling thread an alternate signal stack if it has none.
void prepare_signal_stack() noexcept;

}  // namespace shmtrace::runtime

#endif
