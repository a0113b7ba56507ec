// shmtrace top: per function, live from the call-site statistics in shared
// memory (each ring's StatsSlot table), over every live segment or one
// process's, with no drain needed:
//
//   shmtrace top [--pid PID] [--session ID] [--interval 1s] [--once] [--limit N] [--iterations N]
//
// The statistics are cumulative counters (since each ring was first
// claimed), so a refresh is the difference of two snapshots: calls/s and
// errors/s are the interval's calls and errors over its measured length,
// p50/p99 come from the interval's histogram (each bucket's count now minus
// before), and TOTAL is the cumulative count. A call site of several rings
// or processes is one row (summed); API spans are named by their string,
// instrumented functions through the module map and the resolver.
//
// On a terminal each refresh redraws the screen (ANSI clear + home); piped,
// each refresh is a block of lines ended by an empty line, with no escape
// codes. --once takes two snapshots one interval apart, prints once, exits.
// Exit status: 0 (also after SIGINT), 1 when no segment could be read, 2 for
// a bad command line.
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <tuple>

#include "commands.hpp"
#include "live_format.hpp"

namespace shmtrace::cli {

namespace {

volatile sig_atomic_t g_stop = 0;
void on_stop(int) { g_stop = 1; }

struct TopArgs {
  std::optional<std::uint32_t> pid;
  std::optional<std::string> session;
  std::string interval = "1s";
  bool once = false;
  std::size_t limit = 0;
  std::size_t iterations = 0;
};

using SlotKey = std::tuple<std::string, std::uint32_t, std::uint32_t>;  // segment, ring, slot

struct SlotSnap {
  std::string function;
  std::uint64_t calls = 0;
  std::uint64_t errors = 0;
  double ns_per_tick = 1;
  std::vector<reader::HistogramBucket> histogram;
};

struct Snapshot {
  std::uint64_t taken_ns = 0;
  std::size_t segments = 0;
  std::map<SlotKey, SlotSnap> slots;
};

struct Row {
  std::string function;
  std::uint64_t calls = 0, errors = 0;              // in the interval
  std::uint64_t total_calls = 0, total_errors = 0;  // cumulative
  std::vector<std::pair<double, std::uint64_t>> durations;  // bucket midpoint (ns), count: the interval's
  double p50 = 0, p99 = 0;
};

// The live segments, attached once each and kept while their name exists.
class Watch {
 public:
  Watch(std::optional<std::uint32_t> pid, std::optional<std::string> session)
      : pid_(pid), session_(std::move(session)) {}

  Snapshot snapshot() {
    refresh();
    Snapshot snap;
    snap.taken_ns = live::monotonic_ns();
    for (auto& [name, entry] : segments_) {
      auto sites = entry.segment.call_site_stats();
      if (!sites) {
        complain(name, sites.error().message);
        continue;
      }
      if (entry.segment.faulted()) continue;  // truncated under us: what we read may be zeros
      ++snap.segments;
      for (reader::CallSiteStats& s : *sites) {
        SlotSnap slot;
        switch (s.kind) {
          case abi::CallSiteKind::kName: slot.function = live::string_or_note(entry.segment, s.name_id); break;
          case abi::CallSiteKind::kCode: slot.function = entry.code.name(entry.segment, s.address); break;
          default: slot.function = "(other call sites)"; break;
        }
        slot.calls = s.calls;
        slot.errors = s.errors;
        slot.ns_per_tick = s.ns_per_tick;
        slot.histogram = std::move(s.histogram);
        snap.slots.emplace(SlotKey{name, s.ring, s.slot}, std::move(slot));
      }
    }
    return snap;
  }

  bool any_readable() const { return !segments_.empty(); }

 private:
  struct Entry {
    reader::Segment segment;
    live::CodeNames code;
  };

