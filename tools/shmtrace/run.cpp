// shmtrace run: not built yet; its subcommand exists so --help lists it.
#include <CLI/CLI.hpp>

#include "commands.hpp"

namespace shmtrace::cli {

Command add_run(CLI::App& app) {
  CLI::App* sub = app.add_subcommand("run", "(not built yet)");
  sub->allow_extras();
  return [] {
    say("run", "not built yet");
    return 1;
  };
}

}  // namespace shmtrace::cli
