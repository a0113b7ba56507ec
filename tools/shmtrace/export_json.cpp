#include "export_json.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace shmtrace::cli::exporting {
namespace {

// Length of the valid UTF-8 sequence at text[i], 0 when it is not one.
std::size_t utf8_length(std::string_view text, std::size_t i) {
  const auto b = static_cast<unsigned char>(text[i]);
  std::size_t n = 0;
  std::uint32_t cp = 0;
  if (b < 0x80) return 1;
  if ((b & 0xE0) == 0xC0) {
    n = 2;
    cp = b & 0x1F;
  } else if ((b & 0xF0) == 0xE0) {
    n = 3;
    cp = b & 0x0F;
  } else if ((b & 0xF8) == 0xF0) {
    n = 4;
    cp = b & 0x07;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    const auto c = static_cast<unsigned char>(text[i + k]);
    if ((c & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (c & 0x3F);
  }
  // Overlong forms, surrogates and code points past U+10FFFF are refused too.
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return n;
}

bool exact_integer(std::string_view v, bool is_unsigned) {
  if (is_unsigned) {
    std::uint64_t u = 0;
    const auto r = std::from_chars(v.data(), v.data() + v.size(), u);
    return r.ec == std::errc{} && r.ptr == v.data() + v.size() && u <= (1ull << 53);
  }
  std::int64_t i = 0;
  const auto r = std::from_chars(v.data(), v.data() + v.size(), i);
  return r.ec == std::errc{} && r.ptr == v.data() + v.size() && i <= (1ll << 53) && i >= -(1ll << 53);
}

bool finite_double(std::string_view v) {
  double d = 0;
  const auto r = std::from_chars(v.data(), v.data() + v.size(), d);
  return r.ec == std::errc{} && r.ptr == v.data() + v.size() && std::isfinite(d) && !v.empty() &&
         v.find_first_of("xXpP") == std::string_view::npos;
}

}  // namespace

void json_string(std::string& out, std::string_view text) {
  out += '"';
  for (std::size_t i = 0; i < text.size();) {
    const char c = text[i];
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
      ++i;
    } else if (u < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      out += buf;
      ++i;
    } else if (u < 0x80) {
      out += c;
      ++i;
    } else if (const std::size_t n = utf8_length(text, i); n != 0) {
      out.append(text.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  out += '"';
}

void json_value(std::string& out, std::string_view value, std::string_view type) {
  if ((type == "int" && exact_integer(value, false)) || (type == "uint" && exact_integer(value, true)) ||
      (type == "double" && finite_double(value))) {
    out.append(value);
  } else if (type == "bool" && (value == "true" || value == "false")) {
    out.append(value);
  } else {
    json_string(out, value);
  }
}

void json_micros(std::string& out, std::int64_t ns) {
  if (ns < 0) {
    out += '-';
    ns = -ns;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld.%03lld", static_cast<long long>(ns / 1000), static_cast<long long>(ns % 1000));
  out += buf;
}

}  // namespace shmtrace::cli::exporting
