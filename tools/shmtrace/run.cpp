// shmtrace run [options] -- CMD ARGS...: traces CMD and every process it
// starts into a database, as `uftrace record` does, and exits with CMD's
// own status.
//
//   1. rotates an earlier database to <db>.old (run_database.cpp);
//   2. starts a private drain for a new session (run_drain.cpp):
//      shmtrace-drain --session <id> --db <db>, in a process group of its
//      own, its stderr in <db>.log;
//   3. runs CMD with the runtime preloaded (LD_PRELOAD, appended),
//      SHMTRACE_SESSION=<id> and the options' SHMTRACE_* variables, which
//      every descendant inherits (run_child.cpp); forwards SIGINT, SIGTERM
//      and SIGHUP that were sent to `run` alone;
//   4. after CMD ended, waits until the drain has removed every segment of
//      the session (it removes one once the process's last records and its
//      fate are stored), showing progress each second while it falls
//      behind; descendants still running get --grace seconds (or, with
//      --wait-descendants, all the time they need);
//   5. stops the drain (SIGTERM) and prints the summary (run_summary.cpp).
//
// Nothing of `run` reaches CMD's stdout, and its stderr lines come after CMD
// ended (with --verbose also before). Exit status: CMD's own, 128 + the
// signal that killed it; 127/126 when CMD cannot be found/executed (as a
// shell); 1 when tracing could not start (CMD did not run); 2 for bad usage.
#include <CLI/CLI.hpp>
#include <sys/wait.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <thread>

#include "commands.hpp"
#include "reader/reader.hpp"
#include "run.hpp"

