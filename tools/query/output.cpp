#include "output.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace shmtrace::query {
namespace {

std::string number_text(double v) {
  char buf[64];
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.17g", v);
  }
  return buf;
}

std::string joined(const List& l) {
  std::string out;
  for (std::size_t i = 0; i < l.items.size(); ++i) out += (i > 0 ? l.separator : "") + l.items[i];
  return out;
}

std::string text_of(const Cell& c, Column::Kind kind) {
  if (std::holds_alternative<std::monostate>(c)) return "-";
  if (const auto* s = std::get_if<std::string>(&c)) return *s;
  if (const auto* l = std::get_if<List>(&c)) return joined(*l);
  const double v = std::holds_alternative<std::int64_t>(c) ? static_cast<double>(std::get<std::int64_t>(c))
                                                           : std::get<double>(c);
  if (kind == Column::Kind::kDuration) return human_duration(v);
  if (kind == Column::Kind::kTime) return human_time(static_cast<std::int64_t>(v));
  if (const auto* i = std::get_if<std::int64_t>(&c)) return std::to_string(*i);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

bool right_aligned(Column::Kind k) { return k != Column::Kind::kText; }

// Cuts to `width` display cells (bytes; names are mostly ASCII), never
// inside a UTF-8 sequence.
std::string cut(const std::string& s, std::size_t width) {
  if (s.size() <= width) return s;
  if (width <= 3) return s.substr(0, width);
  std::size_t n = width - 3;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n) + "...";
}

}  // namespace

std::optional<Format> parse_format(std::string_view name) {
  if (name == "text") return Format::kText;
  if (name == "json") return Format::kJson;
  if (name == "csv") return Format::kCsv;
  return std::nullopt;
}

int terminal_width() {
  winsize ws{};
  if (::isatty(STDOUT_FILENO) && ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* c = std::getenv("COLUMNS")) {
    char* end = nullptr;
    const long v = std::strtol(c, &end, 10);
    if (end != c && *end == '\0' && v >= 20 && v <= 10000) return static_cast<int>(v);
  }
  return 100;
}

std::string human_duration(double ns) {
  if (!std::isfinite(ns) || ns < 0) return "-";
  char buf[48];
  if (ns < 1e3) std::snprintf(buf, sizeof buf, "%.0f ns", ns);
  else if (ns < 1e6) std::snprintf(buf, sizeof buf, "%.2f us", ns / 1e3);
  else if (ns < 1e9) std::snprintf(buf, sizeof buf, "%.2f ms", ns / 1e6);
  else std::snprintf(buf, sizeof buf, "%.2f s", ns / 1e9);
  return buf;
}

std::string human_time(std::int64_t ns) {
  const std::time_t secs = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[64];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%09lld", static_cast<long long>(ns % 1'000'000'000));
  return buf;
}

