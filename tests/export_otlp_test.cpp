// shmtrace export --format otlp: the JSON Lines file and the requests a
// small collector (cpp-httplib, in the test) receives hold every span with
// the database's trace, span and parent ids, errors as exception events and
// ERROR status; the retry rules: a 429 with Retry-After then 200 is retried
// and succeeds, a 400 is final after one request, a 503 forever gives up
// within --timeout.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "support/export_fixture.hpp"

namespace shmtrace::test::exporting {
namespace {

using nlohmann::json;

struct Received {
  std::map<std::string, json> spans;  // spanId -> span
  std::map<std::string, json> resource_of;  // spanId -> its resource's attributes
  int duplicates = 0;
};

std::string attribute(const json& attributes, const std::string& key) {
  for (const json& a : attributes) {
    if (a["key"] != key) continue;
    const json& v = a["value"];
    if (v.contains("stringValue")) return v["stringValue"];
    if (v.contains("intValue")) return v["intValue"];
    return v.dump();
  }
  return {};
}

void collect(const json& request, Received& into) {
  for (const json& rs : request["resourceSpans"]) {
    for (const json& ss : rs["scopeSpans"]) {
      for (const json& span : ss["spans"]) {
        const std::string id = span["spanId"];
        into.duplicates += !into.spans.emplace(id, span).second;
        into.resource_of[id] = rs["resource"]["attributes"];
      }
    }
  }
}

// A collector on a loopback port answering each request with the next
// status of `script` (the last one repeats), with Retry-After when asked.
class Collector {
 public:
  struct Reply {
    int status;
    std::string retry_after;
  };
  explicit Collector(std::vector<Reply> script) : script_(std::move(script)) {
    server_.Post("/base/v1/traces", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mutex_);
      bodies_.push_back(req.body);
      const Reply& reply = script_[std::min(bodies_.size(), script_.size()) - 1];
      res.status = reply.status;
      if (!reply.retry_after.empty()) res.set_header("Retry-After", reply.retry_after);
      res.set_content(reply.status == 400 ? "bad batch\nsecond line" : "{}", "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    // Bound and listening already: a request made before the thread runs waits in the backlog.
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~Collector() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/base"; }
  std::vector<std::string> bodies() {
    std::lock_guard lock(mutex_);
    return bodies_;
  }

 private:
  std::vector<Reply> script_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mutex_;
  std::vector<std::string> bodies_;
};

class ExportOtlp : public ExportDatabase {
 protected:
  static RunResult export_http(const Collector& c, const std::vector<std::string>& more = {}) {
    std::vector<std::string> argv = {SHMTRACE_CLI_PATH, "export", db_->path, "--format", "otlp",
                                     "--endpoint", c.url(), "--batch", "4"};
    argv.insert(argv.end(), more.begin(), more.end());
    return run(argv);
  }
  // Every stored span received once, with its ids, name, times, status and
  // resource; errors inside spans as exception events.
  static void expect_database(const Received& got) {
    const Database d(db_->path);
    const auto stored = stored_spans(d);
    EXPECT_EQ(got.duplicates, 0);
    ASSERT_EQ(got.spans.size(), stored.size());
    int error_status = 0, exceptions = 0;
    for (const StoredSpan& s : stored) {
      SCOPED_TRACE(s.name + " " + s.span_id);
      ASSERT_TRUE(got.spans.contains(s.span_id));
      const json& span = got.spans.at(s.span_id);
      EXPECT_EQ(span["traceId"], s.trace_id);
      EXPECT_EQ(span.value("parentSpanId", ""), s.parent_id.empty() ? s.remote_parent_id : s.parent_id);
      EXPECT_EQ(span["name"], s.name);
      EXPECT_EQ(span["kind"], 1);
      EXPECT_EQ(span["startTimeUnixNano"], std::to_string(s.start_ns));
      if (s.duration_ns) EXPECT_EQ(span["endTimeUnixNano"], std::to_string(s.start_ns + *s.duration_ns));
      EXPECT_EQ(attribute(span["attributes"], "thread.id"), std::to_string(s.tid));
      EXPECT_EQ(attribute(got.resource_of.at(s.span_id), "process.pid"), std::to_string(s.pid));
      EXPECT_EQ(attribute(got.resource_of.at(s.span_id), "service.name"), "st_producer");
      if (s.status != 0) {
        ++error_status;
        EXPECT_EQ(span["status"]["code"], 2);
        EXPECT_EQ(span["status"]["message"].get<std::string>().rfind("SampledError: root ", 0), 0u);
      } else {
        EXPECT_FALSE(span["status"].contains("code"));
      }
      for (const json& e : span["events"]) {
        if (e["name"] != "exception") continue;
        ++exceptions;
        if (s.name == "doomed") {  // the crash inside it
          EXPECT_EQ(attribute(e["attributes"], "exception.type"), "SIGSEGV");
          EXPECT_EQ(attribute(e["attributes"], "shmtrace.error_kind"), "crash");
        } else {
          EXPECT_EQ(attribute(e["attributes"], "exception.type"), "SampledError");
          EXPECT_EQ(attribute(e["attributes"], "exception.message").rfind("root ", 0), 0u);
        }
        EXPECT_NE(attribute(e["attributes"], "exception.stacktrace"), "");
      }
    }
    EXPECT_EQ(error_status, d.number("SELECT count(*) FROM spans WHERE status = 1"));
    EXPECT_EQ(error_status, 3);
    EXPECT_EQ(exceptions, d.number("SELECT count(*) FROM errors e JOIN spans s ON s.process_key = e.process_key "
                                   "AND s.span_id = e.span_id"));
    EXPECT_EQ(exceptions, 3 + 1) << "the sampled roots' errors and the crash";
  }
};

TEST_F(ExportOtlp, JsonLinesHoldEverySpanWithTheDatabasesIds) {
  std::string out;
  const RunResult r = export_to({"--format", "otlp", "--batch", "5"}, out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Received got;
  std::istringstream lines(out);
  int count = 0;
  for (std::string line; std::getline(lines, line);) {
    collect(json::parse(line), got);
    ++count;
  }
  const Database d(db_->path);
  EXPECT_EQ(count, (d.number("SELECT count(*) FROM spans") + 4) / 5) << "one line per batch of 5";
  expect_database(got);
  // The root started under TRACEPARENT keeps its remote parent and trace.
  int remote_roots = 0;
  for (const auto& [id, span] : got.spans) {
    if (span.value("parentSpanId", "") == kRemoteParent) {
      ++remote_roots;
      EXPECT_EQ(span["traceId"], kRemoteTrace);
      EXPECT_EQ(attribute(got.resource_of.at(id), "process.pid"), std::to_string(remote_pid_));
    }
  }
  EXPECT_EQ(remote_roots, 1);
}

TEST_F(ExportOtlp, PostsEveryBatchToTheCollector) {
  Collector collector({{200, ""}});
  const RunResult r = export_http(collector);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  Received got;
  for (const std::string& body : collector.bodies()) collect(json::parse(body), got);
  const Database d(db_->path);
  EXPECT_EQ(static_cast<std::int64_t>(collector.bodies().size()), (d.number("SELECT count(*) FROM spans") + 3) / 4);
  expect_database(got);
}

TEST_F(ExportOtlp, A429WithRetryAfterIsRetriedAndSucceeds) {
  Collector collector({{429, "1"}, {200, ""}});
  const auto start = std::chrono::steady_clock::now();
  const RunResult r = export_http(collector, {"--pid", std::to_string(args_pid_)});
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto bodies = collector.bodies();
  ASSERT_EQ(bodies.size(), 2u);
  EXPECT_EQ(bodies[0], bodies[1]) << "the same batch again";
  EXPECT_GE(took, std::chrono::milliseconds(1000)) << "Retry-After: 1 honoured";
  Received got;
  collect(json::parse(bodies[1]), got);
  ASSERT_EQ(got.spans.size(), 1u);
  EXPECT_EQ(got.spans.begin()->second["name"], "with_args");
}

TEST_F(ExportOtlp, A400IsNotRetried) {
  Collector collector({{400, ""}});
  const RunResult r = export_http(collector);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(collector.bodies().size(), 1u);
  EXPECT_EQ(r.err, "shmtrace export: " + collector.url() +
                       "/v1/traces: the collector refused the batch: HTTP 400: bad batch second line\n");
}

TEST_F(ExportOtlp, A503ForeverGivesUpWithinTheTimeout) {
  Collector collector({{503, ""}});
  const auto start = std::chrono::steady_clock::now();
  const RunResult r = export_http(collector, {"--timeout", "2"});
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_LT(took, std::chrono::milliseconds(2000 + 1000)) << "2 s and the program's start";
  EXPECT_GE(collector.bodies().size(), 3u) << "backoff 250 ms, 500 ms, 1 s";
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("gave up after"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("last HTTP 503"), std::string::npos) << r.err;
}

TEST_F(ExportOtlp, AnEndpointThatIsNotHttpIsRefused) {
  const RunResult r = run({SHMTRACE_CLI_PATH, "export", db_->path, "--format", "otlp", "--endpoint", "ftp://x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "shmtrace export: ftp://x: only http:// endpoints are supported (this build has no TLS)\n");
}

}  // namespace
}  // namespace shmtrace::test::exporting