namespace shmtrace::cli {
namespace run {

void say(const std::string& text) { cli::say("run", text); }

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kDrainReadyWithin = std::chrono::milliseconds(30'000);
constexpr auto kDrainStopWithin = std::chrono::milliseconds(120'000);
constexpr auto kPoll = std::chrono::milliseconds(20);
constexpr auto kProgressEvery = std::chrono::seconds(1);

struct Options {
  std::string database = kDefaultDatabase;
  std::string drain;    // "" = find_drain's choice
  std::string library;  // "" = find_library's choice
  std::string policy, sample, include, exclude, stats_sites, ring_records;
  bool wait_descendants = false;
  double grace_s = 2.0;
  bool verbose = false;
  std::vector<std::string> command;
};

// The options that set the runtime's variables: each its SHMTRACE_* name,
// checked here as the runtime would parse it, so a bad value is a usage
// error (exit 2) and not a warning from every traced process.
struct RuntimeOption {
  const char* flag;
  const char* variable;
  std::string Options::*field;
};
constexpr RuntimeOption kRuntimeOptions[] = {
    {"--policy", "SHMTRACE_POLICY", &Options::policy},
    {"--sample", "SHMTRACE_SAMPLE_RATE", &Options::sample},
    {"--include", "SHMTRACE_INCLUDE", &Options::include},
    {"--exclude", "SHMTRACE_EXCLUDE", &Options::exclude},
    {"--stats-sites", "SHMTRACE_STATS_SITES", &Options::stats_sites},
    {"--ring-records", "SHMTRACE_RING_RECORDS", &Options::ring_records},
};

std::string check_integer(const std::string& text, std::uint64_t lo, std::uint64_t hi, bool power_of_two) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  const bool ok = ec == std::errc() && end == text.data() + text.size() && !text.empty() && v >= lo && v <= hi &&
                  (!power_of_two || (v & (v - 1)) == 0);
  if (ok) return "";
  return "'" + text + "': expected " + (power_of_two ? "a power of two" : "an integer") + " from " +
         std::to_string(lo) + " to " + std::to_string(hi);
}

std::string check_rate(const std::string& text) {
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  const bool ok = ec == std::errc() && end == text.data() + text.size() && !text.empty() && std::isfinite(v) &&
                  v >= 0.0 && v <= 1.0;
  return ok ? "" : "'" + text + "': expected a number from 0 to 1";
}

// The runtime compiles the patterns as ECMAScript std::regex.
std::string check_regex(const std::string& text) {
  try {
    std::regex compiled(text, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return "'" + text + "': not a regular expression (" + e.what() + ")";
  }
  return "";
}

CLI::Validator validator(std::function<std::string(const std::string&)> check, const std::string& name) {
  return CLI::Validator([check](std::string& value) { return check(value); }, name);
}

std::vector<EnvSetting> command_environment(const Options& o, const std::string& library,
                                            const std::string& session) {
  std::vector<EnvSetting> env;
  // Appended: a library the user preloads keeps its place before ours.
  std::string preload = library;
  if (const char* existing = std::getenv("LD_PRELOAD"); existing != nullptr && *existing != '\0') {
    const std::string e = existing;
    preload = (" " + e + " ").find(library) != std::string::npos ? e : e + ":" + library;
  }
  env.push_back({"LD_PRELOAD", preload});
  env.push_back({"SHMTRACE_SESSION", session});
  for (const RuntimeOption& r : kRuntimeOptions) {
    if (!(o.*(r.field)).empty()) env.push_back({r.variable, o.*(r.field)});
  }
  return env;
}

std::string join(const std::vector<std::uint32_t>& pids) {
  std::string out;
  for (std::size_t i = 0; i < pids.size() && i < 8; ++i) out += (i == 0 ? "" : " ") + std::to_string(pids[i]);
  if (pids.size() > 8) out += " ...";
  return out;
}

// Runs the command until it ends; its wait status.
//
// Signals: SIGINT, SIGTERM and SIGHUP sent to `run` by a process (kill,
// a supervisor, CI's timeout) reached `run` alone: they are forwarded to
// CMD, which ends (or not) as it would have without `run`, and `run` then
// exits with its status. The same signals from the terminal (Ctrl-C, and
// SIGHUP when the terminal goes away: si_code SI_KERNEL) were sent by the
// tty driver to the whole foreground process group, which CMD shares with
// `run`: CMD already has it, and forwarding would deliver it twice (a
// program that counts Ctrl-Cs, or a shell, would see two). They are not
// forwarded. Whoever signals the whole group by hand (kill -INT -PGID) also
// reaches CMD directly, and CMD then sees it twice; a program cannot tell
// that from a kill of `run` alone.
int wait_for_command(pid_t command) {
  for (;;) {
    if (auto taken = take_signal(std::chrono::milliseconds(100)); taken && !taken->from_terminal) {
      ::kill(command, taken->signal);
    }
    int status = 0;
    const pid_t reaped = ::waitpid(command, &status, WNOHANG);
    if (reaped == command) return status;
    if (reaped < 0 && errno != EINTR) return 1 << 8;  // lost: cannot happen for our own child
  }
}

// After CMD ended: until the drain has finished every segment of the
// session. Descendants still running get `grace` (forever with
// --wait-descendants). A signal now (a second Ctrl-C) stops the wait.
void wait_until_stored(const Options& o, const std::string& session, Drain& drain) {
  const auto ended = Clock::now();
  auto next_progress = ended + kProgressEvery;
  const auto grace = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.grace_s));
  for (;;) {
    const Leftovers left = session_leftovers(session);
    if (left.segments == 0 && left.live_pids.empty()) return;
    if (auto why = drain.died()) {
      say(*why + "; " + std::to_string(left.segments) + " segments of session " + session + " not stored");
      return;
    }
    const bool only_live = left.segments == 0;
    if (only_live && !o.wait_descendants && Clock::now() - ended >= grace) {
      say(std::to_string(left.live_pids.size()) + " processes started by the command still run (pid " +
          join(left.live_pids) + "): stored up to now; `shmtrace-drain --session " + session + " --db " +
          o.database + "` stores the rest (or use --wait-descendants)");
      return;
    }
    if (Clock::now() >= next_progress) {
      next_progress += kProgressEvery;
      std::string line = "storing: " + std::to_string(left.segments) + " segments, " +
                         std::to_string(left.records) + " records left";
      if (!left.live_pids.empty()) {
        line += "; waiting for " + std::to_string(left.live_pids.size()) + " processes still running (pid " +
                join(left.live_pids) + ")";
      }
      say(line);
    }
    if (auto taken = take_signal(kPoll)) {
      say("interrupted by signal " + std::to_string(taken->signal) + ": storing what the drain has and stopping");
      return;
    }
  }
}

int run(Options o) {
  block_signals();
  if (auto bad = check_command(o.command.front())) {
    say(bad->second);
    return bad->first;
  }
  const std::string drain_path = find_drain(o.drain);
  const std::string library = find_library(o.library);
  if (::access(library.c_str(), R_OK) != 0) {
    say("no runtime library at " + library + " (pass --library PATH)");
    return 1;
  }
  o.database = std::filesystem::absolute(o.database).lexically_normal().string();
  if (auto rotated = rotate_database(o.database); !rotated) {
    say(rotated.error());
    return 1;
  }
  if (auto guarded = reader::install_fault_handler(); !guarded) {
    say(guarded.error().message);
    return 1;
  }
  const std::string session = new_session_id();
  auto drain = Drain::start({drain_path, session, o.database, o.verbose}, kDrainReadyWithin);
  if (!drain) {
    say(drain.error());
    return 1;
  }
  if (o.verbose) {
    say("session " + session + ", shmtrace-drain pid " + std::to_string(drain->pid()) + ", runtime " + library +
        ", database " + o.database);
  }
  // Interrupted while the drain started: CMD never runs.
  if (auto taken = take_signal(std::chrono::milliseconds(0))) {
    if (auto stopped = drain->stop(kDrainStopWithin); !stopped) say(stopped.error());
    return 128 + taken->signal;
  }
  const auto started = Clock::now();
  auto command = start_command(o.command, command_environment(o, library, session));
  if (!command) {
    say(command.error());
    return 1;
  }
  const int status = wait_for_command(*command);
  const double ran_s = std::chrono::duration<double>(Clock::now() - started).count();
  wait_until_stored(o, session, *drain);
  if (auto stopped = drain->stop(kDrainStopWithin); !stopped) say(stopped.error());
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.2f s", ran_s);
  say(o.command.front() + " ended with " + describe_wait_status(status) + " after " + seconds);
  if (auto summary = print_summary(o.database, 5); !summary) say(summary.error());
  return exit_status_of(status);
}

}  // namespace
}  // namespace run

