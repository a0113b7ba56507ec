// shmtrace-demo: the quick start's main job. A real multi-process workload
// is traced into SQLite through the real drain, then reported on:
//   1. starts `shmtrace-drain --db <db>` as a child process (the database is
//      replaced: <db>, its -wal/-shm, .lock, .spill and .parts/ go first);
//   2. forks worker processes (each gets its own segment through the
//      runtime's fork handler) that run threads of nested spans with
//      arguments (a password among them), results, counters and errors,
//      under SHMTRACE_POLICY=block so nothing is dropped;
//   3. waits for the workers, then for the drain to finish their segments
//      (it removes each once the process's fate is stored), and stops the
//      drain with SIGTERM;
//   4. reads the database back (QueryDatabase), prints the report, and
//      checks every count against what the workers wrote.
//
//   shmtrace-demo [--workers N] [--threads N] [--requests N] [--db PATH] [--drain PATH]
// Exit status: 0 when every count matches, 1 on a mismatch or a failure (one
// stderr line each), 2 on bad usage.
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <expected>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "drain_process.hpp"
#include "reader/reader.hpp"
#include "report.hpp"
#include "shmtrace/shmtrace.h"
#include "workload.hpp"

namespace {

using shmtrace::demo::DrainProcess;
using Clock = std::chrono::steady_clock;

constexpr auto kDrainReadyWithin = std::chrono::milliseconds(10'000);
constexpr auto kSegmentsFinishedWithin = std::chrono::milliseconds(60'000);
constexpr auto kDrainStopWithin = std::chrono::milliseconds(30'000);
constexpr auto kPollInterval = std::chrono::milliseconds(5);

struct Options {
  shmtrace::demo::Workload workload;
  std::string database = "shmtrace-demo.db";
  std::string drain;  // "" = find_drain's choice
};

void say(const std::string& line) { std::fprintf(stderr, "shmtrace-demo: %s\n", line.c_str()); }

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

bool parse_int(const char* text, int lo, int hi, int& out) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v < lo || v > hi) return false;
  out = static_cast<int>(v);
  return true;
}

// Returns the exit status to leave with, or nothing to go on.
std::optional<int> parse_options(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf(
          "usage: shmtrace-demo [--workers 1..32] [--threads 1..16] [--requests 1..100000]\n"
          "                     [--db PATH (default shmtrace-demo.db, replaced)] [--drain PATH]\n"
          "Traces worker processes into SQLite through shmtrace-drain, prints a report, and exits 0\n"
          "only when the database holds exactly what the workers wrote.\n");
      return 0;
    }
    const bool known = a == "--workers" || a == "--threads" || a == "--requests" || a == "--db" || a == "--drain";
    if (!known) {
      say("unknown argument '" + a + "' (see --help)");
      return 2;
    }
    if (i + 1 >= argc) {
      say(a + " needs a value (see --help)");
      return 2;
    }
    const char* value = argv[++i];
    bool ok = true;
    if (a == "--workers") ok = parse_int(value, 1, 32, o.workload.workers);
    if (a == "--threads") ok = parse_int(value, 1, 16, o.workload.threads);
    if (a == "--requests") ok = parse_int(value, 1, 100000, o.workload.requests);
    if (a == "--db" || a == "--drain") {
      ok = *value != '\0';
      (a == "--db" ? o.database : o.drain) = value;
    }
    if (!ok) {
      say("bad value '" + std::string(value) + "' for " + a + " (see --help)");
      return 2;
    }
  }
  return std::nullopt;
}

