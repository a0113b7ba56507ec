// Opening a drain's database for reading: the query library's entry point.
// Wraps the store's QueryDatabase (every time partition attached read-only
// and united in the views spans and span_data; shmtrace_quantile loaded) so
// the tools never reach into the drain's internals.
#ifndef SHMTRACE_TOOLS_QUERY_DATABASE_HPP
#define SHMTRACE_TOOLS_QUERY_DATABASE_HPP

#include <expected>
#include <string>

#include "store/query.hpp"

namespace shmtrace::query {

// Fails with one line naming the file when it is missing or is not a
// shmtrace database.
std::expected<drain::QueryDatabase, std::string> open_database(const std::string& path);

}  // namespace shmtrace::query

#endif
