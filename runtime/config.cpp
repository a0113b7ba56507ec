#include "config.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

namespace shmtrace::runtime {
namespace {

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

bool parse_u64(std::string_view text, std::uint64_t& out) {
  const std::string t = trim(text);
  if (t.empty()) return false;
  const auto* end = t.data() + t.size();
  auto [ptr, ec] = std::from_chars(t.data(), end, out);
  return ec == std::errc() && ptr == end;
}

bool parse_rate(std::string_view text, double& out) {
  const std::string t = trim(text);
  if (t.empty()) return false;
  const auto* end = t.data() + t.size();
  auto [ptr, ec] = std::from_chars(t.data(), end, out);
  return ec == std::errc() && ptr == end && std::isfinite(out) && out >= 0.0 && out <= 1.0;
}

// Reads one variable and reports it when malformed; the caller's default
// stays in place.
class Reader {
 public:
  Reader(const EnvLookup& env, std::vector<std::string>& problems) : env_(env), problems_(problems) {}

  const char* raw(const char* name) const { return env_(name); }

  void problem(const char* name, const char* value, std::string_view why, const std::string& fallback) {
    problems_.push_back(std::string(name) + "=" + value + ": " + std::string(why) + "; using default " +
                        fallback);
  }

  void u32(const char* name, std::uint32_t& field, std::uint64_t lo, std::uint64_t hi, bool power_of_two) {
    const char* value = raw(name);
    if (value == nullptr) return;
    std::uint64_t v = 0;
    const bool ok = parse_u64(value, v) && v >= lo && v <= hi && (!power_of_two || (v & (v - 1)) == 0);
    if (ok) {
      field = static_cast<std::uint32_t>(v);
      return;
    }
    std::string why = "expected ";
    why += power_of_two ? "a power of two" : "an integer";
    why += " from " + std::to_string(lo) + " to " + std::to_string(hi);
    problem(name, value, why, std::to_string(field));
  }

 private:
  const EnvLookup& env_;
  std::vector<std::string>& problems_;
};

std::vector<std::string> split(std::string_view text, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t end = std::min(text.find(sep, start), text.size());
    out.push_back(trim(text.substr(start, end - start)));
    start = end + 1;
  }
  return out;
}

}  // namespace

std::string default_spill_dir() { return "/tmp/shmtrace-" + std::to_string(::geteuid()); }

bool is_sensitive_name(std::string_view name, const std::vector<std::string>& sensitive) {
  auto lower = [](unsigned char c) { return static_cast<char>(std::tolower(c)); };
  for (const std::string& word : sensitive) {
    if (word.empty() || word.size() > name.size()) continue;
    auto it = std::search(name.begin(), name.end(), word.begin(), word.end(),
                          [&](char a, char b) { return lower(static_cast<unsigned char>(a)) ==
                                                       lower(static_cast<unsigned char>(b)); });
    if (it != name.end()) return true;
  }
  return false;
}

Config parse_config(const EnvLookup& env, std::vector<std::string>& problems) {
  Config c;
  Reader r(env, problems);

  if (const char* v = r.raw("SHMTRACE_DISABLE")) {
    const std::string t = trim(v);
    if (t == "1" || t == "true" || t == "yes") {
      c.disabled = true;
    } else if (!(t.empty() || t == "0" || t == "false" || t == "no")) {
      r.problem("SHMTRACE_DISABLE", v, "expected 0 or 1", "0");
    }
  }
  r.u32("SHMTRACE_RING_RECORDS", c.ring_records, 64, 1u << 24, true);
  r.u32("SHMTRACE_MAX_THREADS", c.max_threads, 1, 4096, false);
  r.u32("SHMTRACE_OVERFLOW_RECORDS", c.overflow_records, 64, 1u << 22, true);
  r.u32("SHMTRACE_BLOCK_TIMEOUT_MS", c.block_timeout_ms, 0, 600000, false);
  r.u32("SHMTRACE_ERROR_CHUNK_BYTES", c.error_chunk_bytes, 65536, 1u << 30, false);
  c.error_chunk_bytes &= ~7u;  // entries are 8-aligned
  r.u32("SHMTRACE_STRING_TABLE_BYTES", c.string_table_bytes, 65536, 1u << 28, false);
  c.string_table_bytes &= ~63u;
  r.u32("SHMTRACE_MAX_REPR", c.max_repr, 16, 65536, false);
  r.u32("SHMTRACE_MAX_FRAMES", c.max_frames, 0, abi::kMaxErrorFrames, false);
  r.u32("SHMTRACE_STATS_SITES", c.stats_sites, 0, 4096, false);

  if (const char* v = r.raw("SHMTRACE_POLICY")) {
    const std::string t = trim(v);
    if (t == "drop") {
      c.policy = abi::FullPolicy::kDrop;
    } else if (t == "block") {
      c.policy = abi::FullPolicy::kBlock;
    } else {
      r.problem("SHMTRACE_POLICY", v, "expected drop or block", "drop");
    }
  }
  if (const char* v = r.raw("SHMTRACE_SENSITIVE")) {
    std::vector<std::string> words;
    for (std::string& w : split(v, ',')) {
      if (!w.empty()) words.push_back(std::move(w));
    }
    if (words.empty()) {
      r.problem("SHMTRACE_SENSITIVE", v, "expected comma-separated names", "password,api_key,token,secret");
    } else {
      c.sensitive = std::move(words);
    }
  }
  if (const char* v = r.raw("SHMTRACE_SAMPLE_RATE")) {
    double rate = 0;
    if (parse_rate(v, rate)) {
      c.sample_rate = rate;
    } else {
      r.problem("SHMTRACE_SAMPLE_RATE", v, "expected a number from 0 to 1", "1");
    }
  }
  if (const char* v = r.raw("SHMTRACE_SAMPLE_RATES")) {
    std::vector<GroupRate> rates;
    bool ok = true;
    for (const std::string& item : split(v, ',')) {
      if (item.empty()) continue;
      const std::size_t eq = item.find('=');
      double rate = 0;
      if (eq == std::string::npos || eq == 0 || !parse_rate(std::string_view(item).substr(eq + 1), rate)) {
        ok = false;
        break;
      }
      rates.push_back({trim(std::string_view(item).substr(0, eq)), rate});
    }
    if (ok) {
      c.group_rates = std::move(rates);
    } else {
      r.problem("SHMTRACE_SAMPLE_RATES", v, "expected group=rate pairs separated by commas, rates from 0 to 1",
                "(none)");
    }
  }
  if (const char* v = r.raw("SHMTRACE_SPILL_DIR")) {
    const std::string t = trim(v);
    if (t.empty() || t.front() != '/' || t.size() >= sizeof(abi::SegmentHeader::spill_dir)) {
      r.problem("SHMTRACE_SPILL_DIR", v, "expected an absolute directory path under 192 bytes", c.spill_dir);
    } else {
      c.spill_dir = t;
    }
  }
  if (const char* v = r.raw("SHMTRACE_SESSION")) {
    const std::string t = trim(v);
    if (!t.empty() && !abi::session_id_valid(t.data(), t.size())) {
      r.problem("SHMTRACE_SESSION", v, "expected 1 to 32 letters, digits, '_' or '-', the first a letter",
                "(no session)");
    } else {
      c.session = t;
    }
  }
  // Regular expressions are compiled (and reported when malformed) by the runtime.
  if (const char* v = r.raw("SHMTRACE_INCLUDE")) c.include_functions = v;
  if (const char* v = r.raw("SHMTRACE_EXCLUDE")) c.exclude_functions = v;
  return c;
}

}  // namespace shmtrace::runtime