// Removes an earlier run's database and everything beside it, unless a
// drain still holds its lock, or the path names something else than a
// SQLite database (a mistyped --db must not delete a user's file).
std::expected<void, std::string> replace_database(const std::string& db) {
  const std::string lock = db + ".lock";
  if (const int fd = ::open(lock.c_str(), O_RDWR | O_CLOEXEC); fd >= 0) {
    const bool held = ::flock(fd, LOCK_EX | LOCK_NB) != 0;
    ::close(fd);
    if (held) return std::unexpected("a shmtrace-drain is using " + db + " (lock " + lock + "); pick another --db");
  }
  std::error_code ec;
  if (std::filesystem::exists(db, ec)) {
    static constexpr char kMagic[] = "SQLite format 3";  // with its NUL: the file's first 16 bytes
    char head[sizeof kMagic] = {};
    std::FILE* f = std::fopen(db.c_str(), "rb");
    const std::size_t got = f != nullptr ? std::fread(head, 1, sizeof head, f) : 0;
    if (f != nullptr) std::fclose(f);
    const bool sqlite = std::filesystem::is_regular_file(db, ec) &&
                        (got == 0 || (got == sizeof head && std::memcmp(head, kMagic, sizeof head) == 0));
    if (!sqlite) return std::unexpected(db + " is not a SQLite database; not replacing it (pick another --db)");
  }
  for (const std::string& path : {db, db + "-wal", db + "-shm", lock, db + ".spill"}) {
    std::filesystem::remove(path, ec);
    if (ec) return std::unexpected("cannot remove " + path + ": " + ec.message());
  }
  std::filesystem::remove_all(db + ".parts", ec);
  if (ec) return std::unexpected("cannot remove " + db + ".parts: " + ec.message());
  return {};
}

// The demo records nothing itself: its own segment goes before the drain
// starts, so the database holds only the workers.
void remove_own_segment() {
  auto self = shmtrace::reader::Segment::attach(shmtrace_segment_name(), shmtrace::reader::Access::kReadOnly);
  auto removed = self ? self->unlink() : std::unexpected(self.error());
  if (!removed) say("the drain will store this process too: " + removed.error().message);
}

// `text` as one shell word.
std::string shell_word(const std::string& text) {
  const bool plain = !text.empty() && text.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                              "0123456789_./+:,@%=-") == std::string::npos;
  if (plain) return text;
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// How to open the database in the sqlite3 shell: the SQL functions from the
// extension built beside the drain (when there), the partitions through the
// drain's --print-views.
void print_query_hint(const std::string& database, const std::string& drain) {
  const std::filesystem::path extension = std::filesystem::path(drain).parent_path() / "libshmtrace_sqlite";
  std::error_code ec;
  const bool has_extension = std::filesystem::exists(extension.string() + ".so", ec);
  std::printf("query it: sqlite3 %s%s -cmd \"$(%s --db %s --print-views)\"\n", shell_word(database).c_str(),
              has_extension ? (" -cmd " + shell_word(".load " + extension.string())).c_str() : "",
              shell_word(drain).c_str(), shell_word(database).c_str());
}

void kill_all(const std::vector<pid_t>& pids) {
  for (pid_t pid : pids) ::kill(pid, SIGKILL);
  for (pid_t pid : pids) ::waitpid(pid, nullptr, 0);
}

