// The demo's check: reads the database `shmtrace run` wrote of the workload
// back through QueryDatabase (time partitions attached, shmtrace_quantile
// registered), prints what the worker processes left there, and checks it
// against what they wrote.
#ifndef SHMTRACE_TOOLS_DEMO_REPORT_HPP
#define SHMTRACE_TOOLS_DEMO_REPORT_HPP

#include <expected>
#include <string>
#include <vector>

#include "workload.hpp"

namespace shmtrace::demo {

struct ReportInput {
  std::string database;
  Workload workload;
};

// Prints the report on stdout. Returns one line per count that is not what
// the workload wrote (none: exact), or why the database could not be read.
// The workload is the database's one root process (its parent is not in the
// database) and the workers are its children: exactly workload.workers,
// each exited 0, and nothing else.
std::expected<std::vector<std::string>, std::string> print_report(const ReportInput& input);

}  // namespace shmtrace::demo

#endif
