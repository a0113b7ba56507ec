#include "report.hpp"

#include <sqlite3.h>

#include <cstdio>
#include <map>
#include <optional>
#include <string_view>

#include "query/database.hpp"
#include "store/sqlite_util.hpp"

namespace shmtrace::demo {
namespace {

using Mismatches = std::vector<std::string>;

// Runs `text` (its one `?` bound to `param` when given) and hands each row
// to `row`.
template <class Row>
std::expected<void, std::string> for_each_row(sqlite3* db, const std::string& text, Row&& row,
                                              std::optional<std::string_view> param = std::nullopt) {
  auto st = drain::sql::Statement::prepare(db, text);
  if (!st) return std::unexpected(st.error());
  if (param) drain::sql::Binder{st->get()}(*param);
  int rc = SQLITE_OK;
  while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) row(st->get());
  if (rc != SQLITE_DONE) return std::unexpected(std::string(sqlite3_errmsg(db)) + " in: " + text.substr(0, 80));
  return {};
}

std::int64_t integer(sqlite3_stmt* s, int column) { return sqlite3_column_int64(s, column); }
std::string text(sqlite3_stmt* s, int column) {
  const auto* t = sqlite3_column_text(s, column);
  return t != nullptr ? reinterpret_cast<const char*>(t) : "";
}
// Nanoseconds to microseconds for the tables; "-" when SQL gave NULL.
std::string micros(sqlite3_stmt* s, int column) {
  if (sqlite3_column_type(s, column) == SQLITE_NULL) return "-";
  char out[32];
  std::snprintf(out, sizeof out, "%.2f", sqlite3_column_double(s, column) / 1e3);
  return out;
}

std::string count_mismatch(const std::string& what, std::int64_t got, std::uint64_t want) {
  return what + ": " + std::to_string(got) + " in the database, expected " + std::to_string(want);
}

struct Process {
  std::int64_t key = 0;
  std::int64_t pid = 0;
  std::string state;
  std::string exit_status;  // "-" when NULL
  std::int64_t dropped = 0;
};

struct Function {
  std::int64_t calls = 0, errors = 0, spans = 0, err_spans = 0, unfinished = 0;
  std::string p50 = "-", p99 = "-", max = "-";
};

class Report {
 public:
  Report(sqlite3* db, const ReportInput& in) : db_(db), in_(in), want_(expected_counts(in.workload)) {}

  std::expected<Mismatches, std::string> run() {
    for (auto step : {&Report::processes, &Report::functions, &Report::errors, &Report::data, &Report::drops}) {
      if (auto ok = (this->*step)(); !ok) return std::unexpected(ok.error());
    }
    return std::move(mismatches_);
  }

 private:
  std::expected<void, std::string> processes() {
    std::vector<Process> ours;
    std::int64_t roots = 0, root_pid = 0, others = 0;
    std::string root_state, root_exit;
    auto ok = for_each_row(db_,
                           "SELECT pid, state, coalesce(exit_status, '-') FROM processes "
                           "WHERE ppid NOT IN (SELECT pid FROM processes) AND state != 'execed'",
                           [&](sqlite3_stmt* s) {
                             ++roots;
                             root_pid = integer(s, 0);
                             root_state = text(s, 1);
                             root_exit = text(s, 2);
                           });
    if (!ok) return ok;
    if (roots != 1) {
      mismatches_.push_back(count_mismatch("root processes (the workload)", roots, 1));
    } else if (root_state != "exited" || root_exit != "0") {
      mismatches_.push_back("the workload (pid " + std::to_string(root_pid) + "): state " + root_state +
                            ", exit status " + root_exit + " in the database, expected exited with 0");
    }
    ok = for_each_row(
        db_,
        "SELECT process_key, pid, ppid, state, coalesce(exit_status, '-'), records_dropped "
        "FROM processes ORDER BY pid, process_key",
        [&](sqlite3_stmt* s) {
          if (integer(s, 1) == root_pid) return;
          if (integer(s, 2) != root_pid) {
            ++others;
            return;
          }
          ours.push_back(Process{integer(s, 0), integer(s, 1), text(s, 3), text(s, 4), integer(s, 5)});
        });
    if (!ok) return ok;
    std::printf("\n%-9s %8s  %-9s %5s %8s\n", "process", "pid", "state", "exit", "dropped");
    std::printf("%-9s %8lld  %-9s %5s %8s\n", "workload", static_cast<long long>(root_pid), root_state.c_str(),
                root_exit.c_str(), "-");
    for (const Process& p : ours) {
      std::printf("%-9s %8lld  %-9s %5s %8lld\n", "worker", static_cast<long long>(p.pid), p.state.c_str(),
                  p.exit_status.c_str(), static_cast<long long>(p.dropped));
      keys_ += (keys_.empty() ? "" : ",") + std::to_string(p.key);
      if (p.state != "exited" || p.exit_status != "0") {
        mismatches_.push_back("worker " + std::to_string(p.pid) + ": state " + p.state + ", exit status " +
                              p.exit_status + " in the database, expected exited with 0");
      }
    }
    if (others > 0) mismatches_.push_back(count_mismatch("processes other than the workload's", others, 0));
    if (ours.size() != static_cast<std::size_t>(in_.workload.workers)) {
      mismatches_.push_back(count_mismatch("worker processes", static_cast<std::int64_t>(ours.size()),
                                           static_cast<std::uint64_t>(in_.workload.workers)));
    }
    if (keys_.empty()) keys_ = "NULL";  // matches no row
    return {};
  }

