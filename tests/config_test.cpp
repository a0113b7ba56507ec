// parse_config over a fake environment (SPEC P11): every default, every
// variable's valid forms with their exact parsed values, and for each
// malformed value exactly one problem line naming the variable and the value,
// saying which default is kept, with that default really kept.
#include <gtest/gtest.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "config.hpp"

namespace shmtrace::test {
namespace {

using runtime::Config;
using runtime::parse_config;

struct Parsed {
  Config config;
  std::vector<std::string> problems;
};

Parsed parse(const std::map<std::string, std::string>& env) {
  Parsed out;
  const runtime::EnvLookup lookup = [&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  out.config = parse_config(lookup, out.problems);
  return out;
}

// Every field of a default Config, so a test can say "all defaults but X".
void expect_defaults_except(const Config& c, const std::string& except) {
  if (except != "disabled") EXPECT_FALSE(c.disabled);
  if (except != "ring_records") EXPECT_EQ(c.ring_records, 16384u);
  if (except != "max_threads") EXPECT_EQ(c.max_threads, 64u);
  if (except != "overflow_records") EXPECT_EQ(c.overflow_records, 8192u);
  if (except != "policy") EXPECT_EQ(c.policy, abi::FullPolicy::kDrop);
  if (except != "block_timeout_ms") EXPECT_EQ(c.block_timeout_ms, 1000u);
  if (except != "error_chunk_bytes") EXPECT_EQ(c.error_chunk_bytes, 1u << 20);
  if (except != "string_table_bytes") EXPECT_EQ(c.string_table_bytes, 1u << 20);
  if (except != "max_repr") EXPECT_EQ(c.max_repr, 1000u);
  if (except != "max_frames") EXPECT_EQ(c.max_frames, 10u);
  if (except != "sensitive") {
    EXPECT_EQ(c.sensitive, (std::vector<std::string>{"password", "api_key", "token", "secret"}));
  }
  if (except != "sample_rate") EXPECT_EQ(c.sample_rate, 1.0);
  if (except != "group_rates") EXPECT_TRUE(c.group_rates.empty());
  if (except != "spill_dir") EXPECT_EQ(c.spill_dir, "/tmp/shmtrace-" + std::to_string(::geteuid()));
  if (except != "session") EXPECT_EQ(c.session, "");
}

// One problem line: "NAME=value: <why>; using default D".
void expect_problem(const std::string& line, const std::string& name, const std::string& value,
                    const std::string& fallback) {
  const std::string head = name + "=" + value + ": ";
  const std::string tail = "; using default " + fallback;
  EXPECT_TRUE(line.starts_with(head)) << "line: " << line << "\nexpected to start with: " << head;
  EXPECT_TRUE(line.ends_with(tail)) << "line: " << line << "\nexpected to end with: " << tail;
  EXPECT_GT(line.size(), head.size() + tail.size()) << "no reason given: " << line;
  EXPECT_EQ(line.find('\n'), std::string::npos) << "one line: " << line;
}

TEST(ConfigDefaults, EmptyEnvironmentGivesEveryDefaultAndNoProblem) {
  const Parsed p = parse({});
  EXPECT_TRUE(p.problems.empty());
  expect_defaults_except(p.config, "");
}

TEST(ConfigDefaults, UnrelatedVariablesAreIgnored) {
  const Parsed p = parse({{"PATH", "/bin"}, {"SHMTRACE", "1"}, {"SHMTRACE_UNKNOWN", "x"}});
  EXPECT_TRUE(p.problems.empty());
  expect_defaults_except(p.config, "");
}

// ---------------------------------------------------------------------------
// Valid values, exact results.
// ---------------------------------------------------------------------------
struct IntCase {
  const char* variable;
  const char* field;
  const char* text;
  std::uint32_t expected;
};

std::uint32_t field_of(const Config& c, const std::string& field) {
  if (field == "ring_records") return c.ring_records;
  if (field == "max_threads") return c.max_threads;
  if (field == "overflow_records") return c.overflow_records;
  if (field == "block_timeout_ms") return c.block_timeout_ms;
  if (field == "error_chunk_bytes") return c.error_chunk_bytes;
  if (field == "string_table_bytes") return c.string_table_bytes;
  if (field == "max_repr") return c.max_repr;
  if (field == "max_frames") return c.max_frames;
  ADD_FAILURE() << "no field " << field;
  return 0;
}

class ConfigValidInt : public ::testing::TestWithParam<IntCase> {};

TEST_P(ConfigValidInt, ParsesExactly) {
  const IntCase& c = GetParam();
  const Parsed p = parse({{c.variable, c.text}});
  EXPECT_TRUE(p.problems.empty()) << (p.problems.empty() ? "" : p.problems[0]);
  EXPECT_EQ(field_of(p.config, c.field), c.expected) << c.variable << "=" << c.text;
  expect_defaults_except(p.config, c.field);
}

INSTANTIATE_TEST_SUITE_P(
    AllIntegerVariables, ConfigValidInt,
    ::testing::Values(IntCase{"SHMTRACE_RING_RECORDS", "ring_records", "64", 64},
                      IntCase{"SHMTRACE_RING_RECORDS", "ring_records", "1024", 1024},
                      IntCase{"SHMTRACE_RING_RECORDS", "ring_records", "16777216", 1u << 24},
                      IntCase{"SHMTRACE_RING_RECORDS", "ring_records", "  4096\t", 4096},
                      IntCase{"SHMTRACE_MAX_THREADS", "max_threads", "1", 1},
                      IntCase{"SHMTRACE_MAX_THREADS", "max_threads", "100", 100},
                      IntCase{"SHMTRACE_MAX_THREADS", "max_threads", "4096", 4096},
                      IntCase{"SHMTRACE_OVERFLOW_RECORDS", "overflow_records", "64", 64},
                      IntCase{"SHMTRACE_OVERFLOW_RECORDS", "overflow_records", "4194304", 1u << 22},
                      IntCase{"SHMTRACE_BLOCK_TIMEOUT_MS", "block_timeout_ms", "0", 0},
                      IntCase{"SHMTRACE_BLOCK_TIMEOUT_MS", "block_timeout_ms", "250", 250},
                      IntCase{"SHMTRACE_BLOCK_TIMEOUT_MS", "block_timeout_ms", "600000", 600000},
                      IntCase{"SHMTRACE_ERROR_CHUNK_BYTES", "error_chunk_bytes", "65536", 65536},
                      // Entries are 8-aligned: the size is rounded down to a multiple of 8.
                      IntCase{"SHMTRACE_ERROR_CHUNK_BYTES", "error_chunk_bytes", "65543", 65536},
                      IntCase{"SHMTRACE_ERROR_CHUNK_BYTES", "error_chunk_bytes", "1073741824", 1u << 30},
                      IntCase{"SHMTRACE_STRING_TABLE_BYTES", "string_table_bytes", "65536", 65536},
                      IntCase{"SHMTRACE_STRING_TABLE_BYTES", "string_table_bytes", "65663", 65600},
                      IntCase{"SHMTRACE_STRING_TABLE_BYTES", "string_table_bytes", "268435456", 1u << 28},
                      IntCase{"SHMTRACE_MAX_REPR", "max_repr", "16", 16},
                      IntCase{"SHMTRACE_MAX_REPR", "max_repr", "2000", 2000},
                      IntCase{"SHMTRACE_MAX_REPR", "max_repr", "65536", 65536},
                      IntCase{"SHMTRACE_MAX_FRAMES", "max_frames", "0", 0},
                      IntCase{"SHMTRACE_MAX_FRAMES", "max_frames", "32", 32},
                      IntCase{"SHMTRACE_MAX_FRAMES", "max_frames", "64", 64}));

TEST(ConfigValid, PolicyDropAndBlock) {
  Parsed p = parse({{"SHMTRACE_POLICY", "block"}});
  EXPECT_TRUE(p.problems.empty());
  EXPECT_EQ(p.config.policy, abi::FullPolicy::kBlock);
  expect_defaults_except(p.config, "policy");
  p = parse({{"SHMTRACE_POLICY", " drop "}});
  EXPECT_TRUE(p.problems.empty());
  EXPECT_EQ(p.config.policy, abi::FullPolicy::kDrop);
}

TEST(ConfigValid, SensitiveListReplacesTheDefaultTrimmedWithoutEmptyItems) {
  const Parsed p = parse({{"SHMTRACE_SENSITIVE", " pin , ssn,,cvv ,"}});
  EXPECT_TRUE(p.problems.empty());
  EXPECT_EQ(p.config.sensitive, (std::vector<std::string>{"pin", "ssn", "cvv"}));
  expect_defaults_except(p.config, "sensitive");
}

TEST(ConfigValid, SampleRate) {
  for (const auto& [text, value] : std::vector<std::pair<std::string, double>>{
           {"0", 0.0}, {"0.25", 0.25}, {"1", 1.0}, {"1.0", 1.0}, {" 0.5 ", 0.5}, {"1e-3", 0.001}}) {
    const Parsed p = parse({{"SHMTRACE_SAMPLE_RATE", text}});
    EXPECT_TRUE(p.problems.empty()) << text;
    EXPECT_EQ(p.config.sample_rate, value) << text;
    expect_defaults_except(p.config, "sample_rate");
  }
}

TEST(ConfigValid, SampleRatesPerGroup) {
  const Parsed p = parse({{"SHMTRACE_SAMPLE_RATES", "db=0.5, http = 0.125,cache=0,app::core=1,"}});
  ASSERT_TRUE(p.problems.empty()) << p.problems[0];
  ASSERT_EQ(p.config.group_rates.size(), 4u);
  EXPECT_EQ(p.config.group_rates[0].group, "db");
  EXPECT_EQ(p.config.group_rates[0].rate, 0.5);
  EXPECT_EQ(p.config.group_rates[1].group, "http");
  EXPECT_EQ(p.config.group_rates[1].rate, 0.125);
  EXPECT_EQ(p.config.group_rates[2].group, "cache");
  EXPECT_EQ(p.config.group_rates[2].rate, 0.0);
  EXPECT_EQ(p.config.group_rates[3].group, "app::core");
  EXPECT_EQ(p.config.group_rates[3].rate, 1.0);
  expect_defaults_except(p.config, "group_rates");
}

TEST(ConfigValid, SpillDirTrimmedAndAbsolute) {
  Parsed p = parse({{"SHMTRACE_SPILL_DIR", " /var/lib/shmtrace "}});
  EXPECT_TRUE(p.problems.empty());
  EXPECT_EQ(p.config.spill_dir, "/var/lib/shmtrace");
  expect_defaults_except(p.config, "spill_dir");
  // The longest path the header can hold: 191 bytes plus the NUL.
  const std::string longest = "/" + std::string(190, 'd');
  p = parse({{"SHMTRACE_SPILL_DIR", longest}});
  EXPECT_TRUE(p.problems.empty());
  EXPECT_EQ(p.config.spill_dir, longest);
}

TEST(ConfigValid, SessionNamesTheSegment) {
  Parsed p = parse({{"SHMTRACE_SESSION", " run-42_x "}});
  EXPECT_TRUE(p.problems.empty());
  EXPECT_EQ(p.config.session, "run-42_x");
  expect_defaults_except(p.config, "session");
  // A dot would split the segment's name; a digit first would read as a pid.
  for (const char* bad : {"a.b", "42", "-x", "x y", "abcdefghijklmnopqrstuvwxyz0123456"}) {
    p = parse({{"SHMTRACE_SESSION", bad}});
    ASSERT_EQ(p.problems.size(), 1u) << bad;
    EXPECT_NE(p.problems[0].find("SHMTRACE_SESSION"), std::string::npos);
    EXPECT_EQ(p.config.session, "") << bad;
  }
}

TEST(ConfigValid, EverythingAtOnce) {
  const Parsed p = parse({{"SHMTRACE_RING_RECORDS", "256"},
                          {"SHMTRACE_MAX_THREADS", "8"},
                          {"SHMTRACE_OVERFLOW_RECORDS", "128"},
                          {"SHMTRACE_POLICY", "block"},
                          {"SHMTRACE_BLOCK_TIMEOUT_MS", "5"},
                          {"SHMTRACE_ERROR_CHUNK_BYTES", "131072"},
                          {"SHMTRACE_STRING_TABLE_BYTES", "262144"},
                          {"SHMTRACE_MAX_REPR", "100"},
                          {"SHMTRACE_MAX_FRAMES", "3"},
                          {"SHMTRACE_SENSITIVE", "pin"},
                          {"SHMTRACE_SAMPLE_RATE", "0.75"},
                          {"SHMTRACE_SAMPLE_RATES", "g=0.5"},
                          {"SHMTRACE_SPILL_DIR", "/spill"},
                          {"SHMTRACE_DISABLE", "0"}});
  EXPECT_TRUE(p.problems.empty());
  const Config& c = p.config;
  EXPECT_FALSE(c.disabled);
  EXPECT_EQ(c.ring_records, 256u);
  EXPECT_EQ(c.max_threads, 8u);
  EXPECT_EQ(c.overflow_records, 128u);
  EXPECT_EQ(c.policy, abi::FullPolicy::kBlock);
  EXPECT_EQ(c.block_timeout_ms, 5u);
  EXPECT_EQ(c.error_chunk_bytes, 131072u);
  EXPECT_EQ(c.string_table_bytes, 262144u);
  EXPECT_EQ(c.max_repr, 100u);
  EXPECT_EQ(c.max_frames, 3u);
  EXPECT_EQ(c.sensitive, std::vector<std::string>{"pin"});
  EXPECT_EQ(c.sample_rate, 0.75);
  ASSERT_EQ(c.group_rates.size(), 1u);
  EXPECT_EQ(c.group_rates[0].group, "g");
  EXPECT_EQ(c.group_rates[0].rate, 0.5);
  EXPECT_EQ(c.spill_dir, "/spill");
}

// ---------------------------------------------------------------------------
// SHMTRACE_DISABLE.
// ---------------------------------------------------------------------------
TEST(ConfigDisable, TrueValuesDisable) {
  for (const char* v : {"1", "true", "yes", " 1 "}) {
    const Parsed p = parse({{"SHMTRACE_DISABLE", v}});
    EXPECT_TRUE(p.problems.empty()) << v;
    EXPECT_TRUE(p.config.disabled) << v;
    expect_defaults_except(p.config, "disabled");
  }
}

TEST(ConfigDisable, FalseValuesKeepTheRuntimeOn) {
  for (const char* v : {"0", "false", "no", ""}) {
    const Parsed p = parse({{"SHMTRACE_DISABLE", v}});
    EXPECT_TRUE(p.problems.empty()) << v;
    EXPECT_FALSE(p.config.disabled) << v;
  }
}

TEST(ConfigDisable, OtherValuesAreOneProblemAndStayEnabled) {
  for (const char* v : {"2", "on", "disable", "1x", "-1"}) {
    const Parsed p = parse({{"SHMTRACE_DISABLE", v}});
    ASSERT_EQ(p.problems.size(), 1u) << v;
    expect_problem(p.problems[0], "SHMTRACE_DISABLE", v, "0");
    EXPECT_FALSE(p.config.disabled) << v;
  }
}

// ---------------------------------------------------------------------------
// Malformed values: one line each, the default kept.
// ---------------------------------------------------------------------------
struct BadCase {
  const char* variable;
  const char* field;
  const char* text;
  const char* fallback;  // as the problem line prints it
};

class ConfigMalformedInt : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConfigMalformedInt, OneProblemAndTheDefaultKept) {
  const BadCase& c = GetParam();
  const Parsed p = parse({{c.variable, c.text}});
  ASSERT_EQ(p.problems.size(), 1u) << c.variable << "=" << c.text;
  expect_problem(p.problems[0], c.variable, c.text, c.fallback);
  expect_defaults_except(p.config, "");
}

// Each integer variable: not a number, empty, trailing junk, negative, below
// and above its range, and (where required) not a power of two.
std::vector<BadCase> malformed_ints() {
  struct Var {
    const char* variable;
    const char* field;
    const char* fallback;
    std::vector<const char*> out_of_range;
  };
  const std::vector<Var> vars = {
      {"SHMTRACE_RING_RECORDS", "ring_records", "16384", {"32", "33554432", "100", "0", "65535"}},
      {"SHMTRACE_MAX_THREADS", "max_threads", "64", {"0", "4097", "4294967296"}},
      {"SHMTRACE_OVERFLOW_RECORDS", "overflow_records", "8192", {"32", "8388608", "1000"}},
      {"SHMTRACE_BLOCK_TIMEOUT_MS", "block_timeout_ms", "1000", {"600001"}},
      {"SHMTRACE_ERROR_CHUNK_BYTES", "error_chunk_bytes", "1048576", {"65535", "1073741825"}},
      {"SHMTRACE_STRING_TABLE_BYTES", "string_table_bytes", "1048576", {"1024", "268435457"}},
      {"SHMTRACE_MAX_REPR", "max_repr", "1000", {"15", "65537"}},
      {"SHMTRACE_MAX_FRAMES", "max_frames", "10", {"65", "1000"}},
  };
  std::vector<BadCase> out;
  for (const Var& v : vars) {
    for (const char* text : {"abc", "", "   ", "128x", "12 8", "-1", "+128", "0x100", "1.5", "1e3",
                             "99999999999999999999999"}) {
      out.push_back({v.variable, v.field, text, v.fallback});
    }
    for (const char* text : v.out_of_range) out.push_back({v.variable, v.field, text, v.fallback});
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(AllIntegerVariables, ConfigMalformedInt, ::testing::ValuesIn(malformed_ints()));

TEST(ConfigMalformed, Policy) {
  for (const char* v : {"", "wait", "dropx", "block,drop", "1"}) {
    const Parsed p = parse({{"SHMTRACE_POLICY", v}});
    ASSERT_EQ(p.problems.size(), 1u) << v;
    expect_problem(p.problems[0], "SHMTRACE_POLICY", v, "drop");
    EXPECT_EQ(p.config.policy, abi::FullPolicy::kDrop);
  }
}

TEST(ConfigMalformed, SensitiveWithNoName) {
  for (const char* v : {"", ",", " , ,"}) {
    const Parsed p = parse({{"SHMTRACE_SENSITIVE", v}});
    ASSERT_EQ(p.problems.size(), 1u) << "'" << v << "'";
    expect_problem(p.problems[0], "SHMTRACE_SENSITIVE", v, "password,api_key,token,secret");
    expect_defaults_except(p.config, "");
  }
}

TEST(ConfigMalformed, SampleRate) {
  for (const char* v : {"", "abc", "1.5", "-0.1", "2", "0.5x", "nan", "inf", "-inf", "0.5 0.5"}) {
    const Parsed p = parse({{"SHMTRACE_SAMPLE_RATE", v}});
    ASSERT_EQ(p.problems.size(), 1u) << v;
    expect_problem(p.problems[0], "SHMTRACE_SAMPLE_RATE", v, "1");
    EXPECT_EQ(p.config.sample_rate, 1.0) << v;
  }
}

TEST(ConfigMalformed, SampleRatesSyntaxAndRange) {
  for (const char* v : {"db", "db=", "=0.5", "db=0.5,http", "db=1.5", "db=-1", "db=0.5;http=0.1", "db:0.5",
                        "db=x", "db=0.5=0.2", "db=nan"}) {
    const Parsed p = parse({{"SHMTRACE_SAMPLE_RATES", v}});
    ASSERT_EQ(p.problems.size(), 1u) << v;
    expect_problem(p.problems[0], "SHMTRACE_SAMPLE_RATES", v, "(none)");
    // Nothing of a malformed list is taken, not even its valid leading pairs.
    EXPECT_TRUE(p.config.group_rates.empty()) << v;
  }
}

TEST(ConfigMalformed, SpillDir) {
  const std::string too_long = "/" + std::string(191, 'd');  // 192 bytes: no room for the NUL
  for (const std::string& v : {std::string("relative/dir"), std::string("tmp"), std::string(""),
                               std::string("  "), std::string("./x"), too_long}) {
    const Parsed p = parse({{"SHMTRACE_SPILL_DIR", v}});
    ASSERT_EQ(p.problems.size(), 1u) << v;
    expect_problem(p.problems[0], "SHMTRACE_SPILL_DIR", v, runtime::default_spill_dir());
    EXPECT_EQ(p.config.spill_dir, runtime::default_spill_dir());
  }
}

TEST(ConfigMalformed, SeveralAtOnceGiveOneLineEachAndKeepTheValidOnes) {
  const Parsed p = parse({{"SHMTRACE_RING_RECORDS", "1000"},
                          {"SHMTRACE_MAX_THREADS", "16"},
                          {"SHMTRACE_POLICY", "maybe"},
                          {"SHMTRACE_SAMPLE_RATE", "7"},
                          {"SHMTRACE_SAMPLE_RATES", "a=0.5,b"},
                          {"SHMTRACE_SPILL_DIR", "spill"},
                          {"SHMTRACE_MAX_FRAMES", "-3"},
                          {"SHMTRACE_DISABLE", "perhaps"}});
  ASSERT_EQ(p.problems.size(), 7u);
  std::map<std::string, std::string> by_variable;
  for (const std::string& line : p.problems) {
    const std::string name = line.substr(0, line.find('='));
    EXPECT_TRUE(by_variable.emplace(name, line).second) << "two lines for " << name;
  }
  expect_problem(by_variable["SHMTRACE_RING_RECORDS"], "SHMTRACE_RING_RECORDS", "1000", "16384");
  expect_problem(by_variable["SHMTRACE_POLICY"], "SHMTRACE_POLICY", "maybe", "drop");
  expect_problem(by_variable["SHMTRACE_SAMPLE_RATE"], "SHMTRACE_SAMPLE_RATE", "7", "1");
  expect_problem(by_variable["SHMTRACE_SAMPLE_RATES"], "SHMTRACE_SAMPLE_RATES", "a=0.5,b", "(none)");
  expect_problem(by_variable["SHMTRACE_SPILL_DIR"], "SHMTRACE_SPILL_DIR", "spill", runtime::default_spill_dir());
  expect_problem(by_variable["SHMTRACE_MAX_FRAMES"], "SHMTRACE_MAX_FRAMES", "-3", "10");
  expect_problem(by_variable["SHMTRACE_DISABLE"], "SHMTRACE_DISABLE", "perhaps", "0");
  EXPECT_EQ(p.config.max_threads, 16u);  // the one valid variable is taken
  expect_defaults_except(p.config, "max_threads");
}

// ---------------------------------------------------------------------------
// Sensitive names.
// ---------------------------------------------------------------------------
TEST(SensitiveName, DefaultWordsMatchAsCaseInsensitiveSubstrings) {
  const Config c;
  for (const char* name : {"password", "DB_PASSWORD", "PassWord", "api_key", "API_KEY_ID", "userToken",
                           "token", "client_secret", "SecretSauce", "x_token_y"}) {
    EXPECT_TRUE(runtime::is_sensitive_name(name, c.sensitive)) << name;
  }
  for (const char* name : {"pass", "passwd", "api", "key", "apikey", "tok", "secre", "", "user", "id"}) {
    EXPECT_FALSE(runtime::is_sensitive_name(name, c.sensitive)) << name;
  }
}

TEST(SensitiveName, CustomListAndEmptyWords) {
  const std::vector<std::string> words = {"", "PIN"};
  EXPECT_TRUE(runtime::is_sensitive_name("user_pin", words));
  EXPECT_TRUE(runtime::is_sensitive_name("PINCODE", words));
  EXPECT_FALSE(runtime::is_sensitive_name("password", words));
  EXPECT_FALSE(runtime::is_sensitive_name("pi", words));
  EXPECT_FALSE(runtime::is_sensitive_name("anything", {""}));  // an empty word matches nothing
  EXPECT_FALSE(runtime::is_sensitive_name("anything", {}));
}

TEST(SensitiveName, ParsedListIsWhatIsUsed) {
  const Parsed p = parse({{"SHMTRACE_SENSITIVE", "Pin,cvv"}});
  EXPECT_TRUE(runtime::is_sensitive_name("card_CVV", p.config.sensitive));
  EXPECT_TRUE(runtime::is_sensitive_name("pin", p.config.sensitive));
  EXPECT_FALSE(runtime::is_sensitive_name("password", p.config.sensitive));
}

}  // namespace
}  // namespace shmtrace::test
