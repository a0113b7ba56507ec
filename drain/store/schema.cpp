#include "store/schema.hpp"

#include <array>
#include <string>
#include <vector>

#include "alerts/alert_evaluator.hpp"

namespace shmtrace::drain::schema {
namespace {

constexpr std::array<const char*, 4> kMigrations = {
    // Version 1: everything in one file.
    R"sql(
    CREATE TABLE processes (
      process_key INTEGER PRIMARY KEY,
      segment TEXT NOT NULL UNIQUE,
      pid INTEGER NOT NULL, ppid INTEGER NOT NULL,
      exe TEXT NOT NULL, cmdline TEXT NOT NULL,
      start_ns INTEGER NOT NULL, end_ns INTEGER,
      state TEXT NOT NULL DEFAULT 'running', exit_status INTEGER, exec_target TEXT,
      trace_id TEXT NOT NULL, parent_span_id INTEGER NOT NULL);
    CREATE INDEX processes_by_ppid ON processes (ppid);
    CREATE TABLE spans (
      process_key INTEGER NOT NULL, span_id INTEGER NOT NULL,
      trace_id TEXT NOT NULL, parent_span_id INTEGER NOT NULL, tid INTEGER NOT NULL,
      grp TEXT NOT NULL, name TEXT NOT NULL,
      start_ns INTEGER NOT NULL, duration_ns INTEGER,
      status INTEGER NOT NULL, error_sequence INTEGER NOT NULL, code INTEGER NOT NULL,
      PRIMARY KEY (process_key, span_id));
    CREATE INDEX spans_by_start ON spans (start_ns);
    CREATE TABLE records (
      process_key INTEGER NOT NULL, ring INTEGER NOT NULL, position INTEGER NOT NULL,
      kind TEXT NOT NULL, ts_ns INTEGER NOT NULL, tid INTEGER NOT NULL, span_id INTEGER NOT NULL,
      name TEXT NOT NULL, value TEXT NOT NULL, value_type TEXT NOT NULL,
      aux INTEGER NOT NULL, flags INTEGER NOT NULL,
      PRIMARY KEY (process_key, ring, position));
    CREATE TABLE errors (
      process_key INTEGER NOT NULL, sequence INTEGER NOT NULL,
      ts_ns INTEGER NOT NULL, kind TEXT NOT NULL, tid INTEGER NOT NULL, span_id INTEGER NOT NULL,
      trace_id TEXT NOT NULL, grp TEXT NOT NULL, span_name TEXT NOT NULL,
      type TEXT NOT NULL, message TEXT NOT NULL, preview TEXT NOT NULL,
      signal INTEGER NOT NULL, fault_address INTEGER NOT NULL, frames TEXT NOT NULL,
      PRIMARY KEY (process_key, sequence));
    CREATE TABLE error_cursors (
      process_key INTEGER PRIMARY KEY, chunk INTEGER NOT NULL, offset INTEGER NOT NULL,
      spill_offset INTEGER NOT NULL);
    )sql",
    // Version 2: spans and span data move to time partitions (their version-1
    // rows stay readable as v1_spans and v1_records); lifecycle records, drop
    // gaps, metrics history and fired alerts get tables of their own.
    R"sql(
    ALTER TABLE spans RENAME TO v1_spans;
    ALTER TABLE records RENAME TO v1_records;
    CREATE INDEX errors_by_time ON errors (ts_ns);
    CREATE INDEX processes_by_end ON processes (end_ns);
    CREATE TABLE process_events (
      process_key INTEGER NOT NULL, ring INTEGER NOT NULL, position INTEGER NOT NULL,
      kind TEXT NOT NULL, ts_ns INTEGER NOT NULL, tid INTEGER NOT NULL, span_id INTEGER NOT NULL,
      name TEXT NOT NULL, value INTEGER NOT NULL, flags INTEGER NOT NULL,
      PRIMARY KEY (process_key, ring, position)) WITHOUT ROWID;
    CREATE INDEX process_events_by_time ON process_events (ts_ns);
    CREATE TABLE gaps (
      process_key INTEGER NOT NULL, ring INTEGER NOT NULL, position INTEGER NOT NULL,
      tid INTEGER NOT NULL, ts_ns INTEGER NOT NULL, dropped INTEGER NOT NULL,
      first_ns INTEGER NOT NULL, last_ns INTEGER NOT NULL,
      PRIMARY KEY (process_key, ring, position)) WITHOUT ROWID;
    CREATE INDEX gaps_by_time ON gaps (ts_ns);
    CREATE TABLE partitions (
      partition_id INTEGER PRIMARY KEY, file TEXT NOT NULL UNIQUE,
      start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL);
    CREATE TABLE metrics (
      ts_ns INTEGER NOT NULL, name TEXT NOT NULL, labels TEXT NOT NULL, value REAL NOT NULL);
    CREATE INDEX metrics_by_time ON metrics (ts_ns, name);
    )sql",
    // Version 3: call-site statistics (P13). call_sites holds each slot's
    // cumulative figures as of its last stored interval (the base of the next
    // interval's difference); call_stats one row per slot and interval.
    // function_stats sums them per function (shmtrace_quantile is registered
    // by the drain library and the libshmtrace_sqlite extension).
    R"sql(
    ALTER TABLE processes ADD COLUMN records_dropped INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE call_sites (
      site_key INTEGER PRIMARY KEY,
      process_key INTEGER NOT NULL, ring INTEGER NOT NULL, slot INTEGER NOT NULL,
      kind TEXT NOT NULL, name TEXT NOT NULL, code INTEGER NOT NULL,
      last_ns INTEGER NOT NULL,
      calls INTEGER NOT NULL, errors INTEGER NOT NULL, unfinished INTEGER NOT NULL,
      completed INTEGER NOT NULL, total_ticks INTEGER NOT NULL,
      min_ticks INTEGER NOT NULL, max_ticks INTEGER NOT NULL, histogram BLOB NOT NULL,
      UNIQUE (process_key, ring, slot));
    CREATE TABLE call_stats (
      site_key INTEGER NOT NULL, end_ns INTEGER NOT NULL, start_ns INTEGER NOT NULL,
      process_key INTEGER NOT NULL, tid INTEGER NOT NULL, name TEXT NOT NULL,
      calls INTEGER NOT NULL, errors INTEGER NOT NULL, unfinished INTEGER NOT NULL,
      completed INTEGER NOT NULL, total_ns REAL NOT NULL, min_ns REAL, max_ns REAL,
      histogram BLOB NOT NULL,
      PRIMARY KEY (site_key, end_ns)) WITHOUT ROWID;
    CREATE INDEX call_stats_by_time ON call_stats (end_ns);
    CREATE INDEX call_stats_by_name ON call_stats (name, end_ns);
    CREATE VIEW function_stats AS
      SELECT name, sum(calls) AS calls, sum(errors) AS errors, sum(unfinished) AS unfinished,
             sum(completed) AS completed, sum(total_ns) / nullif(sum(completed), 0) AS mean_ns,
             min(min_ns) AS min_ns, shmtrace_quantile(histogram, 0.5) AS p50_ns,
             shmtrace_quantile(histogram, 0.95) AS p95_ns, shmtrace_quantile(histogram, 0.99) AS p99_ns,
             max(max_ns) AS max_ns, min(start_ns) AS first_ns, max(end_ns) AS last_ns
      FROM call_stats GROUP BY name;
    )sql",
    // Version 4: what the user's commands read. processes.session is the
    // run (shmtrace run) a process belonged to, '' for none; errors.symbols
    // holds the frames symbolized when they were stored, one per line
    // ("function+0xoffset file:line", or the address and why not);
    // self time per call site: total minus the time spent in traced callees.
    R"sql(
    ALTER TABLE processes ADD COLUMN session TEXT NOT NULL DEFAULT '';
    ALTER TABLE errors ADD COLUMN symbols TEXT NOT NULL DEFAULT '';
    ALTER TABLE call_sites ADD COLUMN self_ticks INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE call_stats ADD COLUMN self_ns REAL NOT NULL DEFAULT 0;
    CREATE INDEX errors_by_process ON errors (process_key, ts_ns);
    DROP VIEW function_stats;
    CREATE VIEW function_stats AS
      SELECT name, sum(calls) AS calls, sum(errors) AS errors, sum(unfinished) AS unfinished,
             sum(completed) AS completed, sum(total_ns) AS total_ns, sum(self_ns) AS self_ns,
             sum(total_ns) / nullif(sum(completed), 0) AS mean_ns,
             min(min_ns) AS min_ns, shmtrace_quantile(histogram, 0.5) AS p50_ns,
             shmtrace_quantile(histogram, 0.95) AS p95_ns, shmtrace_quantile(histogram, 0.99) AS p99_ns,
             max(max_ns) AS max_ns, min(start_ns) AS first_ns, max(end_ns) AS last_ns
      FROM call_stats GROUP BY name;
    )sql",
};

}  // namespace