// Waits for every worker, as long as the drain lives (blocked workers wait
// on it). Mismatches (a worker that failed) are appended.
std::expected<void, std::string> wait_for_workers(std::vector<pid_t> pids, DrainProcess& drain,
                                                  std::vector<std::string>& mismatches) {
  while (!pids.empty()) {
    for (auto it = pids.begin(); it != pids.end();) {
      int status = 0;
      if (::waitpid(*it, &status, WNOHANG) != *it) {
        ++it;
        continue;
      }
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        mismatches.push_back("worker " + std::to_string(*it) + " ended with " +
                             shmtrace::demo::describe_wait_status(status));
      }
      it = pids.erase(it);
    }
    if (auto why = drain.died()) {
      kill_all(pids);
      return std::unexpected(*why + " while the workers ran");
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  return {};
}

// The drain removes a segment once it has stored the process's last records
// and its fate: then the process is in the database for good.
std::expected<void, std::string> wait_until_drained(const std::vector<pid_t>& pids, DrainProcess& drain) {
  const auto deadline = Clock::now() + kSegmentsFinishedWithin;
  for (std::size_t next = 0; next < pids.size();) {
    auto listed = shmtrace::reader::list_segments(static_cast<std::uint32_t>(pids[next]));
    if (!listed) return std::unexpected("cannot list segments: " + listed.error().message);
    if (listed->empty()) {
      ++next;
      continue;
    }
    if (auto why = drain.died()) return std::unexpected(*why + " before it finished the workers' segments");
    if (Clock::now() > deadline) {
      return std::unexpected("shmtrace-drain has not finished " + listed->front().name + " (worker " +
                             std::to_string(pids[next]) + ") within " +
                             std::to_string(kSegmentsFinishedWithin.count() / 1000) + " s");
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  return {};
}

int run(const Options& o) {
  if (!shmtrace_enabled()) {
    say("tracing is off (SHMTRACE_DISABLE or no shared memory); nothing to show");
    return 1;
  }
  const std::string database = std::filesystem::absolute(o.database).lexically_normal().string();
  if (auto ok = replace_database(database); !ok) {
    say(ok.error());
    return 1;
  }
  remove_own_segment();
  // Lossless: a worker whose ring and overflow are full waits for the drain
  // (SPEC P4) instead of dropping; a long wait allows for a slow (sanitizer)
  // drain. Forked workers read the environment when their runtime starts.
  ::setenv("SHMTRACE_POLICY", "block", 1);
  ::setenv("SHMTRACE_BLOCK_TIMEOUT_MS", "30000", 0);

  const std::string drain_path = shmtrace::demo::find_drain(o.drain);
  auto started = Clock::now();
  auto drain = DrainProcess::start(drain_path, database, kDrainReadyWithin);
  if (!drain) {
    say(drain.error());
    return 1;
  }
  const double up_s = seconds_since(started);
  const auto& w = o.workload;
  std::printf("shmtrace demo: %d worker processes x %d threads x %d requests, drained by shmtrace-drain (pid %d)\n",
              w.workers, w.threads, w.requests, static_cast<int>(drain->pid()));
  std::fflush(stdout);  // the workers inherit the buffer
  started = Clock::now();
  std::vector<pid_t> workers;
  for (int i = 0; i < w.workers; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      // A worker ends with the demo, whatever ends it (the drain too ends
      // with it: drain_process.cpp).
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() == 1) ::_exit(1);  // the demo died before the line above
      ::_exit(shmtrace::demo::run_worker(i, w));
    }
    if (pid < 0) {
      say(std::string("fork: ") + std::strerror(errno));
      kill_all(workers);
      return 1;
    }
    workers.push_back(pid);
  }
  std::vector<std::string> mismatches;
  if (auto ok = wait_for_workers(workers, *drain, mismatches); !ok) {
    say(ok.error());
    return 1;
  }
  const double ran_s = seconds_since(started);
  started = Clock::now();
  if (auto ok = wait_until_drained(workers, *drain); !ok) {
    say(ok.error());
    return 1;
  }
  if (auto ok = drain->stop(kDrainStopWithin); !ok) {
    say(ok.error());
    return 1;
  }
  std::printf("drain up in %.2f s; workers ran %.2f s; drain done with their segments and stopped (exit status 0) "
              "%.2f s later\n",
              up_s, ran_s, seconds_since(started));

  auto report = shmtrace::demo::print_report({database, w, ::getpid(), workers});
  if (!report) {
    say("cannot read " + database + ": " + report.error());
    return 1;
  }
  mismatches.insert(mismatches.end(), report->begin(), report->end());
  std::printf("\ndatabase %s\n", database.c_str());
  print_query_hint(database, drain_path);
  std::fflush(stdout);
  if (!mismatches.empty()) {
    for (const std::string& m : mismatches) say("MISMATCH: " + m);
    return 1;
  }
  const auto want = shmtrace::demo::expected_counts(w);
  std::printf("OK: every record of %d processes stored exactly once (%llu spans, %llu errors, %llu secrets "
              "redacted, 0 dropped)\n",
              w.workers, static_cast<unsigned long long>(want.spans), static_cast<unsigned long long>(want.errors),
              static_cast<unsigned long long>(want.passwords));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (auto status = parse_options(argc, argv, o)) return *status;
  return run(o);
}
