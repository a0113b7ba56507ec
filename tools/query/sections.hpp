// What `shmtrace report` shows, one function per section, each returning
// plain structs (`shmtrace run` reuses functions() for its summary). Every
// function takes the handle of a database opened with open_database()
// (database.hpp) and a Filter; the filter's values reach SQLite as bound
// parameters only. Errors are one line of text.
//
// Where the figures come from, and what dropped records mean for them:
//  - functions: the call-site statistics (call_stats), kept in shared memory
//    by the runtime whatever the rings dropped or sampling left out, so
//    calls, errors and percentiles are exact; p50..p99 come from the merged
//    histograms (shmtrace_quantile, within the histogram's ~1.6 % bucket).
//  - slowest, errors' span paths, the call tree: the stored spans, which
//    lack what a ring dropped (the gaps of drops()).
#ifndef SHMTRACE_TOOLS_QUERY_SECTIONS_HPP
#define SHMTRACE_TOOLS_QUERY_SECTIONS_HPP

#include <sqlite3.h>

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "filter.hpp"

namespace shmtrace::query {

template <typename T>
using Result = std::expected<T, std::string>;

// ---- functions -----------------------------------------------------------
// One row per function (span or function name) over the statistics whose
// interval overlaps [since, until); --pid and --name narrow it; --group keeps
// the names seen in spans of those groups. Times in ns.
struct FunctionStats {
  std::string name;
  std::int64_t calls = 0;       // exact
  std::int64_t errors = 0;      // exact
  std::int64_t unfinished = 0;  // begun, not ended (a crash, an exit mid-call)
  std::int64_t completed = 0;
  double total_ns = 0;  // sum of completed calls' durations
  double self_ns = 0;   // total minus the time in traced callees
  double mean_ns = 0;   // total / completed (0 when none completed)
  double min_ns = 0, p50_ns = 0, p95_ns = 0, p99_ns = 0, max_ns = 0;
};
enum class SortKey { kTotal, kSelf, kCalls, kP99 };
// "total", "self", "calls", "p99"; nullopt for anything else.
std::optional<SortKey> parse_sort_key(std::string_view name);
// Sorted by `sort` (largest first, then by name); `limit` rows at most (0: all).
Result<std::vector<FunctionStats>> functions(sqlite3* db, const Filter& f, SortKey sort, int limit);

// ---- process tree --------------------------------------------------------
// Each process image (a process and each program it exec'd is one image)
// in tree order: a parent before its children, children by start time.
struct ProcessNode {
  std::int64_t process_key = 0;
  std::int64_t pid = 0, ppid = 0;
  std::int64_t parent_key = 0;  // the image it came from (fork/spawn parent, or the image that exec'd it); 0 = root
  int depth = 0;                // 0 for roots
  std::string origin;           // "root", "fork", "spawn", "vfork", "exec" or "child" (no event said how)
  std::string exe, cmdline, session;
  std::string state;            // running, exited, crashed, execed, vanished
  std::optional<std::int64_t> exit_status;  // exit code, or the signal when crashed
  std::int64_t start_ns = 0;
  std::optional<std::int64_t> end_ns;
  std::string exec_target;      // the program it exec'd (state execed)
  std::int64_t records_dropped = 0;
};
// --pid keeps those pids' images and their ancestors and descendants;
// --since/--until keep images alive in the window.
Result<std::vector<ProcessNode>> process_tree(sqlite3* db, const Filter& f);

// ---- errors and crashes --------------------------------------------------
struct ErrorEntry {
  std::int64_t process_key = 0, pid = 0, tid = 0, sequence = 0, ts_ns = 0;
  std::string kind;      // exception, crash, span_error, ... (the error area's kind)
  std::string type, message;
  std::string exe;
  std::int64_t span_id = 0;
  std::string span_name, group, trace_id;
  int signal = 0;
  std::int64_t fault_address = 0;
  std::vector<std::string> path;     // span names from the root down to the failing span
  std::vector<std::string> symbols;  // symbolized frames, innermost first ("fn+0x1f file:line")
  std::vector<std::string> frames;   // raw addresses ("0x..."), when nothing was symbolized
};
// Newest last; `limit` (0: all) keeps the newest.
Result<std::vector<ErrorEntry>> errors(sqlite3* db, const Filter& f, int limit);

// ---- slowest spans -------------------------------------------------------
struct SpanEntry {
  std::int64_t process_key = 0, pid = 0, tid = 0, span_id = 0, parent_span_id = 0;
  std::string name, group, trace_id;
  std::int64_t start_ns = 0, duration_ns = 0;
  int status = 0;
  std::vector<std::string> path;  // names from the root down to this span (itself last)
};
Result<std::vector<SpanEntry>> slowest(sqlite3* db, const Filter& f, int limit);

// ---- drops and gaps ------------------------------------------------------
struct ThreadDrops {
  std::int64_t process_key = 0, pid = 0, tid = 0;
  std::string exe;
  std::int64_t gaps = 0, dropped = 0;  // gap markers, records they count
  std::int64_t first_ns = 0, last_ns = 0;  // the window the gaps cover
};
struct ProcessDrops {
  std::int64_t process_key = 0, pid = 0;
  std::string exe;
  std::int64_t records_dropped = 0;  // the producer's own count (processes.records_dropped)
};
struct Drops {
  std::vector<ProcessDrops> processes;  // every process with drops
  std::vector<ThreadDrops> threads;     // per thread, from the gap markers
  std::int64_t total_dropped = 0;
  // What the drops mean for the other sections, in words.
  std::string meaning;
};
Result<Drops> drops(sqlite3* db, const Filter& f);

// Span names from the root of `span_id`'s tree down to it (itself last),
// through the parent links of process `process_key`; a parent that was
// dropped ends the walk with "[dropped]" at the top.
Result<std::vector<std::string>> span_path(sqlite3* db, std::int64_t process_key, std::int64_t span_id);

// The trace's first recorded time (ns since the epoch: the earliest process
// start), for durations relative to it (--since +2s); 0 for an empty trace.
Result<std::int64_t> trace_start_ns(sqlite3* db);

}  // namespace shmtrace::query

#endif