const std::vector<std::string>& main_migrations() {
  // The alerts table's text belongs to the alert evaluator, which reads it.
  static const std::vector<std::string> migrations = {
      kMigrations[0], std::string(kMigrations[1]) + alerts::kAlertsTableSql, kMigrations[2],
      kMigrations[3]};
  return migrations;
}

// Spans are keyed by (process, span id): a begin and its end meet in one row
// whatever batches they came in. The start-time index grows at its end (rows
// arrive in time order); the duration index is what `shmtrace report`'s
// slowest spans read (the longest first, without a scan of every span);
// span data is keyed by record position, also in order per ring.
const char* const kPartitionTables = R"sql(
    CREATE TABLE IF NOT EXISTS spans (
      process_key INTEGER NOT NULL, span_id INTEGER NOT NULL,
      trace_id TEXT NOT NULL, parent_span_id INTEGER NOT NULL, tid INTEGER NOT NULL,
      grp TEXT NOT NULL, name TEXT NOT NULL,
      start_ns INTEGER NOT NULL, duration_ns INTEGER,
      status INTEGER NOT NULL, error_sequence INTEGER NOT NULL, code INTEGER NOT NULL,
      PRIMARY KEY (process_key, span_id)) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS spans_by_start ON spans (start_ns);
    CREATE INDEX IF NOT EXISTS spans_by_duration ON spans (duration_ns);
    CREATE TABLE IF NOT EXISTS span_data (
      process_key INTEGER NOT NULL, ring INTEGER NOT NULL, position INTEGER NOT NULL,
      span_id INTEGER NOT NULL, kind TEXT NOT NULL, ts_ns INTEGER NOT NULL, tid INTEGER NOT NULL,
      name TEXT NOT NULL, value TEXT NOT NULL, value_type TEXT NOT NULL, flags INTEGER NOT NULL,
      PRIMARY KEY (process_key, ring, position)) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS span_data_by_span ON span_data (process_key, span_id);
)sql";

}  // namespace shmtrace::drain::schema