  void refresh() {
    for (auto it = segments_.begin(); it != segments_.end();) {
      struct stat st {};
      if (::lstat(("/dev/shm/" + it->first).c_str(), &st) != 0 && errno == ENOENT) {
        it = segments_.erase(it);
      } else {
        ++it;
      }
    }
    auto listed = reader::list_segments(pid_);
    if (!listed) {
      complain("/dev/shm", listed.error().message);
      return;
    }
    const auto me = static_cast<std::uint32_t>(::geteuid());
    for (const reader::SegmentListing& l : *listed) {
      if (session_ && l.session != *session_) continue;
      if (segments_.contains(l.name)) continue;
      if (me != 0 && l.owner_uid != me) continue;  // another user's (root reads them all)
      auto segment = live::attach_read_only(l);
      if (!segment) {
        const std::string& m = segment.error().message;
        if (m.find("not yet initialized") == std::string::npos && m.find("No such file") == std::string::npos) {
          complain(l.name, m);
        }
        continue;
      }
      segments_.emplace(l.name, Entry{std::move(*segment), {}});
    }
  }

  // One line per segment, once: a corrupt segment does not stop the view.
  void complain(const std::string& name, const std::string& message) {
    if (complained_.insert(name).second) say("top", message);
  }

  std::optional<std::uint32_t> pid_;
  std::optional<std::string> session_;
  std::map<std::string, Entry> segments_;
  std::set<std::string> complained_;
};

double quantile(std::vector<std::pair<double, std::uint64_t>>& d, double q) {
  std::uint64_t total = 0;
  for (const auto& [ns, n] : d) total += n;
  if (total == 0) return NAN;
  std::sort(d.begin(), d.end());
  const auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total))));
  std::uint64_t seen = 0;
  for (const auto& [ns, n] : d) {
    seen += n;
    if (seen >= rank) return ns;
  }
  return d.back().first;
}

double midpoint_ns(std::uint32_t bucket, double ns_per_tick) {
  const double lower = static_cast<double>(abi::stats_bucket_lower(bucket));
  // The last bucket is open-ended: its lower bound is all that is known.
  const double upper = bucket >= abi::kStatsBuckets - 1 ? lower : static_cast<double>(abi::stats_bucket_upper(bucket));
  return (lower + upper) / 2 * ns_per_tick;
}

std::vector<Row> rows_of(const Snapshot& before, const Snapshot& now) {
  std::map<std::string, Row> by_function;
  for (const auto& [key, slot] : now.slots) {
    Row& row = by_function[slot.function];
    row.function = slot.function;
    row.total_calls += slot.calls;
    row.total_errors += slot.errors;
    const auto old = before.slots.find(key);
    // A slot first seen now (a new process or call site) counts whole.
    const SlotSnap empty;
    const SlotSnap& prev = old == before.slots.end() ? empty : old->second;
    row.calls += slot.calls - std::min(slot.calls, prev.calls);
    row.errors += slot.errors - std::min(slot.errors, prev.errors);
    // The interval's durations: what each bucket gained. That includes a
    // call begun before the interval, and a thread's last duration, which
    // the runtime records at the thread's next end: a row with no calls in
    // the interval may still have percentiles.
    std::size_t p = 0;
    for (const reader::HistogramBucket& b : slot.histogram) {
      while (p < prev.histogram.size() && prev.histogram[p].index < b.index) ++p;
      const std::uint64_t was = p < prev.histogram.size() && prev.histogram[p].index == b.index ? prev.histogram[p].count : 0;
      if (b.count > was) row.durations.emplace_back(midpoint_ns(b.index, slot.ns_per_tick), b.count - was);
    }
  }
  std::vector<Row> rows;
  for (auto& [name, row] : by_function) {
    if (row.total_calls == 0) continue;  // an "other" slot nothing has used yet
    row.p50 = quantile(row.durations, 0.50);
    row.p99 = quantile(row.durations, 0.99);
    rows.push_back(std::move(row));
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return std::tie(b.calls, b.total_calls, a.function) < std::tie(a.calls, a.total_calls, b.function);
  });
  return rows;
}

std::string duration_cell(double ns) { return std::isnan(ns) ? "-" : live::human_duration(ns); }

