// The subcommands of `shmtrace`. Each lives in a file of its own in this
// directory and adds itself to the command line through one add_* function:
// the function declares the subcommand's options on `app` and returns what
// main() runs when the user picked it. A Command returns the exit status:
// 0 success, 1 runtime failure (one stderr line naming the file or segment
// at fault), 2 usage; `run` returns its command's own status.
#ifndef SHMTRACE_TOOLS_COMMANDS_HPP
#define SHMTRACE_TOOLS_COMMANDS_HPP

#include <functional>
#include <string>

namespace CLI {
class App;
}

namespace shmtrace::cli {

using Command = std::function<int()>;

Command add_run(CLI::App& app);
Command add_report(CLI::App& app);
Command add_replay(CLI::App& app);
Command add_dump(CLI::App& app);
Command add_top(CLI::App& app);
Command add_sql(CLI::App& app);
Command add_export(CLI::App& app);

// One stderr line: "shmtrace <command>: <text>".
void say(const std::string& command, const std::string& text);

// The database the commands read when none is named: shmtrace.db in the
// working directory, where `shmtrace run` writes it.
inline constexpr const char* kDefaultDatabase = "shmtrace.db";

}  // namespace shmtrace::cli

#endif
