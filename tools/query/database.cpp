#include "database.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace shmtrace::query {

std::expected<drain::QueryDatabase, std::string> open_database(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::unexpected(path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return std::unexpected(path + ": not a regular file");
  auto db = drain::QueryDatabase::open(path);
  if (!db) return std::unexpected(path + ": " + db.error());
  return db;
}

}  // namespace shmtrace::query
