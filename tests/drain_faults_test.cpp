// shmtrace-drain under storage faults (SPEC D5), end to end: real producers,
// the real drain, its database on a tmpfs that a forked child mounts in a
// private mount namespace. There the child also mounts a fresh tmpfs on
// /dev/shm, so this drain sees only these producers and no other drain on
// the machine (other tests, other runs) takes their segments.
//
// The child breaks the storage under the running drain and watches it (log
// and metrics): five failed commits open the circuit, batches go to the spill
// file (on /tmp, outside the tmpfs), a half-open probe fails while the fault
// lasts. Then it repairs the storage and watches the spill being replayed and
// the circuit closing; where the spill could take everything, the producers
// are done by then and the idle drain must replay it on its own. Afterwards
// the database holds every record the producers wrote exactly once, the spill
// file is empty, and the drain stops with exit code 0.
//
// The faults:
// - full: the database's filesystem is a 1 MiB tmpfs from the start, and the
//   spill file is bounded at 4 MiB, so it fills too: the records it refuses
//   stay in shared memory, the producers wait (block policy), nothing is
//   lost. Repaired by growing the tmpfs to 256 MiB.
// - filled: the disk fills under a running drain: a first producer's records
//   land, then the tmpfs is shrunk to what it holds. Repaired by growing it.
// - read-only: Linux refuses to make a mount read-only while a file on it is
//   open for writing (EBUSY, for a superblock remount and for a bind mount's
//   own MS_RDONLY alike), and a running drain holds its database open. So the
//   directory of the time partitions, where every span and span datum goes
//   (<db>.parts), is a bind mount of its own, made read-only
//   (MS_REMOUNT|MS_BIND|MS_RDONLY) after the drain opened the database and
//   before the first record arrives, while the drain has nothing open there:
//   every commit fails to create its partition (EROFS). Repaired by
//   remounting it read-write.
//
// The child reports what it saw as lines on a pipe; it copies the database
// out before its namespace (and the tmpfs) goes away, and the parent puts the
// copy back at the same absolute path (partitions are attached by it).
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
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
namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr long kPerThread = 20000;
constexpr int kThreads = 2;
constexpr int kSequenceProducers = 2;
constexpr long kErrorsPerThread = 500;  // one more producer writes only errors
constexpr std::int64_t kSpillBound = 4 << 20;  // the producers write ~9 MiB of spilled batches

enum class Fault { kFull, kFilled, kReadOnly };

