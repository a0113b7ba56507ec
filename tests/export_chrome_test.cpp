// shmtrace export --format chrome, read back with a JSON parser: exactly the
// database's spans as complete events, nested per thread, with their
// arguments, results, errors, crash, counters and track names; the
// selection options pick exactly the rows they name; bad input fails with
// one line.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "support/export_fixture.hpp"

namespace shmtrace::test::exporting {
namespace {

using nlohmann::json;

class ExportChrome : public ExportDatabase {
 protected:
  static json export_json(const std::vector<std::string>& args = {}) {
    std::string out;
    std::vector<std::string> all = {"--format", "chrome"};
    all.insert(all.end(), args.begin(), args.end());
    const RunResult r = export_to(all, out);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.err, "");
    return json::parse(out);  // throws (and fails the test) on invalid JSON
  }
  // span_id -> the span's complete ("X") or unfinished ("B") event.
  static std::map<std::string, json> span_events(const json& trace) {
    std::map<std::string, json> out;
    for (const json& e : trace["traceEvents"]) {
      if (e["ph"] == "X" || e["ph"] == "B") {
        const std::string id = e["args"]["span_id"];
        EXPECT_TRUE(out.emplace(id, e).second) << "span " << id << " exported twice";
      }
    }
    return out;
  }
  static std::set<std::string> ids(const std::vector<StoredSpan>& spans) {
    std::set<std::string> out;
    for (const StoredSpan& s : spans) out.insert(s.span_id);
    return out;
  }
  static std::set<std::string> ids(const std::map<std::string, json>& events) {
    std::set<std::string> out;
    for (const auto& [id, e] : events) out.insert(id);
    return out;
  }
};

TEST_F(ExportChrome, HoldsExactlyTheDatabasesSpansWithTheirTimesAndNames) {
  const Database d(db_->path);
  const std::vector<StoredSpan> stored = stored_spans(d);
  ASSERT_EQ(stored.size(), 5u + 9u + 1u + 2u + 1u + 2u);
  const json trace = export_json();
  const std::int64_t epoch = std::stoll(trace["otherData"]["shmtrace_epoch_ns"].get<std::string>());
  EXPECT_EQ(epoch, d.number("SELECT min(start_ns) FROM processes"));
  const auto events = span_events(trace);
  ASSERT_EQ(ids(events), ids(stored));
  int unfinished = 0;
  for (const StoredSpan& s : stored) {
    SCOPED_TRACE(s.name + " " + s.span_id);
    const json& e = events.at(s.span_id);
    EXPECT_EQ(e["name"], s.name);
    EXPECT_EQ(e["pid"], s.pid);
    EXPECT_EQ(e["tid"], s.tid);
    // Microseconds with three decimals: exact to the nanosecond.
    EXPECT_EQ(std::llround(e["ts"].get<double>() * 1000.0), s.start_ns - epoch);
    if (s.duration_ns) {
      EXPECT_EQ(e["ph"], "X");
      EXPECT_EQ(std::llround(e["dur"].get<double>() * 1000.0), *s.duration_ns);
    } else {
      EXPECT_EQ(e["ph"], "B");
      ++unfinished;
    }
    EXPECT_EQ(e["args"].value("parent_span_id", ""), s.parent_id);
    EXPECT_EQ(e["args"].value("status", "ok"), s.status != 0 ? "error" : "ok");
  }
  EXPECT_EQ(unfinished, 1) << "the crashed process's span \"doomed\"";
}

TEST_F(ExportChrome, ChildrenLieWithinTheirParentsOnTheSameThread) {
  const json trace = export_json();
  const auto events = span_events(trace);
  int nested = 0;
  for (const auto& [id, e] : events) {
    const std::string parent = e["args"].value("parent_span_id", "");
    if (parent.empty() || e["ph"] != "X") continue;
    const auto p = events.find(parent);
    if (p == events.end()) {
      // Only a root started under a span of another process (TRACEPARENT).
      EXPECT_EQ(parent, kRemoteParent) << "parent of " << id << " missing";
      continue;
    }
    if (p->second["tid"] != e["tid"] || p->second["ph"] != "X") continue;
    const double start = e["ts"], end = start + e["dur"].get<double>();
    const double pstart = p->second["ts"], pend = pstart + p->second["dur"].get<double>();
    EXPECT_GE(start, pstart) << id;
    EXPECT_LE(end, pend + 1e-9) << id;
    ++nested;
  }
  // spans 5: 4 children; sampling 3: 6; the args span has none.
  EXPECT_GE(nested, 4 + 6);
}

TEST_F(ExportChrome, ArgumentsResultsEventsErrorsCrashesAndCountersArePresent) {
  const Database d(db_->path);
  const json trace = export_json();
  const json* with_args = nullptr;
  int errors = 0, crashes = 0, ticks = 0, counters = 0;
  std::set<std::pair<int, int>> named_threads;
  std::set<int> named_processes;
  for (const json& e : trace["traceEvents"]) {
    if (e["ph"] == "X" && e["name"] == "with_args") with_args = &e;
    if (e["ph"] == "i" && e["cat"] == "error") ++errors;
    if (e["ph"] == "i" && e["cat"] == "crash") {
      ++crashes;
      EXPECT_EQ(e["pid"], crash_pid_);
      EXPECT_EQ(e["s"], "p");
    }
    if (e["ph"] == "i" && e["cat"] == "event" && e["name"] == "tick") ++ticks;
    if (e["ph"] == "C") ++counters;
    if (e["ph"] == "M" && e["name"] == "thread_name") named_threads.insert({e["pid"].get<int>(), e["tid"].get<int>()});
    if (e["ph"] == "M" && e["name"] == "process_name") named_processes.insert(e["pid"].get<int>());
  }
  ASSERT_NE(with_args, nullptr);
  const json& args = (*with_args)["args"]["arguments"];
  EXPECT_EQ(args["i"], -42);
  EXPECT_EQ(args["d"], 2.5);
  EXPECT_EQ(args["b"], true);
  EXPECT_EQ(args["s"], "hello");
  EXPECT_EQ(args["u"], "18446744073709551615") << "past 2^53: kept exact as text";
  EXPECT_EQ(args["big"], d.text("SELECT value FROM span_data WHERE name = 'big'"));
  EXPECT_EQ((*with_args)["args"]["results"]["ret"], 7);
  EXPECT_EQ(errors, d.number("SELECT count(*) FROM errors WHERE kind != 'crash'"));
  EXPECT_EQ(errors, 3);
  EXPECT_EQ(crashes, 1);
  EXPECT_EQ(ticks, 5 + 2);
  EXPECT_EQ(counters, d.number("SELECT count(*) FROM span_data WHERE kind = 'counter'"));
  EXPECT_EQ(counters, 5 + 10 + 40 + 2 * 20 + 2);
  // Every track used has its names.
  for (const json& e : trace["traceEvents"]) {
    if (e["ph"] == "M") continue;
    EXPECT_TRUE(named_processes.contains(e["pid"].get<int>())) << e.dump();
    EXPECT_TRUE(named_threads.contains({e["pid"].get<int>(), e["tid"].get<int>()})) << e.dump();
  }
  EXPECT_EQ(named_processes.size(), static_cast<std::size_t>(d.number("SELECT count(DISTINCT pid) FROM processes")));
}

TEST_F(ExportChrome, PidTraceAndTimeWindowSelectExactlyTheirSpans) {
  const Database d(db_->path);
  EXPECT_EQ(ids(span_events(export_json({"--pid", std::to_string(args_pid_)}))),
            ids(stored_spans(d, "p.pid = " + std::to_string(args_pid_))));
  // The forked child continues its parent's trace: both processes' spans.
  const std::string trace_id = d.text("SELECT trace_id FROM spans WHERE name = 'parent'");
  ASSERT_EQ(trace_id.size(), 32u);
  const auto traced = ids(span_events(export_json({"--trace", trace_id})));
  EXPECT_EQ(traced, ids(stored_spans(d, "s.trace_id = '" + trace_id + "'")));
  EXPECT_EQ(traced.size(), 2u) << "parent and child";
  // A window from the third span's start to the seventh's: starts in [a, b).
  const auto all = stored_spans(d);
  const std::int64_t a = all.at(2).start_ns, b = all.at(6).start_ns;
  const auto windowed = ids(span_events(export_json({"--since", std::to_string(a), "--until", std::to_string(b)})));
  EXPECT_EQ(windowed, ids(stored_spans(d, "s.start_ns >= " + std::to_string(a) + " AND s.start_ns < " +
                                              std::to_string(b))));
  EXPECT_EQ(windowed.size(), 4u);
  // Relative to the first process's start.
  const std::int64_t first = d.number("SELECT min(start_ns) FROM processes");
  EXPECT_EQ(ids(span_events(export_json({"--since", "+" + std::to_string(a - first) + "ns"}))),
            ids(stored_spans(d, "s.start_ns >= " + std::to_string(a))));
}

TEST_F(ExportChrome, ProgressAskedForEndsWithTheCount) {
  const Database d(db_->path);
  std::string out;
  const RunResult r = export_to({"--progress"}, out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  char mib[32];
  std::snprintf(mib, sizeof mib, "%.1f", static_cast<double>(out.size()) / (1024.0 * 1024.0));
  EXPECT_EQ(r.err, "shmtrace export: " + std::to_string(d.number("SELECT count(*) FROM spans")) + " spans, " + mib +
                       " MiB written, done\n");
  // Unasked and not on a terminal: nothing.
  EXPECT_EQ(export_to({}, out).err, "");
}

TEST_F(ExportChrome, BadInputFailsWithOneLine) {
  std::string out;
  RunResult r = run({SHMTRACE_CLI_PATH, "export", "/nonexistent/t.db"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "shmtrace export: /nonexistent/t.db: No such file or directory\n");
  r = export_to({"--format", "svg"}, out);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  r = export_to({"--trace", "xyz"}, out);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "shmtrace export: --trace takes 32 lower-case hex digits, not 'xyz'\n");
  r = run({SHMTRACE_CLI_PATH, "export", db_->path, "-o", "/nonexistent/dir/out.json"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "shmtrace export: /nonexistent/dir/out.json: No such file or directory\n");
  r = run({SHMTRACE_CLI_PATH, "export", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("--format"), std::string::npos);
}

}  // namespace
}  // namespace shmtrace::test::exporting