std::string render_text(const Table& t, int width) {
  const std::size_t n = t.columns.size();
  std::vector<std::vector<std::string>> cells;
  std::vector<std::size_t> w(n, 0);
  for (std::size_t c = 0; c < n; ++c) w[c] = t.columns[c].name.size();
  for (const auto& row : t.rows) {
    std::vector<std::string> line;
    for (std::size_t c = 0; c < n; ++c) {
      line.push_back(c < row.size() ? text_of(row[c], t.columns[c].kind) : "-");
      w[c] = std::max(w[c], line.back().size());
    }
    cells.push_back(std::move(line));
  }
  // Two spaces between columns; text columns are cut from the last one
  // leftwards (commands, paths and frames before names), each down to its
  // title or 12 cells. The first column is the row's key (a function, a
  // process) and is never cut: two names with one prefix must stay apart,
  // so a line too wide for the terminal runs on instead.
  auto total = [&] {
    std::size_t s = n == 0 ? 0 : 2 * (n - 1);
    for (std::size_t x : w) s += x;
    return s;
  };
  const std::size_t limit = static_cast<std::size_t>(std::max(width, 20));
  for (std::size_t c = n; c-- > 1 && total() > limit;) {
    if (right_aligned(t.columns[c].kind)) continue;
    const std::size_t floor = std::max<std::size_t>(12, t.columns[c].name.size());
    if (w[c] <= floor) continue;
    w[c] -= std::min(w[c] - floor, total() - limit);
  }
  auto line_of = [&](const std::vector<std::string>& fields) {
    std::string out;
    for (std::size_t c = 0; c < n; ++c) {
      const std::string f = cut(fields[c], w[c]);
      const std::string pad(w[c] - f.size(), ' ');
      if (c > 0) out += "  ";
      out += right_aligned(t.columns[c].kind) ? pad + f : (c + 1 == n ? f : f + pad);
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::vector<std::string> titles;
  for (const Column& c : t.columns) titles.push_back(c.name);
  std::string out = line_of(titles);
  for (const auto& l : cells) out += line_of(l);
  return out;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
    } else {
      // A well-formed UTF-8 sequence is copied; any other byte becomes U+FFFD.
      std::size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
      bool ok = len != 0 && i + len <= s.size() && c >= 0xC2 && c <= 0xF4;
      for (std::size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
      if (ok && len == 3) {
        const auto c1 = static_cast<unsigned char>(s[i + 1]);
        ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);  // overlong, surrogates
      }
      if (ok && len == 4) {
        const auto c1 = static_cast<unsigned char>(s[i + 1]);
        ok = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
      }
      if (ok) {
        out.append(s.substr(i, len));
        i += len - 1;
      } else {
        out += "\xEF\xBF\xBD";
      }
    }
  }
  return out + "\"";
}

std::string json_cell(const Cell& c) {
  if (std::holds_alternative<std::monostate>(c)) return "null";
  if (const auto* i = std::get_if<std::int64_t>(&c)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&c)) return std::isfinite(*d) ? number_text(*d) : "null";
  if (const auto* l = std::get_if<List>(&c)) {
    std::string out = "[";
    for (std::size_t i = 0; i < l->items.size(); ++i) out += (i > 0 ? ", " : "") + json_string(l->items[i]);
    return out + "]";
  }
  return json_string(std::get<std::string>(c));
}

std::string render_json(const Table& t) {
  std::string out = "[";
  for (std::size_t r = 0; r < t.rows.size(); ++r) {
    out += r == 0 ? "\n  {" : ",\n  {";
    for (std::size_t c = 0; c < t.columns.size(); ++c) {
      if (c > 0) out += ", ";
      out += json_string(t.columns[c].name) + ": " + (c < t.rows[r].size() ? json_cell(t.rows[r][c]) : "null");
    }
    out += "}";
  }
  return out + (t.rows.empty() ? "]" : "\n]");
}

std::string csv_field(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string render_csv(const Table& t) {
  std::string out;
  for (std::size_t c = 0; c < t.columns.size(); ++c) out += (c > 0 ? "," : "") + csv_field(t.columns[c].name);
  out += "\r\n";
  for (const auto& row : t.rows) {
    for (std::size_t c = 0; c < t.columns.size(); ++c) {
      if (c > 0) out += ",";
      if (c >= row.size() || std::holds_alternative<std::monostate>(row[c])) continue;
      if (const auto* s = std::get_if<std::string>(&row[c])) out += csv_field(*s);
      else if (const auto* l = std::get_if<List>(&row[c])) out += csv_field(joined(*l));
      else out += json_cell(row[c]);
    }
    out += "\r\n";
  }
  return out;
}

std::string render(const Table& t, Format f, int width) {
  switch (f) {
    case Format::kJson: return render_json(t) + "\n";
    case Format::kCsv: return render_csv(t);
    case Format::kText: break;
  }
  return render_text(t, width);
}

}  // namespace shmtrace::query
