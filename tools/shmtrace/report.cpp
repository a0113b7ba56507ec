// shmtrace report: not built yet; its subcommand exists so --help lists it.
#include <CLI/CLI.hpp>

#include "commands.hpp"

namespace shmtrace::cli {

Command add_report(CLI::App& app) {
  CLI::App* sub = app.add_subcommand("report", "(not built yet)");
  sub->allow_extras();
  return [] {
    say("report", "not built yet");
    return 1;
  };
}

}  // namespace shmtrace::cli
