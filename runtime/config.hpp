// Runtime configuration, read once from SHMTRACE_* environment variables.
// Every variable has a default; a malformed value produces one problem line
// (the runtime prints it on stderr) and the default is kept (SPEC P11).
#ifndef SHMTRACE_RUNTIME_CONFIG_HPP
#define SHMTRACE_RUNTIME_CONFIG_HPP

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "shmtrace/abi.hpp"

namespace shmtrace::runtime {

// The default spill directory, /tmp/shmtrace-<euid>: private to the user
// (like tmux's /tmp/tmux-<uid>), created 0700 by the error area the first
// time it spills, and refused unless it is a real directory owned by the
// euid with no group or other permissions (see ErrorArea).
std::string default_spill_dir();

struct GroupRate {
  std::string group;
  double rate = 1.0;
};

struct Config {
  bool disabled = false;
  std::uint32_t ring_records = 16384;
  std::uint32_t max_threads = 64;
  std::uint32_t overflow_records = 8192;
  abi::FullPolicy policy = abi::FullPolicy::kDrop;
  std::uint32_t block_timeout_ms = 1000;
  std::uint32_t error_chunk_bytes = 1u << 20;
  std::uint32_t string_table_bytes = 1u << 20;
  std::uint32_t max_repr = 1000;
  std::uint32_t max_frames = 10;
  // SHMTRACE_STATS_SITES, call-site statistics (P13): slots per thread, the "other" slot not
  // counted; 0 turns statistics off. 96 keeps a thread's shared memory under
  // 2 MiB with the default ring (1 MiB of records + 97 x 9792 bytes).
  std::uint32_t stats_sites = 96;
  std::vector<std::string> sensitive = {"password", "api_key", "token", "secret"};
  double sample_rate = 1.0;
  std::vector<GroupRate> group_rates;
  std::string spill_dir = default_spill_dir();  // SHMTRACE_SPILL_DIR
  std::string include_functions;  // -finstrument-functions filters (ECMAScript regex), empty = all
  std::string exclude_functions;
  // SHMTRACE_SESSION: the run this process belongs to (abi::session_id_valid),
  // "" for none; it names the segment, so only that session's drain takes it.
  std::string session;
};

// Looks a variable up; nullptr when unset. The runtime passes getenv.
using EnvLookup = std::function<const char*(const char*)>;

// Parses the environment. Each malformed variable appends one line to
// `problems` ("SHMTRACE_X=value: why; using default D").
Config parse_config(const EnvLookup& env, std::vector<std::string>& problems);

// True when `name` contains one of the sensitive words, ignoring case.
bool is_sensitive_name(std::string_view name, const std::vector<std::string>& sensitive);

}  // namespace shmtrace::runtime

#endif
