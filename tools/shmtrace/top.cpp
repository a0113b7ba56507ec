// shmtrace top: not built yet; its subcommand exists so --help lists it.
#include <CLI/CLI.hpp>

#include "commands.hpp"

namespace shmtrace::cli {

Command add_top(CLI::App& app) {
  CLI::App* sub = app.add_subcommand("top", "(not built yet)");
  sub->allow_extras();
  return [] {
    say("top", "not built yet");
    return 1;
  };
}

}  // namespace shmtrace::cli
