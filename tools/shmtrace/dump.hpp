// shmtrace dump's parts: the listing of live segments (dump_list.cpp) and
// the records of one segment, once or followed (dump_records.cpp).
#ifndef SHMTRACE_TOOLS_DUMP_HPP
#define SHMTRACE_TOOLS_DUMP_HPP

#include <cstdint>
#include <optional>
#include <set>
#include <string>

namespace shmtrace::cli::dump {

enum class Format { kText, kJsonl };

struct ListOptions {
  Format format = Format::kText;
  std::optional<std::string> session;
};
// Lists the live segments; 0, or 1 when one of them is corrupt (one line each).
int list(const ListOptions& options);

struct RecordOptions {
  std::string target;  // pid or segment name
  Format format = Format::kText;
  std::optional<std::uint32_t> ring;
  std::set<std::string> kinds;  // record kind names and "error"; empty: all
  bool follow = false;
  std::int64_t poll_ns = 100'000'000;
};
// Decodes the records of one segment; 0, 1 on a corrupt or missing segment.
int records(const RecordOptions& options);

// The kind names --kind accepts.
bool known_kind(const std::string& name);

}  // namespace shmtrace::cli::dump

#endif
