// The filter options report, replay and sql share (same names everywhere):
// --since/--until TIME, --pid PID, --tid TID, --name NAME, --group GROUP,
// --trace ID. Declared on a subcommand by add_filter_options(); resolved
// against the opened database (relative times need the trace's start) by
// resolve_filter(); open_reading() does both steps with the database's
// opening, for the commands that read the database through a filter.
#ifndef SHMTRACE_TOOLS_READING_OPTIONS_HPP
#define SHMTRACE_TOOLS_READING_OPTIONS_HPP

#include <sqlite3.h>

#include <cstdint>
#include <expected>
#include <string>
#include <vector>

#include "query/database.hpp"
#include "query/filter.hpp"

namespace CLI {
class App;
}

namespace shmtrace::cli {

struct FilterOptions {
  std::string since, until;
  std::vector<std::int64_t> pids, tids;
  std::vector<std::string> names, groups;
  std::string trace;
};

struct FilterSet {
  bool tid = false, name = false, group = false, trace = false;
};

// The positional database argument (default kDefaultDatabase).
void add_database_argument(CLI::App& sub, std::string& db);

void add_filter_options(CLI::App& sub, FilterOptions& o, FilterSet which);

// The Filter, or a one-line error (a bad time: usage, exit 2).
std::expected<query::Filter, std::string> resolve_filter(const FilterOptions& o, sqlite3* db);

struct Reading {
  drain::QueryDatabase db;
  query::Filter filter;
};

// The database opened and the filter resolved against it. A malformed
// --since/--until is a usage error found before the database is opened. On
// failure, one line is said for `command` and the exit status returned: 2
// usage, 1 a database that cannot be opened.
std::expected<Reading, int> open_reading(const std::string& command, const std::string& db, const FilterOptions& o);

}  // namespace shmtrace::cli

#endif