// Whether pid, a child of ours, has exited (a zombie counts), without
// reaping it.
bool exited(pid_t pid) {
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

struct Paths {
  explicit Paths(const std::string& label) {
    const std::string base = "/tmp/shmtrace-test-" + std::to_string(::getpid()) + "-faults-" + label;
    dir = base + ".d";
    db = dir + "/db.db";
    parts = db + ".parts";
    spill = base + ".spill";
    err = base + ".stderr";
    copy = base + ".copy";
    clean();
    fs::create_directories(dir);
    fs::create_directories(copy);
  }
  ~Paths() { clean(); }
  void clean() const {
    std::error_code ignored;
    for (const std::string& p : {dir, copy, spill, err, err + ".producers"}) fs::remove_all(p, ignored);
  }
  std::string dir, db, parts, spill, err, copy;
};

// The forked child's side: its findings go to the parent as lines.
class FaultRun {
 public:
  FaultRun(Fault fault, const Paths& p, int fd) : fault_(fault), p_(p), report_(fd) {}
  [[noreturn]] void run();

 private:
  void say(const std::string& line) const { report_.say(line); }
  [[noreturn]] void fail(const std::string& what, bool call = true) const { report_.fail(what, call); }
  std::vector<std::string> drain_lines(const std::string& needle) const {
    return h::lines_with(h::read_file(p_.err), needle);
  }
  std::optional<double> metric(const std::string& name) const {
    const auto text = h::http_get(port_, "/metrics");
    return text ? h::metric_value(*text, name) : std::nullopt;
  }
  void isolate() const;
  void start_drain();
  void break_storage();
  void repair_storage() const;
  pid_t spawn_producer(const std::vector<std::string>& args, const std::string& label);
  void start_producers();
  void fill_disk();
  void report_metrics(const std::string& prefix) const;

  Fault fault_;
  const Paths& p_;
  int port_ = -1;
  pid_t drain_ = -1;
  std::vector<pid_t> producers_;
  h::ChildReport report_;
  std::vector<pid_t>& started_ = report_.started_;
};

void FaultRun::isolate() const {
  if (const std::string why = h::isolate_shm(); !why.empty()) fail(why, false);
  const char* size = fault_ == Fault::kFull ? "size=1m,mode=0700" : "size=256m,mode=0700";
  if (::mount("tmpfs", p_.dir.c_str(), "tmpfs", 0, size) != 0) fail("mounting the database's tmpfs");
  if (fault_ == Fault::kReadOnly) {
    if (::mkdir(p_.parts.c_str(), 0700) != 0) fail("creating " + p_.parts);
    if (::mount(p_.parts.c_str(), p_.parts.c_str(), nullptr, MS_BIND, nullptr) != 0) fail("bind-mounting " + p_.parts);
  }
}

void FaultRun::start_drain() {
  std::vector<std::string> argv{SHMTRACE_DRAIN_PATH,
                                "--db", p_.db,
                                "--spill-file", p_.spill,
                                "--circuit-open", "300ms",  // the default 30 s, shortened
                                "--rescan", "200ms",
                                "--metrics-port", "0",
                                "--metrics-interval", "100ms"};
  if (fault_ == Fault::kFull) {
    // Small batches (1024 records a ring), so the spill file takes several
    // before it is full.
    argv.insert(argv.end(), {"--spill-max-mb", std::to_string(kSpillBound >> 20), "--batch-records", "1024"});
  }
  drain_ = h::spawn(argv, p_.err);
  if (drain_ < 0) fail("starting shmtrace-drain");
  started_.push_back(drain_);
  // Announced once the database is open.
  const std::regex announced(R"(metrics on http://127\.0\.0\.1:(\d+)/metrics)");
  h::wait_until(
      [&] {
        std::smatch m;
        const std::string log = h::read_file(p_.err);
        if (std::regex_search(log, m, announced)) port_ = std::stoi(m[1]);
        return port_ > 0 || exited(drain_);
      },
      30s);
  if (port_ <= 0) fail("the drain did not open its database within 30 s", false);
}

void FaultRun::break_storage() {
  if (fault_ == Fault::kFull) return;  // the tmpfs is full from the start
  if (fault_ == Fault::kFilled) return fill_disk();
  if (::mount(nullptr, p_.parts.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0) {
    fail("remounting " + p_.parts + " read-only");
  }
  const std::string probe = p_.parts + "/probe";
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0 || errno != EROFS) {
    if (fd >= 0) ::close(fd);
    fail(p_.parts + " does not refuse new files with EROFS", fd < 0);
  }
  say("read_only");
}

// A first producer's records land, then the tmpfs shrinks to what it holds
// (the drain keeps writing its metrics table: retried until it fits).
void FaultRun::fill_disk() {
  const pid_t first = spawn_producer({"sequence", std::to_string(kThreads), std::to_string(kPerThread)}, "producer");
  const h::Exit e = h::wait_exit(first, 60s);
  std::erase(started_, first);
  say("producer_exit " + std::to_string(first) + " " + std::to_string(e.exited ? e.code : -1));
  if (!h::wait_until([&] { return find_segment(first, 0).empty(); }, 60s)) {
    fail("the first producer's segment was not drained within 60 s", false);
  }
  for (int attempt = 0; attempt < 100; ++attempt) {
    struct statvfs st {};
    if (::statvfs(p_.dir.c_str(), &st) != 0) fail("statvfs " + p_.dir);
    const std::uint64_t used = static_cast<std::uint64_t>(st.f_blocks - st.f_bfree) * st.f_frsize;
    const std::string size = "size=" + std::to_string((used + 8192 + 4095) / 4096 * 4096);
    if (::mount(nullptr, p_.dir.c_str(), nullptr, MS_REMOUNT, size.c_str()) == 0) {
      say("filled " + size);
      return;
    }
    if (errno != EINVAL) break;
  }
  fail("shrinking the tmpfs to what it holds");
}

void FaultRun::repair_storage() const {
  if (fault_ != Fault::kReadOnly) {
    if (::mount(nullptr, p_.dir.c_str(), nullptr, MS_REMOUNT, "size=256m") != 0) fail("growing the tmpfs");
  } else if (::mount(nullptr, p_.parts.c_str(), nullptr, MS_REMOUNT | MS_BIND, nullptr) != 0) {
    fail("remounting " + p_.parts + " read-write");
  }
  say("repaired");
}

// Block, not drop: while nothing can be committed (database and spill file
// both refusing) or the drain falls behind, the producers wait for it rather
// than drop.
pid_t FaultRun::spawn_producer(const std::vector<std::string>& args, const std::string& label) {
  std::vector<std::string> argv{program_path("st_producer")};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<std::pair<std::string, std::string>> env{{"SHMTRACE_POLICY", "block"},
                                                       {"SHMTRACE_BLOCK_TIMEOUT_MS", "120000"}};
#if defined(__SANITIZE_THREAD__)
  // As Child::start: they sync with the drain through shared memory, which
  // their ThreadSanitizer cannot see (tests/tsan_cross_process.supp).
  const char* tsan = std::getenv("TSAN_OPTIONS");
  env.emplace_back("TSAN_OPTIONS", std::string(tsan != nullptr ? tsan : "") + " suppressions=" +
                                       SHMTRACE_TSAN_SUPPRESSIONS);
#endif
  const pid_t pid = h::spawn(argv, p_.err + ".producers", env);
  if (pid < 0) fail("starting st_producer");
  started_.push_back(pid);
  say(label + " " + std::to_string(pid));
  return pid;
}

void FaultRun::start_producers() {
  for (int i = 0; i < kSequenceProducers; ++i) {
    producers_.push_back(
        spawn_producer({"sequence", std::to_string(kThreads), std::to_string(kPerThread)}, "producer"));
  }
  producers_.push_back(
      spawn_producer({"errors", std::to_string(kThreads), std::to_string(kErrorsPerThread)}, "error_producer"));
}

void FaultRun::report_metrics(const std::string& prefix) const {
  for (const char* name : {"shmtrace_drain_circuit_state", "shmtrace_spill_bytes",
                           "shmtrace_drain_commit_failures_total", "shmtrace_drain_spilled_batches_total",
                           "shmtrace_drain_replayed_batches_total", "shmtrace_drain_spill_refusals_total"}) {
    const auto v = metric(name);
    say(prefix + name + " " + (v ? std::to_string(static_cast<std::int64_t>(*v)) : "absent"));
  }
}

void FaultRun::run() {
  isolate();
  start_drain();
  break_storage();
  start_producers();

  // The fault as the drain meets it: the circuit opens, the spill file takes
  // batches (up to its bound), a half-open probe fails. With an unbounded
  // spill the producers finish meanwhile, so the repair finds the drain idle
  // with nothing but its spill file to store.
  std::int64_t spill_max = 0;
  double state_max = 0;
  const bool seen = h::wait_until(
      [&] {
        spill_max = std::max(spill_max, h::file_size(p_.spill));
        state_max = std::max(state_max, metric("shmtrace_drain_circuit_state").value_or(0));
        if (drain_lines("circuit open for").size() < 2 || spill_max <= 0 || state_max < 1) return false;
        if (fault_ == Fault::kFull) return metric("shmtrace_drain_spill_refusals_total").value_or(0) > 0;
        return std::all_of(producers_.begin(), producers_.end(), exited) || exited(drain_);
      },
      60s);
  say("spill_max " + std::to_string(spill_max));
  say("circuit_state_max " + std::to_string(static_cast<int>(state_max)));
  report_metrics("fault_");
  if (!seen) fail("no open circuit, failed probe and spill (and full spill or finished producers) within 60 s", false);
  if (exited(drain_)) fail("the drain exited during the fault", false);
  repair_storage();

  for (pid_t pid : producers_) {
    const h::Exit e = h::wait_exit(pid, 120s);
    say("producer_exit " + std::to_string(pid) + " " + std::to_string(e.exited ? e.code : -1));
    std::erase(started_, pid);
  }
  // The gauges are published every 100 ms: waited for too.
  const bool recovered = h::wait_until(
      [&] {
        return !drain_lines("circuit closed").empty() && h::file_size(p_.spill) == 0 &&
               std::all_of(producers_.begin(), producers_.end(), [](pid_t pid) { return find_segment(pid, 0).empty(); }) &&
               metric("shmtrace_drain_circuit_state") == 0.0 && metric("shmtrace_spill_bytes") == 0.0;
      },
      60s);
  if (!recovered) fail("no closed circuit, empty spill file and drained segments within 60 s of the repair", false);
  report_metrics("final_");

  ::kill(drain_, SIGTERM);
  const h::Exit stopped = h::wait_exit(drain_, 60s);
  std::erase(started_, drain_);
  say("drain_exit " + std::to_string(stopped.exited ? stopped.code : -1));
  say("spill_final " + std::to_string(h::file_size(p_.spill)));

  // Out of the tmpfs before the namespace, and the mount, are gone.
  std::error_code ec;
  fs::copy(p_.dir, p_.copy, fs::copy_options::recursive | fs::copy_options::overwrite_existing, ec);
  if (ec) {
    errno = ec.value();
    fail("copying the database out");
  }
  ::_exit(0);
}

struct Report {
  std::vector<pid_t> producers;
  pid_t error_producer = 0;
  std::map<std::string, std::string> values;  // first word -> rest (last one wins)
  std::map<std::string, int> counts;          // first word -> lines
  std::string errors;
  std::string text;  // every line, for failure messages
  std::int64_t number(const std::string& key) const {
    const auto it = values.find(key);
    if (it == values.end() || it->second.empty() || it->second.find_first_not_of("0123456789-") != std::string::npos) {
      return -1;
    }
    return std::stoll(it->second);
  }
};

Report run_child(Fault fault, const Paths& p) {
  int fds[2];
  Report r;
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    r.errors = "pipe failed";
    return r;
  }
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(fds[0]);
    FaultRun(fault, p, fds[1]).run();
  }
  ::close(fds[1]);
  std::string text;
  char buffer[4096];
  while (true) {
    const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n <= 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  const h::Exit e = h::wait_exit(child, 60s);
  if (!e.exited || e.code != 0) r.errors += "child exit " + std::to_string(e.code) + "\n";
  r.text = text;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const auto space = line.find(' ');
    const std::string key = line.substr(0, space);
    const std::string rest = space == std::string::npos ? "" : line.substr(space + 1);
    if (key == "ERROR") r.errors += line + "\n";
    if (key == "producer") r.producers.push_back(std::stoi(rest));
    if (key == "error_producer") r.error_producer = std::stoi(rest);
    if (key == "producer_exit" && !rest.ends_with(" 0")) r.errors += "producer failed: " + line + "\n";
    r.values[key] = rest;
    ++r.counts[key];
  }
  return r;
}

