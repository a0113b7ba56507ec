#include "time_arg.hpp"

#include <cmath>
#include <cstdio>
#include <ctime>
#include <string>

namespace shmtrace::query {

std::expected<std::int64_t, std::string> parse_duration(std::string_view text) {
  const std::string s(text);
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (...) {
    return std::unexpected("'" + s + "' is not a duration (e.g. 250ns, 10us, 1.5ms, 2s)");
  }
  const std::string unit = s.substr(used);
  double scale = 0;
  if (unit.empty() || unit == "ns") scale = 1;
  else if (unit == "us") scale = 1e3;
  else if (unit == "ms") scale = 1e6;
  else if (unit == "s") scale = 1e9;
  else if (unit == "m") scale = 60e9;
  else if (unit == "h") scale = 3600e9;
  if (scale == 0 || !std::isfinite(v) || v < 0 || v * scale > 9.2e18 || s[0] == '+' || s[0] == '-' ||
      s.find_first_of(" \t") != std::string::npos) {
    return std::unexpected("'" + s + "' is not a duration (e.g. 250ns, 10us, 1.5ms, 2s)");
  }
  return static_cast<std::int64_t>(std::llround(v * scale));
}

std::expected<std::int64_t, std::string> parse_time(std::string_view text, std::int64_t trace_start_ns) {
  const std::string s(text);
  if (!s.empty() && s[0] == '+') {
    auto d = parse_duration(text.substr(1));
    if (!d) return std::unexpected("'" + s + "' is not a time: after '+' comes a duration (e.g. +2s)");
    return trace_start_ns + *d;
  }
  if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos && s.size() < 19 + 1) {
    try {
      return static_cast<std::int64_t>(std::stoll(s));
    } catch (...) {
    }
  }
  std::tm tm{};
  int consumed = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                  &tm.tm_min, &tm.tm_sec, &consumed) == 6 &&
      tm.tm_mon >= 1 && tm.tm_mon <= 12 && tm.tm_mday >= 1 && tm.tm_mday <= 31 && tm.tm_hour < 24 &&
      tm.tm_min < 60 && tm.tm_sec < 61 && tm.tm_year >= 1970) {
    std::string rest = s.substr(static_cast<std::size_t>(consumed));
    std::int64_t fraction = 0;
    if (!rest.empty() && rest[0] == '.') {
      std::size_t digits = 1;
      std::int64_t scale = 100'000'000;
      while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') {
        fraction += (rest[digits] - '0') * scale;
        scale /= 10;
        ++digits;
      }
      if (digits == 1 || digits > 10) return std::unexpected("'" + s + "': a fraction of 1 to 9 digits after the seconds");
      rest = rest.substr(digits);
    }
    if (rest.empty() || rest == "Z") {
      tm.tm_year -= 1900;
      tm.tm_mon -= 1;
      const std::time_t secs = ::timegm(&tm);
      return static_cast<std::int64_t>(secs) * 1'000'000'000 + fraction;
    }
  }
  return std::unexpected("'" + s + "' is not a time (2026-12-08T10:00:00 in UTC, +2s from the trace's start, or ns)");
}

}  // namespace shmtrace::query
