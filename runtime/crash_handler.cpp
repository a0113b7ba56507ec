// Crash capture (P6): on SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT, write a
// crash record into the error area, mark the segment crashed, then hand the
// signal on to the handler that was there before us, or to the default
// action, so the process dies exactly as it would have (same signal, same
// core dump behaviour).
//
// Everything the handler does is async-signal-safe in practice: no
// allocation, no locks of ours, no stdio; frames come from the fault context
// and backtrace(), which start_runtime() calls once beforehand so its lazy
// loading of the unwinder never happens inside the handler; the error area is
// written without creating chunks (one is always prepared ahead).
#include "crash_handler.hpp"

#include <execinfo.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "clock.hpp"
#include "thread_state.hpp"

namespace shmtrace::runtime {
namespace {

constexpr int kFatalSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
constexpr std::size_t kSignalCount = sizeof kFatalSignals / sizeof kFatalSignals[0];
constexpr std::size_t kAltStackBytes = 64 * 1024;

// The handlers we replaced, by index in kFatalSignals.
constinit struct sigaction g_previous[kSignalCount] = {};
constinit bool g_installed = false;
// Set by the first thread that crashes: a second fault while recording (or
// in another thread) goes straight on to the previous handler.
constinit int g_crashing = 0;

const char* signal_name(int sig) noexcept {
  switch (sig) {
    case SIGSEGV:
      return "SIGSEGV";
    case SIGBUS:
      return "SIGBUS";
    case SIGFPE:
      return "SIGFPE";
    case SIGILL:
      return "SIGILL";
    case SIGABRT:
      return "SIGABRT";
    default:
      return "signal";
  }
}

// "<name> at 0x<hex>" without snprintf.
std::size_t describe(int sig, std::uint64_t address, char* out, std::size_t size) noexcept {
  std::size_t n = 0;
  auto put = [&](char c) {
    if (n + 1 < size) out[n++] = c;
  };
  for (const char* p = signal_name(sig); *p != '\0'; ++p) put(*p);
  for (const char* p = " at 0x"; *p != '\0'; ++p) put(*p);
  bool started = false;
  for (int shift = 60; shift >= 0; shift -= 4) {
    const unsigned digit = static_cast<unsigned>(address >> shift) & 15u;
    if (digit != 0 || started || shift == 0) {
      put("0123456789abcdef"[digit]);
      started = true;
    }
  }
  out[n] = '\0';
  return n;
}

std::uint64_t fault_ip(void* context) noexcept {
#if defined(__x86_64__)
  const auto* uc = static_cast<const ucontext_t*>(context);
  return static_cast<std::uint64_t>(uc->uc_mcontext.gregs[REG_RIP]);
#elif defined(__aarch64__)
  const auto* uc = static_cast<const ucontext_t*>(context);
  return uc->uc_mcontext.pc;
#else
  (void)context;
  return 0;
#endif
}

void record_crash(Runtime& rt, int sig, const siginfo_t* info, void* context) noexcept {
  ThreadState& t = tls_state;
  ErrorDraft d;
  describe_error(d, abi::ErrorKind::kCrash, t, rt);
  if (d.tid == 0) d.tid = static_cast<std::uint32_t>(::gettid());  // a thread that never recorded
  d.signal = static_cast<std::uint32_t>(sig);
  d.fault_address = reinterpret_cast<std::uint64_t>(info != nullptr ? info->si_addr : nullptr);
  // Frame 0 is where the fault happened; backtrace() then walks from here,
  // through the signal trampoline, into the faulting code's callers.
  std::uint64_t frames[abi::kMaxErrorFrames];
  std::uint32_t n = 0;
  const std::uint32_t max = rt.config.max_frames;
  if (max > 0) {
    if (const std::uint64_t ip = fault_ip(context); ip != 0) frames[n++] = ip;
    void* walked[abi::kMaxErrorFrames + 4];
    const int got = ::backtrace(walked, static_cast<int>(sizeof walked / sizeof walked[0]));
    // Skip our own frames (this function, the handler, the trampoline) up to
    // and including the fault address if the unwinder found it.
    int from = 0;
    for (int i = 0; i < got; ++i) {
      if (n > 0 && reinterpret_cast<std::uint64_t>(walked[i]) == frames[0]) {
        from = i + 1;
        break;
      }
    }
    if (from == 0) from = got > 3 ? 3 : got;
    for (int i = from; i < got && n < max; ++i) frames[n++] = reinterpret_cast<std::uint64_t>(walked[i]);
  }
  d.frames = frames;
  d.frame_count = n;
  char message[64];
  const std::size_t length = describe(sig, d.fault_address, message, sizeof message);
  d.type = signal_name(sig);
  d.message = std::string_view(message, length);
  const std::uint64_t sequence = rt.errors->append(d, /*may_create=*/false);
  if (StackEntry* top = recorded_top(t)) top->error_ref = static_cast<std::uint32_t>(sequence);

  rt.header->exit_status = sig;
  rt.header->end_ticks = now_ticks();
  // Publishes exit_status and end_ticks; pairs with the reader's acquire load.
  abi::atomic_store(rt.header->state, static_cast<std::uint32_t>(abi::ProcessState::kCrashed),
                    std::memory_order_release);
}

// Hands the signal on as if we had never been there.
void hand_on(std::size_t index, int sig, siginfo_t* info, void* context) noexcept {
  const struct sigaction& previous = g_previous[index];
  if ((previous.sa_flags & SA_SIGINFO) != 0 && previous.sa_sigaction != nullptr) {
    previous.sa_sigaction(sig, info, context);
    return;
  }
  if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN && previous.sa_handler != nullptr) {
    previous.sa_handler(sig);
    return;
  }
  // Default action (an ignored fatal fault is fatal anyway): restore it and
  // let the signal happen again. A fault the kernel raised re-executes the
  // faulting instruction when we return; a raised one (abort, kill) is sent
  // again and delivered once we return, since the handler blocks it.
  struct sigaction fallback {};
  fallback.sa_handler = SIG_DFL;
  sigemptyset(&fallback.sa_mask);
  ::sigaction(sig, &fallback, nullptr);
  if (info == nullptr || info->si_code <= 0 || sig == SIGABRT) ::raise(sig);
}

void on_fatal_signal(int sig, siginfo_t* info, void* context) noexcept {
  std::size_t index = 0;
  while (index < kSignalCount && kFatalSignals[index] != sig) ++index;
  if (index == kSignalCount) return;
  const int saved_errno = errno;
  int expected = 0;
  if (__atomic_compare_exchange_n(&g_crashing, &expected, 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    Runtime* rt = __atomic_load_n(&g_runtime, __ATOMIC_ACQUIRE);
    if (rt != nullptr && rt->header->pid == static_cast<std::uint32_t>(::getpid())) record_crash(*rt, sig, info, context);
  }
  errno = saved_errno;
  hand_on(index, sig, info, context);
}

}  // namespace

void install_crash_handlers() noexcept {
  if (g_installed) return;
  g_installed = true;
  void* warm[4];
  (void)::backtrace(warm, 4);  // loads the unwinder now, not inside a handler
  for (std::size_t i = 0; i < kSignalCount; ++i) {
    struct sigaction action {};
    action.sa_sigaction = on_fatal_signal;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    ::sigaction(kFatalSignals[i], &action, &g_previous[i]);
  }
  prepare_signal_stack();
}

void reset_crash_state_after_fork() noexcept { __atomic_store_n(&g_crashing, 0, __ATOMIC_RELEASE); }

void prepare_signal_stack() noexcept {
  // A stack overflow leaves no stack to run the handler on: give the thread
  // an alternate one, unless the program already set its own.
  stack_t current{};
  if (::sigaltstack(nullptr, &current) != 0 || (current.ss_flags & SS_DISABLE) == 0) return;
  void* memory = ::mmap(nullptr, kAltStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return;
  stack_t fresh{};
  fresh.ss_sp = memory;
  fresh.ss_size = kAltStackBytes;
  if (::sigaltstack(&fresh, nullptr) != 0) ::munmap(memory, kAltStackBytes);
}

}  // namespace shmtrace::runtime
