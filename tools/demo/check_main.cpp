// shmtrace-demo-check: the quick start's proof. Reads the database that
// `shmtrace run` wrote of shmtrace-demo-workload, prints what the worker
// processes left there, and checks every count against what they wrote
// (report.cpp): spans per function, errors, redacted passwords, counters,
// nothing dropped.
//
//   shmtrace-demo-check --db FILE [--workers N] [--threads N] [--requests N]
// (the same workload options as the run). Exit status: 0 when every count
// matches, 1 on a mismatch or an unreadable database (one stderr line each),
// 2 on bad usage.
#include <cstdio>
#include <string>

#include "options.hpp"
#include "report.hpp"
#include "workload.hpp"

int main(int argc, char** argv) {
  shmtrace::demo::Workload w;
  std::string database;
  auto say = [](const std::string& line) { std::fprintf(stderr, "shmtrace-demo-check: %s\n", line.c_str()); };
  if (auto status = shmtrace::demo::parse_workload_options(
          argc, argv, w, "shmtrace-demo-check",
          "Checks that FILE holds exactly what shmtrace-demo-workload with these options wrote.\n", &database);
      status) {
    return *status;
  }
  auto report = shmtrace::demo::print_report({database, w});
  if (!report) {
    say(report.error());
    return 1;
  }
  std::fflush(stdout);
  if (!report->empty()) {
    for (const std::string& m : *report) say(database + ": MISMATCH: " + m);
    return 1;
  }
  const auto want = shmtrace::demo::expected_counts(w);
  std::printf("\nOK: every record of %d worker processes stored exactly once (%llu spans, %llu errors, %llu "
              "passwords redacted, 0 dropped)\n",
              w.workers, static_cast<unsigned long long>(want.spans), static_cast<unsigned long long>(want.errors),
              static_cast<unsigned long long>(want.passwords));
  return 0;
}
