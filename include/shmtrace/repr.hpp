// shmtrace/repr.hpp: value summaries ("repr") for the C++ API.
//
// The C++ API (shmtrace.hpp) records numbers and strings as typed values and
// everything else as a short text built here, into a fixed buffer, without
// allocating:
//
//   std::vector<int>{1, 2, 3, 4, 5, 6, 7}  ->  std::vector<int>[size=7]{1, 2, 3, 4, 5, ...}
//   std::map<std::string, int>{{"a", 1}}    ->  std::map<std::string, int>[size=1]{"a": 1}
//   std::pair{1, "x"}                       ->  (1, "x")
//   std::optional<int>{}                    ->  nullopt
//   app::Color::kBlue                       ->  app::Color(2)
//   int* p                                  ->  0x7ffd5e8a3c10
//   app::Widget (nothing known about it)    ->  <app::Widget>
//
// Containers (anything with begin(), end() and size(), and C arrays) show
// their type, size and first kReprItems elements; containers nested in them
// drop the type name (the outer one already says it) and, kReprDepth levels
// down, their elements. Strings inside a summary are quoted and escaped, and
// cut after kReprQuotedBytes bytes.
//
// Customization, first match wins:
//   1. a specialization
//        template <> struct shmtrace::Repr<app::Widget> {
//          static void format(shmtrace::ReprWriter& out, const app::Widget& w) noexcept {
//            out.write("Widget#");
//            shmtrace::write_repr(out, w.id);
//          }
//        };
//   2. a function found by argument-dependent lookup:
//        namespace app { std::string shmtrace_repr(const Widget& w); }
//      (it may allocate; an exception it throws is caught and the type name
//      written instead).
// Both take precedence over the built-in formats, so they can also replace
// the summary of a container type.
//
// Sensitive values: this header never masks. Values recorded under a name
// the runtime flags as sensitive (SHMTRACE_SENSITIVE: password, api_key,
// token, secret, ...) are replaced by "***" by the runtime, whatever their
// type; secrets inside a summary of a non-sensitive name (a map with a
// "password" key) are left to the drain's redaction (SPEC §6).
//
// Type names come from a compile-time parse of __PRETTY_FUNCTION__ (no RTTI),
// with the standard library's spellings shortened (std::string, unsigned long,
// ">>"), so they read the same across GCC and Clang versions.
//
// This header uses no symbol of the C API, so it can be tested and used
// without the runtime.
#ifndef SHMTRACE_REPR_HPP
#define SHMTRACE_REPR_HPP

#include <charconv>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

// The headers' own functions stay out of -finstrument-functions traces, also
// where they are inlined into an instrumented caller.
#if defined(__GNUC__)
#define SHMTRACE_NO_INSTRUMENT __attribute__((no_instrument_function))
#else
#define SHMTRACE_NO_INSTRUMENT
#endif

namespace shmtrace {

// Longest summary, in bytes: the runtime's default max_repr (abi.hpp).
inline constexpr std::size_t kReprCapacity = 1000;
// Elements shown per container; "..." stands for the rest.
inline constexpr std::size_t kReprItems = 5;
// Containers nested this deep show only their size.
inline constexpr int kReprDepth = 3;
// Bytes of a string shown inside a summary before it is cut with "...".
inline constexpr std::size_t kReprQuotedBytes = 100;

namespace detail {
struct ReprNesting;
}  // namespace detail

// A fixed-size text buffer that never allocates and never overflows: output
// past the limit is dropped and the last three bytes become "...", so a cut
// summary is visible as such (the runtime flags only values it cuts itself).
class ReprWriter {
 public:
  static constexpr std::size_t kCapacity = kReprCapacity;

  ReprWriter() noexcept = default;
  // A writer that stops at min(limit, kCapacity) bytes.
  SHMTRACE_NO_INSTRUMENT explicit ReprWriter(std::size_t limit) noexcept
      : limit_(limit < kCapacity ? limit : kCapacity) {}
  ReprWriter(const ReprWriter&) = delete;
  ReprWriter& operator=(const ReprWriter&) = delete;

