// `shmtrace run`'s parts, one file each: the options and the variables they
// set (run.cpp), the database's rotation to .old (run_database.cpp), the
// private drain and the wait for the run's segments (run_drain.cpp), the
// command itself with its signals (run_child.cpp) and the summary
// (run_summary.cpp).
#ifndef SHMTRACE_TOOLS_RUN_HPP
#define SHMTRACE_TOOLS_RUN_HPP

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace shmtrace::cli::run {

// One line for stderr: "shmtrace run: <text>".
void say(const std::string& text);

// ---------------------------------------------------------------------------
// run_database.cpp
// ---------------------------------------------------------------------------

// The files a database is made of, as suffixes of its path: the main file,
// SQLite's WAL and shared-memory index, the time partitions' directory, the
// drain's lock and spill file, and the log `run` keeps of the drain's stderr.
inline constexpr const char* kDatabaseCompanions[] = {"", "-wal", "-shm", ".parts", ".lock", ".spill", ".log"};

// Moves an earlier database at `db` (with every companion) to `db`.old,
// replacing an older .old set, so the earlier run stays whole and readable.
// Refuses (one line) when a drain still holds `db`'s lock or `db` is not a
// SQLite file: a mistyped --db must not move a user's file away.
std::expected<void, std::string> rotate_database(const std::string& db);

// ---------------------------------------------------------------------------
// run_drain.cpp
// ---------------------------------------------------------------------------

// shmtrace-drain beside this executable, else this build's; `given` wins.
std::string find_drain(const std::string& given);
// The runtime in ../lib (or the install's library directory) beside this
// executable, else this build's; `given` wins.
std::string find_library(const std::string& given);

// A new session id, unique on this machine ("run" + pid + random bits):
// valid for abi::session_id_valid.
std::string new_session_id();

struct DrainStart {
  std::string drain;     // the executable
  std::string session;
  std::string database;  // absolute
  bool verbose = false;  // its stderr to ours, else to <database>.log
};

class Drain {
 public:
  // Starts `drain --session S --db D` in a process group of its own (a
  // terminal's Ctrl-C must not reach it: it stops when `run` says so, after
  // the last record is stored) that ends with `run` should `run` die first,
  // and waits until it has opened the database.
  static std::expected<Drain, std::string> start(const DrainStart& how, std::chrono::milliseconds ready_within);
  Drain(Drain&& o) noexcept : pid_(std::exchange(o.pid_, -1)), log_(std::move(o.log_)) {}
  Drain& operator=(Drain&&) = delete;
  ~Drain();  // kills a drain still running (an early return on an error)

  pid_t pid() const { return pid_; }
  // One line once the drain has died; it must live until stop().
  std::optional<std::string> died();
  // SIGTERM (the drain stores everything pending), then waits for exit
  // status 0, at most `within` (then SIGKILL).
  std::expected<void, std::string> stop(std::chrono::milliseconds within);
  // Where its stderr goes ("" with --verbose).
  const std::string& log() const { return log_; }

 private:
  Drain(pid_t pid, std::string log) : pid_(pid), log_(std::move(log)) {}
  pid_t pid_ = -1;
  std::string log_;
};

// What is left of a session in /dev/shm.
struct Leftovers {
  std::size_t segments = 0;               // not yet finished by the drain
  std::uint64_t records = 0;              // in their rings, not yet taken
  std::vector<std::uint32_t> live_pids;   // processes still running (descendants that outlived CMD)
};
Leftovers session_leftovers(const std::string& session);

// ---------------------------------------------------------------------------
// run_child.cpp
// ---------------------------------------------------------------------------

// The signals `run` forwards to its command.
inline constexpr int kForwardedSignals[] = {SIGINT, SIGTERM, SIGHUP};

// Blocks the forwarded signals and SIGCHLD in `run` (they are taken by
// sigtimedwait, see take_signal); the command gets the mask `run` started
// with. Call first, before any child exists.
void block_signals();

// "" when argv[0] names an executable (PATH searched like a shell does), else
// the exit status a shell gives (127 not found, 126 not executable) and the
// line to print.
std::optional<std::pair<int, std::string>> check_command(const std::string& command);

// Environment changes for the command.
struct EnvSetting {
  std::string name;
  std::string value;
};

// Forks and execs `argv` with `env` applied to this process's environment;
// stdin, stdout, stderr, the process group and the terminal are left as they
// are. The pid; exec failures end the child with 127/126 and one line.
std::expected<pid_t, std::string> start_command(const std::vector<std::string>& argv,
                                                const std::vector<EnvSetting>& env);

// Waits at most `within` for one of the blocked signals. SIGCHLD and a
// timeout give nullopt. A forwarded signal gives its number and whether it
// came from a terminal (the kernel's tty driver: si_code SI_KERNEL), which
// has already delivered it to the whole foreground process group.
struct TakenSignal {
  int signal = 0;
  bool from_terminal = false;
};
std::optional<TakenSignal> take_signal(std::chrono::milliseconds within);

// The command's wait status turned into `run`'s exit status: its exit code,
// or 128 + the signal that killed it, as a shell reports it.
int exit_status_of(int wait_status);
// "exit status 3", "killed by signal 11 (Segmentation fault)".
std::string describe_wait_status(int wait_status);

// ---------------------------------------------------------------------------
// run_summary.cpp
// ---------------------------------------------------------------------------

// Prints the run's summary (processes, spans, drops, errors, the busiest
// functions) from the database to stderr; one line on failure.
std::expected<void, std::string> print_summary(const std::string& database, std::size_t top);

}  // namespace shmtrace::cli::run

#endif
