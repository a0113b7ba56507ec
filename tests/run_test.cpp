// `shmtrace run` with real processes and its real drain: the command's exit
// status, stdout and stdin pass through untouched, signals sent to `run`
// reach the command, every record is stored before `run` exits, runs are
// isolated from each other by their session, the database rotates to .old,
// and bad command lines fail with one line.
//
// Run it with a private /dev/shm (scripts/test.sh; /work/wt/isolated by
// hand): the test with a drain of no session takes every unsessioned
// segment it sees, and isolates itself for that.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <termios.h>

#include <filesystem>
#include <sstream>
#include <thread>

#include "support/drain_harness.hpp"
#include "support/run_support.hpp"
#include "support/test_database.hpp"
#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

namespace h = harness;

std::string db_in(const TempDir& dir) { return dir / "trace.db"; }

// Every process row, for a failure's message.
std::string processes_of(const Database& d) {
  return d.text("SELECT group_concat(pid || ' ' || ppid || ' ' || exe || ' ' || state || ' ' || "
                "coalesce(exit_status, '-'), '; ') FROM processes");
}

// Segments in /dev/shm of any session (the isolated test's /dev/shm holds
// only its own).
std::size_t segments_left() {
  auto listed = reader::list_segments();
  return listed ? listed->size() : 999;
}

// Segments left in /dev/shm by the processes a run stored (tests may run
// beside others that have segments of their own).
std::size_t segments_left(const Database& d) {
  auto listed = reader::list_segments();
  if (!listed) return 999;
  std::size_t left = 0;
  for (const auto& l : *listed) {
    left += d.number("SELECT count(*) FROM processes WHERE pid = " + std::to_string(l.pid)) > 0 ? 1 : 0;
  }
  return left;
}

TEST(Run, ExitStatusZeroPassesThroughAndTheProcessIsStored) {
  TempDir dir("run");
  const RunResult r = run(run_argv({"--db", db_in(dir)}, {program_path("st_plain"), "hello", "0"}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "hello\n");
  Database d(db_in(dir));
  ASSERT_NE(d.db, nullptr) << d.error;
  EXPECT_EQ(d.number("SELECT count(*) FROM processes"), 1);
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE ppid = " + std::to_string(r.pid) +
                     " AND state = 'exited' AND exit_status = 0 AND exe LIKE '%/st_plain'"),
            1);
  // The summary names the database, after the command ended.
  EXPECT_NE(r.err.find("database " + db_in(dir)), std::string::npos) << r.err;
  EXPECT_EQ(segments_left(d), 0u);
}

TEST(Run, ExitStatusThreePassesThrough) {
  TempDir dir("run");
  const RunResult r = run(run_argv({"--db", db_in(dir)}, {program_path("st_plain"), "hello", "3"}));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.out, "hello\n");
  Database d(db_in(dir));
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE state = 'exited' AND exit_status = 3"), 1);
  EXPECT_NE(r.err.find("1 with a non-zero exit status"), std::string::npos) << r.err;
}

TEST(Run, ACommandKilledBySigsegvGives139AndItsCrashIsStored) {
  TempDir dir("run");
  const RunResult r = run(run_argv({"--db", db_in(dir)}, {program_path("st_producer"), "crash", "segv", "10"}),
                          without_sanitizer_signal_handlers());
  EXPECT_EQ(r.exit_code, 128 + SIGSEGV) << r.err;
  Database d(db_in(dir));
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE state = 'crashed' AND exe LIKE '%/st_producer'"), 1);
  EXPECT_EQ(d.number("SELECT count(*) FROM errors WHERE kind = 'crash' AND signal = " + std::to_string(SIGSEGV)),
            1);
  EXPECT_EQ(d.number("SELECT count(*) FROM span_data WHERE kind = 'counter'"), 10);
  EXPECT_NE(r.err.find("1 crashed"), std::string::npos) << r.err;
}

