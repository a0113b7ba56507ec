// What every reading command narrows its rows by: the same option names on
// report, replay and export (--since, --until, --pid, --tid, --name, --group,
// --trace). Times are wall-clock nanoseconds since the epoch, as the
// database stores them; 0 means "no bound".
#ifndef SHMTRACE_TOOLS_QUERY_FILTER_HPP
#define SHMTRACE_TOOLS_QUERY_FILTER_HPP

#include <cstdint>
#include <string>
#include <vector>

namespace shmtrace::query {

struct Filter {
  std::int64_t since_ns = 0;          // spans starting at or after
  std::int64_t until_ns = 0;          // spans starting before
  std::vector<std::int64_t> pids;     // any of these processes
  std::vector<std::int64_t> tids;     // any of these threads
  std::vector<std::string> names;     // span or function names (exact)
  std::vector<std::string> groups;    // process groups (exact)
  std::string trace_id;               // 32 hex digits, "" = every trace
};

}  // namespace shmtrace::query

#endif
