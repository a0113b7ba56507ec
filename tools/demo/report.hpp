// The demo's report: reads the drain's database back through QueryDatabase
// (time partitions attached, shmtrace_quantile registered), prints what the
// worker processes left there, and checks it against what they wrote.
#ifndef SHMTRACE_TOOLS_DEMO_REPORT_HPP
#define SHMTRACE_TOOLS_DEMO_REPORT_HPP

#include <sys/types.h>

#include <expected>
#include <string>
#include <vector>

#include "workload.hpp"

namespace shmtrace::demo {

struct ReportInput {
  std::string database;
  Workload workload;
  pid_t parent = 0;            // the demo: the workers' ppid
  std::vector<pid_t> workers;  // their pids
};

// Prints the report on stdout. Returns one line per count that is not what
// the workload wrote (none: exact), or why the database could not be read.
std::expected<std::vector<std::string>, std::string> print_report(const ReportInput& input);

}  // namespace shmtrace::demo

#endif