std::vector<std::string> lines_of(const std::string& text) { return h::lines_with(text, ""); }

void check_scenario(Fault fault, const std::string& label) {
  ASSERT_EQ(::geteuid(), 0u) << "this test mounts tmpfs in a private mount namespace: run it as root";
  const Paths p(label);
  const Report r = run_child(fault, p);
  const std::string log = h::read_file(p.err);
  ASSERT_EQ(r.errors, "") << "child:\n" << r.text << "drain stderr:\n" << log;

  // Five failed commits in a row open the circuit (the default), then each
  // half-open probe that fails opens it again; it closes once, on repair.
  const std::vector<std::string> lines = lines_of(log);
  const auto opened = std::find_if(lines.begin(), lines.end(),
                                   [](const std::string& l) { return l.find("circuit open for 300 ms") != l.npos; });
  ASSERT_NE(opened, lines.end()) << log;
  std::vector<std::string> before;
  for (auto it = lines.begin(); it != opened; ++it) {
    if (it->find("commit failed") != std::string::npos) before.push_back(*it);
  }
  ASSERT_EQ(before.size(), 4u) << log;
  for (std::size_t i = 0; i < before.size(); ++i) {
    EXPECT_NE(before[i].find("attempt " + std::to_string(i + 1) + " of 5"), std::string::npos) << before[i];
  }
  // The first failure names the fault.
  const std::string reason = fault == Fault::kReadOnly ? "cannot create " + p.parts + "/p" : "database or disk is full";
  EXPECT_NE(before.front().find(reason), std::string::npos) << before.front();
  EXPECT_GE(h::lines_with(log, "circuit open for 300 ms").size(), 2u) << "a failed half-open probe reopens it\n" << log;
  EXPECT_EQ(h::lines_with(log, "database writable again: circuit closed").size(), 1u) << log;
  EXPECT_FALSE(h::lines_with(log, "spilled batches into the database").empty()) << log;
  EXPECT_TRUE(h::lines_with(log, "batches remain in").empty()) << log;
  if (fault == Fault::kReadOnly) EXPECT_EQ(r.counts.count("read_only"), 1u);

  // The metrics told the same story.
  EXPECT_GE(r.number("circuit_state_max"), 1) << "shmtrace_drain_circuit_state showed the open circuit";
  EXPECT_GT(r.number("spill_max"), 0) << "the spill file took batches";
  EXPECT_GT(r.number("fault_shmtrace_drain_spilled_batches_total"), 0);
  EXPECT_EQ(r.number("fault_shmtrace_drain_replayed_batches_total"), 0);
  EXPECT_EQ(r.number("final_shmtrace_drain_circuit_state"), 0);
  EXPECT_EQ(r.number("final_shmtrace_spill_bytes"), 0);
  EXPECT_GE(r.number("final_shmtrace_drain_commit_failures_total"), 6) << "5 to open, at least one failed probe";
  EXPECT_GT(r.number("final_shmtrace_drain_spilled_batches_total"), 0);
  EXPECT_EQ(r.number("final_shmtrace_drain_replayed_batches_total"),
            r.number("final_shmtrace_drain_spilled_batches_total"))
      << "every spilled batch replayed";
  if (fault == Fault::kFull) {
    // The bound held, and what it refused stayed in shared memory.
    EXPECT_LE(r.number("spill_max"), kSpillBound);
    EXPECT_GT(r.number("final_shmtrace_drain_spill_refusals_total"), 0);
    EXPECT_EQ(h::lines_with(log, "spill file " + p.spill + " is full").size(), 1u) << log;
  } else {
    EXPECT_EQ(r.number("final_shmtrace_drain_spill_refusals_total"), 0);
  }
  EXPECT_EQ(r.values.at("drain_exit"), "0") << log;
  EXPECT_EQ(r.number("spill_final"), 0) << "the spill file is empty after the replay";
  const int sequences = kSequenceProducers + (fault == Fault::kFilled ? 1 : 0);  // + the one before the fault
  ASSERT_EQ(r.producers.size(), static_cast<std::size_t>(sequences));
  ASSERT_GT(r.error_producer, 0);
  ASSERT_EQ(r.counts.at("producer_exit"), sequences + 1);
  if (fault == Fault::kFilled) EXPECT_EQ(r.counts.count("filled"), 1u);

  // The copy goes back where the drain wrote it (an empty directory here).
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(p.copy, ec)) {
    fs::rename(entry.path(), fs::path(p.dir) / entry.path().filename(), ec);
    ASSERT_FALSE(ec) << ec.message();
  }
  Database d(p.db);
  ASSERT_EQ(d.error, "");
  for (pid_t pid : r.producers) {
    SCOPED_TRACE("producer " + std::to_string(pid));
    const std::string of = " JOIN processes p USING (process_key) WHERE p.pid = " + std::to_string(pid);
    EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE pid = " + std::to_string(pid)), 1);
    EXPECT_EQ(d.number("SELECT count(*)" + h::counters_of(pid)), kThreads * kPerThread) << "none lost, none twice";
    EXPECT_EQ(h::threads_with_exact_counters(d, pid, kPerThread), kThreads);
    EXPECT_EQ(d.number("SELECT count(*) FROM span_data r" + of + " AND r.kind = 'arg' AND r.name = 'text'"),
              kThreads * h::sequence_text_args(kPerThread))
        << "text arguments (values of continuation records)";
    EXPECT_EQ(d.number("SELECT count(*) FROM gaps g" + of), 0) << "no records dropped";
    EXPECT_EQ(d.text("SELECT state FROM processes WHERE pid = " + std::to_string(pid)), "exited");
  }
  {
    SCOPED_TRACE("error producer " + std::to_string(r.error_producer));
    const std::string of = " FROM errors e JOIN processes p USING (process_key) WHERE p.pid = " +
                           std::to_string(r.error_producer);
    EXPECT_EQ(d.number("SELECT count(*)" + of), kThreads * kErrorsPerThread) << "every error, once";
    EXPECT_EQ(d.number("SELECT count(DISTINCT message)" + of + " AND e.type = 'BurstError'"),
              kThreads * kErrorsPerThread);
    EXPECT_EQ(d.text("SELECT state FROM processes WHERE pid = " + std::to_string(r.error_producer)), "exited");
  }
  // The metrics table's last word (written once the circuit closed).
  const auto last = [&](const std::string& name) {
    return d.number("SELECT CAST(value AS INTEGER) FROM metrics WHERE name = '" + name +
                    "' AND labels = '' ORDER BY ts_ns DESC, rowid DESC LIMIT 1");
  };
  EXPECT_EQ(last("shmtrace_drain_circuit_state"), 0);
  EXPECT_EQ(last("shmtrace_drain_replayed_batches_total"), last("shmtrace_drain_spilled_batches_total"));
  EXPECT_GT(last("shmtrace_drain_replayed_batches_total"), 0);
}

TEST(DrainFaults, FullDiskAndFullSpillOpenTheCircuitAndLoseNothing) { check_scenario(Fault::kFull, "full"); }

TEST(DrainFaults, DiskFillingUnderARunningDrainLosesNothing) { check_scenario(Fault::kFilled, "filled"); }

TEST(DrainFaults, ReadOnlyPartitionsOpenTheCircuitAndTheIdleDrainReplaysTheSpill) {
  check_scenario(Fault::kReadOnly, "readonly");
}

}  // namespace
}  // namespace shmtrace::test