void print(const Snapshot& before, const Snapshot& now, std::size_t limit, bool redraw) {
  const std::vector<Row> rows = rows_of(before, now);
  const double seconds = static_cast<double>(now.taken_ns - before.taken_ns) / 1e9;
  std::string out;
  if (redraw) out += "\x1b[H\x1b[2J";
  const auto wall = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  char line[512];
  std::snprintf(line, sizeof line, "shmtrace top  %s  interval %.3f s  segments %zu  functions %zu\n",
                live::iso_time(wall).c_str(), seconds, now.segments, rows.size());
  out += line;
  std::snprintf(line, sizeof line, "%12s %10s %11s %11s %10s %8s %12s %10s  %s\n", "CALLS/S", "ERRORS/S", "P50", "P99",
                "CALLS", "ERRORS", "TOTAL", "TOTAL-ERR", "FUNCTION");
  out += line;
  std::size_t shown = 0;
  for (const Row& r : rows) {
    if (limit != 0 && shown == limit) break;
    ++shown;
    std::snprintf(line, sizeof line, "%12.1f %10.1f %11s %11s %10llu %8llu %12llu %10llu  %s\n",
                  static_cast<double>(r.calls) / seconds, static_cast<double>(r.errors) / seconds,
                  duration_cell(r.p50).c_str(), duration_cell(r.p99).c_str(), static_cast<unsigned long long>(r.calls),
                  static_cast<unsigned long long>(r.errors), static_cast<unsigned long long>(r.total_calls),
                  static_cast<unsigned long long>(r.total_errors), r.function.c_str());
    out += line;
  }
  if (!redraw) out += "\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
}

// Sleeps until `deadline` (monotonic ns) or a stop signal.
void sleep_until(std::uint64_t deadline) {
  while (g_stop == 0) {
    const std::uint64_t now = live::monotonic_ns();
    if (now >= deadline) return;
    const std::uint64_t left = std::min<std::uint64_t>(deadline - now, 100'000'000);
    timespec t{0, static_cast<long>(left)};
    ::nanosleep(&t, nullptr);
  }
}

int run_top(const TopArgs& args) {
  const auto interval = live::parse_interval_ns(args.interval);
  if (!interval) {
    say("top", "--interval " + args.interval + ": expected a duration from 1ms to 1 day, like 1s, 500ms, 2.5s");
    return 2;
  }
  if (args.session && !abi::session_id_valid(args.session->data(), args.session->size())) {
    say("top", "--session " + *args.session + ": not a session id (1 to 32 of A-Z a-z 0-9 _ -, a letter first)");
    return 2;
  }
  const bool terminal = ::isatty(STDOUT_FILENO) == 1;
  const bool redraw = terminal && !args.once;
  std::size_t limit = args.limit;
  if (limit == 0 && redraw) {
    winsize ws{};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 3) limit = ws.ws_row - 3u;
  }
  struct sigaction action {};
  action.sa_handler = on_stop;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);

  Watch watch(args.pid, args.session);
  Snapshot before = watch.snapshot();
  if (args.pid && !watch.any_readable()) {
    say("top", "pid " + std::to_string(*args.pid) + ": no readable segment in /dev/shm");
    return 1;
  }
  std::uint64_t deadline = before.taken_ns + static_cast<std::uint64_t>(*interval);
  std::size_t printed = 0;
  while (g_stop == 0) {
    sleep_until(deadline);
    if (g_stop != 0 && !args.once) break;
    Snapshot now = watch.snapshot();
    if (now.taken_ns == before.taken_ns) ++now.taken_ns;
    print(before, now, limit, redraw);
    ++printed;
    if (args.once || (args.iterations != 0 && printed == args.iterations)) break;
    before = std::move(now);
    deadline += static_cast<std::uint64_t>(*interval);
    const std::uint64_t t = live::monotonic_ns();
    if (deadline < t) deadline = t;  // fell behind: no burst of catch-up refreshes
  }
  return 0;
}

}  // namespace

Command add_top(CLI::App& app) {
  auto args = std::make_shared<TopArgs>();
  CLI::App* sub = app.add_subcommand(
      "top",
      "Per function, live from the call-site statistics in shared memory (no drain needed): calls/s, errors/s, "
      "p50/p99 of the last interval, total calls.");
  sub->add_option("--pid", args->pid, "only this process's segments");
  sub->add_option("--session", args->session, "only this session's segments");
  sub->add_option("--interval", args->interval, "refresh interval: 1s (default), 500ms, 2.5s, ...");
  sub->add_flag("--once", args->once, "two snapshots one interval apart, print once and exit (for scripts)");
  sub->add_option("--limit", args->limit, "at most N functions (default: the terminal's height; all when piped)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--iterations", args->iterations, "stop after N refreshes (default: until SIGINT)")
      ->check(CLI::PositiveNumber);
  return [args] { return run_top(*args); };
}

}  // namespace shmtrace::cli