#if !SHMTRACE_SANITIZED_RUNTIME  // traces system programs: built in the plain build only
TEST(Run, SigintSentToRunReachesTheCommandAndWhatItWroteIsStored) {
  TempDir dir("run");
  // The command writes its records, then becomes a program that says
  // "ready" (its runtime is up) and waits to be interrupted.
  const std::string producer = shell_quote(program_path("st_producer"));
  const std::string script = producer + " sequence 2 1000 && exec " + producer + " --wait-signal sequence 1 10";
  Child c = Child::start(run_argv({"--db", db_in(dir)}, {"/bin/sh", "-c", script}), {});
  ASSERT_TRUE(c.wait_for_output("ready\n", 30'000));
  ASSERT_EQ(::kill(c.pid(), SIGINT), 0);
  const RunResult r = c.wait();
  EXPECT_EQ(r.exit_code, 128 + SIGINT) << r.err;
  EXPECT_TRUE(r.out.ends_with("\nready\n")) << r.out;
  Database d(db_in(dir));
  const std::string first = d.text("SELECT pid FROM processes WHERE exe LIKE '%/st_producer' AND ppid != " +
                                   std::to_string(r.pid));
  ASSERT_FALSE(first.empty()) << processes_of(d);
  expect_exact_counters(d, std::stoi(first), 2, 1000);
  // The command (sh, exec'd into the waiting producer) ended by SIGINT,
  // which no handler of the runtime sees: stored as gone without a word.
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE ppid = " + std::to_string(r.pid) +
                     " AND state = 'vanished' AND exe LIKE '%/st_producer'"),
            1)
      << processes_of(d);
  EXPECT_EQ(segments_left(d), 0u);
}
#endif

#if !SHMTRACE_SANITIZED_RUNTIME  // the sanitized runtime is preloaded into the pty helper
// Ctrl-C on a terminal: the tty driver sends SIGINT to the whole foreground
// process group, `run` and the command alike. `run` must not forward its
// copy: the command counts exactly one.
TEST(Run, ATerminalsCtrlCReachesTheCommandOnce) {
  TempDir dir("run");
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  const std::string slave = ::ptsname(master);
  const std::vector<std::string> args = run_argv({"--db", db_in(dir)}, {program_path("st_sigcount")});
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // A session of its own whose controlling terminal is the pty: `run` is
    // the foreground process group, as a shell would make it.
    ::setsid();
    const int tty = ::open(slave.c_str(), O_RDWR);
    if (tty < 0 || ::ioctl(tty, TIOCSCTTY, 0) != 0) ::_exit(120);
    ::dup2(tty, STDIN_FILENO);
    ::dup2(tty, STDOUT_FILENO);
    ::dup2(tty, STDERR_FILENO);
    if (kSanitizedRuntime) ::setenv("ASAN_OPTIONS", "verify_asan_link_order=0", 0);  // as Child::start
    ::execv(argv[0], argv.data());
    ::_exit(121);
  }
  std::string out;
  auto read_some = [&] {
    char buf[4096];
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) return false;
    const ssize_t n = ::read(master, buf, sizeof buf);
    if (n <= 0) return false;
    out.append(buf, static_cast<std::size_t>(n));
    return true;
  };
  EXPECT_TRUE(h::wait_until([&] { read_some(); return out.find("ready") != std::string::npos; },
                            std::chrono::seconds(30)))
      << out;
  const char ctrl_c = '\x03';  // VINTR of a fresh pty
  ASSERT_EQ(::write(master, &ctrl_c, 1), 1);
  const h::Exit exit = h::wait_exit(pid, std::chrono::seconds(60));
  while (read_some()) {
  }
  ::close(master);
  ASSERT_TRUE(exit.exited) << out;
  EXPECT_EQ(exit.code, 1) << out;  // st_sigcount exits with the number of SIGINTs it got
  EXPECT_NE(out.find("sigint 1"), std::string::npos) << out;
  Database d(db_in(dir));
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE exe LIKE '%/st_sigcount' AND exit_status = 1"), 1)
      << processes_of(d);
}
#endif

TEST(Run, StdoutIsByteIdenticalWithAndWithoutRun) {
  TempDir dir("run");
  // 4 MiB of every byte value, then text: cat prints it all.
  std::string data(4 << 20, '\0');
  for (std::size_t i = 0; i < data.size(); i += 256) {
    ASSERT_EQ(::getrandom(data.data() + i, std::min<std::size_t>(256, data.size() - i), 0), 256);
  }
  data += "\nthe end\n";
  write_file(dir / "data.bin", data);
  const RunResult plain = run({"/bin/cat", dir / "data.bin"});
  const RunResult traced = run(run_argv({"--db", db_in(dir)}, {"/bin/cat", dir / "data.bin"}));
  EXPECT_EQ(plain.exit_code, 0);
  EXPECT_EQ(traced.exit_code, 0) << traced.err;
  ASSERT_EQ(traced.out.size(), data.size());
  EXPECT_TRUE(traced.out == plain.out && traced.out == data);
  Database d(db_in(dir));
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE exe LIKE '%/cat'"), 1);
}

