// JSON text for the Chrome and OTLP writers: strings escaped (bytes that are
// not UTF-8 become U+FFFD, so the output always parses) and stored values
// written as JSON numbers where a reader keeps them exact.
#ifndef SHMTRACE_TOOLS_EXPORT_JSON_HPP
#define SHMTRACE_TOOLS_EXPORT_JSON_HPP

#include <cstdint>
#include <string>
#include <string_view>

namespace shmtrace::cli::exporting {

// Appends "text" with its quotes.
void json_string(std::string& out, std::string_view text);

// A span_data value as JSON: int and uint within 2^53 and finite doubles as
// numbers, bool as true/false, everything else as a string.
void json_value(std::string& out, std::string_view value, std::string_view value_type);

// Nanoseconds as microseconds with three decimals ("12.345"), exact.
void json_micros(std::string& out, std::int64_t ns);

}  // namespace shmtrace::cli::exporting

#endif
