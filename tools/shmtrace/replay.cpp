// shmtrace replay [DB]: the call tree of each thread (or of one trace) as
// `uftrace replay` prints it; the tree and its layout are in the query
// library (tools/query/call_tree.hpp).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "query/call_tree.hpp"
#include "commands.hpp"
#include "query/database.hpp"
#include "reading_options.hpp"
#include "query/time_arg.hpp"

namespace shmtrace::cli {
namespace {

struct ReplayOptions {
  std::string db = kDefaultDatabase;
  int depth = 0;
  std::string min_duration;
  FilterOptions filter;
};

int run_replay(const ReplayOptions& o) {
  query::ReplayOptions r;
  r.max_depth = o.depth;
  if (!o.min_duration.empty()) {
    auto d = query::parse_duration(o.min_duration);
    if (!d) return say("replay", "--min-duration: " + d.error()), 2;
    r.min_duration_ns = *d;
  }
  auto reading = open_reading("replay", o.db, o.filter);
  if (!reading) return reading.error();
  auto tree = query::call_tree(reading->db.handle(), reading->filter);
  if (!tree) return say("replay", o.db + ": " + tree.error()), 1;
  const std::string out = query::render_replay(*tree, r);
  std::fwrite(out.data(), 1, out.size(), stdout);
  return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace

Command add_replay(CLI::App& app) {
  auto o = std::make_shared<ReplayOptions>();
  CLI::App* sub = app.add_subcommand(
      "replay", "The call tree of each thread as uftrace replay prints it: durations, arguments, results, errors, "
                "gaps where records were dropped");
  add_database_argument(*sub, o->db);
  sub->add_option("--depth", o->depth, "Hide calls deeper than N (the outermost call is depth 1)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--min-duration", o->min_duration,
                  "Hide finished calls shorter than this (and what they called), e.g. 10us (like uftrace -t)");
  add_filter_options(*sub, o->filter, FilterSet{.tid = true, .name = false, .group = false, .trace = true});
  return [o] { return run_replay(*o); };
}

}  // namespace shmtrace::cli
