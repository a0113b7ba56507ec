// shmtrace-drain with an alert rule that never ends (issue 14), end to end:
// the real drain, a real producer, the rules file of a user who wrote a
// recursive query without a bound. The rule once ran on the drain's own
// thread and connection: the drain stored nothing more and ignored SIGTERM.
// Now rules run on the evaluator's thread and connections, under a time
// limit, so:
//   - every record the producer writes is stored exactly once while the
//     runaway query runs (and is interrupted at its 5 s default timeout,
//     logged once, retried every 100 ms);
//   - a second rule reads span_data (the time partitions, created after the
//     drain started) and uses a call-statistics SQL function, and fires;
//   - SIGTERM stops the drain, exit code 0, within its bounded flush,
//     although a runaway query is running at that moment.
//
// As drain_faults_test, the case runs in a forked child in a private mount
// namespace with its own tmpfs on /dev/shm, so this drain sees only this
// producer and no other drain takes its segment. The database is on /tmp,
// which the child shares with the parent; the child reports on a pipe.
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "support/drain_harness.hpp"
#include "support/test_database.hpp"
#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

namespace h = harness;
using namespace std::chrono_literals;

constexpr int kThreads = 2;
constexpr long kPerThread = 20000;
// The bound SIGTERM must hold: the drain's 5 s flush limit, and some slack.
constexpr auto kStopLimit = 7s;

// Whether pid, a child of ours, has exited (a zombie counts), without
// reaping it.
bool exited(pid_t pid) {
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

// The counting rule comes first: each round evaluates it, then spends the
// runaway rule's 5 s on the other.
constexpr const char* kRules = R"toml(default_rules = false

[[rule]]
name = "counters"
sql = """
SELECT count(*) + 0 * coalesce((SELECT sum(shmtrace_histogram_count(histogram)) FROM call_stats), 0)
FROM span_data WHERE kind = 'counter'"""
above = 0
interval = "100ms"

[[rule]]
name = "runaway"
sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
above = 0
interval = "100ms"
)toml";

struct Paths {
  Paths() {
    const std::string base = "/tmp/shmtrace-test-" + std::to_string(::getpid()) + "-alerts";
    rules = base + ".toml";
    err = base + ".stderr";
    producer_err = base + ".producer";
    clean();
  }
  ~Paths() { clean(); }
  void clean() const {
    std::error_code ignored;
    for (const std::string& p : {rules, err, producer_err}) std::filesystem::remove(p, ignored);
  }
  TempDb db{"alerts"};
  std::string rules, err, producer_err;
};

class AlertRun {
 public:
  AlertRun(const Paths& p, int fd) : p_(p), report_(fd) {}
  [[noreturn]] void run();

 private:
  void say(const std::string& line) const { report_.say(line); }
  [[noreturn]] void fail(const std::string& what, bool call = true) const { report_.fail(what, call); }
  std::size_t drain_lines(const std::string& needle) const {
    return h::lines_with(h::read_file(p_.err), needle).size();
  }

  const Paths& p_;
  h::ChildReport report_;
  std::vector<pid_t>& started_ = report_.started_;
};

void AlertRun::run() {
  if (const std::string why = h::isolate_shm(); !why.empty()) fail(why, false);
  std::ofstream(p_.rules) << kRules;

  const pid_t drain = h::spawn({SHMTRACE_DRAIN_PATH, "--db", p_.db.path, "--alerts", p_.rules, "--rescan", "200ms",
                                "--metrics-port", "0"},
                               p_.err);
  if (drain < 0) fail("starting shmtrace-drain");
  started_.push_back(drain);
  // Announced once the database is open and the rules are prepared.
  if (!h::wait_until([&] { return drain_lines("metrics on http://") > 0 || exited(drain); }, 30s) ||
      drain_lines("metrics on http://") == 0) {
    fail("the drain did not start within 30 s", false);
  }

  // Block, not drop: had the drain stalled, the producer would wait (and the
  // test time out) rather than lose records silently.
  const pid_t producer =
      h::spawn({program_path("st_producer"), "sequence", std::to_string(kThreads), std::to_string(kPerThread)},
               p_.producer_err, {{"SHMTRACE_POLICY", "block"}, {"SHMTRACE_BLOCK_TIMEOUT_MS", "60000"}});
  if (producer < 0) fail("starting st_producer");
  started_.push_back(producer);
  say("producer " + std::to_string(producer));
  const h::Exit produced = h::wait_exit(producer, 60s);
  std::erase(started_, producer);
  say("producer_exit " + std::to_string(produced.exited ? produced.code : -1));
  // Drained (the segment removed) while the runaway rule runs.
  if (!h::wait_until([&] { return find_segment(producer, 0).empty() || exited(drain); }, 30s) || exited(drain)) {
    fail("the producer's segment was not drained within 30 s (or the drain exited)", false);
  }
  say("drained");
  // The runaway query met its timeout at least once, and the other rule saw
  // the counters in a partition made after the drain started.
  if (!h::wait_until([&] { return drain_lines("ran past its 5s timeout") > 0; }, 20s)) {
    fail("the runaway rule was not interrupted at its 5 s timeout within 20 s", false);
  }
  if (!h::wait_until([&] { return drain_lines("alert \"counters\" fired") > 0; }, 20s)) {
    fail("the counters rule did not fire within 20 s", false);
  }
  // Into the next round's runaway query (retried 100 ms after it gave up).
  std::this_thread::sleep_for(1s);

  const auto signalled = std::chrono::steady_clock::now();
  ::kill(drain, SIGTERM);
  const h::Exit stopped = h::wait_exit(drain, 60s);
  const auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - signalled);
  std::erase(started_, drain);
  say("drain_exit " + std::string(stopped.exited && stopped.signal == 0 ? std::to_string(stopped.code) : "none"));
  say("stop_ms " + std::to_string(took.count()));
  ::_exit(0);
}

