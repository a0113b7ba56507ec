// The demo's traced workload: what each forked worker process runs, and the
// exact counts it produces, which shmtrace-demo-check checks against the
// database.
#ifndef SHMTRACE_TOOLS_DEMO_WORKLOAD_HPP
#define SHMTRACE_TOOLS_DEMO_WORKLOAD_HPP

#include <cstdint>
#include <string_view>

namespace shmtrace::demo {

struct Workload {
  int workers = 3;
  int threads = 2;
  int requests = 2000;  // per thread
};

// The argument value that must never reach the database: the runtime masks
// it ("***") and the drain redacts it ("[REDACTED]").
inline constexpr std::string_view kSecret = "s3cret";

// Function (span) names, in the order the report lists them.
inline constexpr std::string_view kFunctions[] = {"handle_request", "parse", "query"};

// What the workload writes, all worker processes together.
struct ExpectedCounts {
  std::uint64_t requests = 0;  // handle_request, parse and query calls each
  std::uint64_t spans = 0;     // 3 per request
  std::uint64_t errors = 0;    // one QueryTimeout per 10th request, its query span ERR
  std::uint64_t passwords = 0; // one password argument per request
  std::uint64_t counters = 0;  // one queue_depth counter per request
};
// Inline: the checker computes them without linking the runtime (it is no
// traced process).
inline ExpectedCounts expected_counts(const Workload& w) {
  const auto threads = static_cast<std::uint64_t>(w.workers) * static_cast<std::uint64_t>(w.threads);
  ExpectedCounts e;
  e.requests = threads * static_cast<std::uint64_t>(w.requests);
  e.spans = 3 * e.requests;
  e.errors = threads * static_cast<std::uint64_t>(w.requests / 10);
  e.passwords = e.requests;
  e.counters = e.requests;
  return e;
}

// Runs in a forked worker: `threads` threads of `requests` requests each.
// Returns the worker's exit status.
int run_worker(int worker, const Workload& w);

}  // namespace shmtrace::demo

#endif
