// Shared by `shmtrace dump` and `shmtrace top`, the two live views of shared
// memory: one JSON line at a time, readable times and durations, the
// --interval parser, picking segments, and naming call sites and code
// addresses (string table, module map and resolver).
#ifndef SHMTRACE_TOOLS_LIVE_FORMAT_HPP
#define SHMTRACE_TOOLS_LIVE_FORMAT_HPP

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "reader/reader.hpp"
#include "symbols/resolver.hpp"

namespace shmtrace::cli::live {

// Builds one JSON object, fields in the order added. Strings are escaped;
// bytes that are not valid UTF-8 come out as \u00XX (one per byte).
class JsonLine {
 public:
  JsonLine& str(std::string_view key, std::string_view value);
  JsonLine& num(std::string_view key, std::uint64_t value);
  JsonLine& num(std::string_view key, std::int64_t value);
  JsonLine& num(std::string_view key, std::uint32_t value) { return num(key, std::uint64_t{value}); }
  JsonLine& num(std::string_view key, std::int32_t value) { return num(key, std::int64_t{value}); }
  JsonLine& real(std::string_view key, double value);
  JsonLine& boolean(std::string_view key, bool value);
  JsonLine& null(std::string_view key);
  // `json` is already a JSON value (an array or object built elsewhere).
  JsonLine& raw(std::string_view key, std::string_view json);
  std::string text() const { return body_ + "}"; }

 private:
  JsonLine& key(std::string_view k);
  std::string body_ = "{";
};
void append_json_string(std::string& out, std::string_view value);

// "2026-12-08T00:41:47.123456789Z" (UTC).
std::string iso_time(std::int64_t wall_ns);
// "00:41:47.123456789" (UTC time of day).
std::string time_of_day(std::int64_t wall_ns);
// "1.23ms", "12.50s", "850ns" (one word: tables split on blanks).
std::string human_duration(double ns);
// "1s", "250ms", "1.5s", "2m", "100us" or a plain number of seconds.
std::optional<std::int64_t> parse_interval_ns(std::string_view text);
std::uint64_t monotonic_ns();
std::string hex(std::uint64_t value);

// The program of a segment: its executable's base name, else argv[0]'s.
std::string program_of(const abi::SegmentHeader& header);
// "running", "exited 3", "crashed 11", "exec'd" (text) or the state's word.
std::string state_text(const reader::LiveFields& live);
const char* state_word(abi::ProcessState state);

// Names of a segment's code addresses through its module map and the
// resolver (made on first use; one per segment). "@0x..." when unknown.
class CodeNames {
 public:
  std::string name(const reader::Segment& segment, std::uint64_t address);

 private:
  std::optional<symbols::Resolver> resolver_;
  bool tried_ = false;
  std::map<std::uint64_t, std::string> cache_;
};

// A string table entry, "" for id 0, "<name N unreadable>" when bad.
std::string string_or_note(const reader::Segment& segment, std::uint32_t id);

// Attaches read-only to a segment named by the user: a segment name (with or
// without /dev/shm/), or a pid (the newest of its segments: an exec chain
// leaves one per image; `note` then says which was taken). Errors are one
// line naming the segment or pid.
struct Picked {
  reader::Segment segment;
  std::string note;  // "" or one line for stderr
};
reader::Result<Picked> pick_segment(const std::string& what);
// Every listed segment, filtered by pid and session; `bad` gets one line per
// segment that is corrupt (one that is still being created is left out).
struct Attached {
  std::vector<reader::Segment> segments;
  std::vector<std::string> bad;
};
reader::Result<Attached> attach_all(std::optional<std::uint32_t> pid, const std::optional<std::string>& session);
reader::Result<reader::Segment> attach_read_only(const reader::SegmentListing& listing);

}  // namespace shmtrace::cli::live

#endif
