// The earlier database goes to <db>.old, as `uftrace record` keeps its
// earlier data directory: renamed file by file with its companions, so the
// .old set is a whole database again (the partitions are named relative to
// the main file, SQLite's -wal and -shm follow the main file's name).
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "run.hpp"

namespace shmtrace::cli::run {
namespace {

namespace fs = std::filesystem;

bool exists(const std::string& path) {
  std::error_code ec;
  return fs::symlink_status(path, ec).type() != fs::file_type::not_found && !ec;
}

// An empty file counts: SQLite creates the main file before writing it.
bool is_sqlite_file(const std::string& path) {
  static constexpr char kMagic[] = "SQLite format 3";  // with its NUL: the file's first 16 bytes
  std::error_code ec;
  if (fs::symlink_status(path, ec).type() != fs::file_type::regular) return false;
  char head[sizeof kMagic] = {};
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  const std::size_t got = std::fread(head, 1, sizeof head, f);
  std::fclose(f);
  return got == 0 || (got == sizeof head && std::memcmp(head, kMagic, sizeof head) == 0);
}

bool lock_held(const std::string& lock) {
  const int fd = ::open(lock.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return false;
  const bool held = ::flock(fd, LOCK_EX | LOCK_NB) != 0;
  ::close(fd);
  return held;
}

}  // namespace

std::expected<void, std::string> rotate_database(const std::string& db) {
  bool any = false;
  for (const char* suffix : kDatabaseCompanions) any = any || exists(db + suffix);
  if (!any) return {};
  if (lock_held(db + ".lock")) {
    return std::unexpected("a shmtrace-drain is using " + db + " (lock " + db + ".lock); pick another --db");
  }
  if (exists(db) && !is_sqlite_file(db)) {
    return std::unexpected(db + ": not a SQLite database; not moving it away (pick another --db)");
  }
  const std::string old = db + ".old";
  if (lock_held(old + ".lock")) {
    return std::unexpected("a shmtrace-drain is using " + old + " (lock " + old + ".lock); pick another --db");
  }
  if (exists(old) && !is_sqlite_file(old)) {
    return std::unexpected(old + ": not a SQLite database; not replacing it (pick another --db)");
  }
  std::error_code ec;
  for (const char* suffix : kDatabaseCompanions) {
    fs::remove_all(old + suffix, ec);
    if (ec) return std::unexpected("cannot remove " + old + suffix + ": " + ec.message());
  }
  for (const char* suffix : kDatabaseCompanions) {
    if (!exists(db + suffix)) continue;
    fs::rename(db + suffix, old + suffix, ec);
    if (ec) return std::unexpected("cannot rename " + db + suffix + " to " + old + suffix + ": " + ec.message());
  }
  return {};
}

}  // namespace shmtrace::cli::run
