// Process events through the real drain: a plain program (tests/plain/
// st_spawns.c, no shmtrace code) run under LD_PRELOAD starts children with
// fork, vfork, posix_spawn, posix_spawnp and an exec chain, and fails two
// execs. Every child must have exactly one event in its parent, every exec
// exactly one exec event, and `processes` the exact tree.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "support/test_database.hpp"
#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

using Event = std::tuple<std::string, std::int64_t, std::string>;  // kind, value, name

std::vector<Event> events_of(const Database& d, const std::string& where) {
  std::vector<Event> out;
  sqlite3_stmt* s = nullptr;
  const std::string sql =
      "SELECT e.kind, e.value, e.name FROM process_events e JOIN processes p USING (process_key) WHERE " + where +
      " AND e.kind NOT IN ('process_start', 'exit', 'thread_start', 'thread_end') ORDER BY p.start_ns, e.ring, "
      "e.position";
  EXPECT_EQ(sqlite3_prepare_v2(d.db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(d.db);
  while (sqlite3_step(s) == SQLITE_ROW) {
    out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), sqlite3_column_int64(s, 1),
                     reinterpret_cast<const char*>(sqlite3_column_text(s, 2)));
  }
  sqlite3_finalize(s);
  return out;
}

std::map<std::string, std::int64_t> children_of(const std::string& out) {
  std::map<std::string, std::int64_t> pids;
  std::istringstream in(out);
  std::string how;
  std::int64_t pid = 0;
  while (in >> how >> pid) pids[how] = pid;
  return pids;
}

#if !SHMTRACE_SANITIZED_RUNTIME  // a sanitized runtime makes vfork a fork
TEST(DrainProcessEvents, EveryChildAndEveryExecHasExactlyOneEventAndTheTreeIsExact) {
  const SessionScope session;  // its drain takes only its programs' segments
  const TempDb db("spawns");
  const std::string self = program_path("st_spawns");
  const std::string dir = std::filesystem::path(self).parent_path().string();
  const char* path = std::getenv("PATH");
  const RunResult r =
      run({self, "all"}, {{"LD_PRELOAD", SHMTRACE_LIBRARY_PATH}, {"PATH", dir + ":" + (path ? path : "/usr/bin:/bin")}});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const auto child = children_of(r.out);
  ASSERT_EQ(child.size(), 6u) << r.out;
  const RunResult drained = run(session.drain({"--db", db.path, "--once"}));
  ASSERT_EQ(drained.exit_code, 0) << drained.err;
  Database d(db);
  ASSERT_EQ(d.error, "");
  const std::string missing = "/nonexistent/st_missing";
  const std::int64_t main_pid = r.pid;
  const std::int64_t chain = child.at("chain");

  // The parent: one event per child, in order; the execs of its vfork and
  // spawn children (value: the child) and its own failed exec (value: itself).
  const std::vector<Event> expected = {
      {"fork", child.at("fork"), ""},
      {"vfork", child.at("vfork"), self},
      {"exec", child.at("vfork"), self},
      {"spawn", child.at("spawn"), self},
      {"exec", child.at("spawn"), self},
      {"spawn", child.at("spawnp"), "st_spawns"},
      {"exec", child.at("spawnp"), "st_spawns"},
      {"fork", chain, ""},
      {"exec_failed", main_pid, missing},
      {"vfork", child.at("vfork_failed"), missing},
      {"exec_failed", child.at("vfork_failed"), missing},
  };
  EXPECT_EQ(events_of(d, "p.pid = " + std::to_string(main_pid)), expected);

  // The exec chain: image A (the fork child) exec'd B, B exec'd C; each exec
  // one event in the image that exec'd.
  const std::vector<Event> chain_events = {{"exec", chain, self}, {"exec", chain, self}};
  EXPECT_EQ(events_of(d, "p.pid = " + std::to_string(chain)), chain_events);
  EXPECT_EQ(d.text("SELECT group_concat(state || ':' || coalesce(exec_target, ''), ' ') FROM "
                   "(SELECT * FROM processes WHERE pid = " + std::to_string(chain) + " ORDER BY start_ns)"),
            "execed:" + self + " execed:" + self + " exited:");
  EXPECT_EQ(d.text("SELECT group_concat(cmdline, '|') FROM (SELECT replace(cmdline, char(0), ' ') AS cmdline "
                   "FROM processes WHERE pid = " + std::to_string(chain) + " ORDER BY start_ns)"),
            self + " all|" + self + " chain b|" + self + " chain c");

  // The other children: one image each (the vfork child whose exec failed
  // ran in its parent's image and has none), no event of their own.
  for (const char* how : {"fork", "vfork", "spawn", "spawnp"}) {
    SCOPED_TRACE(how);
    const std::string pid = std::to_string(child.at(how));
    EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE pid = " + pid), 1);
    EXPECT_EQ(d.text("SELECT state FROM processes WHERE pid = " + pid), "exited");
    EXPECT_TRUE(events_of(d, "p.pid = " + pid).empty());
  }
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE pid = " + std::to_string(child.at("vfork_failed"))), 0);

  // The tree: 8 images, every child's images under the program.
  EXPECT_EQ(d.number("SELECT count(*) FROM processes"), 8);
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE pid = " + std::to_string(main_pid) +
                     " AND ppid <> " + std::to_string(main_pid)),
            1);
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE ppid = " + std::to_string(main_pid)), 7);
  EXPECT_EQ(d.number("SELECT count(*) FROM process_events WHERE kind IN ('fork', 'vfork', 'spawn', 'clone')"), 6);
  EXPECT_EQ(d.number("SELECT count(*) FROM process_events WHERE kind = 'exec'"), 5);
  EXPECT_EQ(d.number("SELECT count(*) FROM process_events WHERE kind = 'exec_failed'"), 2);
}
#endif

}  // namespace
}  // namespace shmtrace::test