TEST(Run, StdinReachesTheCommand) {
  TempDir dir("run");
  std::string input;
  for (int i = 0; i < 20000; ++i) input += "line " + std::to_string(i) + "\n";
  write_file(dir / "in.txt", input);
  std::string command;
  for (const std::string& word : run_argv({"--db", db_in(dir)}, {"/bin/cat"})) command += shell_quote(word) + " ";
  const RunResult r = run({"/bin/sh", "-c", command + "< " + shell_quote(dir / "in.txt")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out == input) << r.out.size() << " bytes";
}

TEST(Run, TheDefaultDatabaseAndItsRotationToOld) {
  TempDir dir("run");
  auto run_in_dir = [&](const char* code) {
    std::string command = "cd " + shell_quote(dir.path()) + " && exec";
    for (const std::string& word : run_argv({}, {program_path("st_plain"), "hello", code})) {
      command += " " + shell_quote(word);
    }
    return run({"/bin/sh", "-c", command});
  };
  const RunResult first = run_in_dir("0");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  {
    Database d(dir / "shmtrace.db");
    EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE ppid = " + std::to_string(first.pid)), 1);
  }
  EXPECT_TRUE(std::filesystem::is_directory(dir / "shmtrace.db.parts"));
  EXPECT_GE(h::file_size(dir / "shmtrace.db.log"), 0);
  EXPECT_FALSE(std::filesystem::exists(dir / "shmtrace.db.old"));

  const RunResult second = run_in_dir("4");
  ASSERT_EQ(second.exit_code, 4) << second.err;
  {
    Database now(dir / "shmtrace.db");
    EXPECT_EQ(now.number("SELECT count(*) FROM processes"), 1);
    EXPECT_EQ(now.number("SELECT count(*) FROM processes WHERE ppid = " + std::to_string(second.pid) +
                         " AND exit_status = 4"),
              1);
    // The earlier run, whole: its partitions moved with it.
    Database old(dir / "shmtrace.db.old");
    ASSERT_NE(old.db, nullptr) << old.error;
    EXPECT_EQ(old.number("SELECT count(*) FROM processes"), 1);
    EXPECT_EQ(old.number("SELECT count(*) FROM processes WHERE ppid = " + std::to_string(first.pid) +
                         " AND exit_status = 0"),
              1);
    EXPECT_EQ(old.number("SELECT count(*) FROM spans"), 0);  // the views over the partitions answer
  }
  EXPECT_TRUE(std::filesystem::is_directory(dir / "shmtrace.db.old.parts"));
  EXPECT_TRUE(std::filesystem::exists(dir / "shmtrace.db.old.log"));

  const RunResult third = run_in_dir("0");
  ASSERT_EQ(third.exit_code, 0) << third.err;
  Database old(dir / "shmtrace.db.old");
  EXPECT_EQ(old.number("SELECT count(*) FROM processes WHERE ppid = " + std::to_string(second.pid)), 1);
  EXPECT_EQ(old.number("SELECT count(*) FROM processes"), 1);
}

TEST(Run, ANonDatabaseAtTheDbPathIsNotMovedAway) {
  TempDir dir("run");
  write_file(dir / "notes.txt", "my notes\n");
  const RunResult r = run(run_argv({"--db", dir / "notes.txt"}, {program_path("st_plain"), "hello", "0"}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");  // the command never ran
  EXPECT_EQ(run_lines(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find(dir / "notes.txt"), std::string::npos) << r.err;
  EXPECT_EQ(h::read_file(dir / "notes.txt"), "my notes\n");
  EXPECT_FALSE(std::filesystem::exists(dir / "notes.txt.old"));
}

TEST(Run, BadOptionsExitTwoWithOneLine) {
  TempDir dir("run");
  const std::vector<std::vector<std::string>> bad = {
      {"--policy", "sometimes"}, {"--sample", "1.5"},       {"--sample", "x"},
      {"--ring-records", "100"}, {"--ring-records", "32"},  {"--stats-sites", "4097"},
      {"--include", "("},        {"--exclude", "[a-"},      {"--grace", "-1"},
      {"--no-such-option"},
  };
  for (const auto& options : bad) {
    std::vector<std::string> with_db = options;
    with_db.insert(with_db.end(), {"--db", db_in(dir)});
    const RunResult r = run(run_argv(with_db, {program_path("st_plain"), "hello", "0"}));
    SCOPED_TRACE(options.front());
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(std::filesystem::exists(db_in(dir)));
  }
  const RunResult no_command = run({SHMTRACE_CLI_PATH, "run", "--db", db_in(dir)});
  EXPECT_EQ(no_command.exit_code, 2) << no_command.err;
  EXPECT_EQ(std::count(no_command.err.begin(), no_command.err.end(), '\n'), 1) << no_command.err;
}

TEST(Run, TheOptionsReachTheRuntime) {
  TempDir dir("run");
  // 5000 counters through a ring of 64 records: exact only because the
  // writer blocks while the ring is full (--policy block).
  const RunResult r = run(run_argv({"--db", db_in(dir), "--policy", "block", "--ring-records", "64",
                                    "--stats-sites", "0"},
                                   {program_path("st_producer"), "sequence", "1", "5000"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Database d(db_in(dir));
  const std::string pid = d.text("SELECT pid FROM processes WHERE exe LIKE '%/st_producer'");
  ASSERT_FALSE(pid.empty());
  expect_exact_counters(d, std::stoi(pid), 1, 5000);
  EXPECT_EQ(d.number("SELECT coalesce(sum(records_dropped), 0) FROM processes"), 0);
  EXPECT_EQ(d.number("SELECT count(*) FROM call_sites"), 0);  // --stats-sites 0: no statistics slots
}

#if !SHMTRACE_SANITIZED_RUNTIME  // traces system programs: built in the plain build only
TEST(Run, EachOptionSetsItsVariableAndThePreloadIsAppended) {
  TempDir dir("run");
  const RunResult r = run(run_argv({"--db", db_in(dir), "--policy", "drop", "--sample", "0.25", "--include", "^a",
                                    "--exclude", "b$", "--stats-sites", "12", "--ring-records", "128"},
                                   {"/usr/bin/env"}),
                          {{"LD_PRELOAD", "libm.so.6"}, {"SHMTRACE_SESSION", "outer"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string out = "\n" + r.out;
  for (const std::string& line : std::vector<std::string>{
           "SHMTRACE_POLICY=drop", "SHMTRACE_SAMPLE_RATE=0.25", "SHMTRACE_INCLUDE=^a", "SHMTRACE_EXCLUDE=b$",
        "SHMTRACE_STATS_SITES=12", "SHMTRACE_RING_RECORDS=128",
        "LD_PRELOAD=libm.so.6:" + std::string(SHMTRACE_LIBRARY_PATH)}) {
    EXPECT_NE(out.find("\n" + line + "\n"), std::string::npos) << line << " in\n" << r.out;
  }
  // A new session, not the one in run's own environment.
  EXPECT_EQ(out.find("\nSHMTRACE_SESSION=outer\n"), std::string::npos) << r.out;
  EXPECT_NE(out.find("\nSHMTRACE_SESSION=run"), std::string::npos) << r.out;
}
#endif

TEST(Run, EverythingFromTheCommandsNameOnIsTheCommandsWithOrWithoutDashDash) {
  TempDir dir("run");
  const RunResult r =
      run({SHMTRACE_CLI_PATH, "run", "--db", db_in(dir), "/bin/sh", "-c", "echo \"$0 $1\"", "-x", "--db"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "-x --db\n");
}

TEST(Run, AMissingCommandExits127WithOneLine) {
  TempDir dir("run");
  const RunResult r = run(run_argv({"--db", db_in(dir)}, {"no-such-command-shmtrace-run-test"}));
  EXPECT_EQ(r.exit_code, 127);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "shmtrace run: no-such-command-shmtrace-run-test: command not found\n");
  EXPECT_FALSE(std::filesystem::exists(db_in(dir)));

  write_file(dir / "not-executable", "#!/bin/sh\n");
  const RunResult denied = run(run_argv({"--db", db_in(dir)}, {dir / "not-executable"}));
  EXPECT_EQ(denied.exit_code, 126);
  EXPECT_EQ(run_lines(denied.err), 1u) << denied.err;
}

#if !SHMTRACE_SANITIZED_RUNTIME  // traces system programs: built in the plain build only
TEST(Run, DescendantsThatOutliveTheCommandGetTheGraceThenAreLeftRunning) {
  TempDir dir("run");
  // The command starts a child that outlives it by far, and exits (the
  // child's output away from the pipes the test reads to their end).
  const std::string script = "sleep 30 > /dev/null 2>&1 & echo $!";
  const auto started = std::chrono::steady_clock::now();
  const RunResult r = run(run_argv({"--db", db_in(dir), "--grace", "0.5"}, {"/bin/sh", "-c", script}));
  const double took_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const pid_t sleeper = std::stoi(r.out);
  EXPECT_TRUE(h::pid_alive(sleeper));
  EXPECT_LT(took_s, 20.0);
  EXPECT_NE(r.err.find("still run (pid " + std::to_string(sleeper) + ")"), std::string::npos) << r.err;
  ::kill(sleeper, SIGKILL);
  remove_segments_of(sleeper);
  Database d(db_in(dir));
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE ppid = " + std::to_string(r.pid) + " AND state = 'exited'"),
            1);
}
#endif

#if !SHMTRACE_SANITIZED_RUNTIME  // traces system programs: built in the plain build only
TEST(Run, WaitDescendantsWaitsForEveryProcessTheCommandStarted) {
  TempDir dir("run");
  const std::string script = shell_quote(program_path("st_plain")) + " hello 0 > /dev/null; (sleep 1; " +
                             shell_quote(program_path("st_plain")) + " hello 7) > /dev/null & echo started";
  const RunResult r = run(run_argv({"--db", db_in(dir), "--wait-descendants"}, {"/bin/sh", "-c", script}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "started\n");
  Database d(db_in(dir));
  // The late st_plain, started a second after the command ended, is there.
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE exe LIKE '%/st_plain' AND state = 'exited'"), 2);
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE exit_status = 7"), 1);
  EXPECT_EQ(segments_left(d), 0u);
}
#endif

// `run`'s child whose program is (or, with `is` false, is not) shmtrace-drain; 0 when none.
pid_t child_of(pid_t run_pid, bool is) {
  std::istringstream children(h::read_file("/proc/" + std::to_string(run_pid) + "/task/" +
                                           std::to_string(run_pid) + "/children"));
  for (pid_t child = 0; children >> child;) {
    std::error_code ec;
    const auto exe = std::filesystem::read_symlink("/proc/" + std::to_string(child) + "/exe", ec);
    if (!ec && (exe.filename() == "shmtrace-drain") == is) return child;
  }
  return 0;
}

// A drain that falls behind (here: stopped): after the command ended, `run`
// says each second how much is left, and still waits for all of it.
TEST(Run, ProgressIsShownWhileTheDrainFallsBehind) {
  TempDir dir("run");
  // 5000 counters and their text arguments fit one ring: nothing is dropped
  // while the drain is stopped.
  Child c = Child::start(run_argv({"--db", db_in(dir)},
                                  {program_path("st_producer"), "--wait-signal", "sequence", "1", "5000"}),
                         {});
  ASSERT_TRUE(c.wait_for_output("ready\n", 30'000));
  const pid_t drain = child_of(c.pid(), true);
  const pid_t producer = child_of(c.pid(), false);
  ASSERT_GT(drain, 0);
  ASSERT_GT(producer, 0);
  ASSERT_EQ(::kill(drain, SIGSTOP), 0);
  ASSERT_EQ(::kill(producer, SIGUSR1), 0);
  EXPECT_TRUE(h::wait_until([&] { return !h::pid_alive(producer); }, std::chrono::seconds(30)));
  // Behind for a while: `run` reports at 1 s and 2 s after the command ended.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  ASSERT_EQ(::kill(drain, SIGCONT), 0);
  const RunResult r = c.wait();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GE(h::lines_with(r.err, "shmtrace run: storing: 1 segments, ").size(), 2u) << r.err;
  EXPECT_TRUE(h::lines_with(r.err, " records left").size() >= 2 &&
              h::lines_with(r.err, ", 0 records left").empty())
      << r.err;
  Database d(db_in(dir));
  expect_exact_counters(d, producer, 1, 5000);
  EXPECT_EQ(segments_left(d), 0u);
}

// Two runs at once and a drain of no session beside them: each database
// holds exactly its own processes. (Needs shmtrace-drain --session: a drain
// of no session takes only unsessioned segments, one with --session only
// that session's.)
TEST(Run, TwoConcurrentRunsAndADrainOfNoSessionEachStoreExactlyTheirOwn) {
  ASSERT_EQ(h::isolate_shm(), "");  // the drain of no session takes every unsessioned segment it sees
  TempDir dir("run");
  const std::string system_db = dir / "system.db";
  const pid_t system_drain = h::spawn({SHMTRACE_DRAIN_PATH, "--db", system_db}, dir / "system.log");
  ASSERT_GT(system_drain, 0);
  ASSERT_TRUE(h::wait_until([&] { return h::file_size(system_db) >= 0; }, std::chrono::seconds(30)));

  // Each producer waits for SIGUSR1, so all three segments exist at once.
  const std::string producer = program_path("st_producer");
  Child a = Child::start(run_argv({"--db", dir / "a.db"}, {producer, "--wait-signal", "sequence", "1", "500"}), {});
  Child b = Child::start(run_argv({"--db", dir / "b.db"}, {producer, "--wait-signal", "sequence", "2", "700"}), {});
  Child plain = Child::start({producer, "--wait-signal", "sequence", "1", "300"}, {});
  std::vector<reader::SegmentListing> listed;
  ASSERT_TRUE(h::wait_until(
      [&] {
        auto l = reader::list_segments();
        if (l) listed = *l;
        return listed.size() == 3;
      },
      std::chrono::seconds(30)));
  // A segment exists before the producer's main() blocks SIGUSR1: signal
  // each only once /proc shows it blocked, or the thread waiting in sigwait
  // (which unblocks it for the wait), or the signal kills it.
  const auto usr1_blocked = [](std::uint32_t pid) {
    const std::string dir = "/proc/" + std::to_string(pid);
    std::ifstream wchan(dir + "/wchan");
    std::string waiting;
    std::getline(wchan, waiting);
    if (waiting.find("sigtimedwait") != std::string::npos) return 1ull;
    std::ifstream status(dir + "/status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("SigBlk:", 0) == 0) return (std::stoull(line.substr(7), nullptr, 16) >> (SIGUSR1 - 1)) & 1;
    }
    return 0ull;
  };
  std::set<std::string> sessions;
  for (const auto& l : listed) {
    sessions.insert(l.session);
    ASSERT_TRUE(h::wait_until([&] { return usr1_blocked(l.pid) != 0; }, std::chrono::seconds(30))) << l.pid;
    ::kill(static_cast<pid_t>(l.pid), SIGUSR1);
  }
  EXPECT_EQ(sessions.size(), 3u);  // two runs, and no session
  const RunResult ra = a.wait(), rb = b.wait(), rp = plain.wait();
  EXPECT_EQ(ra.exit_code, 0) << ra.err;
  EXPECT_EQ(rb.exit_code, 0) << rb.err;
  EXPECT_EQ(rp.exit_code, 0) << rp.err;
  ASSERT_TRUE(h::wait_until([] { return segments_left() == 0; }, std::chrono::seconds(30)));
  ::kill(system_drain, SIGTERM);
  EXPECT_TRUE(h::wait_exit(system_drain, std::chrono::seconds(60)).exited);

  Database da(dir / "a.db"), db(dir / "b.db"), ds(system_db);
  EXPECT_EQ(da.number("SELECT count(*) FROM processes"), 1);
  EXPECT_EQ(da.number("SELECT count(*) FROM processes WHERE ppid = " + std::to_string(ra.pid)), 1);
  EXPECT_EQ(db.number("SELECT count(*) FROM processes"), 1);
  EXPECT_EQ(db.number("SELECT count(*) FROM processes WHERE ppid = " + std::to_string(rb.pid)), 1);
  EXPECT_EQ(ds.number("SELECT count(*) FROM processes"), 1);
  EXPECT_EQ(ds.number("SELECT count(*) FROM processes WHERE pid = " + std::to_string(rp.pid)), 1);
  EXPECT_EQ(da.number("SELECT count(*) FROM span_data WHERE kind = 'counter'"), 500);
  EXPECT_EQ(db.number("SELECT count(*) FROM span_data WHERE kind = 'counter'"), 1400);
  EXPECT_EQ(ds.number("SELECT count(*) FROM span_data WHERE kind = 'counter'"), 300);
}

}  // namespace
}  // namespace shmtrace::test
