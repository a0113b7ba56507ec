// shmtrace-demo: the quick start's main job until the drain and the launcher
// land. A small multi-process workload traces itself: the parent forks
// worker processes (each gets its own segment through the fork handler),
// every worker runs several threads of nested spans with arguments, events,
// counters and errors, and the parent then reads every worker's segment back
// through the reader library, checks that what it reads is exactly what the
// workers wrote, prints a report, and removes the segments.
//
//   shmtrace-demo [--workers N] [--threads N] [--requests N]
// Exit status: 0 when every count matches, 1 on a mismatch, 2 on bad usage.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "reader/reader.hpp"
#include "shmtrace/shmtrace.h"

namespace {

using shmtrace::abi::RecordKind;

struct Options {
  int workers = 3;
  int threads = 2;
  int requests = 2000;
};

// What one worker thread does: per request a "handle_request" span with a
// nested "parse" and "query" span; every 10th query fails with an error.
void worker_thread(int worker, int thread, int requests) {
  const shmtrace_name_t group = SHMTRACE_NAME("demo.server");
  const shmtrace_name_t handle = SHMTRACE_NAME("handle_request");
  const shmtrace_name_t parse = SHMTRACE_NAME("parse");
  const shmtrace_name_t query = SHMTRACE_NAME("query");
  const shmtrace_name_t request_id = SHMTRACE_NAME("request_id");
  const shmtrace_name_t password = SHMTRACE_NAME("password");
  const shmtrace_name_t rows = SHMTRACE_NAME("rows");
  const shmtrace_name_t queue = SHMTRACE_NAME("queue_depth");
  for (int i = 0; i < requests; ++i) {
    const shmtrace_span_t h = shmtrace_span_begin_group(group, handle);
    shmtrace_arg_i64(request_id, worker * 1000000 + thread * 10000 + i);
    shmtrace_arg_str(password, "s3cret");
    const shmtrace_span_t p = shmtrace_span_begin(parse);
    volatile int spin = 0;
    for (int k = 0; k < 200; ++k) spin = spin + k;
    shmtrace_span_end(p);
    const shmtrace_span_t q = shmtrace_span_begin(query);
    if (i % 10 == 9) {
      char message[64];
      std::snprintf(message, sizeof message, "timeout on shard %d", i % 7);
      shmtrace_error("QueryTimeout", message);
      shmtrace_span_end_status(q, SHMTRACE_ERR);
    } else {
      shmtrace_result_i64(rows, i % 50);
      shmtrace_span_end(q);
    }
    shmtrace_counter_i64(queue, i % 17);
    shmtrace_span_end(h);
  }
}

int run_worker(int worker, const Options& o) {
  std::vector<std::thread> pool;
  for (int t = 0; t < o.threads; ++t) pool.emplace_back(worker_thread, worker, t, o.requests);
  for (auto& t : pool) t.join();
  return 0;
}

struct Summary {
  std::uint64_t spans = 0;
  std::uint64_t err_spans = 0;
  std::uint64_t args = 0;
  std::uint64_t masked = 0;
  std::uint64_t counters = 0;
  std::uint64_t dropped = 0;
  std::uint64_t threads = 0;
  std::uint64_t errors = 0;
  std::map<std::string, std::vector<std::int64_t>> durations;  // ns per span name
};

// A worker's segment, drained live while the worker runs (as the drain
// will): ring slots go back to the producer as soon as they are counted.
struct LiveSegment {
  pid_t pid = 0;
  bool exited = false;
  bool exited_now = false;
  std::optional<shmtrace::reader::Segment> segment;
  shmtrace::reader::ErrorCursor errors;
};

void count(const shmtrace::reader::Segment& segment, const shmtrace::reader::DecodedRecord& d, Summary& s) {
  switch (d.kind) {
    case RecordKind::kSpanEnd: {
      ++s.spans;
      if (d.flags & shmtrace::abi::kStatusErr) ++s.err_spans;
      auto name = segment.string(d.name_id);
      s.durations[name ? std::string(*name) : "?"].push_back(segment.clock().duration_ns(d.aux, d.timestamp));
      break;
    }
    case RecordKind::kArg:
      ++s.args;
      if (d.flags & shmtrace::abi::kArgMasked) ++s.masked;
      break;
    case RecordKind::kCounter:
      ++s.counters;
      break;
    case RecordKind::kThreadStart:
      ++s.threads;
      break;
    default:
      break;
  }
}

// One pass over a segment; false on an error that makes it untrustworthy.
bool drain_pass(LiveSegment& live, Summary& s) {
  if (!live.segment) {
    auto listed = shmtrace::reader::list_segments(static_cast<std::uint32_t>(live.pid));
    if (!listed || listed->empty()) return true;  // not created yet
    auto attached = shmtrace::reader::Segment::attach(listed->front().name, shmtrace::reader::Access::kConsume);
    if (!attached) {
      // A segment whose header is still being written: try again next pass,
      // unless its process is gone.
      if (!live.exited_now) return true;
      std::fprintf(stderr, "shmtrace-demo: %s\n", attached.error().message.c_str());
      return false;
    }
    live.segment.emplace(std::move(*attached));
  }
  shmtrace::reader::Segment& segment = *live.segment;
  segment.heartbeat();
  shmtrace::reader::DecodeStats stats;
  for (std::uint32_t r = 0; r < segment.ring_count(); ++r) {
    auto batch = segment.read_ring(r, 1u << 24);
    if (!batch) {
      std::fprintf(stderr, "shmtrace-demo: %s\n", batch.error().message.c_str());
      return false;
    }
    for (const auto& d : shmtrace::reader::decode(batch->records, stats)) count(segment, d, s);
    (void)segment.commit_ring(r, batch->end_position);
  }
  if (auto overflow = segment.read_overflow(1u << 24); overflow) {
    for (const auto& e : overflow->entries) {
      for (const auto& d : shmtrace::reader::decode({&e.record, 1}, stats)) count(segment, d, s);
    }
    (void)segment.commit_overflow(*overflow);
  }
  if (auto errors = segment.read_errors(live.errors, 1u << 20); errors) {
    s.errors += errors->errors.size();
    live.errors = errors->next;
  }
  return true;
}

// Called once the worker has exited and its last pass is done.
void finish(LiveSegment& live, Summary& s) {
  if (!live.segment) return;
  for (std::uint32_t r = 0; r < live.segment->ring_count(); ++r) {
    if (auto info = live.segment->ring_info(r)) s.dropped += info->dropped;
  }
  (void)live.segment->unlink();
}

std::int64_t percentile(std::vector<std::int64_t>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

bool parse_int(const char* text, int lo, int hi, int& out) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v < lo || v > hi) return false;
  out = static_cast<int>(v);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    int* target = a == "--workers" ? &o.workers : a == "--threads" ? &o.threads : a == "--requests" ? &o.requests : nullptr;
    if (a == "--help" || a == "-h") {
      std::printf("usage: shmtrace-demo [--workers 1..32] [--threads 1..16] [--requests 1..100000]\n");
      return 0;
    }
    if (target == nullptr || i + 1 >= argc || !parse_int(argv[i + 1], 1, a == "--requests" ? 100000 : 32, *target)) {
      std::fprintf(stderr, "shmtrace-demo: bad argument '%s' (see --help)\n", a.c_str());
      return 2;
    }
    ++i;
  }
  if (!shmtrace_enabled()) {
    std::fprintf(stderr, "shmtrace-demo: tracing is off (SHMTRACE_DISABLE or no shared memory); nothing to show\n");
    return 1;
  }
  // Lossless: workers wait for this process to drain them (SPEC P4, block
  // policy) instead of dropping what does not fit. Forked workers read the
  // environment again when their runtime starts.
  ::setenv("SHMTRACE_POLICY", "block", 1);
  std::printf("shmtrace demo: %d worker processes x %d threads x %d requests\n", o.workers, o.threads, o.requests);
  std::vector<pid_t> pids;
  for (int w = 0; w < o.workers; ++w) {
    const pid_t pid = fork();
    if (pid == 0) _exit(run_worker(w, o));
    if (pid < 0) {
      std::perror("shmtrace-demo: fork");
      return 1;
    }
    pids.push_back(pid);
  }
  Summary s;
  bool ok = true;
  std::vector<LiveSegment> live;
  for (pid_t pid : pids) live.push_back(LiveSegment{pid, false, false, std::nullopt, {}});
  for (std::size_t running = live.size(); running > 0;) {
    for (LiveSegment& l : live) {
      if (l.exited) continue;
      int status = 0;
      l.exited_now = waitpid(l.pid, &status, WNOHANG) == l.pid;
      ok = drain_pass(l, s) && ok;
      if (l.exited_now) {
        ok = drain_pass(l, s) && ok;  // everything it wrote is published now
        finish(l, s);
        l.exited = true;
        --running;
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  const std::uint64_t requests = static_cast<std::uint64_t>(o.workers) * o.threads * o.requests;
  const std::uint64_t expect_spans = 3 * requests;
  const std::uint64_t expect_errors = static_cast<std::uint64_t>(o.workers) * o.threads * (o.requests / 10);
  std::printf("\n%-16s %10s %12s %12s %12s\n", "span", "count", "p50 ns", "p99 ns", "max ns");
  for (auto& [name, v] : s.durations) {
    const std::int64_t p50 = percentile(v, 0.5), p99 = percentile(v, 0.99), max = percentile(v, 1.0);
    std::printf("%-16s %10zu %12lld %12lld %12lld\n", name.c_str(), v.size(), static_cast<long long>(p50),
                static_cast<long long>(p99), static_cast<long long>(max));
  }
  std::printf("\nspans %llu (ERR %llu), args %llu (masked %llu), counters %llu, threads %llu, errors %llu, dropped %llu\n",
              static_cast<unsigned long long>(s.spans), static_cast<unsigned long long>(s.err_spans),
              static_cast<unsigned long long>(s.args), static_cast<unsigned long long>(s.masked),
              static_cast<unsigned long long>(s.counters), static_cast<unsigned long long>(s.threads),
              static_cast<unsigned long long>(s.errors), static_cast<unsigned long long>(s.dropped));
  const bool exact = s.spans == expect_spans && s.errors == expect_errors && s.masked == requests &&
                     s.counters == requests && s.dropped == 0;
  if (!ok || !exact) {
    std::printf("MISMATCH: expected %llu spans, %llu errors, %llu masked args, %llu counters, 0 dropped\n",
                static_cast<unsigned long long>(expect_spans), static_cast<unsigned long long>(expect_errors),
                static_cast<unsigned long long>(requests), static_cast<unsigned long long>(requests));
    return 1;
  }
  std::printf("OK: every record written by %d processes was read back exactly once\n", o.workers);
  // The demo's own segment (the parent recorded nothing) goes too.
  if (auto self = shmtrace::reader::Segment::attach(shmtrace_segment_name(), shmtrace::reader::Access::kReadOnly)) {
    (void)self->unlink();
  }
  return 0;
}
