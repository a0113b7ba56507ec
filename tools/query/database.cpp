#include "database.hpp"

#include <sqlite3.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "store/store.hpp"

namespace shmtrace::query {

std::expected<drain::QueryDatabase, std::string> open_database(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::unexpected(path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return std::unexpected(path + ": not a regular file");
  auto db = drain::QueryDatabase::open(path);
  if (!db) return std::unexpected(db.error());  // names the file already
  // The commands read the current schema's columns (sessions, self time,
  // symbolized frames). Opening is read-only, so an older database is
  // migrated by the drain, which does that whenever it opens one.
  sqlite3_stmt* version = nullptr;
  int found = -1;
  if (sqlite3_prepare_v2(db->handle(), "PRAGMA user_version", -1, &version, nullptr) == SQLITE_OK &&
      sqlite3_step(version) == SQLITE_ROW) {
    found = sqlite3_column_int(version, 0);
  }
  sqlite3_finalize(version);
  if (found < drain::kSchemaVersion) {
    return std::unexpected(path + ": schema version " + std::to_string(found) + " is older than this shmtrace's " +
                           std::to_string(drain::kSchemaVersion) + "; `shmtrace-drain --db " + path +
                           " --once` migrates it");
  }
  if (found > drain::kSchemaVersion) {
    return std::unexpected(path + ": schema version " + std::to_string(found) + " is newer than this shmtrace reads (" +
                           std::to_string(drain::kSchemaVersion) + ")");
  }
  return db;
}

}  // namespace shmtrace::query
