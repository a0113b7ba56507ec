// shmtrace export: not built yet; its subcommand exists so --help lists it.
#include <CLI/CLI.hpp>

#include "commands.hpp"

namespace shmtrace::cli {

Command add_export(CLI::App& app) {
  CLI::App* sub = app.add_subcommand("export", "(not built yet)");
  sub->allow_extras();
  return [] {
    say("export", "not built yet");
    return 1;
  };
}

}  // namespace shmtrace::cli
