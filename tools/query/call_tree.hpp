// The call tree `shmtrace replay` prints: each thread's stored spans in
// start order with their arguments, results and errors, and the gaps where
// its ring dropped records, rendered as `uftrace replay` does:
//
//   # DURATION     TID     FUNCTION
//              [  4242] | main() {
//     1.250 us [  4242] |   parse(path=/etc/x) = 3;
//              [  4242] |   /* 120 records dropped here */
//    14.000 us [  4242] | } /* main */
//
// One thread after another (processes by start, threads by tid), so each
// tree reads whole; a call still open when its process ended shows
// "/* unfinished */" and no duration. Drops the drain could not place in a
// thread (gap rows with tid 0) show as a thread 0 of their process:
//   "/* 5741 records of process 4242 dropped (thread unknown) */".
#ifndef SHMTRACE_TOOLS_QUERY_CALL_TREE_HPP
#define SHMTRACE_TOOLS_QUERY_CALL_TREE_HPP

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "filter.hpp"
#include "sections.hpp"

namespace shmtrace::query {

struct TreeSpan {
  std::int64_t span_id = 0, parent_span_id = 0;
  std::string name;
  std::int64_t start_ns = 0;
  std::optional<std::int64_t> duration_ns;  // none: unfinished
  int status = 0;                           // 1: ERR
  std::vector<std::pair<std::string, std::string>> args, results;  // name, value
  std::string error;                        // "Type: message" of its error, "" when none
};

struct TreeGap {
  std::int64_t ts_ns = 0;  // the first record after the gap
  std::int64_t dropped = 0;
};

struct ThreadTree {
  std::int64_t process_key = 0, pid = 0, tid = 0;
  std::string exe;
  std::vector<TreeSpan> spans;  // by start time
  std::vector<TreeGap> gaps;    // by time
};

// Spans starting in [since, until) of the chosen processes, threads and
// trace (--name and --group are not applied).
Result<std::vector<ThreadTree>> call_tree(sqlite3* db, const Filter& f);

struct ReplayOptions {
  int max_depth = 0;                 // 0: every depth; else calls deeper than this are hidden (main is depth 1)
  std::int64_t min_duration_ns = 0;  // finished calls shorter than this are hidden (children too)
};

// uftrace's layout: a header line, then per call "DURATION [TID] | indent".
std::string render_replay(const std::vector<ThreadTree>& threads, const ReplayOptions& options);

// uftrace's duration: "%7.3f us" (us, ms or s), 10 characters; a line starts
// with a space, this, and " [TID] | ".
std::string replay_duration(std::int64_t ns);

}  // namespace shmtrace::query

#endif
