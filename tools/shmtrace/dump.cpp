// shmtrace dump (also installed as shmtrace-dump): the live segments in
// /dev/shm, or the records of one, read-only and with no drain needed.
//
//   shmtrace dump [--session ID] [--format text|jsonl]
//   shmtrace dump PID|SEGMENT [--ring N] [--kind K]... [--format text|jsonl] [--follow]
//
// Exit status: 0; 1 when the segment is corrupt or gone (one line naming it);
// 2 for a bad command line.
#include <CLI/CLI.hpp>
#include <memory>

#include "commands.hpp"
#include "shmtrace/abi.hpp"
#include "dump.hpp"

namespace shmtrace::cli {

namespace {

struct DumpArgs {
  std::string target;
  std::string format = "text";
  std::optional<std::uint32_t> ring;
  std::vector<std::string> kinds;
  std::optional<std::string> session;
  bool follow = false;
};

}  // namespace

Command add_dump(CLI::App& app) {
  auto args = std::make_shared<DumpArgs>();
  CLI::App* sub = app.add_subcommand(
      "dump",
      "Live segments in shared memory: without an argument, list them (pid, program, state, rings, counters, "
      "drain); with a PID or segment name, decode its records (--follow for new ones). Read-only: never moves a "
      "tail, never disturbs a drain.");
  sub->add_option("target", args->target, "PID (its newest segment) or segment name (shmtrace.<pid>.<nonce>)");
  sub->add_option("--format", args->format, "text (default) or jsonl")->check(CLI::IsMember({"text", "jsonl"}));
  sub->add_option("--ring", args->ring, "only this ring's records (and the overflow records it wrote)");
  sub->add_option("--kind", args->kinds,
                  "only records of this kind (span_begin, span_end, event, counter, arg, drop_marker, "
                  "thread_start, thread_end, process_start, fork, exec, exit, error); repeat or comma-separate")
      ->delimiter(',')
      ->allow_extra_args(false);  // one value per --kind: `--kind counter PID` leaves PID the target
  sub->add_option("--session", args->session, "list only this session's segments");
  sub->add_flag("--follow,-f", args->follow,
                "print new records as they arrive, until the segment disappears or SIGINT");
  return [args, sub]() -> int {
    const dump::Format format = args->format == "jsonl" ? dump::Format::kJsonl : dump::Format::kText;
    if (args->target.empty()) {
      if (args->ring || !args->kinds.empty() || args->follow) {
        say("dump", "--ring, --kind and --follow need a PID or segment (see --help)");
        return 2;
      }
      if (args->session && !abi::session_id_valid(args->session->data(), args->session->size())) {
        say("dump", "--session " + *args->session + ": not a session id (1 to 32 of A-Z a-z 0-9 _ -, a letter first)");
        return 2;
      }
      return dump::list({format, args->session});
    }
    if (args->session) {
      say("dump", "--session lists segments; it takes no PID or segment (see --help)");
      return 2;
    }
    dump::RecordOptions options;
    options.target = args->target;
    options.format = format;
    options.ring = args->ring;
    options.follow = args->follow;
    for (const std::string& k : args->kinds) {
      if (!dump::known_kind(k)) {
        say("dump", "--kind " + k + ": unknown record kind (see --help)");
        return 2;
      }
      options.kinds.insert(k);
    }
    (void)sub;
    return dump::records(options);
  };
}

}  // namespace shmtrace::cli
