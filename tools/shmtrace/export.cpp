// shmtrace export [DB]: a database's spans, errors, drop gaps and counters
// as a Chrome trace-event JSON file, a Perfetto protobuf trace, or
// OpenTelemetry OTLP/JSON (JSON Lines to a file, or POSTed to a collector).
// The writers live in export_<format>.cpp; all of them stream from one
// query::SpanScan, so memory stays flat however large the database is.
//
// Exit status: 0 written, 1 runtime failure (unreadable database, a write
// that failed, a collector that refused or never answered), 2 usage.
#include <sqlite3.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <climits>

#include "commands.hpp"
#include "export_format.hpp"
#include "query/database.hpp"
#include "reading_options.hpp"

namespace shmtrace::cli {
namespace {

struct Options {
  std::string db = kDefaultDatabase;
  std::string format = "chrome";
  std::string output;
  std::string since;
  std::string until;
  std::vector<std::int64_t> pids;
  std::vector<std::int64_t> tids;
  std::vector<std::string> names;
  std::vector<std::string> groups;
  std::string trace;
  std::string endpoint;
  double timeout_s = 10;
  std::size_t batch = 512;
  bool progress = false;
};

// A time bound: nanoseconds since the epoch, or "+DURATION" after the
// first process's start (10s, 250ms, 1.5m, 90us, 1h, plain ns).
std::expected<std::int64_t, std::string> parse_time(const std::string& text, std::int64_t first_start_ns) {
  if (text.empty()) return 0;
  const bool relative = text[0] == '+';
  const std::string_view body = std::string_view(text).substr(relative ? 1 : 0);
  double number = 0;
  const auto [end, ec] = std::from_chars(body.data(), body.data() + body.size(), number);
  if (ec != std::errc{} || number < 0) return std::unexpected("not a time: " + text);
  const std::string_view unit(end, static_cast<std::size_t>(body.data() + body.size() - end));
  double scale = 1;
  if (unit == "" || unit == "ns") scale = 1;
  else if (unit == "us") scale = 1e3;
  else if (unit == "ms") scale = 1e6;
  else if (unit == "s") scale = 1e9;
  else if (unit == "m") scale = 60e9;
  else if (unit == "h") scale = 3600e9;
  else return std::unexpected("not a time: " + text + " (units: ns, us, ms, s, m, h)");
  if (!relative && unit != "" && unit != "ns") {
    return std::unexpected("not a time: " + text + " (absolute times are nanoseconds since the epoch; "
                           "durations after the first process start with +)");
  }
  // Whole numbers stay integers: nanoseconds since 1970 have more digits
  // than a double keeps.
  std::int64_t whole = 0;
  const auto [whole_end, whole_ec] = std::from_chars(body.data(), body.data() + body.size(), whole);
  const double base = relative ? static_cast<double>(first_start_ns) : 0.0;
  if (number * scale + base >= 9.2e18) return std::unexpected("not a time: " + text + " (too large)");
  if (whole_ec == std::errc{} && whole_end == end && static_cast<double>(whole) == number) {
    return whole * static_cast<std::int64_t>(scale) + (relative ? first_start_ns : 0);
  }
  return static_cast<std::int64_t>(number * scale) + (relative ? first_start_ns : 0);
}

int run_export(const Options& o) {
  using namespace exporting;
  if (o.format != "otlp" && !o.endpoint.empty()) {
    say("export", "--endpoint is for --format otlp");
    return 2;
  }
  if (!o.endpoint.empty() && !o.output.empty()) {
    say("export", "--endpoint and --output exclude each other");
    return 2;
  }
  if (!o.trace.empty() && (o.trace.size() != 32 || o.trace.find_first_not_of("0123456789abcdef") != std::string::npos)) {
    say("export", "--trace takes 32 lower-case hex digits, not '" + o.trace + "'");
    return 2;
  }
  auto db = query::open_database(o.db);
  if (!db) {
    say("export", db.error());
    return 1;
  }
  // Relative bounds count from the first process in the database.
  std::int64_t first_start = 0;
  {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db->handle(), "SELECT coalesce(min(start_ns), 0) FROM processes", -1, &s, nullptr) ==
            SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
      first_start = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
  }
  query::Filter filter;
  for (const auto& [text, into] : {std::pair{&o.since, &filter.since_ns}, std::pair{&o.until, &filter.until_ns}}) {
    auto t = parse_time(*text, first_start);
    if (!t) {
      say("export", t.error());
      return 2;
    }
    *into = *t;
  }
  filter.pids = o.pids;
  filter.tids = o.tids;
  filter.names = o.names;
  filter.groups = o.groups;
  filter.trace_id = o.trace;
  query::ScanOptions scan_options;
  scan_options.errors = o.format == "otlp";  // exception events belong to their span
  auto scan = query::SpanScan::open(db->handle(), filter, scan_options);
  if (!scan) {
    say("export", o.db + ": " + scan.error());
    return 1;
  }
  auto out = Output::open(o.endpoint.empty() ? o.output : "");
  if (!out) {
    say("export", out.error());
    return 1;
  }
  Progress progress(::isatty(STDERR_FILENO) != 0, o.progress);
  Context context{*scan, *out, progress};
  std::expected<void, std::string> written;
  if (o.format == "chrome") {
    written = write_chrome(context);
  } else if (o.format == "perfetto") {
    written = write_perfetto(context);
  } else {
    written = write_otlp(context, OtlpOptions{o.endpoint, o.timeout_s, o.batch});
  }
  if (!written) {
    say("export", written.error());
    return 1;
  }
  if (auto finished = out->finish(); !finished) {
    say("export", finished.error());
    return 1;
  }
  progress.done(*out);
  return 0;
}

}  // namespace

Command add_export(CLI::App& app) {
  auto o = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand(
      "export", "Write a database's spans, errors, gaps and counters as Chrome JSON, a Perfetto trace or OTLP");
  add_database_argument(*sub, o->db);
  sub->add_option("--format", o->format, "chrome (trace-event JSON), perfetto (protobuf trace) or otlp (OTLP/JSON)")
      ->check(CLI::IsMember({"chrome", "perfetto", "otlp"}));
  sub->add_option("-o,--output", o->output, "Write to FILE instead of stdout");
  sub->add_option("--since", o->since,
                  "Spans starting at or after: ns since the epoch, or +DURATION after the first process (+2s)");
  sub->add_option("--until", o->until, "Spans starting before (same forms as --since)");
  sub->add_option("--pid", o->pids, "Only these processes (repeat or comma-separate)")->delimiter(',');
  sub->add_option("--tid", o->tids, "Only these threads")->delimiter(',');
  sub->add_option("--name", o->names, "Only spans of these names (exact)");
  sub->add_option("--group", o->groups, "Only spans of these groups (exact)");
  sub->add_option("--trace", o->trace, "Only this trace (32 hex digits)");
  sub->add_option("--endpoint", o->endpoint,
                  "otlp: POST ExportTraceServiceRequest batches to URL/v1/traces instead of writing JSON Lines");
  sub->add_option("--timeout", o->timeout_s, "otlp --endpoint: seconds one batch may take, retries included")
      ->check(CLI::PositiveNumber);
  sub->add_option("--batch", o->batch, "otlp: spans per line or request")->check(CLI::Range(1, 1000000));
  sub->add_flag("--progress", o->progress, "Progress on stderr every second even when it is not a terminal, and a last line with the count");
  sub->footer(
      "Exit status: 0 written, 1 runtime failure (one line naming the file or endpoint), 2 usage.");
  return [o] { return run_export(*o); };
}

}  // namespace shmtrace::cli
