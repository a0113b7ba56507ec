// Process-wide start-up, fork and exit handling.
//
// Initialisation order: the library constructor starts the runtime before
// main; an API call from another library's constructor that runs earlier
// starts it then instead (start_runtime is idempotent and never blocks: a
// concurrent caller sees kStarting and records nothing meanwhile). Globals
// here are constant-initialised, so nothing depends on C++ static
// initialisation order.
#include "runtime.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "clock.hpp"
#include "crash_handler.hpp"
#include "lifecycle.hpp"
#include "module_map.hpp"
#include "shmtrace/shmtrace.h"
#include "thread_state.hpp"

namespace shmtrace::runtime {

constinit Runtime* g_runtime = nullptr;
constinit std::uint8_t g_init_state = 0;
constinit pthread_key_t g_thread_key = 0;

namespace {

constinit bool g_hooks_installed = false;
// Runtimes inherited through fork(): kept (never used again) so their
// mappings stay valid and reachable.
constinit Runtime* g_retired = nullptr;

void say(const std::string& line) noexcept {
  // One line per problem, written whole (P12).
  const std::string text = "shmtrace: " + line + "\n";
  [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, text.data(), text.size());
}

std::uint64_t rate_threshold(double rate) {
  if (rate >= 1.0) return kKeepAll;
  if (rate <= 0.0) return 0;
  return static_cast<std::uint64_t>(rate * 18446744073709551616.0);
}

void thread_exit(void* state) noexcept {
  Runtime* rt = __atomic_load_n(&g_runtime, __ATOMIC_ACQUIRE);
  if (rt != nullptr && state == &tls_state) end_thread(tls_state, *rt);
}

void process_exit(int status, void*) noexcept { record_exit(status); }

void after_fork_child() noexcept {
  // The inherited runtime describes the parent; the child gets its own
  // segment (P8), created here, while the child still has a single thread:
  // created lazily, its first threads would race to start it and lose their
  // records meanwhile. (A fork that only execs leaves this segment behind
  // until the exec handling of the preload marks it.) The parent's objects
  // stay mapped and are never touched.
  Runtime* parent = __atomic_load_n(&g_runtime, __ATOMIC_ACQUIRE);
  if (parent == nullptr) return;
  parent->retired_next = g_retired;
  g_retired = parent;
  reset_thread_after_fork(tls_state);
  reset_crash_state_after_fork();
  __atomic_store_n(&g_runtime, nullptr, __ATOMIC_RELEASE);
  __atomic_store_n(&g_init_state, static_cast<std::uint8_t>(InitState::kNotStarted), __ATOMIC_RELEASE);
  (void)start_runtime();
}

Runtime* build_runtime(const Config& config, std::string& why) {
  auto rt = std::make_unique<Runtime>();
  rt->config = config;
  rt->process = read_process_info();
  rt->layout = compute_layout(config);
  const std::uint64_t nonce = random_u64() ^ clock_ns(CLOCK_MONOTONIC);
  rt->segment_name = segment_name(rt->process.pid, nonce, config.session);

  auto object = SharedObject::create(rt->segment_name, rt->layout.total_size, rt->layout.fixed_size(),
                                     SharedObject::Mode::kCreate);
  if (!object) {
    why = object.error();
    return nullptr;
  }
  rt->segment = std::move(*object);
  rt->base = static_cast<std::byte*>(rt->segment.base());
  rt->header = reinterpret_cast<abi::SegmentHeader*>(rt->base);

  TraceContextSeed seed;
  if (const char* tp = ::getenv("TRACEPARENT")) {
    if (auto parsed = parse_traceparent(tp)) {
      rt->has_inherited = true;
      rt->inherited = *parsed;
      std::memcpy(seed.trace_id, parsed->trace.bytes, sizeof seed.trace_id);
      seed.parent_span_id = parsed->span_id;
      seed.flags = parsed->flags;
    } else {
      say(std::string("TRACEPARENT=") + tp + ": not a W3C traceparent; starting new traces");
    }
  }
  initialize_segment(rt->base, rt->layout, config, rt->process, nonce, read_clock_reference(), seed);

  rt->strings = std::make_unique<StringTable>(rt->base + rt->layout.strings_offset, rt->header);
  rt->overflow = OverflowWriter(rt->base + rt->layout.overflow_offset);
  rt->errors = std::make_unique<ErrorArea>(rt->header, rt->segment_name, ErrorArea::kDefaultMaxChunks);
  if (!rt->errors->prepare()) {
    say("cannot create the error area of " + rt->segment_name + "; errors go to " + rt->errors->spill_path());
  }

  rt->default_group = rt->intern(rt->process.exe_name);
  rt->functions = std::make_unique<FunctionCache>();
  const auto compile = [](const char* variable, const std::string& pattern, std::optional<std::regex>& out) {
    if (pattern.empty()) return;
    try {
      out.emplace(pattern, std::regex::ECMAScript | std::regex::optimize);
    } catch (const std::regex_error& e) {
      say(std::string(variable) + "=" + pattern + ": not a regular expression (" + e.what() + "); ignored");
    }
  };
  compile("SHMTRACE_INCLUDE", config.include_functions, rt->include_functions);
  compile("SHMTRACE_EXCLUDE", config.exclude_functions, rt->exclude_functions);
  rt->sample_threshold = rate_threshold(config.sample_rate);
  for (const GroupRate& g : config.group_rates) {
    rt->group_thresholds.push_back({rt->intern(g.group), rate_threshold(g.rate)});
  }
  // A value may take at most a quarter of a ring, so one argument can never
  // starve the ring it is written to.
  const std::uint32_t ring_quarter = config.ring_records / 4;
  const std::uint32_t by_ring = abi::kInlinePayload + (ring_quarter - 1) * abi::kContinuationPayload;
  rt->max_value_bytes = std::min(config.max_repr, by_ring);
  rt->max_value_records =
      1 + (rt->max_value_bytes > abi::kInlinePayload
               ? (rt->max_value_bytes - abi::kInlinePayload + abi::kContinuationPayload - 1) /
                     abi::kContinuationPayload
               : 0);
  rt->stats_sites = static_cast<std::uint32_t>(rt->layout.ring_stats_bytes == 0
                                                   ? 0
                                                   : rt->layout.ring_stats_bytes / sizeof(abi::StatsSlot) - 1);
  // The Runtime is never destroyed: its segment stays mapped for the life of
  // the process (threads may still write during exit).
  return rt.release();
}

}  // namespace

std::uint64_t Runtime::threshold_for(std::uint32_t group_id) const noexcept {
  for (const GroupThreshold& g : group_thresholds) {
    if (g.group_id == group_id) return g.threshold;
  }
  return sample_threshold;
}

bool Runtime::function_traced(const std::string& name) const {
  if (include_functions && !std::regex_search(name, *include_functions)) return false;
  if (exclude_functions && std::regex_search(name, *exclude_functions)) return false;
  return true;
}

std::uint32_t Runtime::intern(std::string_view text) noexcept {
  const std::uint8_t flags = is_sensitive_name(text, config.sensitive) ? abi::kStringSensitive : 0;
  return strings->intern(text, flags);
}

Runtime* start_runtime() noexcept {
  std::uint8_t expected = static_cast<std::uint8_t>(InitState::kNotStarted);
  if (!__atomic_compare_exchange_n(&g_init_state, &expected, static_cast<std::uint8_t>(InitState::kStarting),
                                   false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    return __atomic_load_n(&g_runtime, __ATOMIC_ACQUIRE);
  }
  Runtime* rt = nullptr;
  try {
    std::vector<std::string> problems;
    const Config config = parse_config([](const char* name) { return ::getenv(name); }, problems);
    for (const std::string& p : problems) say(p);
    if (!config.disabled) {
      std::string why;
      rt = build_runtime(config, why);
      if (rt == nullptr) say(why + "; tracing is off for this process");
    }
  } catch (const std::exception& e) {
    say(std::string("cannot start: ") + e.what() + "; tracing is off for this process");
    rt = nullptr;
  }
  if (rt != nullptr && !g_hooks_installed) {
    g_hooks_installed = true;
    ::pthread_key_create(&g_thread_key, thread_exit);
    ::pthread_atfork(nullptr, nullptr, after_fork_child);
    install_crash_handlers();
  }
  if (rt != nullptr) ::on_exit(process_exit, nullptr);
  // Publishes the runtime; pairs with the acquire load in current_runtime().
  __atomic_store_n(&g_runtime, rt, __ATOMIC_RELEASE);
  // The inline fast path (shmtrace.h) stops calling in once we are off.
  // With statistics on, spans of sampled-out traces are timed too, so the
  // fast path must call in for them (2, see shmtrace.h).
  if (rt == nullptr) __atomic_store_n(&shmtrace_may_record_, 0, __ATOMIC_RELAXED);
  if (rt != nullptr && rt->stats_sites > 0) __atomic_store_n(&shmtrace_may_record_, 2, __ATOMIC_RELAXED);
  if (rt != nullptr) {
    record_modules(*rt);
    record_process_start();
  }
  __atomic_store_n(&g_init_state,
                   static_cast<std::uint8_t>(rt != nullptr ? InitState::kRunning : InitState::kOff),
                   __ATOMIC_RELEASE);
  return rt;
}

namespace {
__attribute__((constructor)) void library_loaded() noexcept { (void)start_runtime(); }
}  // namespace

}  // namespace shmtrace::runtime