  // Per function: exact calls and errors from call_stats (the call-site
  // statistics), span rows from spans, percentiles from the histograms.
  std::expected<void, std::string> functions() {
    std::map<std::string, Function> by_name;
    auto ok = for_each_row(db_,
                           "SELECT name, sum(calls), sum(errors), shmtrace_quantile(histogram, 0.5), "
                           "shmtrace_quantile(histogram, 0.99), max(max_ns) "
                           "FROM call_stats WHERE process_key IN (" + keys_ + ") GROUP BY name",
                           [&](sqlite3_stmt* s) {
                             Function& f = by_name[text(s, 0)];
                             f.calls = integer(s, 1);
                             f.errors = integer(s, 2);
                             f.p50 = micros(s, 3);
                             f.p99 = micros(s, 4);
                             f.max = micros(s, 5);
                           });
    if (!ok) return ok;
    ok = for_each_row(db_,
                      "SELECT name, count(*), sum(status = 1), sum(duration_ns IS NULL) "
                      "FROM spans WHERE process_key IN (" + keys_ + ") GROUP BY name",
                      [&](sqlite3_stmt* s) {
                        Function& f = by_name[text(s, 0)];
                        f.spans = integer(s, 1);
                        f.err_spans = integer(s, 2);
                        f.unfinished = integer(s, 3);
                      });
    if (!ok) return ok;
    // The µ takes two bytes, one column: its headers get one more byte.
    std::printf("\n%-16s %8s %7s %8s %7s %11s %11s %11s\n", "function", "calls", "errors", "spans", "ERR",
                "p50 µs", "p99 µs", "max µs");
    std::int64_t spans = 0;
    for (const auto& [name, f] : by_name) {
      std::printf("%-16s %8lld %7lld %8lld %7lld %10s %10s %10s\n", name.c_str(), static_cast<long long>(f.calls),
                  static_cast<long long>(f.errors), static_cast<long long>(f.spans),
                  static_cast<long long>(f.err_spans), f.p50.c_str(), f.p99.c_str(), f.max.c_str());
      spans += f.spans;
    }
    for (std::string_view expected_name : kFunctions) {
      const std::string name(expected_name);
      const Function f = by_name.contains(name) ? by_name.at(name) : Function{};
      const std::uint64_t errors = name == "query" ? want_.errors : 0;
      if (f.calls != static_cast<std::int64_t>(want_.requests)) {
        mismatches_.push_back(count_mismatch(name + " calls (call_stats)", f.calls, want_.requests));
      }
      if (f.errors != static_cast<std::int64_t>(errors)) {
        mismatches_.push_back(count_mismatch(name + " errors (call_stats)", f.errors, errors));
      }
      if (f.spans != static_cast<std::int64_t>(want_.requests)) {
        mismatches_.push_back(count_mismatch(name + " spans", f.spans, want_.requests));
      }
      if (f.err_spans != static_cast<std::int64_t>(errors)) {
        mismatches_.push_back(count_mismatch(name + " spans with status ERR", f.err_spans, errors));
      }
      if (f.unfinished != 0) mismatches_.push_back(count_mismatch(name + " unfinished spans", f.unfinished, 0));
    }
    if (spans != static_cast<std::int64_t>(want_.spans)) {
      mismatches_.push_back(count_mismatch("spans", spans, want_.spans));
    }
    return {};
  }

