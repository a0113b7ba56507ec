// The rows one drain cycle moves into SQLite, grouped per segment (SPEC D2,
// D3). A batch is built from shared memory by the segment consumers, then
// either committed to the store in one transaction or, while the store is
// failing, appended to the spill file and committed later (D5). Rows name
// their process by segment, not by database key, so a batch can be built and
// spilled while the database is unreachable.
#ifndef SHMTRACE_DRAIN_BATCH_HPP
#define SHMTRACE_DRAIN_BATCH_HPP

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace shmtrace::drain {

struct ProcessRow {
  std::string segment;  // unique across pid reuse and exec
  std::uint32_t pid = 0;
  std::uint32_t ppid = 0;
  std::string exe;
  std::string cmdline;  // arguments joined by spaces
  std::int64_t start_ns = 0;
  std::string trace_id;  // 32 hex digits, "" when none was inherited
  std::uint64_t parent_span_id = 0;
};

struct ProcessFate {
  std::string state;  // exited, crashed, execed, vanished
  std::int32_t exit_status = 0;
  std::int64_t end_ns = 0;
  std::string exec_target;
  // Records the process lost in all (its rings' dropped counters and those of
  // threads without a ring): what no drop marker reported (drops pending
  // when a thread or the process ended) becomes a gap at the end.
  std::uint64_t dropped_total = 0;
};

// One span: begin and end paired in memory when both are in the batch, else
// the half that is (a begin stores an open row, an end completes it).
struct SpanRow {
  std::uint64_t span_id = 0;
  std::string trace_id;
  std::uint64_t parent_span_id = 0;
  std::uint32_t tid = 0;
  std::string group;
  std::string name;
  std::int64_t start_ns = 0;
  std::optional<std::int64_t> duration_ns;  // absent: not finished (yet)
  int status = 0;                           // 0 OK, 1 ERR
  std::uint64_t error_sequence = 0;
  std::uint64_t code = 0;  // function address (-finstrument-functions)
};

// Arguments, results, events and counters: one row per record, keyed by the
// position of the record that carried it.
struct SpanDataRow {
  std::uint32_t ring = 0;  // kOverflowRing for the overflow area
  std::uint64_t position = 0;
  std::uint64_t span_id = 0;
  std::string kind;  // arg, result, event, counter
  std::int64_t ts_ns = 0;
  std::uint32_t tid = 0;
  std::string name;
  std::string value;       // text, or the number printed exactly
  std::string value_type;  // int, uint, double, bool, string, bytes, repr
  int flags = 0;           // the record's flags (truncated, masked, ...)
};
inline constexpr std::uint32_t kOverflowRing = 0xffffffffu;
// The ring of the gap that accounts, at the process's end, for drops no
// marker reported.
inline constexpr std::uint32_t kUnreportedDropsRing = 0xfffffffeu;

// Process and thread lifecycle records, keyed like span data.
struct ProcessEventRow {
  std::uint32_t ring = 0;
  std::uint64_t position = 0;
  std::string kind;  // process_start, fork, exec, exit, thread_start, thread_end
  std::int64_t ts_ns = 0;
  std::uint32_t tid = 0;
  std::uint64_t span_id = 0;
  std::string name;  // thread name, exec target
  std::int64_t value = 0;  // pid, exit status, tid
  int flags = 0;
};

// A drop marker: records the producer could not keep (SPEC P4).
struct GapRow {
  std::uint32_t ring = 0;
  std::uint64_t position = 0;
  std::uint32_t tid = 0;
  std::int64_t ts_ns = 0;
  std::uint64_t dropped = 0;
  std::int64_t first_ns = 0;
  std::int64_t last_ns = 0;
};

struct ErrorRow {
  std::uint64_t sequence = 0;
  std::int64_t ts_ns = 0;
  std::string kind;  // explicit, exception, crash, span_error
  std::uint32_t tid = 0;
  std::uint64_t span_id = 0;
  std::string trace_id;
  std::string group;
  std::string span_name;
  std::string type;
  std::string message;
  std::string preview;
  std::uint32_t signal = 0;
  std::uint64_t fault_address = 0;
  std::string frames;  // hex addresses separated by spaces
  // The frames symbolized when stored, one line each (symbols::Resolver::
  // describe_frame): "function+0xoffset file:line", "function+0xoffset",
  // or "0xADDR (why)"; "" without frames.
  std::string symbols;
};

// How far the error area was read (chunk, offset, spill offset), stored in
// the transaction of the errors it covers.
struct ErrorCursorRow {
  std::uint32_t chunk = 0;
  std::uint32_t offset = 0;
  std::uint64_t spill_offset = 0;
};

// A call site's cumulative statistics (P13) as read from one ring's table at
// one moment. The store turns consecutive snapshots of a slot into
// per-interval rows: the interval's figures are this snapshot minus the one
// stored before it, so a snapshot stored twice (a drain killed after its
// commit, a spill replayed) adds nothing the second time.
struct CallStatsSnapshot {
  std::uint32_t ring = 0;
  std::uint32_t slot = 0;
  std::uint32_t tid = 0;   // the last thread that used the slot
  std::string kind;        // name, code, other
  std::string name;        // span name or resolved function; "(other)"
  std::uint64_t code = 0;  // the function's address (kind code)
  std::int64_t ts_ns = 0;  // when it was read (wall clock)
  std::uint64_t calls = 0;
  std::uint64_t errors = 0;
  std::uint64_t unfinished = 0;
  std::uint64_t completed = 0;
  std::uint64_t total_ticks = 0;
  std::uint64_t self_ticks = 0;  // total_ticks less the traced callees' time
  std::uint64_t min_ticks = 0;
  std::uint64_t max_ticks = 0;
  std::string histogram;  // store/histogram_blob.hpp layout, with the clock
};

struct SegmentRows {
  ProcessRow process;  // identity; inserted on first sight, ignored after
  std::vector<SpanRow> spans;
  std::vector<SpanDataRow> span_data;
  std::vector<ProcessEventRow> events;
  std::vector<GapRow> gaps;
  std::vector<ErrorRow> errors;
  std::vector<CallStatsSnapshot> call_stats;
  std::optional<ErrorCursorRow> cursor;
  std::optional<ProcessFate> fate;

  std::size_t row_count() const {
    return spans.size() + span_data.size() + events.size() + gaps.size() + errors.size() + call_stats.size() +
           (fate ? 1 : 0);
  }
};

struct Batch {
  std::vector<SegmentRows> segments;
  std::uint64_t records = 0;  // shared-memory records it covers (rings + overflow)

  std::size_t row_count() const {
    std::size_t n = 0;
    for (const SegmentRows& s : segments) n += s.row_count();
    return n;
  }
  bool empty() const { return segments.empty(); }
};

}  // namespace shmtrace::drain

#endif
