// The sections as tables (output.hpp writes them as text, JSON or CSV).
// Column names are the JSON keys and CSV headers; durations are raw ns in
// JSON and CSV and human-readable in text.
#ifndef SHMTRACE_TOOLS_QUERY_TABLES_HPP
#define SHMTRACE_TOOLS_QUERY_TABLES_HPP

#include <vector>

#include "output.hpp"
#include "sections.hpp"

namespace shmtrace::query {

// function, calls, errors, unfinished, total_ns, self_ns, mean_ns, p50_ns, p95_ns, p99_ns, max_ns
Table functions_table(const std::vector<FunctionStats>& rows);
// process: the program indented by depth in text; pid, ppid, origin, exe,
// cmdline, state, exit_status, signal, start_ns, duration_ns, exec_target, records_dropped
Table processes_table(const std::vector<ProcessNode>& rows, Format format);
// time_ns, pid, tid, kind, type, message, span_path, frames
Table errors_table(const std::vector<ErrorEntry>& rows);
// duration_ns, pid, tid, name, start_ns, span_path
Table slowest_table(const std::vector<SpanEntry>& rows);
// Per process (pid, program, records_dropped) and per thread
// (pid, tid, program, gaps, dropped, first_ns, last_ns).
Table drops_processes_table(const Drops& d);
Table drops_threads_table(const Drops& d);

// "exit 3", "signal 11 (SIGSEGV)", "exec /bin/true", "running", "vanished".
std::string process_status(const ProcessNode& n);

}  // namespace shmtrace::query

#endif
