// The filter options report, replay and sql share (same names everywhere):
// --since/--until TIME, --pid PID, --tid TID, --name NAME, --group GROUP,
// --trace ID. Declared on a subcommand by add_filter_options(); resolved
// against the opened database (relative times need the trace's start) by
// resolve_filter().
#ifndef SHMTRACE_TOOLS_READING_OPTIONS_HPP
#define SHMTRACE_TOOLS_READING_OPTIONS_HPP

#include <sqlite3.h>

#include <cstdint>
#include <expected>
#include <string>
#include <vector>

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

void add_filter_options(CLI::App& sub, FilterOptions& o, FilterSet which);

// The Filter, or a one-line error (a bad time: usage, exit 2).
std::expected<query::Filter, std::string> resolve_filter(const FilterOptions& o, sqlite3* db);

}  // namespace shmtrace::cli

#endif
