// shmtrace-drain: moves the segments on the machine into SQLite, exactly
// once: with --session ID only the segments of that session (processes run
// with SHMTRACE_SESSION=ID), without it only the segments of no session.
// The loop itself is drain/service/drain_service.hpp; this file is the
// command line (CLI11), the optional configuration file (the same options as
// TOML keys: retention = "6h", session = "ID"), and the signals: SIGTERM and
// SIGINT store everything pending and exit 0.
//
// Exit status: 0 on a clean stop, 1 when the drain cannot start or the
// database cannot be used, 2 for a bad command line or configuration file.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <optional>
#include <string>

#include "reader/reader.hpp"
#include "shmtrace/abi.hpp"
#include "service/drain_service.hpp"
#include "store/query.hpp"

namespace {

std::atomic<bool> g_stop{false};
void on_stop(int) { g_stop.store(true, std::memory_order_relaxed); }

// "shmtrace-drain: ", or "shmtrace-drain (session ID): " once the command
// line named one: drains of several runs may share a terminal or a log.
std::string g_prefix = "shmtrace-drain: ";
void say(const std::string& line) { std::fprintf(stderr, "%s%s\n", g_prefix.c_str(), line.c_str()); }

// --session: what abi::session_id_valid accepts (it never holds a '.', so
// the id cannot be confused with a pid in a segment name).
std::string check_session(const std::string& id) {
  if (shmtrace::abi::session_id_valid(id.data(), id.size())) return {};
  return "session id '" + id + "' is not 1 to 32 letters, digits, '_' or '-' starting with a letter";
}

// A message that may quote bytes from a file (a configuration that is not
// text): control and non-ASCII bytes become '?', and it stays one line.
std::string printable(const std::string& text) {
  constexpr std::size_t kMost = 300;
  std::string out;
  for (char c : text) {
    if (out.size() >= kMost) {
      out += "...";
      break;
    }
    const auto u = static_cast<unsigned char>(c);
    out += u >= 0x20 && u < 0x7f ? c : '?';
  }
  return out;
}

// "250ms", "90s", "30m", "6h", "7d" (a bare number is in seconds).
std::string parse_duration(std::string& text) {
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (...) {
    return "'" + text + "' is not a duration (like 250ms, 90s, 30m, 6h, 7d)";
  }
  const std::string unit = text.substr(used);
  double ms = 0;
  if (unit == "ms") {
    ms = value;
  } else if (unit == "s" || unit.empty()) {
    ms = value * 1e3;
  } else if (unit == "m") {
    ms = value * 60e3;
  } else if (unit == "h") {
    ms = value * 3600e3;
  } else if (unit == "d") {
    ms = value * 86400e3;
  } else {
    return "'" + text + "' has an unknown unit (ms, s, m, h, d)";
  }
  if (ms < 0 || ms > 3.2e11) return "'" + text + "' is out of range";
  text = std::to_string(static_cast<long long>(ms));
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  using namespace shmtrace::drain;
  configure_sqlite_process();
  CLI::App app{
      "shmtrace-drain: moves traced processes' shared-memory records into SQLite, exactly once.\n"
      "Every option can also be set in a TOML file given by --config (keys are the long option names "
      "without dashes, e.g. retention = \"6h\"); the command line wins."};
  app.set_config("--config", "", "TOML configuration file")->check(CLI::ExistingFile);
  app.allow_config_extras(false);
  DrainOptions o;
  long long retention_ms = 6 * 3600 * 1000LL, partition_ms = 0, circuit_ms = 30'000, retention_check_ms = 60'000,
            metrics_interval_ms = 5'000, stats_interval_ms = 1'000, idle_ms = 2, rescan_ms = 1'000;
  std::uint64_t spill_max_mb = 256;
  std::uint32_t max_rings = shmtrace::reader::SegmentLimits::kDefaultMaxRings;
  std::uint64_t max_segment_mb = shmtrace::reader::SegmentLimits::kDefaultMaxSegmentBytes >> 20;
  bool print_views = false;
  auto duration = CLI::Validator(parse_duration, "DURATION");
  app.add_option("-d,--db", o.database, "SQLite database file (created, or migrated to the current schema)")
      ->required();
  app.add_option("--session", o.session,
                 "take only the segments of this session (processes run with SHMTRACE_SESSION=ID); "
                 "default: only segments of no session")
      ->check(CLI::Validator(check_session, "ID"));
  app.add_flag("--once", o.once, "drain what is there now, finish every process that is gone, then exit");
  app.add_option("--uid", o.uids, "drain segments owned by these users (repeatable; default: our own)");
  app.add_option("--interval", idle_ms, "longest wait for new work when idle (default 2ms)")->transform(duration);
  app.add_option("--rescan", rescan_ms, "full rescan of /dev/shm beside inotify (default 1s)")->transform(duration);
  app.add_option("--batch-records", o.max_per_ring, "most records taken from one ring per batch (default 65536)")
      ->check(CLI::Range(64, 1 << 22));
  app.add_option("--retention", retention_ms, "age at which data expires (default 6h)")->transform(duration);
  app.add_option("--partition", partition_ms, "width of a time partition (default: retention / 6)")
      ->transform(duration);
  app.add_option("--retention-check", retention_check_ms, "how often expiry runs (default 60s)")->transform(duration);
  app.add_option("--archive-dir", o.store.archive_dir,
                 "move expired partitions (SQLite files) here instead of deleting them");
  app.add_option("--spill-file", o.spill_path, "where batches go while the database fails (default <db>.spill)");
  app.add_option("--spill-max-mb", spill_max_mb, "spill file bound in MiB (default 256)")->check(CLI::Range(1, 1 << 20));
  app.add_option("--max-rings", max_rings,
                 "refuse segments declaring more rings than this (default 4096, the runtime's most threads)")
      ->check(CLI::Range(1u, 1u << 20));
  app.add_option("--max-segment-mb", max_segment_mb, "refuse segments larger than this, in MiB (default 1048576: 1 TiB)")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 30));
  app.add_option("--circuit-failures", o.circuit_failures, "failed commits in a row that open the circuit (default 5)")
      ->check(CLI::Range(1, 1000));
  app.add_option("--circuit-open", circuit_ms, "how long the circuit stays open before a probe (default 30s)")
      ->transform(duration);
  app.add_option("--metrics-port", o.metrics_port,
                 "serve Prometheus metrics on this port (0: any free port, printed; default: off)")
      ->check(CLI::Range(0, 65535));
  app.add_option("--metrics-address", o.metrics_address, "address of the metrics endpoint (default 127.0.0.1)");
  app.add_option("--metrics-interval", metrics_interval_ms, "how often metrics go into the metrics table (default 5s)")
      ->transform(duration);
  app.add_option("--stats-interval", stats_interval_ms,
                 "interval of the call-site statistics rows (call_stats; default 1s, and at process end)")
      ->transform(duration);
  app.add_option("--alerts", o.alerts_file, "alert rules (TOML; see README)")->check(CLI::ExistingFile);
  app.add_flag("!--no-default-alerts", o.default_alerts, "without --alerts: no rule at all (default: crashes and "
                                                         "unhandled errors are logged)");
  app.add_option("--sensitive-name", o.sensitive_names, "another argument name whose values are redacted (repeatable)");
  app.add_flag("--print-views", print_views,
               "print the SQL that makes `sqlite3 <db>` see the time partitions (ATTACH + views), then exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    // One line, exit 2; what CLI11 quotes (a configuration file's bytes)
    // comes back printable and bounded.
    say(printable(e.what()) + " (see --help)");
    return 2;
  }
  if (!o.session.empty()) g_prefix = "shmtrace-drain (session " + o.session + "): ";
  if (retention_ms < 1000) {
    say("--retention must be at least 1s");
    return 2;
  }
  if (partition_ms != 0 && partition_ms < 1000) {
    say("--partition must be at least 1s (or 0: retention / 6)");
    return 2;
  }

  if (print_views) {
    auto q = QueryDatabase::open(o.database);
    if (!q) {
      say(q.error());
      return 1;
    }
    auto text = query_views_sql(q->handle(), false);
    if (!text) {
      say(text.error());
      return 1;
    }
    std::fputs(text->c_str(), stdout);
    return 0;
  }
  o.idle_wait = std::chrono::milliseconds(idle_ms);
  o.rescan = std::chrono::milliseconds(rescan_ms);
  o.store.retention = std::chrono::seconds(retention_ms / 1000);
  o.store.partition = std::chrono::seconds(partition_ms / 1000);
  o.circuit_open = std::chrono::milliseconds(circuit_ms);
  o.retention_check = std::chrono::milliseconds(std::min(retention_check_ms, 60'000LL));
  o.metrics_interval = std::chrono::milliseconds(std::max(100LL, metrics_interval_ms));
  o.stats_interval = std::chrono::milliseconds(std::max(10LL, stats_interval_ms));
  o.spill_max_bytes = spill_max_mb << 20;
  shmtrace::reader::set_segment_limits({max_rings, max_segment_mb << 20});
  // Before any segment is mapped: a producer truncating its segment under
  // us must cost it the segment, not kill the drain.
  if (auto guarded = shmtrace::reader::install_fault_handler(); !guarded) {
    say(guarded.error().message);
    return 1;
  }

  struct sigaction stop {};
  stop.sa_handler = on_stop;
  sigemptyset(&stop.sa_mask);
  sigaction(SIGTERM, &stop, nullptr);
  sigaction(SIGINT, &stop, nullptr);

  auto drain = Drain::create(o, say);
  if (!drain) {
    say(drain.error());
    return 1;
  }
  if ((*drain)->metrics_port() >= 0) {
    say("metrics on http://" + o.metrics_address + ":" + std::to_string((*drain)->metrics_port()) + "/metrics");
  }
  if (auto ran = (*drain)->run(g_stop); !ran) {
    say(ran.error());
    return 1;
  }
  return 0;
}