struct Report {
  std::map<std::string, std::string> values;  // first word -> rest (last one wins)
  std::string errors;
  std::string text;
};

Report run_child(const Paths& p) {
  Report r;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    r.errors = "pipe failed";
    return r;
  }
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(fds[0]);
    AlertRun(p, fds[1]).run();
  }
  ::close(fds[1]);
  char buffer[4096];
  while (true) {
    const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n <= 0) break;
    r.text.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  const h::Exit e = h::wait_exit(child, 60s);
  if (!e.exited || e.code != 0) r.errors += "child exit " + std::to_string(e.code) + "\n";
  std::istringstream in(r.text);
  for (std::string line; std::getline(in, line);) {
    const auto space = line.find(' ');
    const std::string key = line.substr(0, space);
    if (key == "ERROR") r.errors += line + "\n";
    r.values[key] = space == std::string::npos ? "" : line.substr(space + 1);
  }
  return r;
}

TEST(DrainAlerts, ARunawayRuleNeitherStopsIngestionNorDelaysSigterm) {
  ASSERT_EQ(::geteuid(), 0u) << "this test mounts a tmpfs in a private mount namespace: run it as root";
  const Paths p;
  const Report r = run_child(p);
  const std::string log = h::read_file(p.err);
  ASSERT_EQ(r.errors, "") << "child:\n" << r.text << "drain stderr:\n" << log;

  EXPECT_EQ(r.values.at("producer_exit"), "0");
  EXPECT_EQ(r.values.at("drain_exit"), "0") << log;
  EXPECT_LT(std::stoll(r.values.at("stop_ms")),
            std::chrono::duration_cast<std::chrono::milliseconds>(kStopLimit).count())
      << "SIGTERM stops the drain within its bounded flush\n"
      << log;
  // One line for the whole failure streak, naming the rule and the limit.
  const std::vector<std::string> runaway = h::lines_with(log, "alert rule \"runaway\"");
  ASSERT_EQ(runaway.size(), 1u) << log;
  EXPECT_NE(runaway.front().find("query failed: ran past its 5s timeout and was interrupted; retrying every 100ms"),
            std::string::npos)
      << runaway.front();
  EXPECT_TRUE(h::lines_with(log, "stopping with producers still writing").empty()) << log;

  const pid_t producer = std::stoi(r.values.at("producer"));
  Database d(p.db.path);
  ASSERT_EQ(d.error, "");
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE pid = " + std::to_string(producer)), 1);
  expect_exact_counters(d, producer, kThreads, kPerThread);
  EXPECT_EQ(d.number("SELECT count(*) FROM span_data r JOIN processes p USING (process_key) WHERE p.pid = " +
                     std::to_string(producer) + " AND r.kind = 'arg' AND r.name = 'text'"),
            kThreads * h::sequence_text_args(kPerThread));
  EXPECT_EQ(d.number("SELECT count(*) FROM gaps"), 0) << "no records dropped";
  EXPECT_EQ(d.text("SELECT state FROM processes WHERE pid = " + std::to_string(producer)), "exited");
  // The counting rule read the partition and fired; the runaway one never did.
  EXPECT_GE(d.number("SELECT count(*) FROM alerts WHERE rule = 'counters' AND value > 0"), 1);
  EXPECT_EQ(d.number("SELECT count(*) FROM alerts WHERE rule = 'runaway'"), 0);
}

}  // namespace
}  // namespace shmtrace::test
