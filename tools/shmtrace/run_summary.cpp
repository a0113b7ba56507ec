// The few lines `run` prints on stderr once every record is stored: what
// ran, what failed, what was lost, where the time went, and where the
// database is. Read back from the database (the query library), so it shows
// what was stored, not what `run` believes happened.
#include <sqlite3.h>

#include <cstdio>
#include <functional>

#include "query/database.hpp"
#include "query/output.hpp"
#include "run.hpp"

namespace shmtrace::cli::run {
namespace {

// Runs `sql`, each row handed to `row`.
std::expected<void, std::string> each_row(sqlite3* db, const std::string& sql,
                                          const std::function<void(sqlite3_stmt*)>& row) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    std::string why = sqlite3_errmsg(db);
    sqlite3_finalize(st);
    return std::unexpected(why);
  }
  int rc = SQLITE_OK;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) row(st);
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return std::unexpected(std::string(sqlite3_errmsg(db)));
  return {};
}

long long integer(sqlite3_stmt* s, int column) { return sqlite3_column_int64(s, column); }
std::string text(sqlite3_stmt* s, int column) {
  const auto* t = sqlite3_column_text(s, column);
  return t != nullptr ? reinterpret_cast<const char*>(t) : "";
}

// A function name fits a summary line: long C++ signatures are cut.
std::string fit(std::string name, std::size_t width) {
  if (name.size() > width) name = name.substr(0, width - 3) + "...";
  return name;
}

}  // namespace

// The whole database is the run's: `run` starts each run on a new one (the
// earlier goes to .old), and its drain takes only the run's session.
std::expected<void, std::string> print_summary(const std::string& database, std::size_t top) {
  auto opened = query::open_database(database);
  if (!opened) return std::unexpected(opened.error());
  sqlite3* db = opened->handle();
  auto failed = [&](const std::string& why) { return std::unexpected(database + ": " + why); };

  // A process is its last image: an exec'd image's row is followed by the
  // row of the program it became, under the same pid.
  long long processes = 0, images = 0, crashed = 0, vanished = 0, nonzero = 0, dropped = 0;
  auto ok = each_row(db,
                     "SELECT count(*) FILTER (WHERE state != 'execed'), count(*), "
                     "count(*) FILTER (WHERE state = 'crashed'), count(*) FILTER (WHERE state = 'vanished'), "
                     "count(*) FILTER (WHERE state = 'exited' AND exit_status != 0), "
                     "coalesce(sum(records_dropped), 0) FROM processes",
                     [&](sqlite3_stmt* s) {
                       processes = integer(s, 0);
                       images = integer(s, 1);
                       crashed = integer(s, 2);
                       vanished = integer(s, 3);
                       nonzero = integer(s, 4);
                       dropped = integer(s, 5);
                     });
  if (!ok) return failed(ok.error());
  long long spans = 0, errors = 0;
  ok = each_row(db, "SELECT count(*) FROM spans",
                [&](sqlite3_stmt* s) { spans = integer(s, 0); });
  if (!ok) return failed(ok.error());
  ok = each_row(db, "SELECT count(*) FROM errors",
                [&](sqlite3_stmt* s) { errors = integer(s, 0); });
  if (!ok) return failed(ok.error());

  std::fprintf(stderr, "shmtrace run: %lld process%s (%lld program image%s): %lld crashed, %lld killed without a "
               "word, %lld with a non-zero exit status\n",
               processes, processes == 1 ? "" : "es", images, images == 1 ? "" : "s", crashed, vanished, nonzero);
  std::fprintf(stderr, "shmtrace run: %lld spans stored, %lld records dropped, %lld errors\n", spans, dropped,
               errors);

  // Exact per-function figures from the shared-memory statistics (whatever
  // sampling or drops did to the spans): function_stats' sums, over
  // call_stats directly, which every schema version has.
  const std::string by = "SELECT name, sum(calls) AS calls, sum(total_ns) AS total_ns FROM call_stats "
                         "GROUP BY name ORDER BY ";
  const std::string limit = " LIMIT " + std::to_string(top);
  for (const auto& [title, order] :
       {std::pair{"calls", "calls DESC, name"}, std::pair{"total time", "total_ns DESC, name"}}) {
    std::string line;
    ok = each_row(db, by + order + limit, [&](sqlite3_stmt* s) {
      line += (line.empty() ? "" : ", ") + fit(text(s, 0), 48) + " " +
              (std::string(title) == "calls" ? std::to_string(integer(s, 1))
                                             : query::human_duration(sqlite3_column_double(s, 2)));
    });
    if (!ok) return failed(ok.error());
    if (line.empty()) line = "(no function statistics)";
    std::fprintf(stderr, "shmtrace run: busiest by %s: %s\n", title, line.c_str());
  }
  std::fprintf(stderr, "shmtrace run: database %s (shmtrace report %s)\n", database.c_str(), database.c_str());
  return {};
}

}  // namespace shmtrace::cli::run
