// The database schema (SPEC D3), documented table by table in README.md
// ("Database"). The main file is migrated forward from its user_version;
// partition files are created whole at the current version.
#ifndef SHMTRACE_DRAIN_SCHEMA_HPP
#define SHMTRACE_DRAIN_SCHEMA_HPP

#include <string>
#include <vector>

namespace shmtrace::drain::schema {

// Migration i moves the main file from user_version i to i + 1.
const std::vector<std::string>& main_migrations();

// The tables of one time partition (spans, span_data) and their indexes.
extern const char* const kPartitionTables;

// Tables every partition has, united across partitions by the query views.
inline constexpr const char* kPartitionedTables[] = {"spans", "span_data"};

}  // namespace shmtrace::drain::schema

#endif
