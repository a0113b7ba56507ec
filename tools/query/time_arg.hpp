// The times and durations the reading commands accept on their command line.
//   durations: a number and a unit: 250ns, 10us, 1.5ms, 2s, 1m, 1h (a bare number is ns)
//   times (--since, --until):
//     2026-12-08T10:00:00[.fraction][Z]  an absolute time, UTC
//     +2s, +1.5ms ...                    relative to the trace's start
//                                        (the first process's start)
//     1796725200000000000                ns since the epoch, as stored
#ifndef SHMTRACE_TOOLS_QUERY_TIME_ARG_HPP
#define SHMTRACE_TOOLS_QUERY_TIME_ARG_HPP

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

namespace shmtrace::query {

// Nanoseconds, or why the text is not a duration.
std::expected<std::int64_t, std::string> parse_duration(std::string_view text);

// Nanoseconds since the epoch; `trace_start_ns` anchors "+DURATION".
std::expected<std::int64_t, std::string> parse_time(std::string_view text, std::int64_t trace_start_ns);

}  // namespace shmtrace::query

#endif
