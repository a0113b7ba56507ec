// Runs that do not see each other, end to end: producers of session A, of
// session B and of no session beside three real drains (--session A,
// --session B, none) on one machine. Each database holds exactly its own
// processes, with exact record and error counts, and each drain removes
// exactly its own segments (error chunks included). A drain without
// --session takes every segment of no session on the machine, so these tests
// give themselves a private /dev/shm first.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "reader/reader.hpp"
#include "support/drain_harness.hpp"
#include "support/test_database.hpp"
#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

namespace h = harness;
using namespace std::chrono_literals;

constexpr int kThreads = 2;

// One kind of producer: its session ("" = none), the counters each of its
// threads writes, the errors each writes.
struct Group {
  std::string session;
  long counters = 0;
  long errors = 0;
  std::vector<pid_t> pids;  // the processes it stored (workers included)
};

std::vector<EnvChange> session_env(const std::string& session) {
  if (session.empty()) return {{"SHMTRACE_SESSION", "", true}};
  return {{"SHMTRACE_SESSION", session}};
}

// Runs the group's producers: two of `sequence` and one of `errors` (small
// error chunks: its errors span several chunk objects of its session).
void produce(Group& g) {
  for (int i = 0; i < 2; ++i) {
    const RunResult r = run({program_path("st_producer"), "sequence", std::to_string(kThreads),
                             std::to_string(g.counters)},
                            session_env(g.session));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    g.pids.push_back(r.pid);
  }
  std::vector<EnvChange> env = session_env(g.session);
  env.push_back({"SHMTRACE_ERROR_CHUNK_BYTES", "65536"});
  const RunResult e =
      run({program_path("st_producer"), "errors", std::to_string(kThreads), std::to_string(g.errors)}, env);
  ASSERT_EQ(e.exit_code, 0) << e.err;
  g.pids.push_back(e.pid);
}

std::set<std::string> names_in_shm() {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm", ec)) {
    out.insert(entry.path().filename().string());
  }
  return out;
}

// Objects of `session` in /dev/shm (segments, their error chunks); "" = of no session.
std::vector<std::string> objects_of(const std::string& session) {
  std::vector<std::string> out;
  for (const std::string& name : names_in_shm()) {
    if (name.rfind("shmtrace.", 0) != 0) continue;
    const std::string rest = name.substr(9);
    const bool plain = !rest.empty() && rest[0] >= '0' && rest[0] <= '9';
    if (session.empty() ? plain : rest.rfind(session + ".", 0) == 0) out.push_back(name);
  }
  return out;
}

std::string pid_list(const std::vector<pid_t>& pids) {
  std::vector<pid_t> sorted = pids;
  std::sort(sorted.begin(), sorted.end());
  std::string out;
  for (pid_t p : sorted) out += (out.empty() ? "" : ",") + std::to_string(p);
  return out;
}

// The database holds exactly the group's processes, each of its session,
// with exact counts, and nothing else.
void expect_exactly(const std::string& path, const Group& g) {
  SCOPED_TRACE("session '" + g.session + "', database " + path);
  Database d(path);
  ASSERT_EQ(d.error, "");
  EXPECT_EQ(d.text("SELECT group_concat(pid, ',') FROM (SELECT pid FROM processes ORDER BY pid)"), pid_list(g.pids));
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE session = '" + g.session + "'"),
            static_cast<std::int64_t>(g.pids.size()));
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE state = 'exited'"),
            static_cast<std::int64_t>(g.pids.size()));
  for (std::size_t i = 0; i < 2; ++i) expect_exact_counters(d, g.pids[i], kThreads, g.counters);
  EXPECT_EQ(d.number("SELECT count(*) FROM span_data WHERE kind = 'counter'"), 2 * kThreads * g.counters);
  EXPECT_EQ(d.number("SELECT count(*) FROM errors e JOIN processes p USING (process_key) WHERE p.pid = " +
                     std::to_string(g.pids[2]) + " AND e.type = 'BurstError'"),
            kThreads * g.errors);
  EXPECT_EQ(d.number("SELECT count(DISTINCT message) FROM errors"), kThreads * g.errors);
  EXPECT_EQ(d.number("SELECT count(*) FROM errors"), kThreads * g.errors);
}

