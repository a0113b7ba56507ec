// SQL functions over call-site statistics (SPEC P13, D3): percentiles of the
// histograms the drain stores in call_stats, from plain SQL.
//
//   shmtrace_quantile(histogram, q)   aggregate: the duration in ns below
//       which a fraction q (0..1) of the calls of all rows lie (the midpoint
//       of the bucket holding that rank: within 1.6 % of the true value);
//       NULL when no call ended.
//   shmtrace_histogram_count(histogram)   scalar: calls in one histogram.
//
// Registered on every connection the drain library opens (store, queries)
// and, for the sqlite3 shell or any SQLite program, by the loadable
// extension libshmtrace_sqlite.so (`.load libshmtrace_sqlite`), built from
// the same source.
#ifndef SHMTRACE_DRAIN_STATS_SQL_HPP
#define SHMTRACE_DRAIN_STATS_SQL_HPP

struct sqlite3;

namespace shmtrace::drain {

// SQLITE_OK, or the code of the registration that failed.
int register_stats_functions(sqlite3* db);

}  // namespace shmtrace::drain

#endif
