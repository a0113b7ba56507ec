// Output of the reading commands: one Table type written three ways.
//   text: columns aligned and sized to the terminal (TIOCGWINSZ, else
//         $COLUMNS, else 100 columns), durations human-readable (ns, us, ms, s);
//   json: an array of objects, one per row, numbers raw (durations in ns);
//   csv:  RFC 4180 (header line, fields with , " CR or LF quoted, quotes doubled).
#ifndef SHMTRACE_TOOLS_QUERY_OUTPUT_HPP
#define SHMTRACE_TOOLS_QUERY_OUTPUT_HPP

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace shmtrace::query {

enum class Format { kText, kJson, kCsv };

// "text", "json", "csv"; nullopt for anything else.
std::optional<Format> parse_format(std::string_view name);

// A list of texts: a JSON array; in text and CSV its items joined by `separator`.
struct List {
  std::vector<std::string> items;
  std::string separator = " > ";
};

// null, integer, real, text or a list of texts.
using Cell = std::variant<std::monostate, std::int64_t, double, std::string, List>;

struct Column {
  enum class Kind { kText, kNumber, kDuration, kTime };  // kTime: wall-clock ns since the epoch
  std::string name;
  Kind kind = Kind::kText;
};

struct Table {
  std::vector<Column> columns;
  std::vector<std::vector<Cell>> rows;  // each as long as columns
};

// Width for text output: the terminal's, else $COLUMNS, else 100.
int terminal_width();

// "812 ns", "3.25 us", "14.20 ms", "2.50 s"; "-" for a negative value.
std::string human_duration(double ns);
// "2026-12-08T10:00:00.123456789" (UTC).
std::string human_time(std::int64_t ns);

// The table as text; a column too wide for `width` is cut ("...") from the
// widest text column down; numbers are never cut.
std::string render_text(const Table& t, int width);
// [{"col": value, ...}, ...]
std::string render_json(const Table& t);
std::string render_csv(const Table& t);
std::string render(const Table& t, Format f, int width);

// JSON string literal of `s` (quotes included; control characters escaped
// as \u00XX, invalid UTF-8 bytes replaced by U+FFFD so the output parses).
std::string json_string(std::string_view s);
// One CSV field, quoted when it has to be.
std::string csv_field(std::string_view s);
// The cell as JSON (null, number, string or array; non-finite reals as null).
std::string json_cell(const Cell& c);

}  // namespace shmtrace::query

#endif
