// A small JSON reader for the tests of tools that print JSON lines (shmtrace
// dump --format jsonl): objects, arrays, strings (escapes decoded, \u00XX as
// the byte), numbers (kept as their text, so 64-bit integers stay exact),
// true, false and null. Throws std::runtime_error on malformed input, which
// fails the test that parsed it.
#ifndef SHMTRACE_TESTS_MINI_JSON_HPP
#define SHMTRACE_TESTS_MINI_JSON_HPP

#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace shmtrace::test::json {

struct Value {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject } type = Type::kNull;
  bool boolean = false;
  std::string text;  // the string, or the number as written
  std::vector<Value> items;
  std::map<std::string, Value> fields;

  bool has(const std::string& key) const { return fields.contains(key); }
  const Value& operator[](const std::string& key) const {
    auto it = fields.find(key);
    if (it == fields.end()) throw std::runtime_error("no field " + key);
    return it->second;
  }
  std::string str() const {
    if (type != Type::kString) throw std::runtime_error("not a string");
    return text;
  }
  std::int64_t i64() const {
    if (type != Type::kNumber) throw std::runtime_error("not a number");
    return std::strtoll(text.c_str(), nullptr, 10);
  }
  std::uint64_t u64() const {
    if (type != Type::kNumber) throw std::runtime_error("not a number");
    return std::strtoull(text.c_str(), nullptr, 10);
  }
  double f64() const {
    if (type != Type::kNumber) throw std::runtime_error("not a number");
    return std::strtod(text.c_str(), nullptr);
  }
};

class Parser {
 public:
  explicit Parser(std::string_view in) : in_(in) {}
  Value parse() {
    Value v = value();
    space();
    if (at_ != in_.size()) fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("json: " + what + " at " + std::to_string(at_) + " in: " + std::string(in_));
  }
  void space() {
    while (at_ < in_.size() && (in_[at_] == ' ' || in_[at_] == '\t' || in_[at_] == '\n' || in_[at_] == '\r')) ++at_;
  }
  char peek() {
    space();
    if (at_ >= in_.size()) fail("unexpected end");
    return in_[at_];
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected ") + c);
    ++at_;
  }
  bool word(std::string_view w) {
    if (in_.substr(at_, w.size()) != w) return false;
    at_ += w.size();
    return true;
  }
  Value value() {
    Value v;
    const char c = peek();
    if (c == '{') {
      v.type = Value::Type::kObject;
      ++at_;
      if (peek() == '}') {
        ++at_;
        return v;
      }
      while (true) {
        const std::string key = string();
        expect(':');
        v.fields[key] = value();
        if (peek() == ',') {
          ++at_;
          continue;
        }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.type = Value::Type::kArray;
      ++at_;
      if (peek() == ']') {
        ++at_;
        return v;
      }
      while (true) {
        v.items.push_back(value());
        if (peek() == ',') {
          ++at_;
          continue;
        }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.type = Value::Type::kString;
      v.text = string();
      return v;
    }
    if (word("true")) {
      v.type = Value::Type::kBool;
      v.boolean = true;
      return v;
    }
    if (word("false")) {
      v.type = Value::Type::kBool;
      return v;
    }
    if (word("null")) return v;
    const std::size_t start = at_;
    while (at_ < in_.size() && std::string_view("+-0123456789.eE").find(in_[at_]) != std::string_view::npos) ++at_;
    if (at_ == start) fail("unexpected character");
    v.type = Value::Type::kNumber;
    v.text = std::string(in_.substr(start, at_ - start));
    return v;
  }
  std::string string() {
    expect('"');
    std::string out;
    while (true) {
      if (at_ >= in_.size()) fail("unterminated string");
      const char c = in_[at_++];
      if (c == '"') return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (at_ >= in_.size()) fail("bad escape");
      const char e = in_[at_++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': {
          if (at_ + 4 > in_.size()) fail("bad \\u escape");
          const unsigned long code = std::strtoul(std::string(in_.substr(at_, 4)).c_str(), nullptr, 16);
          if (code > 0xff) fail("\\u escape above 0xff");
          out += static_cast<char>(code);
          at_ += 4;
          break;
        }
        default: out += e; break;
      }
    }
  }
  std::string_view in_;
  std::size_t at_ = 0;
};

inline Value parse(std::string_view text) { return Parser(text).parse(); }

// Every non-empty line of `text`, parsed.
inline std::vector<Value> parse_lines(const std::string& text) {
  std::vector<Value> out;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.push_back(parse(std::string_view(text).substr(start, end - start)));
    start = end + 1;
  }
  return out;
}

}  // namespace shmtrace::test::json

#endif