  std::expected<void, std::string> errors() {
    std::int64_t total = 0;
    std::printf("\n%-16s %-24s %8s\n", "error kind", "type", "count");
    auto ok = for_each_row(db_,
                           "SELECT kind, type, count(*) FROM errors WHERE process_key IN (" + keys_ +
                               ") GROUP BY kind, type ORDER BY count(*) DESC, type",
                           [&](sqlite3_stmt* s) {
                             std::printf("%-16s %-24s %8lld\n", text(s, 0).c_str(), text(s, 1).c_str(),
                                         static_cast<long long>(integer(s, 2)));
                             total += integer(s, 2);
                           });
    if (!ok) return ok;
    if (total == 0) std::printf("(none)\n");
    if (total != static_cast<std::int64_t>(want_.errors)) {
      mismatches_.push_back(count_mismatch("errors", total, want_.errors));
    }
    return {};
  }

  // The password arguments (masked by the runtime, redacted by the drain:
  // the secret itself must be nowhere) and the counters.
  std::expected<void, std::string> data() {
    std::int64_t passwords = 0, hidden = 0, leaked = 0, counters = 0;
    std::string stored_as;
    auto ok = for_each_row(
        db_,
        "SELECT count(*), coalesce(sum(instr(value, ?1) = 0), 0), coalesce(group_concat(DISTINCT value), '') "
        "FROM span_data WHERE kind = 'arg' AND name = 'password' AND process_key IN (" + keys_ + ")",
        [&](sqlite3_stmt* s) {
          passwords = integer(s, 0);
          hidden = integer(s, 1);
          stored_as = text(s, 2);
        },
        kSecret);
    if (!ok) return ok;
    ok = for_each_row(
        db_, "SELECT count(*) FROM span_data WHERE instr(value, ?1) > 0 AND process_key IN (" + keys_ + ")",
        [&](sqlite3_stmt* s) { leaked = integer(s, 0); }, kSecret);
    if (!ok) return ok;
    ok = for_each_row(db_,
                      "SELECT count(*) FROM span_data WHERE kind = 'counter' AND name = 'queue_depth' "
                      "AND process_key IN (" + keys_ + ")",
                      [&](sqlite3_stmt* s) { counters = integer(s, 0); });
    if (!ok) return ok;
    if (stored_as.size() > 40) stored_as = stored_as.substr(0, 37) + "...";
    std::printf("\npassword arguments %lld, stored as '%s'; values holding the secret: %lld\n",
                static_cast<long long>(passwords), stored_as.c_str(), static_cast<long long>(leaked));
    std::printf("queue_depth counters %lld\n", static_cast<long long>(counters));
    if (passwords != static_cast<std::int64_t>(want_.passwords)) {
      mismatches_.push_back(count_mismatch("password arguments", passwords, want_.passwords));
    }
    if (hidden != static_cast<std::int64_t>(want_.passwords)) {
      mismatches_.push_back(count_mismatch("redacted password values", hidden, want_.passwords));
    }
    if (leaked != 0) mismatches_.push_back(count_mismatch("values holding the secret", leaked, 0));
    if (counters != static_cast<std::int64_t>(want_.counters)) {
      mismatches_.push_back(count_mismatch("queue_depth counters", counters, want_.counters));
    }
    return {};
  }

  std::expected<void, std::string> drops() {
    std::int64_t dropped = 0, markers = 0;
    auto ok = for_each_row(db_,
                           "SELECT coalesce(sum(dropped), 0), count(*) FROM gaps WHERE process_key IN (" + keys_ +
                               ")",
                           [&](sqlite3_stmt* s) {
                             dropped = integer(s, 0);
                             markers = integer(s, 1);
                           });
    if (!ok) return ok;
    std::printf("records dropped %lld (%lld gap%s)\n", static_cast<long long>(dropped),
                static_cast<long long>(markers), markers == 1 ? "" : "s");
    if (dropped != 0) mismatches_.push_back(count_mismatch("records dropped (gaps)", dropped, 0));
    return {};
  }

  sqlite3* db_;
  const ReportInput& in_;
  ExpectedCounts want_;
  std::string keys_;  // the workers' process_key list, for IN (...)
  Mismatches mismatches_;
};

}  // namespace

std::expected<std::vector<std::string>, std::string> print_report(const ReportInput& input) {
  auto db = query::open_database(input.database);
  if (!db) return std::unexpected(db.error());
  return Report(db->handle(), input).run();
}

}  // namespace shmtrace::demo
