// shmtrace: the command a user types. Subcommands (commands.hpp) each in a
// file of their own; installed as `shmtrace-dump` too, which is `shmtrace
// dump` under the name the product's design gives the dump utility.
//
// Exit status: what the subcommand returns; 2 for a bad command line.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "commands.hpp"

namespace shmtrace::cli {

void say(const std::string& command, const std::string& text) {
  std::fprintf(stderr, "shmtrace %s: %s\n", command.c_str(), text.c_str());
}

}  // namespace shmtrace::cli

namespace {

std::string_view base_name(const char* path) {
  std::string_view p = path;
  const auto slash = p.rfind('/');
  return slash == std::string_view::npos ? p : p.substr(slash + 1);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace shmtrace::cli;
  // Invoked as shmtrace-dump: the same as `shmtrace dump ARGS...`.
  std::vector<std::string> args(argv, argv + argc);
  if (argc > 0 && base_name(argv[0]) == "shmtrace-dump") args.insert(args.begin() + 1, "dump");

  CLI::App app{"shmtrace: trace multi-process native programs into SQLite, and read the traces back."};
  app.require_subcommand(1);
  app.fallthrough(false);
  std::map<const CLI::App*, Command> commands;
  auto add = [&](Command (*adder)(CLI::App&)) {
    const auto before = app.get_subcommands({}).size();
    Command c = adder(app);
    const auto subs = app.get_subcommands({});
    if (subs.size() == before + 1) commands[subs.back()] = std::move(c);
  };
  add(add_run);
  add(add_report);
  add(add_replay);
  add(add_dump);
  add(add_top);
  add(add_sql);
  add(add_export);

  try {
    std::vector<std::string> reversed(args.rbegin(), args.rend() - 1);
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::string text = e.what();
    for (char& c : text) {
      if (c == '\n') c = ' ';
    }
    std::fprintf(stderr, "shmtrace: %s (see --help)\n", text.c_str());
    return 2;
  }
  for (const CLI::App* sub : app.get_subcommands()) {
    if (auto it = commands.find(sub); it != commands.end()) return it->second();
  }
  std::fprintf(stderr, "shmtrace: no command given (see --help)\n");
  return 2;
}
