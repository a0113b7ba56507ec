// shmtrace report [DB]: what a trace holds, in sections: functions (exact
// calls, errors, total and self time, percentiles), the process tree,
// errors and crashes, the slowest spans, and drops. The queries live in the
// query library (tools/query/sections.hpp); this file is the command line
// and the layout.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <set>

#include "commands.hpp"
#include "query/database.hpp"
#include "query/output.hpp"
#include "reading_options.hpp"
#include "query/sections.hpp"
#include "query/tables.hpp"
#include "query/time_arg.hpp"

namespace shmtrace::cli {
namespace {

constexpr const char* kSections[] = {"functions", "processes", "errors", "slowest", "drops"};

struct ReportOptions {
  std::string db = kDefaultDatabase;
  std::vector<std::string> sections;
  std::string sort = "total";
  std::string format = "text";
  int limit = 20;
  FilterOptions filter;
};

// One section as it is printed: text (title, table, notes), or the JSON
// value of its key, or its CSV table(s).
struct Printer {
  query::Format format;
  int width;
  std::string out;
  bool first = true;

  void begin(const std::string& name) {
    if (format == query::Format::kJson) {
      out += (first ? "{\n" : ",\n") + query::json_string(name) + ": ";
    } else if (format == query::Format::kCsv) {
      out += (first ? "" : "\r\n") + std::string("# ") + name + "\r\n";
    } else {
      out += (first ? "" : "\n") + std::string("== ") + name + " ==\n";
    }
    first = false;
  }
  void table(const query::Table& t) {
    if (format == query::Format::kJson) out += query::render_json(t);
    else if (format == query::Format::kText && t.rows.empty()) out += "(none)\n";
    else out += query::render(t, format, width);
  }
  void finish() {
    if (format == query::Format::kJson) out += first ? "{}\n" : "\n}\n";
  }
};

int run_report(const ReportOptions& o) {
  const auto format = query::parse_format(o.format);
  const auto sort = query::parse_sort_key(o.sort);
  if (!format) return say("report", "--format: '" + o.format + "' is not text, json or csv"), 2;
  if (!sort) return say("report", "--sort: '" + o.sort + "' is not total, self, calls or p99"), 2;
  std::set<std::string> chosen;
  for (const std::string& s : o.sections) {
    bool known = false;
    for (const char* k : kSections) known = known || s == k;
    if (!known) return say("report", "--section: '" + s + "' is not one of functions, processes, errors, slowest, drops"), 2;
    chosen.insert(s);
  }
  auto reading = open_reading("report", o.db, o.filter);
  if (!reading) return reading.error();
  sqlite3* h = reading->db.handle();
  const query::Filter& filter = reading->filter;
  const auto wanted = [&](const char* s) { return chosen.empty() || chosen.count(s) != 0; };
  const auto failed = [&](const std::string& e) { return say("report", o.db + ": " + e), 1; };

  Printer p{*format, query::terminal_width(), {}, true};
  if (wanted("functions")) {
    auto rows = query::functions(h, filter, *sort, o.limit);
    if (!rows) return failed(rows.error());
    p.begin("functions");
    p.table(query::functions_table(*rows));
  }
  if (wanted("processes")) {
    auto rows = query::process_tree(h, filter);
    if (!rows) return failed(rows.error());
    p.begin("processes");
    p.table(query::processes_table(*rows, *format));
  }
  if (wanted("errors")) {
    auto rows = query::errors(h, filter, o.limit);
    if (!rows) return failed(rows.error());
    p.begin("errors");
    p.table(query::errors_table(*rows));
  }
  if (wanted("slowest")) {
    auto rows = query::slowest(h, filter, o.limit);
    if (!rows) return failed(rows.error());
    p.begin("slowest");
    p.table(query::slowest_table(*rows));
  }
  if (wanted("drops")) {
    auto d = query::drops(h, filter);
    if (!d) return failed(d.error());
    p.begin("drops");
    if (*format == query::Format::kJson) {
      p.out += "{\"total_dropped\": " + std::to_string(d->total_dropped) +
               ", \"meaning\": " + query::json_string(d->meaning) +
               ",\n\"processes\": " + query::render_json(query::drops_processes_table(*d)) +
               ",\n\"threads\": " + query::render_json(query::drops_threads_table(*d)) + "}";
    } else if (*format == query::Format::kCsv) {
      p.table(query::drops_threads_table(*d));
    } else {
      p.out += d->meaning + "\n";
      if (!d->processes.empty()) {
        p.out += "\nper process (the producers' own counts):\n";
        p.table(query::drops_processes_table(*d));
      }
      if (!d->threads.empty()) {
        p.out += "\nper thread (gap markers; tid 0: not placed in a thread):\n";
        p.table(query::drops_threads_table(*d));
      }
    }
  }
  p.finish();
  std::fwrite(p.out.data(), 1, p.out.size(), stdout);
  return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace

Command add_report(CLI::App& app) {
  auto o = std::make_shared<ReportOptions>();
  CLI::App* sub = app.add_subcommand(
      "report",
      "Report on a trace: functions (exact calls, errors, total and self time, p50/p95/p99), the process tree, "
      "errors and crashes, the slowest spans, drops");
  add_database_argument(*sub, o->db);
  sub->add_option("--section", o->sections, "Sections to show: functions,processes,errors,slowest,drops (default all)")
      ->delimiter(',')
      ->allow_extra_args(false);
  sub->add_option("--sort", o->sort, "Order of functions: total|self|calls|p99 (default total)");
  sub->add_option("--limit", o->limit, "Rows per section for functions, errors and slowest (default 20, 0: all)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--format", o->format, "text|json|csv (default text)");
  add_filter_options(*sub, o->filter, FilterSet{.tid = true, .name = true, .group = true, .trace = true});
  return [o] { return run_report(*o); };
}

}  // namespace shmtrace::cli
