// Value summaries and signature parsing of the C++ API (repr.hpp). Needs no
// runtime: repr.hpp uses no symbol of the C API.
#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "shmtrace/repr.hpp"

namespace app {

enum class Color { kRed, kGreen, kBlue };
enum Plain : unsigned char { kPlainA = 7 };
enum class Signed : std::int8_t { kMinus = -3 };

struct WithAdl {
  int id;
};
std::string shmtrace_repr(const WithAdl& value) { return "WithAdl#" + std::to_string(value.id); }

struct WithSpecialization {
  int id;
  std::vector<int> items;
};

struct Throwing {};
std::string shmtrace_repr(const Throwing&) { throw std::runtime_error("no"); }

struct Unknown {
  int x;
};

template <class T>
struct Box {
  T value;
};

// A container type whose ADL repr replaces the built-in container format.
struct Bag : std::vector<int> {};
std::string shmtrace_repr(const Bag& bag) { return "Bag of " + std::to_string(bag.size()); }

}  // namespace app

// The macros parse __PRETTY_FUNCTION__ in a constant expression.
namespace app::db {
struct Store {
  static constexpr shmtrace::detail::FunctionSignature get(int) {
    return shmtrace::detail::parse_function_signature(__PRETTY_FUNCTION__);
  }
};
}  // namespace app::db

template <>
struct shmtrace::Repr<app::WithSpecialization> {
  static void format(shmtrace::ReprWriter& out, const app::WithSpecialization& value) noexcept {
    out.write("WithSpecialization{id=");
    shmtrace::write_repr(out, value.id);
    out.write(", items=");
    shmtrace::write_repr(out, value.items);
    out.put('}');
  }
};

