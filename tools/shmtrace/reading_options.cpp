#include "reading_options.hpp"

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "query/sections.hpp"
#include "query/time_arg.hpp"

namespace shmtrace::cli {

void add_database_argument(CLI::App& sub, std::string& db) {
  sub.add_option("db", db, "The database (default shmtrace.db)");
}

void add_filter_options(CLI::App& sub, FilterOptions& o, FilterSet which) {
  sub.add_option("--since", o.since,
                 "Only what starts at or after TIME: 2026-12-08T10:00:00[.fraction] (UTC), +2s (from the trace's "
                 "start), or ns since the epoch");
  sub.add_option("--until", o.until, "Only what starts before TIME (same forms as --since)");
  sub.add_option("--pid", o.pids, "Only this process (repeatable)")->allow_extra_args(false)->check(CLI::PositiveNumber);
  if (which.tid) sub.add_option("--tid", o.tids, "Only this thread (repeatable)")->allow_extra_args(false)->check(CLI::PositiveNumber);
  if (which.name) sub.add_option("--name", o.names, "Only this function or span name (repeatable)")->allow_extra_args(false);
  if (which.group) sub.add_option("--group", o.groups, "Only spans of this group (repeatable)")->allow_extra_args(false);
  if (which.trace) sub.add_option("--trace", o.trace, "Only this trace (32 hex digits)");
}

std::expected<query::Filter, std::string> resolve_filter(const FilterOptions& o, sqlite3* db) {
  query::Filter f;
  f.pids = o.pids;
  f.tids = o.tids;
  f.names = o.names;
  f.groups = o.groups;
  f.trace_id = o.trace;
  if (!o.trace.empty() && (o.trace.size() != 32 || o.trace.find_first_not_of("0123456789abcdef") != std::string::npos)) {
    return std::unexpected("--trace: '" + o.trace + "' is not 32 lowercase hex digits");
  }
  std::int64_t start = 0;
  if ((!o.since.empty() && o.since[0] == '+') || (!o.until.empty() && o.until[0] == '+')) {
    auto s = query::trace_start_ns(db);
    if (!s) return std::unexpected(s.error());
    start = *s;
  }
  if (!o.since.empty()) {
    auto t = query::parse_time(o.since, start);
    if (!t) return std::unexpected("--since: " + t.error());
    f.since_ns = *t;
  }
  if (!o.until.empty()) {
    auto t = query::parse_time(o.until, start);
    if (!t) return std::unexpected("--until: " + t.error());
    f.until_ns = *t;
  }
  return f;
}

std::expected<Reading, int> open_reading(const std::string& command, const std::string& db, const FilterOptions& o) {
  for (const std::string* t : {&o.since, &o.until}) {
    if (!t->empty()) {
      if (auto ok = query::parse_time(*t, 0); !ok) return say(command, ok.error()), std::unexpected(2);
    }
  }
  auto opened = query::open_database(db);
  if (!opened) return say(command, opened.error()), std::unexpected(1);
  auto filter = resolve_filter(o, opened->handle());
  if (!filter) return say(command, filter.error()), std::unexpected(2);
  return Reading{std::move(*opened), std::move(*filter)};
}

}  // namespace shmtrace::cli