Command add_run(CLI::App& app) {
  using run::Options;
  auto o = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand(
      "run", "Trace a command and every process it starts into a database: shmtrace run [options] -- CMD ARGS...");
  sub->add_option("--db", o->database, "database to write (default shmtrace.db; an earlier one becomes FILE.old)")
      ->check(CLI::Validator([](std::string& v) { return v.empty() ? std::string("an empty path") : ""; }, ""))
      ->type_name("FILE");
  sub->add_option("--policy", o->policy, "when a ring is full: drop records, or block the writer (SHMTRACE_POLICY)")
      ->check(CLI::IsMember({"drop", "block"}).description(""))
      ->type_name("drop|block");
  sub->add_option("--sample", o->sample, "fraction of root spans kept, 0 to 1 (SHMTRACE_SAMPLE_RATE)")
      ->check(run::validator(run::check_rate, ""))
      ->type_name("RATE");
  sub->add_option("--include", o->include, "trace only functions matching REGEX (SHMTRACE_INCLUDE)")
      ->check(run::validator(run::check_regex, ""))
      ->type_name("REGEX");
  sub->add_option("--exclude", o->exclude, "do not trace functions matching REGEX (SHMTRACE_EXCLUDE)")
      ->check(run::validator(run::check_regex, ""))
      ->type_name("REGEX");
  sub->add_option("--stats-sites", o->stats_sites, "statistics slots per thread, 0 to 4096 (SHMTRACE_STATS_SITES)")
      ->check(run::validator([](const std::string& v) { return run::check_integer(v, 0, 4096, false); }, ""))
      ->type_name("N");
  sub->add_option("--ring-records", o->ring_records,
                  "records per thread's ring, a power of two from 64 to 16777216 (SHMTRACE_RING_RECORDS)")
      ->check(run::validator([](const std::string& v) { return run::check_integer(v, 64, 1u << 24, true); }, ""))
      ->type_name("N");
  sub->add_flag("--wait-descendants", o->wait_descendants,
                "after CMD ended, wait for every process it started to end too (default: --grace)");
  sub->add_option("--grace", o->grace_s,
                  "seconds the processes CMD started and left running get to end after it (default 2)")
      ->check(CLI::Range(0.0, 86400.0).description(""))
      ->type_name("SECONDS");
  sub->add_option("--drain", o->drain, "shmtrace-drain to run (default: beside shmtrace, else this build's)")
      ->type_name("PATH");
  sub->add_option("--library", o->library,
                  "runtime to preload (default: the one installed beside shmtrace, else this build's)")
      ->type_name("PATH");
  sub->add_flag("--verbose,-v", o->verbose, "the drain's messages on stderr (not in FILE.log), and what run does");
  // Everything from the command's name on is the command's, options too
  // (`shmtrace run make -j8` as `shmtrace run -- make -j8`).
  sub->positionals_at_end();
  sub->add_option("command", o->command, "the command and its arguments")->required()->type_name("CMD");
  sub->footer(
      "Exit status: CMD's own (128 + signal when a signal killed it), 127/126 when CMD is not found or not "
      "executable, 1 when tracing could not start, 2 for bad usage.");
  return [o] { return run::run(*o); };
}

}  // namespace shmtrace::cli
