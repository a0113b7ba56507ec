// A streaming reader of what a drain stored, for the exports: spans (with
// their arguments, results and events, and the errors raised inside them),
// errors, drop gaps and counters, one row at a time, narrowed by a Filter
// whose values are bound as parameters (never pasted into the SQL). Memory
// stays constant whatever the database's size: one row of each stream, a
// span's own data, and the processes and thread names (a few per process).
//
// Order: spans by start time (a parent before its children), merged from
// the partitions' start-time indexes without a sort; errors and gaps by
// time; counters in stored order. Consumers that need another order (ends of slices)
// keep a stack per thread, bounded by the call depth.
#ifndef SHMTRACE_TOOLS_QUERY_SPAN_SCAN_HPP
#define SHMTRACE_TOOLS_QUERY_SPAN_SCAN_HPP

#include <cstdint>
#include <expected>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "filter.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace shmtrace::query {

struct ProcessInfo {
  std::int64_t process_key = 0;
  std::int64_t pid = 0;
  std::int64_t ppid = 0;
  std::string exe;
  std::string cmdline;
  std::int64_t start_ns = 0;
  std::optional<std::int64_t> end_ns;
  std::string state;  // running, exited, crashed, execed, vanished
  std::optional<std::int64_t> exit_status;
  std::string trace_id;              // 32 hex digits, "" when none was set
  std::uint64_t parent_span_id = 0;  // the span (in another process) it was started under
  std::string session;
  std::string program() const;  // exe's last path component
};

// An argument, result or event of a span (span_data).
struct SpanDatum {
  std::string kind;        // arg, result, event
  std::string name;
  std::string value;       // text, or the number printed exactly
  std::string value_type;  // int, uint, double, bool, string, bytes, repr
  std::int64_t ts_ns = 0;
};

struct ErrorRow {
  std::int64_t process_key = 0;
  std::int64_t sequence = 0;
  std::int64_t ts_ns = 0;
  std::string kind;  // explicit, exception, crash, span error
  std::int64_t tid = 0;
  std::uint64_t span_id = 0;
  std::string trace_id;
  std::string group;
  std::string span_name;
  std::string type;
  std::string message;
  std::int64_t signal = 0;
  std::uint64_t fault_address = 0;
  std::string frames;   // hex return addresses
  std::string symbols;  // symbolized frames, one a line ("" when not symbolized)
};

struct SpanRow {
  std::int64_t process_key = 0;
  std::uint64_t span_id = 0;
  std::string trace_id;
  std::uint64_t parent_span_id = 0;  // 0: a root in its process
  std::int64_t tid = 0;
  std::string group;
  std::string name;
  std::int64_t start_ns = 0;
  std::optional<std::int64_t> duration_ns;  // nullopt: unfinished
  int status = 0;                           // 0 OK, 1 ERR
  std::int64_t error_sequence = 0;
  std::uint64_t code = 0;
  std::vector<SpanDatum> data;    // when ScanOptions::data; in the order written
  std::vector<ErrorRow> errors;   // when ScanOptions::errors: raised inside the span
};

struct GapRow {
  std::int64_t process_key = 0;
  std::int64_t ring = 0;
  std::int64_t tid = 0;
  std::int64_t ts_ns = 0;
  std::int64_t dropped = 0;
  std::int64_t first_ns = 0;
  std::int64_t last_ns = 0;
};

struct CounterRow {
  std::int64_t process_key = 0;
  std::int64_t tid = 0;
  std::int64_t ts_ns = 0;
  std::string name;
  std::string value;
  std::string value_type;
};

struct ScanOptions {
  bool data = true;     // fill SpanRow::data
  bool errors = false;  // fill SpanRow::errors
};

class Statement;

// One query's rows, one at a time.
class SpanScan {
 public:
  // Prepares every statement; fails with one line when the database lacks
  // a table or column the scan reads.
  static std::expected<SpanScan, std::string> open(sqlite3* db, const Filter& filter, ScanOptions options = {});
  SpanScan(SpanScan&&) noexcept;
  SpanScan& operator=(SpanScan&&) noexcept;
  ~SpanScan();

  // Processes the filter's pids select (every process without --pid),
  // loaded at open, keyed by process_key.
  const std::map<std::int64_t, ProcessInfo>& processes() const { return processes_; }
  const ProcessInfo* process(std::int64_t process_key) const;
  // The thread's name from its thread_start record, "" when none was stored.
  std::string thread_name(std::int64_t process_key, std::int64_t tid) const;

  // Each returns true with the next row, false at the end, or the error.
  std::expected<bool, std::string> next_span(SpanRow& row);
  std::expected<bool, std::string> next_error(ErrorRow& row);
  std::expected<bool, std::string> next_gap(GapRow& row);
  std::expected<bool, std::string> next_counter(CounterRow& row);

 private:
  SpanScan();
  std::map<std::int64_t, ProcessInfo> processes_;
  std::map<std::pair<std::int64_t, std::int64_t>, std::string> thread_names_;
  ScanOptions options_;
  std::set<std::int64_t> with_errors_;  // processes that have errors
  std::unique_ptr<Statement> spans_, data_, span_errors_, errors_, gaps_, counters_;
};

// 16 lower-case hex digits of a span id, as OTLP and the tools print it.
std::string span_hex(std::uint64_t id);

}  // namespace shmtrace::query

#endif