TEST(DrainSession, ThreeDrainsOnOneMachineEachStoreExactlyTheirOwnRuns) {
  ASSERT_EQ(h::isolate_shm(), "");
  Group a{unique_session(), 1500, 700, {}};
  Group b{unique_session(), 2500, 900, {}};
  Group none{"", 3500, 1100, {}};
  const TempDb db_a("session-a"), db_b("session-b"), db_none("session-none");
  const std::string log_a = db_a.path + ".stderr", log_b = db_b.path + ".stderr", log_none = db_none.path + ".stderr";
  for (const auto* log : {&log_a, &log_b, &log_none}) std::remove(log->c_str());
  // B's session comes from a configuration file: the key every option has.
  const std::string config = db_b.path + ".toml";
  {
    std::FILE* f = std::fopen(config.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fprintf(f, "session = \"%s\"\n", b.session.c_str());
    std::fclose(f);
  }
  // The drains see no SHMTRACE_SESSION: only the option chooses.
  const pid_t drain_a = h::spawn({SHMTRACE_DRAIN_PATH, "--db", db_a.path, "--session", a.session, "--rescan", "100ms"},
                                 log_a);
  const pid_t drain_b =
      h::spawn({SHMTRACE_DRAIN_PATH, "--db", db_b.path, "--config", config, "--rescan", "100ms"}, log_b);
  const pid_t drain_none = h::spawn({SHMTRACE_DRAIN_PATH, "--db", db_none.path, "--rescan", "100ms"}, log_none);
  ASSERT_GT(drain_a, 0);
  ASSERT_GT(drain_b, 0);
  ASSERT_GT(drain_none, 0);

  // Interleaved, while all three drains run.
  produce(a);
  produce(none);
  produce(b);
  // A descendant inherits its parent's session: st_workload's workers are
  // forked and exec'd, and land in A's database too.
  const RunResult workload = run({program_path("st_workload"), "--workers", "2", "--iterations", "5"},
                                 session_env(a.session));
  ASSERT_EQ(workload.exit_code, 0) << workload.err;

  // Every segment (and error chunk) of every session is removed by its drain.
  const bool emptied = h::wait_until([] { return names_in_shm().empty(); }, 60s);
  EXPECT_TRUE(emptied) << "left in /dev/shm: " << names_in_shm().size() << " objects, first "
                       << (names_in_shm().empty() ? "" : *names_in_shm().begin());
  for (pid_t drain : {drain_a, drain_b, drain_none}) {
    ASSERT_EQ(::kill(drain, SIGTERM), 0);
    const h::Exit stopped = h::wait_exit(drain, 60s);
    EXPECT_TRUE(stopped.exited && stopped.code == 0) << "drain " << drain << " exit " << stopped.code;
  }
  // Nothing went wrong to say: a drain never saw another's segment.
  EXPECT_EQ(h::read_file(log_a), "");
  EXPECT_EQ(h::read_file(log_b), "");
  EXPECT_EQ(h::read_file(log_none), "");

  // A's database: its producers plus the workload's processes.
  {
    Database d(db_a.path);
    ASSERT_EQ(d.error, "");
    const std::map<int, WorkloadWorker> workers = parse_workload_output(workload.out);
    ASSERT_EQ(workers.size(), 2u) << workload.out;
    for (const auto& [index, worker] : workers) {
      EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE pid = " + std::to_string(worker.pid) +
                         " AND state = 'exited' AND session = '" + a.session + "'"),
                1)
          << "worker " << index;
    }
    EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE session <> '" + a.session + "'"), 0);
  }
  // Beside the workload, A's database holds exactly A's producers.
  {
    Database d(db_a.path);
    const std::string producers = pid_list(a.pids);
    EXPECT_EQ(d.text("SELECT group_concat(pid, ',') FROM (SELECT pid FROM processes WHERE pid IN (" + producers +
                     ") ORDER BY pid)"),
              producers);
    for (std::size_t i = 0; i < 2; ++i) expect_exact_counters(d, a.pids[i], kThreads, a.counters);
    EXPECT_EQ(d.number("SELECT count(*) FROM errors WHERE type = 'BurstError'"), kThreads * a.errors);
    for (pid_t p : b.pids) EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE pid = " + std::to_string(p)), 0);
    for (pid_t p : none.pids) EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE pid = " + std::to_string(p)), 0);
  }
  expect_exactly(db_b.path, b);
  expect_exactly(db_none.path, none);
  for (const auto* log : {&log_a, &log_b, &log_none}) std::remove(log->c_str());
  std::remove(config.c_str());
}

// What a previous run left (producers gone, no drain ran) is taken on the
// first scan, by the drain of its session only.
TEST(DrainSession, LeftoversAreTakenOnlyByTheirSessionsDrain) {
  ASSERT_EQ(h::isolate_shm(), "");
  Group a{unique_session(), 1200, 300, {}};
  Group none{"", 1700, 400, {}};
  produce(a);
  produce(none);
  const std::size_t a_objects = objects_of(a.session).size();
  const std::size_t none_objects = objects_of("").size();
  ASSERT_GT(a_objects, 3u) << "three segments and their error chunks";
  ASSERT_GT(none_objects, 3u);

  const TempDb db_a("leftover-a"), db_none("leftover-none");
  const RunResult first = run({SHMTRACE_DRAIN_PATH, "--db", db_a.path, "--session", a.session, "--once"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.err, "");
  EXPECT_EQ(objects_of(a.session), std::vector<std::string>{}) << "A's segments and chunks removed";
  EXPECT_EQ(objects_of("").size(), none_objects) << "no session's left alone";

  const RunResult second = run({SHMTRACE_DRAIN_PATH, "--db", db_none.path, "--once"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(second.err, "");
  EXPECT_EQ(names_in_shm(), std::set<std::string>{});
  expect_exactly(db_a.path, a);
  expect_exactly(db_none.path, none);
}

// A bad id is a usage error: one line, exit 2, from the option or the file.
TEST(DrainSession, ABadSessionIdExitsTwoWithOneLine) {
  const TempDb db("bad-session");
  const std::string config = db.path + ".toml";
  {
    std::FILE* f = std::fopen(config.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("session = \"no.dots\"\n", f);
    std::fclose(f);
  }
  for (const std::vector<std::string>& argv : std::vector<std::vector<std::string>>{
           {SHMTRACE_DRAIN_PATH, "--db", db.path, "--session", "9lives"},
           {SHMTRACE_DRAIN_PATH, "--db", db.path, "--session", "a/b"},
           {SHMTRACE_DRAIN_PATH, "--db", db.path, "--session", std::string(33, 'x')},
           {SHMTRACE_DRAIN_PATH, "--db", db.path, "--config", config}}) {
    SCOPED_TRACE(argv.back());
    const RunResult r = run(argv);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.err.rfind("shmtrace-drain: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find("session id"), std::string::npos) << r.err;
    EXPECT_EQ(h::file_size(db.path), -1) << "nothing created";
  }
  std::remove(config.c_str());
  const RunResult help = run({SHMTRACE_DRAIN_PATH, "--help"});
  EXPECT_NE(help.out.find("--session"), std::string::npos);
}

}  // namespace
}  // namespace shmtrace::test
