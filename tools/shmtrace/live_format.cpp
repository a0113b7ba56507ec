// Helpers of the live views (live_format.hpp).
#include "live_format.hpp"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace shmtrace::cli::live {

namespace {

// Length of the valid UTF-8 sequence at s[i], 0 when it is not one.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
  if (c >= 0xf5) n = 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  }
  const auto c1 = static_cast<unsigned char>(s[i + 1]);
  if (n == 3 && ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 >= 0xa0))) return 0;  // overlong, surrogate
  if (n == 4 && ((c == 0xf0 && c1 < 0x90) || (c == 0xf4 && c1 >= 0x90))) return 0;
  return n;
}

}  // namespace

void append_json_string(std::string& out, std::string_view value) {
  out += '"';
  for (std::size_t i = 0; i < value.size();) {
    const auto c = static_cast<unsigned char>(value[i]);
    if (c >= 0x80) {
      if (const std::size_t n = utf8_length(value, i); n != 0) {
        out.append(value.substr(i, n));
        i += n;
        continue;
      }
    }
    char buf[8];
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  out += '"';
}

JsonLine& JsonLine::key(std::string_view k) {
  if (body_.size() > 1) body_ += ',';
  append_json_string(body_, k);
  body_ += ':';
  return *this;
}
JsonLine& JsonLine::str(std::string_view k, std::string_view value) {
  key(k);
  append_json_string(body_, value);
  return *this;
}
JsonLine& JsonLine::num(std::string_view k, std::uint64_t value) {
  key(k);
  body_ += std::to_string(value);
  return *this;
}
JsonLine& JsonLine::num(std::string_view k, std::int64_t value) {
  key(k);
  body_ += std::to_string(value);
  return *this;
}
JsonLine& JsonLine::real(std::string_view k, double value) {
  key(k);
  if (!std::isfinite(value)) {
    body_ += "null";
    return *this;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", value);
  body_ += buf;
  return *this;
}
JsonLine& JsonLine::boolean(std::string_view k, bool value) {
  key(k);
  body_ += value ? "true" : "false";
  return *this;
}
JsonLine& JsonLine::null(std::string_view k) {
  key(k);
  body_ += "null";
  return *this;
}
JsonLine& JsonLine::raw(std::string_view k, std::string_view json) {
  key(k);
  body_ += json;
  return *this;
}

namespace {

void split_wall(std::int64_t wall_ns, std::tm& tm, long& nanos) {
  std::int64_t seconds = wall_ns / 1'000'000'000;
  nanos = static_cast<long>(wall_ns % 1'000'000'000);
  if (nanos < 0) {
    nanos += 1'000'000'000;
    --seconds;
  }
  const auto t = static_cast<time_t>(seconds);
  ::gmtime_r(&t, &tm);
}

}  // namespace

std::string iso_time(std::int64_t wall_ns) {
  std::tm tm{};
  long nanos = 0;
  split_wall(wall_ns, tm, nanos);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, nanos);
  return buf;
}

std::string time_of_day(std::int64_t wall_ns) {
  std::tm tm{};
  long nanos = 0;
  split_wall(wall_ns, tm, nanos);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02d:%02d:%02d.%09ld", tm.tm_hour, tm.tm_min, tm.tm_sec, nanos);
  return buf;
}

std::string human_duration(double ns) {
  char buf[32];
  const double a = std::fabs(ns);
  if (a < 1e3) {
    std::snprintf(buf, sizeof buf, "%.0fns", ns);
  } else if (a < 1e6) {
    std::snprintf(buf, sizeof buf, "%.2fus", ns / 1e3);
  } else if (a < 1e9) {
    std::snprintf(buf, sizeof buf, "%.2fms", ns / 1e6);
  } else {
    std::snprintf(buf, sizeof buf, "%.2fs", ns / 1e9);
  }
  return buf;
}

std::optional<std::int64_t> parse_interval_ns(std::string_view text) {
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || !std::isfinite(value) || value <= 0) return std::nullopt;
  const std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  double scale = 0;
  if (unit.empty() || unit == "s") scale = 1e9;
  if (unit == "ms") scale = 1e6;
  if (unit == "us") scale = 1e3;
  if (unit == "m") scale = 60e9;
  if (scale == 0) return std::nullopt;
  const double ns = value * scale;
  // At least a millisecond (a tighter poll only burns CPU), at most a day.
  if (ns < 1e6 || ns > 86400e9) return std::nullopt;
  return static_cast<std::int64_t>(ns);
}

std::uint64_t monotonic_ns() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(now.tv_nsec);
}

std::string hex(std::uint64_t value) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(value));
  return buf;
}

std::string program_of(const abi::SegmentHeader& header) {
  // Both NUL-terminated within their arrays (validate_header).
  std::string_view exe(header.exe, ::strnlen(header.exe, sizeof header.exe));
  if (exe.empty()) {
    const std::size_t used = std::min<std::size_t>(header.cmdline_size, sizeof header.cmdline);
    exe = std::string_view(header.cmdline, ::strnlen(header.cmdline, used));
  }
  const auto slash = exe.rfind('/');
  return std::string(slash == std::string_view::npos ? exe : exe.substr(slash + 1));
}