namespace {

template <class T>
std::string repr(const T& value, std::size_t limit = shmtrace::kReprCapacity) {
  shmtrace::ReprWriter out(limit);
  shmtrace::write_repr(out, value);
  return std::string(out.view());
}

// ---------------------------------------------------------------------------
// Scalars and strings
// ---------------------------------------------------------------------------

TEST(CppRepr, Integers) {
  EXPECT_EQ(repr(0), "0");
  EXPECT_EQ(repr(-42), "-42");
  EXPECT_EQ(repr(std::numeric_limits<std::int64_t>::min()), "-9223372036854775808");
  EXPECT_EQ(repr(std::numeric_limits<std::uint64_t>::max()), "18446744073709551615");
  EXPECT_EQ(repr(static_cast<short>(-7)), "-7");
  EXPECT_EQ(repr(static_cast<std::uint8_t>(200)), "200");
  EXPECT_EQ(repr(static_cast<signed char>(-1)), "-1");
  EXPECT_EQ(repr(true), "true");
  EXPECT_EQ(repr(false), "false");
  EXPECT_EQ(repr('x'), "'x'");
  EXPECT_EQ(repr('\''), "'\\''");
  EXPECT_EQ(repr('\n'), "'\\n'");
}

TEST(CppRepr, FloatingPoint) {
  EXPECT_EQ(repr(1.5), "1.5");
  EXPECT_EQ(repr(0.1), "0.1");
  EXPECT_EQ(repr(-2.0), "-2");
  EXPECT_EQ(repr(1e20), "1e+20");
  EXPECT_EQ(repr(0.1f), "0.1");
  EXPECT_EQ(repr(static_cast<long double>(0.25)), "0.25");
  EXPECT_EQ(repr(std::numeric_limits<double>::infinity()), "inf");
  EXPECT_EQ(repr(-std::numeric_limits<double>::infinity()), "-inf");
  EXPECT_EQ(repr(std::numeric_limits<double>::quiet_NaN()), "nan");
}

TEST(CppRepr, StringsAreQuotedAndEscaped) {
  EXPECT_EQ(repr(std::string("abc")), "\"abc\"");
  EXPECT_EQ(repr(std::string_view("a\"b\\c")), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(repr("line\nnext\ttab"), "\"line\\nnext\\ttab\"");
  EXPECT_EQ(repr(std::string("\x01\x7f", 2)), "\"\\x01\\x7f\"");
  const char* text = "ptr";
  EXPECT_EQ(repr(text), "\"ptr\"");
  const char* null_text = nullptr;
  EXPECT_EQ(repr(null_text), "nullptr");
  EXPECT_EQ(repr(std::string()), "\"\"");
  EXPECT_EQ(repr(std::string("h\xc3\xa9")), "\"h\xc3\xa9\"");  // UTF-8 kept as is
}

TEST(CppRepr, CharArrayStopsAtItsEnd) {
  const char unterminated[3] = {'a', 'b', 'c'};
  EXPECT_EQ(repr(unterminated), "\"abc\"");
  const char with_nul[8] = "ab";
  EXPECT_EQ(repr(with_nul), "\"ab\"");
}

TEST(CppRepr, LongStringInsideSummaryIsCut) {
  const std::string long_text(150, 'z');
  EXPECT_EQ(repr(long_text), "\"" + std::string(shmtrace::kReprQuotedBytes, 'z') + "...\"");
  // A cut never splits a UTF-8 character: 99 ASCII bytes then a 2-byte é.
  const std::string accented = std::string(99, 'a') + "\xc3\xa9" + "tail";
  EXPECT_EQ(repr(accented), "\"" + std::string(99, 'a') + "...\"");
}

// ---------------------------------------------------------------------------
// Containers
// ---------------------------------------------------------------------------

TEST(CppRepr, VectorUpToFiveElements) {
  EXPECT_EQ(repr(std::vector<int>{1, 2, 3}), "std::vector<int>[size=3]{1, 2, 3}");
  EXPECT_EQ(repr(std::vector<int>{1, 2, 3, 4, 5}), "std::vector<int>[size=5]{1, 2, 3, 4, 5}");
  EXPECT_EQ(repr(std::vector<int>{}), "std::vector<int>[size=0]{}");
}

TEST(CppRepr, VectorMoreThanFiveElements) {
  EXPECT_EQ(repr(std::vector<int>{1, 2, 3, 4, 5, 6, 7}),
            "std::vector<int>[size=7]{1, 2, 3, 4, 5, ...}");
  EXPECT_EQ(repr(std::vector<std::string>{"a", "b"}),
            "std::vector<std::string>[size=2]{\"a\", \"b\"}");
  EXPECT_EQ(repr(std::vector<double>{0.5, 2}), "std::vector<double>[size=2]{0.5, 2}");
}

TEST(CppRepr, OtherSequences) {
  EXPECT_EQ(repr(std::array<int, 3>{7, 8, 9}), "std::array<int, 3>[size=3]{7, 8, 9}");
  EXPECT_EQ(repr(std::deque<unsigned long>{1, 2}), "std::deque<unsigned long>[size=2]{1, 2}");
  EXPECT_EQ(repr(std::set<long>{3, 1, 2}), "std::set<long>[size=3]{1, 2, 3}");
  const int plain[4] = {4, 3, 2, 1};
  EXPECT_EQ(repr(plain), "int[4][size=4]{4, 3, 2, 1}");
  EXPECT_EQ(repr(std::vector<char>{'a', 'b'}), "std::vector<char>[size=2]{'a', 'b'}");
  EXPECT_EQ(repr(std::vector<bool>{true, false}), "std::vector<bool>[size=2]{true, false}");
}

TEST(CppRepr, Maps) {
  const std::map<std::string, int> map{{"a", 1}, {"b", 2}};
  EXPECT_EQ(repr(map), "std::map<std::string, int>[size=2]{\"a\": 1, \"b\": 2}");
  const std::map<int, std::string> by_number{{1, "x"}, {2, "y"}, {3, "z"},
                                             {4, "w"}, {5, "v"}, {6, "u"}};
  EXPECT_EQ(repr(by_number),
            "std::map<int, std::string>[size=6]{1: \"x\", 2: \"y\", 3: \"z\", 4: \"w\", 5: \"v\", "
            "...}");
  const std::unordered_map<int, int> one{{5, 6}};
  EXPECT_EQ(repr(one), "std::unordered_map<int, int>[size=1]{5: 6}");
}

TEST(CppRepr, NestedContainersAreAbbreviated) {
  const std::vector<std::vector<int>> nested{{1, 2}, {}, {3}};
  EXPECT_EQ(repr(nested),
            "std::vector<std::vector<int>>[size=3]{[size=2]{1, 2}, [size=0]{}, "
            "[size=1]{3}}");
  const std::map<std::string, std::vector<int>> map{{"k", {1, 2, 3, 4, 5, 6}}};
  EXPECT_EQ(repr(map),
            "std::map<std::string, std::vector<int>>[size=1]{\"k\": [size=6]{1, 2, 3, 4, 5, ...}}");
  // kReprDepth levels down only the size is left.
  const std::vector<std::vector<std::vector<std::vector<int>>>> deep{{{{1, 2}}}};
  EXPECT_EQ(repr(deep),
            "std::vector<std::vector<std::vector<std::vector<int>>>>[size=1]"
            "{[size=1]{[size=1]{[size=2]{...}}}}");
}

TEST(CppRepr, PairsAndTuples) {
  EXPECT_EQ(repr(std::pair<int, std::string>{1, "x"}), "(1, \"x\")");
  EXPECT_EQ(repr(std::tuple<int, double, bool>{1, 2.5, true}), "(1, 2.5, true)");
  EXPECT_EQ(repr(std::tuple<>{}), "()");
  EXPECT_EQ(repr(std::pair<int, std::vector<int>>{1, {2}}), "(1, std::vector<int>[size=1]{2})");
  EXPECT_EQ(repr(std::vector<std::pair<int, char>>{{1, 'a'}}),
            "std::vector<std::pair<int, char>>[size=1]{(1, 'a')}");
}

TEST(CppRepr, OptionalAndVariant) {
  EXPECT_EQ(repr(std::optional<int>{}), "nullopt");
  EXPECT_EQ(repr(std::optional<int>{3}), "3");
  EXPECT_EQ(repr(std::optional<std::string>{"s"}), "\"s\"");
  EXPECT_EQ(repr(std::vector<std::optional<int>>{1, std::nullopt}),
            "std::vector<std::optional<int>>[size=2]{1, nullopt}");
  EXPECT_EQ(repr(std::variant<int, std::string>{std::string("v")}), "\"v\"");
  EXPECT_EQ(repr(std::variant<int, std::string>{4}), "4");
}

// ---------------------------------------------------------------------------
// Pointers and enums
// ---------------------------------------------------------------------------

TEST(CppRepr, Pointers) {
  EXPECT_EQ(repr(reinterpret_cast<int*>(std::uintptr_t{0x1234abcd})), "0x1234abcd");
  int* null_pointer = nullptr;
  EXPECT_EQ(repr(null_pointer), "nullptr");
  EXPECT_EQ(repr(nullptr), "nullptr");
  const auto unique = std::make_unique<int>(1);
  char expected[32];
  std::snprintf(expected, sizeof expected, "0x%llx",
                static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(unique.get())));
  EXPECT_EQ(repr(unique), expected);
  EXPECT_EQ(repr(std::shared_ptr<int>()), "nullptr");
  // A char* that is not a string: unique_ptr<char[]> shows its address.
  EXPECT_EQ(repr(std::unique_ptr<char[]>()), "nullptr");
}

TEST(CppRepr, Enums) {
  EXPECT_EQ(repr(app::Color::kBlue), "app::Color(2)");
  EXPECT_EQ(repr(app::kPlainA), "app::Plain(7)");
  EXPECT_EQ(repr(app::Signed::kMinus), "app::Signed(-3)");
  EXPECT_EQ(repr(std::byte{0x1f}), "std::byte(31)");
  EXPECT_EQ(repr(std::vector<app::Color>{app::Color::kRed}),
            "std::vector<app::Color>[size=1]{app::Color(0)}");
}

// ---------------------------------------------------------------------------
// Customization
// ---------------------------------------------------------------------------

TEST(CppRepr, AdlRepr) {
  EXPECT_EQ(repr(app::WithAdl{7}), "WithAdl#7");
  EXPECT_EQ(repr(std::vector<app::WithAdl>{{1}, {2}}),
            "std::vector<app::WithAdl>[size=2]{WithAdl#1, WithAdl#2}");
}

TEST(CppRepr, ReprSpecialization) {
  EXPECT_EQ(repr(app::WithSpecialization{3, {1, 2}}),
            "WithSpecialization{id=3, items=std::vector<int>[size=2]{1, 2}}");
}

TEST(CppRepr, CustomizationBeatsBuiltInContainerFormat) {
  app::Bag bag;
  bag.push_back(1);
  EXPECT_EQ(repr(bag), "Bag of 1");
}

TEST(CppRepr, ThrowingReprFallsBackToTypeName) {
  EXPECT_EQ(repr(app::Throwing{}), "<app::Throwing>");
}

TEST(CppRepr, UnknownTypeIsItsName) {
  EXPECT_EQ(repr(app::Unknown{1}), "<app::Unknown>");
  EXPECT_EQ(repr(app::Box<std::string>{}), "<app::Box<std::string>>");
  EXPECT_EQ(repr(std::vector<app::Unknown>(2)),
            "std::vector<app::Unknown>[size=2]{<app::Unknown>, <app::Unknown>}");
}

// ---------------------------------------------------------------------------
// Capacity
// ---------------------------------------------------------------------------

TEST(CppRepr, TruncatesAtCapacityWithMark) {
  // 5 x 5 strings of 100 shown bytes each: well over the capacity.
  const std::vector<std::vector<std::string>> many(
      shmtrace::kReprItems, std::vector<std::string>(shmtrace::kReprItems, std::string(400, 'q')));
  shmtrace::ReprWriter out;
  shmtrace::write_repr(out, many);
  ASSERT_TRUE(out.truncated());
  ASSERT_EQ(out.size(), shmtrace::kReprCapacity);
  const std::string_view text = out.view();
  constexpr std::string_view kStart =
      "std::vector<std::vector<std::string>>[size=5]{[size=5]{\"qqq";
  EXPECT_EQ(text.substr(0, kStart.size()), kStart);
  EXPECT_EQ(text.substr(text.size() - 3), "...");
}

TEST(CppRepr, TruncatesAtSmallLimitExactly) {
  shmtrace::ReprWriter out(10);
  out.write("0123456789abcdef");
  EXPECT_TRUE(out.truncated());
  EXPECT_EQ(out.view(), "0123456...");
  out.write("more");
  out.put('x');
  EXPECT_EQ(out.view(), "0123456...");

  shmtrace::ReprWriter exact(4);
  exact.write("abcd");
  EXPECT_FALSE(exact.truncated());
  EXPECT_EQ(exact.view(), "abcd");
  exact.put('e');
  EXPECT_TRUE(exact.truncated());
  EXPECT_EQ(exact.view(), "a...");

  shmtrace::ReprWriter tiny(2);
  tiny.write("abc");
  EXPECT_EQ(tiny.view(), "..");

  shmtrace::ReprWriter none(0);
  none.write("abc");
  EXPECT_EQ(none.size(), 0u);
}

TEST(CppRepr, LimitIsClampedToCapacity) {
  shmtrace::ReprWriter out(1 << 20);
  EXPECT_EQ(out.limit(), shmtrace::kReprCapacity);
  const std::string big(5000, 'b');
  for (int i = 0; i < 10; ++i) out.write(big);
  EXPECT_EQ(out.size(), shmtrace::kReprCapacity);
}

TEST(CppRepr, EveryLimitGivesAPrefixOfTheFullText) {
  const std::map<std::string, std::vector<int>> value{{"alpha", {1, 2, 3}}, {"beta", {4}}};
  const std::string full = repr(value);
  for (std::size_t limit = 0; limit <= full.size() + 1; ++limit) {
    const std::string cut = repr(value, limit);
    if (limit >= full.size()) {
      EXPECT_EQ(cut, full);
    } else {
      ASSERT_EQ(cut.size(), limit);
      const std::size_t mark = limit < 3 ? limit : 3;
      EXPECT_EQ(cut.substr(0, limit - mark), full.substr(0, limit - mark)) << limit;
      EXPECT_EQ(cut.substr(limit - mark), std::string(mark, '.')) << limit;
    }
  }
}

// ---------------------------------------------------------------------------
// Type names
// ---------------------------------------------------------------------------

static_assert(shmtrace::type_name<int>() == "int");
static_assert(shmtrace::type_name<std::string>() == "std::string");

TEST(CppTypeName, ShortensStandardSpellings) {
  EXPECT_EQ(shmtrace::type_name<unsigned long>(), "unsigned long");
  EXPECT_EQ(shmtrace::type_name<long>(), "long");
  EXPECT_EQ(shmtrace::type_name<long long>(), "long long");
  EXPECT_EQ(shmtrace::type_name<unsigned long long>(), "unsigned long long");
  EXPECT_EQ(shmtrace::type_name<short>(), "short");
  EXPECT_EQ(shmtrace::type_name<unsigned short>(), "unsigned short");
  EXPECT_EQ(shmtrace::type_name<std::string_view>(), "std::string_view");
  using Map = std::map<std::string, std::vector<long>>;
  EXPECT_EQ(shmtrace::type_name<Map>(), "std::map<std::string, std::vector<long>>");
  EXPECT_EQ(shmtrace::type_name<const char*>(), "const char*");
  EXPECT_EQ(shmtrace::type_name<app::Box<int>>(), "app::Box<int>");
  EXPECT_EQ(shmtrace::type_name<int[3]>(), "int[3]");
}

TEST(CppTypeName, NormalizeRulesMatchWholeWords) {
  const auto normalize = [](std::string_view in) {
    std::string out(in.size(), '\0');
    out.resize(shmtrace::detail::normalize_type_name(in, out.data()));
    return out;
  };
  EXPECT_EQ(normalize("std::__cxx11::basic_string<char>"), "std::string");
  EXPECT_EQ(normalize("std::__1::basic_string<char, std::char_traits<char>, "
                      "std::allocator<char> >"),
            "std::string");
  EXPECT_EQ(normalize("my::belong int"), "my::belong int");
  EXPECT_EQ(normalize("app::std::basic_string<char>"), "app::std::basic_string<char>");
  EXPECT_EQ(normalize("a<b<c<int> > >"), "a<b<c<int>>>");
  EXPECT_EQ(normalize("std::map<long int, long unsigned int>"), "std::map<long, unsigned long>");
  EXPECT_EQ(normalize("app::(anonymous namespace)::X"), "app::{anonymous}::X");
  EXPECT_EQ(normalize("std::basic_string<char>::size_type"), "std::string::size_type");
  EXPECT_EQ(normalize("int [3]"), "int[3]");
  EXPECT_EQ(normalize("const char *"), "const char*");
  EXPECT_EQ(normalize("std::pair<int, char *&>"), "std::pair<int, char*&>");
}

// ---------------------------------------------------------------------------
// __PRETTY_FUNCTION__ parsing
// ---------------------------------------------------------------------------

struct Expected {
  std::string_view pretty;
  std::string_view name;
  std::string_view group;
};

class ParseSignature : public ::testing::TestWithParam<Expected> {};

TEST_P(ParseSignature, NameAndGroup) {
  const Expected& e = GetParam();
  const auto signature = shmtrace::detail::parse_function_signature(e.pretty);
  EXPECT_EQ(signature.name, e.name) << e.pretty;
  EXPECT_EQ(signature.group, e.group) << e.pretty;
}

// Spellings as GCC 12 and Clang 14 print them.
INSTANTIATE_TEST_SUITE_P(
    CppSignature, ParseSignature,
    ::testing::Values(
        Expected{"int app::db::Store::get(int)", "app::db::Store::get", "app::db"},
        Expected{"static std::string app::db::Store::sget()", "app::db::Store::sget", "app::db"},
        Expected{"int app::db::Store::cget() const &", "app::db::Store::cget", "app::db"},
        Expected{"void app::db::Store::Inner::f()", "app::db::Store::Inner::f", "app::db"},
        Expected{"app::db::Store::Store(int)", "app::db::Store::Store", "app::db"},
        Expected{"app::db::Store::~Store()", "app::db::Store::~Store", "app::db"},
        Expected{"void app::db::flush()", "app::db::flush", "app::db"},
        Expected{"std::map<int, std::__cxx11::basic_string<char> > app::db::Store::m()",
                 "app::db::Store::m", "app::db"},
        Expected{"void app::db::Store::tmpl(U) [with U = int]", "app::db::Store::tmpl", "app::db"},
        Expected{"void app::db::Box<T>::put(T) [with T = std::vector<int> [3]]",
                 "app::db::Box<T>::put", "app::db"},
        Expected{"void app::db::Box<int>::put(T) [T = int]", "app::db::Box<int>::put", "app::db"},
        Expected{"bool app::db::Store::operator<(const app::db::Store&) const",
                 "app::db::Store::operator<", "app::db"},
        Expected{"bool app::db::Store::operator<<(int)", "app::db::Store::operator<<", "app::db"},
        Expected{"int app::db::Store::operator->()", "app::db::Store::operator->", "app::db"},
        Expected{"void app::db::Store::operator()(int)", "app::db::Store::operator()", "app::db"},
        Expected{"app::db::Store::operator int() const", "app::db::Store::operator int", "app::db"},
        Expected{"app::db::Store::operator std::string() const",
                 "app::db::Store::operator std::string", "app::db"},
        Expected{"static void* app::Pool::operator new(std::size_t)", "app::Pool::operator new",
                 "app"},
        Expected{"bool app::operator==(const app::Point&, const app::Point&)",
                 "app::operator==", "app"},
        Expected{"app::db::run()::<lambda(int)>", "app::db::run()::<lambda(int)>", "app::db"},
        Expected{"app::db::run()::<lambda(auto:14)> [with auto:14 = double]",
                 "app::db::run()::<lambda(auto:14)>", "app::db"},
        Expected{"app::db::<lambda(int)>", "app::db::<lambda(int)>", "app::db"},
        Expected{"void app::db::run()::Local::f()", "app::db::run()::Local::f", "app::db"},
        Expected{"app::F::operator()(int)::<lambda()>", "app::F::operator()(int)::<lambda()>",
                 "app"},
        Expected{"void app::{anonymous}::anon()", "app::{anonymous}::anon", "app"},
        Expected{"int app::(anonymous namespace)::helper(int)",
                 "app::(anonymous namespace)::helper", "app"},
        Expected{"void {anonymous}::anon()", "{anonymous}::anon", ""},
        Expected{"void (* app::fpret())(int)", "app::fpret", "app"},
        Expected{"int global(int)", "global", ""}, Expected{"int main()", "main", ""},
        Expected{"std::string global2()", "global2", ""},
        Expected{"std::__cxx11::basic_string<char> util::text::join(const "
                 "std::vector<std::__cxx11::basic_string<char> >&)",
                 "util::text::join", "util::text"},
        Expected{"main()::<lambda()>", "main()::<lambda()>", ""},
        Expected{"Outer::method()", "Outer::method", ""},
        Expected{"constexpr int app::sq(int)", "app::sq", "app"}));

TEST(CppSignature, ThisCompilersSpelling) {
  static constexpr auto signature = app::db::Store::get(0);
  static_assert(signature.name == "app::db::Store::get");
  static_assert(signature.group == "app::db");
  const auto lambda = [] {
    return shmtrace::detail::parse_function_signature(__PRETTY_FUNCTION__);
  };
  // GCC: "...::TestBody()::<lambda()>", Clang: "...::TestBody()::(anonymous class)::operator()".
  EXPECT_NE(lambda().name.find("CppSignature_ThisCompilersSpelling_Test::TestBody()::"),
            std::string_view::npos)
      << lambda().name;
  EXPECT_EQ(lambda().group, "");  // the test body sits in an anonymous namespace
}

}  // namespace