  SHMTRACE_NO_INSTRUMENT void put(char c) noexcept {
    if (size_ < limit_) {
      buffer_[size_++] = c;
    } else {
      mark_truncated();
    }
  }

  SHMTRACE_NO_INSTRUMENT void write(std::string_view text) noexcept {
    const std::size_t room = limit_ - size_;
    const std::size_t n = text.size() < room ? text.size() : room;
    for (std::size_t i = 0; i < n; ++i) buffer_[size_ + i] = text[i];
    size_ += n;
    if (n < text.size()) mark_truncated();
  }

  SHMTRACE_NO_INSTRUMENT void write_int(std::int64_t value) noexcept {
    char digits[24];
    const auto r = std::to_chars(digits, digits + sizeof digits, value);
    write({digits, static_cast<std::size_t>(r.ptr - digits)});
  }

  SHMTRACE_NO_INSTRUMENT void write_uint(std::uint64_t value) noexcept {
    char digits[24];
    const auto r = std::to_chars(digits, digits + sizeof digits, value);
    write({digits, static_cast<std::size_t>(r.ptr - digits)});
  }

  // Shortest text that reads back as the same value ("0.1", "1e+20", "inf").
  SHMTRACE_NO_INSTRUMENT void write_double(double value) noexcept {
    char digits[32];
    const auto r = std::to_chars(digits, digits + sizeof digits, value);
    write({digits, static_cast<std::size_t>(r.ptr - digits)});
  }

  SHMTRACE_NO_INSTRUMENT void write_float(float value) noexcept {
    char digits[32];
    const auto r = std::to_chars(digits, digits + sizeof digits, value);
    write({digits, static_cast<std::size_t>(r.ptr - digits)});
  }

  SHMTRACE_NO_INSTRUMENT void write_bool(bool value) noexcept { write(value ? "true" : "false"); }

  // "0x" and lowercase hex digits.
  SHMTRACE_NO_INSTRUMENT void write_hex(std::uint64_t value) noexcept {
    char digits[16];
    const auto r = std::to_chars(digits, digits + sizeof digits, value, 16);
    write("0x");
    write({digits, static_cast<std::size_t>(r.ptr - digits)});
  }

  // text between `quote` characters with C escapes, cut after
  // kReprQuotedBytes bytes (on a UTF-8 character boundary) with "...".
  SHMTRACE_NO_INSTRUMENT void write_quoted(std::string_view text, char quote = '"') noexcept {
    std::size_t shown = text.size();
    if (shown > kReprQuotedBytes) {
      shown = kReprQuotedBytes;
      // Back up over continuation bytes (10xxxxxx) to a character start.
      while (shown > 0 && (static_cast<unsigned char>(text[shown]) & 0xc0) == 0x80) --shown;
    }
    put(quote);
    for (std::size_t i = 0; i < shown && !truncated_; ++i) write_escaped(text[i], quote);
    if (shown < text.size()) write("...");
    put(quote);
  }

  [[nodiscard]] SHMTRACE_NO_INSTRUMENT const char* data() const noexcept { return buffer_; }
  [[nodiscard]] SHMTRACE_NO_INSTRUMENT std::size_t size() const noexcept { return size_; }
  [[nodiscard]] SHMTRACE_NO_INSTRUMENT std::size_t limit() const noexcept { return limit_; }
  [[nodiscard]] SHMTRACE_NO_INSTRUMENT std::string_view view() const noexcept {
    return {buffer_, size_};
  }
  // True once output was dropped; further writes are ignored.
  [[nodiscard]] SHMTRACE_NO_INSTRUMENT bool truncated() const noexcept { return truncated_; }
  // Containers nesting level of what is being written (0 at the top).
  [[nodiscard]] SHMTRACE_NO_INSTRUMENT int depth() const noexcept { return depth_; }

 private:
  friend struct detail::ReprNesting;