const char* state_word(abi::ProcessState state) {
  switch (state) {
    case abi::ProcessState::kRunning: return "running";
    case abi::ProcessState::kExited: return "exited";
    case abi::ProcessState::kCrashed: return "crashed";
    case abi::ProcessState::kExeced: return "execd";
  }
  return "unknown";
}

std::string state_text(const reader::LiveFields& live) {
  switch (live.state) {
    case abi::ProcessState::kRunning: return "running";
    case abi::ProcessState::kExited: return "exited " + std::to_string(live.exit_status);
    case abi::ProcessState::kCrashed: return "crashed " + std::to_string(live.exit_status);
    case abi::ProcessState::kExeced: return "exec'd";
  }
  return "state " + std::to_string(static_cast<std::uint32_t>(live.state));
}

std::string CodeNames::name(const reader::Segment& segment, std::uint64_t address) {
  if (auto it = cache_.find(address); it != cache_.end()) return it->second;
  if (!tried_) {
    tried_ = true;
    std::vector<symbols::Module> modules;
    if (auto listed = segment.modules()) {
      for (const reader::ModuleRecord& m : *listed) modules.push_back({m.path, m.base, m.size, m.build_id_hex});
    }
    if (auto made = symbols::Resolver::create(std::move(modules))) resolver_.emplace(std::move(*made));
  }
  std::string name = "@" + hex(address);
  if (resolver_) {
    if (auto symbol = resolver_->resolve(address)) name = symbol->function;
  }
  return cache_.emplace(address, std::move(name)).first->second;
}

std::string string_or_note(const reader::Segment& segment, std::uint32_t id) {
  auto text = segment.string(id);
  if (!text) return "<name " + std::to_string(id) + " unreadable>";
  return std::string(*text);
}

reader::Result<reader::Segment> attach_read_only(const reader::SegmentListing& listing) {
  // As root, another user's segment is read as that user's (read-only).
  std::optional<std::uint32_t> uid;
  if (::geteuid() == 0) uid = listing.owner_uid;
  return reader::Segment::attach(listing.name, reader::Access::kReadOnly, uid);
}

namespace {

bool all_digits(std::string_view s) {
  return !s.empty() && s.size() <= 10 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

reader::Result<Picked> pick_segment(const std::string& what) {
  if (all_digits(what)) {
    std::uint32_t pid = 0;
    const auto [end, ec] = std::from_chars(what.data(), what.data() + what.size(), pid);
    if (ec != std::errc{} || end != what.data() + what.size()) {
      return std::unexpected(reader::Error{"pid " + what + ": out of range"});
    }
    auto listed = reader::list_segments(pid);
    if (!listed) return std::unexpected(listed.error());
    if (listed->empty()) return std::unexpected(reader::Error{"pid " + what + ": no segment in /dev/shm"});
    // An exec chain leaves one segment per image: the newest is the one
    // created last (its clock reference).
    std::optional<reader::Segment> newest;
    std::vector<std::string> others;
    for (const reader::SegmentListing& l : *listed) {
      auto segment = attach_read_only(l);
      if (!segment) {
        if (listed->size() == 1) return std::unexpected(segment.error());
        others.push_back(l.name + " (unreadable)");
        continue;
      }
      if (!newest || segment->header().clock_ref_mono_ns > newest->header().clock_ref_mono_ns) {
        if (newest) others.push_back(newest->name());
        newest.emplace(std::move(*segment));
      } else {
        others.push_back(segment->name());
      }
    }
    if (!newest) return std::unexpected(reader::Error{"pid " + what + ": no readable segment"});
    std::string note;
    if (!others.empty()) {
      note = "pid " + what + " has " + std::to_string(others.size() + 1) + " segments (an exec chain); showing the newest, " +
             newest->name() + "; the others:";
      for (const std::string& o : others) note += " " + o;
    }
    return Picked{std::move(*newest), note};
  }
  std::string name = what;
  if (name.starts_with("/dev/shm/")) name = name.substr(9);
  if (name.starts_with("/")) name = name.substr(1);
  std::optional<std::uint32_t> uid;
  struct stat st {};
  if (::geteuid() == 0 && ::lstat(("/dev/shm/" + name).c_str(), &st) == 0) uid = static_cast<std::uint32_t>(st.st_uid);
  auto segment = reader::Segment::attach(name, reader::Access::kReadOnly, uid);
  if (!segment) return std::unexpected(segment.error());
  return Picked{std::move(*segment), ""};
}

reader::Result<Attached> attach_all(std::optional<std::uint32_t> pid, const std::optional<std::string>& session) {
  auto listed = reader::list_segments(pid);
  if (!listed) return std::unexpected(listed.error());
  Attached out;
  const auto me = static_cast<std::uint32_t>(::geteuid());
  for (const reader::SegmentListing& l : *listed) {
    if (session && l.session != *session) continue;
    // Another user's segment is not ours to read (root reads them all):
    // left out, not reported as broken.
    if (me != 0 && l.owner_uid != me) continue;
    auto segment = attach_read_only(l);
    if (!segment) {
      // A segment still being created is no fault; one gone meanwhile neither.
      const std::string& m = segment.error().message;
      if (m.find("not yet initialized") != std::string::npos || m.find("No such file") != std::string::npos) continue;
      out.bad.push_back(m);
      continue;
    }
    out.segments.push_back(std::move(*segment));
  }
  return out;
}

}  // namespace shmtrace::cli::live