  SHMTRACE_NO_INSTRUMENT void write_escaped(char c, char quote) noexcept {
    switch (c) {
      case '\n':
        write("\\n");
        return;
      case '\t':
        write("\\t");
        return;
      case '\r':
        write("\\r");
        return;
      case '\\':
        write("\\\\");
        return;
      default:
        break;
    }
    if (c == quote) {
      put('\\');
      put(c);
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      constexpr char kHex[] = "0123456789abcdef";
      const auto byte = static_cast<unsigned char>(c);
      const char escape[4] = {'\\', 'x', kHex[byte >> 4], kHex[byte & 0x0f]};
      write({escape, sizeof escape});
    } else {
      put(c);
    }
  }

  SHMTRACE_NO_INSTRUMENT void mark_truncated() noexcept {
    if (truncated_) return;
    truncated_ = true;
    const std::size_t mark = limit_ < 3 ? limit_ : 3;
    for (std::size_t i = limit_ - mark; i < limit_; ++i) buffer_[i] = '.';
    size_ = limit_;
  }

  char buffer_[kCapacity];  // only [0, size_) is ever read
  std::size_t size_ = 0;
  std::size_t limit_ = kCapacity;
  int depth_ = 0;
  bool truncated_ = false;
};

// Customization point: specialize with
//   static void format(ReprWriter&, const T&) noexcept;
// The primary template is empty, meaning "not customized".
template <class T>
struct Repr {};

template <class T>
SHMTRACE_NO_INSTRUMENT void write_repr(ReprWriter& out, const T& value) noexcept;

namespace detail {

// Enters one container level for as long as it lives.
struct ReprNesting {
  SHMTRACE_NO_INSTRUMENT explicit ReprNesting(ReprWriter& out) noexcept : out_(out) {
    ++out_.depth_;
  }
  SHMTRACE_NO_INSTRUMENT ~ReprNesting() { --out_.depth_; }
  ReprNesting(const ReprNesting&) = delete;
  ReprNesting& operator=(const ReprNesting&) = delete;
  ReprWriter& out_;
};

// ---------------------------------------------------------------------------
// Type names
// ---------------------------------------------------------------------------

constexpr bool is_identifier_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// Rewrites a compiler's spelling of a type into `out` (at least
// spelling.size() bytes; no rule makes the text longer) and returns the new
// length. Two passes: the first drops inline namespaces and the spaces of
// "> >" and "int [3]", so that the rules of the second see one spelling of
// "std::basic_string<char>" whatever the library and compiler.
constexpr std::size_t normalize_type_name(std::string_view spelling, char* out) noexcept {
  struct Rule {
    std::string_view from;
    std::string_view to;
  };
  constexpr Rule kInlineNamespaces[] = {{"std::__cxx11::", "std::"}, {"std::__1::", "std::"}};
  constexpr Rule kRules[] = {
      {"std::basic_string<char, std::char_traits<char>, std::allocator<char>>", "std::string"},
      {"std::basic_string<char>", "std::string"},
      {"std::basic_string_view<char, std::char_traits<char>>", "std::string_view"},
      {"std::basic_string_view<char>", "std::string_view"},
      {"long long unsigned int", "unsigned long long"},
      {"long long int", "long long"},
      {"long unsigned int", "unsigned long"},
      {"long int", "long"},
      {"short unsigned int", "unsigned short"},
      {"short int", "short"},
      {"(anonymous namespace)", "{anonymous}"},
  };
  // A rule starting or ending with an identifier character matches whole
  // words only ("long int" but not "belong int").
  const auto matches = [](const char* text, std::size_t at, std::size_t length, char before,
                          std::string_view from) {
    if (length - at < from.size()) return false;
    for (std::size_t i = 0; i < from.size(); ++i) {
      if (text[at + i] != from[i]) return false;
    }
    if (is_identifier_char(from.front()) && (is_identifier_char(before) || before == ':')) {
      return false;
    }
    return !(is_identifier_char(from.back()) && at + from.size() < length &&
             is_identifier_char(text[at + from.size()]));
  };

  std::size_t n = 0;
  for (std::size_t i = 0; i < spelling.size();) {
    bool replaced = false;
    for (const Rule& rule : kInlineNamespaces) {
      if (matches(spelling.data(), i, spelling.size(), n ? out[n - 1] : ' ', rule.from)) {
        for (char c : rule.to) out[n++] = c;
        i += rule.from.size();
        replaced = true;
        break;
      }
    }
    if (replaced) continue;
    if (spelling[i] == ' ' && i + 1 < spelling.size() && n != 0 &&
        ((out[n - 1] == '>' && spelling[i + 1] == '>') || spelling[i + 1] == '[' ||
         (out[n - 1] != ',' && (spelling[i + 1] == '*' || spelling[i + 1] == '&')))) {
      ++i;
      continue;
    }
    out[n++] = spelling[i++];
  }

  // Second pass in place: the write index never passes the read index.
  std::size_t length = n;
  n = 0;
  for (std::size_t i = 0; i < length;) {
    const char before = n ? out[n - 1] : ' ';
    bool replaced = false;
    for (const Rule& rule : kRules) {
      if (matches(out, i, length, before, rule.from)) {
        for (char c : rule.to) out[n++] = c;
        i += rule.from.size();
        replaced = true;
        break;
      }
    }
    if (!replaced) out[n++] = out[i++];
  }
  return n;
}

// The text of the template argument in "... [with T = X]" (GCC) or
// "... [T = X]" (Clang).
constexpr std::string_view template_argument(std::string_view signature) noexcept {
  std::size_t begin = signature.find("[with T = ");
  if (begin != std::string_view::npos) {
    begin += 10;
  } else {
    begin = signature.find("[T = ");
    if (begin == std::string_view::npos) return "?";
    begin += 5;
  }
  std::size_t end = signature.size();
  if (end > begin && signature[end - 1] == ']') --end;
  return signature.substr(begin, end - begin);
}

template <class T>
constexpr const char* type_signature() noexcept {
  return __PRETTY_FUNCTION__;
}

template <std::size_t N>
struct FixedText {
  char text[N + 1] = {};
  std::size_t size = 0;
  [[nodiscard]] constexpr std::string_view view() const noexcept { return {text, size}; }
};

template <std::size_t N>
constexpr FixedText<N> make_type_name(std::string_view spelling) noexcept {
  FixedText<N> name;
  name.size = normalize_type_name(spelling, name.text);
  return name;
}

template <class T>
struct TypeName {
  static constexpr std::string_view kSpelling = template_argument(type_signature<T>());
  static constexpr FixedText<kSpelling.size()> kName = make_type_name<kSpelling.size()>(kSpelling);
};

// ---------------------------------------------------------------------------
// Function signatures (for SHMTRACE_FUNCTION)
// ---------------------------------------------------------------------------

// name: the qualified function name, without return type, parameters and
//   template argument list ("app::db::Store::get", "app::Box<T>::put",
//   "app::run()::<lambda(int)>").
// group: its leading namespaces ("app::db"), "" for a function in no
//   namespace. A name component is taken for a namespace when it is a plain
//   identifier starting with a lowercase letter or '_': "Store",
//   "Box<T>", "run()" and "{anonymous}" end the group. A class named in
//   lowercase is thus taken for a namespace; SHMTRACE_FUNCTION_IN names the
//   group explicitly where that matters.
struct FunctionSignature {
  std::string_view name;
  std::string_view group;
};

constexpr bool is_open_bracket(char c) noexcept {
  return c == '<' || c == '(' || c == '[' || c == '{';
}
constexpr bool is_close_bracket(char c) noexcept {
  return c == '>' || c == ')' || c == ']' || c == '}';
}

constexpr bool is_namespace_component(std::string_view component) noexcept {
  if (component.empty()) return false;
  const char first = component.front();
  if (!((first >= 'a' && first <= 'z') || first == '_')) return false;
  for (char c : component) {
    if (!is_identifier_char(c)) return false;
  }
  return true;
}

// Position of the last "operator" keyword in text[0, end), or npos.
constexpr std::size_t find_operator_keyword(std::string_view text, std::size_t end) noexcept {
  constexpr std::string_view kOperator = "operator";
  std::size_t at = text.substr(0, end).rfind(kOperator);
  while (at != std::string_view::npos) {
    const bool starts_word = at == 0 || text[at - 1] == ':' || text[at - 1] == ' ';
    const std::size_t after = at + kOperator.size();
    const bool ends_word = after >= end || !is_identifier_char(text[after]);
    if (starts_word && ends_word) return at;
    if (at == 0) break;
    at = text.substr(0, at).rfind(kOperator);
  }
  return std::string_view::npos;
}

constexpr FunctionSignature parse_function_signature(std::string_view pretty) noexcept {
  std::string_view s = pretty;
  const auto trim_right = [&s] {
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  };
  trim_right();

  // "... [with T = int]": the template arguments of this instantiation.
  if (!s.empty() && s.back() == ']') {
    int depth = 0;
    for (std::size_t i = s.size(); i-- > 0;) {
      if (s[i] == ']') ++depth;
      if (s[i] == '[' && --depth == 0) {
        s = s.substr(0, i);
        break;
      }
    }
    trim_right();
  }

  // The name ends where its own parameter list starts: the '(' matching the
  // last ')'. A lambda's operator() is spelled "<lambda(int)>" with no list.
  std::size_t end = s.size();
  if (!s.empty() && s.back() != '>') {
    const std::size_t close = s.rfind(')');
    if (close != std::string_view::npos) {
      int depth = 0;
      for (std::size_t i = close + 1; i-- > 0;) {
        if (s[i] == ')') ++depth;
        if (s[i] == '(' && --depth == 0) {
          end = i;
          break;
        }
      }
    }
  }

  // "void (* app::handler())(int)": a function returning a function pointer;
  // its own parameter list is the one inside the declarator's parentheses.
  if (end >= 2 && end < s.size() && s[end - 1] == ')' &&
      !s.substr(0, end).ends_with("operator()")) {
    const std::size_t close = s.substr(0, end - 1).rfind(')');
    if (close != std::string_view::npos) {
      int depth = 0;
      for (std::size_t i = close + 1; i-- > 0;) {
        if (s[i] == ')') ++depth;
        if (s[i] == '(' && --depth == 0) {
          end = i;
          break;
        }
      }
    }
  }

  // "operator<", "operator()", "operator new", "operator std::string": the
  // last component, taken whole; brackets and spaces in it are not structure.
  const std::size_t op = find_operator_keyword(s, end);
  const std::size_t stop = op == std::string_view::npos ? end : op;

  // Back to the space that ends the return type (or "static ").
  std::size_t start = 0;
  int depth = 0;
  for (std::size_t i = stop; i-- > 0;) {
    const char c = s[i];
    if (is_close_bracket(c)) ++depth;
    if (is_open_bracket(c)) --depth;
    if (c == ' ' && depth <= 0) {
      start = i + 1;
      break;
    }
  }

  // Components before the last one, split at "::" outside brackets.
  std::size_t last_component = start;
  if (op != std::string_view::npos) {
    last_component = op;
  } else {
    depth = 0;
    for (std::size_t i = start; i + 1 < end; ++i) {
      if (is_open_bracket(s[i])) ++depth;
      if (is_close_bracket(s[i])) --depth;
      if (depth == 0 && s[i] == ':' && s[i + 1] == ':') {
        last_component = i + 2;
        ++i;
      }
    }
  }

  std::size_t group_end = start;
  std::size_t component = start;
  depth = 0;
  for (std::size_t i = start; i + 1 < last_component; ++i) {
    if (is_open_bracket(s[i])) ++depth;
    if (is_close_bracket(s[i])) --depth;
    if (depth == 0 && s[i] == ':' && s[i + 1] == ':') {
      if (!is_namespace_component(s.substr(component, i - component))) break;
      group_end = i;
      component = i + 2;
      ++i;
    }
  }

  return {s.substr(start, end - start), s.substr(start, group_end - start)};
}

// ---------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------

template <class T, template <class...> class Template>
inline constexpr bool kIsSpecialization = false;
template <template <class...> class Template, class... Args>
inline constexpr bool kIsSpecialization<Template<Args...>, Template> = true;

template <class T>
concept HasReprSpecialization = requires(ReprWriter& out, const T& value) {
  Repr<T>::format(out, value);
};

template <class T>
concept HasAdlRepr = requires(const T& value) {
  { shmtrace_repr(value) } -> std::convertible_to<std::string_view>;
};

template <class T>
concept Customized = HasReprSpecialization<T> || HasAdlRepr<T>;

template <class T>
concept CharPointer =
    std::is_pointer_v<T> && std::is_same_v < std::remove_cv_t<std::remove_pointer_t<T>>,
char > ;

template <class T>
concept CharArray = std::is_array_v<T> && std::rank_v<T>
== 1 && std::extent_v<T> > 0 && std::is_same_v<std::remove_cv_t<std::remove_extent_t<T>>, char>;

// Strings other than char pointers and arrays: std::string, string_view and
// user types that convert to std::string_view.
template <class T>
concept StringLike =
    !CharPointer<T> && !CharArray<T> && std::is_convertible_v<const T&, std::string_view>;

template <class T>
concept SmartPointer = std::is_class_v<T> && requires(const T& p) {
  typename T::element_type;
  { p.get() } -> std::convertible_to<const volatile void*>;
};

template <class T>
concept Container = !StringLike<T> && !CharArray<T> &&
                    ((std::is_array_v<T> && std::extent_v<T> > 0) || requires(const T& c) {
                      c.begin();
                      c.end();
                      c.size();
                    });

template <class T>
concept MapLike = Container<T> && requires {
  typename T::key_type;
  typename T::mapped_type;
};

// The text of a char array: up to its first NUL, never past its end.
template <std::size_t N>
constexpr std::string_view char_array_view(const char (&text)[N]) noexcept {
  std::size_t length = 0;
  while (length < N && text[length] != '\0') ++length;
  return {text, length};
}

template <class T>
SHMTRACE_NO_INSTRUMENT void write_container(ReprWriter& out, const T& container) noexcept {
  std::uint64_t size = 0;
  if constexpr (std::is_array_v<T>) {
    size = std::extent_v<T>;
  } else {
    size = static_cast<std::uint64_t>(container.size());
  }
  if (out.depth() == 0) out.write(TypeName<T>::kName.view());
  out.write("[size=");
  out.write_uint(size);
  out.write("]{");
  if (out.depth() >= kReprDepth) {
    if (size != 0) out.write("...");
    out.put('}');
    return;
  }
  const ReprNesting nesting(out);
  std::size_t shown = 0;
  for (const auto& element : container) {
    if (shown != 0) out.write(", ");
    if (shown == kReprItems || out.truncated()) {
      out.write("...");
      break;
    }
    if constexpr (MapLike<T>) {
      write_repr(out, element.first);
      out.write(": ");
      write_repr(out, element.second);
    } else {
      write_repr(out, element);
    }
    ++shown;
  }
  out.put('}');
}

template <class Tuple, std::size_t... I>
SHMTRACE_NO_INSTRUMENT void write_tuple(ReprWriter& out, const Tuple& tuple,
                                        std::index_sequence<I...>) noexcept {
  out.put('(');
  ((out.write(I == 0 ? "" : ", "), write_repr(out, std::get<I>(tuple))), ...);
  out.put(')');
}

// std::visit's visitor, named so that it carries SHMTRACE_NO_INSTRUMENT.
struct ReprVisitor {
  template <class Alternative>
  SHMTRACE_NO_INSTRUMENT void operator()(const Alternative& alternative) const noexcept {
    write_repr(out, alternative);
  }
  ReprWriter& out;
};

template <class T>
SHMTRACE_NO_INSTRUMENT void write_type_placeholder(ReprWriter& out) noexcept {
  out.put('<');
  out.write(TypeName<T>::kName.view());
  out.put('>');
}

template <class T>
SHMTRACE_NO_INSTRUMENT void write_custom(ReprWriter& out, const T& value) noexcept {
#if defined(__cpp_exceptions)
  try {
#endif
    if constexpr (HasReprSpecialization<T>) {
      Repr<T>::format(out, value);
    } else {
      const auto& text = shmtrace_repr(value);
      if constexpr (std::is_pointer_v<std::remove_cvref_t<decltype(text)>>) {
        if (text == nullptr) {
          out.write("nullptr");
          return;
        }
      }
      out.write(std::string_view(text));
    }
#if defined(__cpp_exceptions)
  } catch (...) {
    write_type_placeholder<T>(out);
  }
#endif
}

}  // namespace detail

// The readable name of T, computed at compile time: "int",
// "std::vector<std::string>", "app::db::Store".
template <class T>
constexpr std::string_view type_name() noexcept {
  return detail::TypeName<T>::kName.view();
}

// Appends the summary of value to out (see the top of this file). For use in
// Repr specializations too, to format members.
template <class T>
SHMTRACE_NO_INSTRUMENT void write_repr(ReprWriter& out, const T& value) noexcept {
  using U = std::remove_cv_t<T>;
  if (out.truncated()) return;
  if constexpr (detail::Customized<U>) {
    detail::write_custom(out, value);
  } else if constexpr (std::is_same_v<U, bool>) {
    out.write_bool(value);
  } else if constexpr (std::is_same_v<U, char>) {
    out.write_quoted({&value, 1}, '\'');
  } else if constexpr (std::is_integral_v<U> && std::is_signed_v<U>) {
    out.write_int(static_cast<std::int64_t>(value));
  } else if constexpr (std::is_integral_v<U>) {
    out.write_uint(static_cast<std::uint64_t>(value));
  } else if constexpr (std::is_same_v<U, float>) {
    out.write_float(value);
  } else if constexpr (std::is_floating_point_v<U>) {
    out.write_double(static_cast<double>(value));
  } else if constexpr (std::is_enum_v<U>) {
    using Underlying = std::underlying_type_t<U>;
    out.write(type_name<U>());
    out.put('(');
    if constexpr (std::is_signed_v<Underlying>) {
      out.write_int(static_cast<std::int64_t>(value));
    } else {
      out.write_uint(static_cast<std::uint64_t>(value));
    }
    out.put(')');
  } else if constexpr (std::is_null_pointer_v<U>) {
    out.write("nullptr");
  } else if constexpr (detail::CharPointer<U>) {
    if (value == nullptr) {
      out.write("nullptr");
    } else {
      out.write_quoted(value);
    }
  } else if constexpr (detail::CharArray<U>) {
    out.write_quoted(detail::char_array_view(value));
  } else if constexpr (detail::StringLike<U>) {
    out.write_quoted(std::string_view(value));
  } else if constexpr (std::is_pointer_v<U>) {
    if (value == nullptr) {
      out.write("nullptr");
    } else {
      out.write_hex(reinterpret_cast<std::uintptr_t>(value));
    }
  } else if constexpr (detail::kIsSpecialization<U, std::optional>) {
    if (value.has_value()) {
      write_repr(out, *value);
    } else {
      out.write("nullopt");
    }
  } else if constexpr (detail::kIsSpecialization<U, std::variant>) {
    if (value.valueless_by_exception()) {
      out.write("valueless");
    } else {
      std::visit(detail::ReprVisitor{out}, value);
    }
  } else if constexpr (detail::SmartPointer<U>) {
    const auto* address = value.get();
    if (address == nullptr) {
      out.write("nullptr");
    } else {
      out.write_hex(reinterpret_cast<std::uintptr_t>(address));
    }
  } else if constexpr (detail::kIsSpecialization<U, std::pair> ||
                       detail::kIsSpecialization<U, std::tuple>) {
    detail::write_tuple(out, value, std::make_index_sequence<std::tuple_size_v<U>>());
  } else if constexpr (detail::Container<U>) {
    detail::write_container(out, value);
  } else {
    detail::write_type_placeholder<U>(out);
  }
}

}  // namespace shmtrace

#endif  // SHMTRACE_REPR_HPP
