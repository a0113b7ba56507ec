// Alert rule files (drain/alerts/alert_rules.hpp): what a good file yields,
// the exact one-line error for each mistake, intervals and comparisons.
#include "alerts/alert_rules.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>

namespace {

using shmtrace::drain::alerts::default_rules;
using shmtrace::drain::alerts::load_rules;
using shmtrace::drain::alerts::parse_interval;
using shmtrace::drain::alerts::parse_rules;
using shmtrace::drain::alerts::passes;
using shmtrace::drain::alerts::Rule;
using namespace std::chrono_literals;

// The error parsing `text` as "alerts.toml" gives, or "(accepted)".
std::string error_of(const std::string& text) {
  auto rules = parse_rules(text, "alerts.toml");
  return rules ? "(accepted)" : rules.error();
}

constexpr const char* kExample = R"toml(default_rules = true
[[rule]]
name = "many-errors"
sql = "SELECT count(*) FROM errors WHERE ts_ns > :since"
above = 100            # a comment
interval = "10s"
action = "log"

[[rule]]
name = "page"
sql = "SELECT 1"
at_most = 2.5
action = "exec"
command = ["/usr/local/bin/page", "--team", "infra"]
)toml";

TEST(AlertRulesTest, ParsesTheDocumentedExampleAfterTheDefaultRule) {
  auto rules = parse_rules(kExample, "alerts.toml");
  ASSERT_TRUE(rules) << rules.error();
  ASSERT_EQ(rules->size(), 3u);
  EXPECT_EQ((*rules)[0].name, "crash-or-unhandled-error");
  EXPECT_EQ((*rules)[0].origin, "built-in");

  const Rule& many = (*rules)[1];
  EXPECT_EQ(many.name, "many-errors");
  EXPECT_EQ(many.sql, "SELECT count(*) FROM errors WHERE ts_ns > :since");
  EXPECT_EQ(many.compare, Rule::Compare::kAbove);
  EXPECT_EQ(many.threshold, 100.0);
  EXPECT_EQ(many.interval, 10s);
  EXPECT_EQ(many.action, Rule::Action::kLog);
  EXPECT_TRUE(many.command.empty());
  EXPECT_EQ(many.origin, "alerts.toml:2");

  const Rule& page = (*rules)[2];
  EXPECT_EQ(page.name, "page");
  EXPECT_EQ(page.compare, Rule::Compare::kAtMost);
  EXPECT_EQ(page.threshold, 2.5);
  EXPECT_EQ(page.interval, 60s);  // the default
  EXPECT_EQ(page.action, Rule::Action::kExec);
  EXPECT_EQ(page.command, (std::vector<std::string>{"/usr/local/bin/page", "--team", "infra"}));
  EXPECT_EQ(page.origin, "alerts.toml:9");
}

TEST(AlertRulesTest, DefaultRulesCanBeTurnedOffAndActionDefaultsToLog) {
  auto rules = parse_rules("default_rules = false\n[[rule]]\nname = \"a\"\nsql = \"SELECT 1\"\nequal = 1\n", "f");
  ASSERT_TRUE(rules) << rules.error();
  ASSERT_EQ(rules->size(), 1u);
  EXPECT_EQ((*rules)[0].name, "a");
  EXPECT_EQ((*rules)[0].compare, Rule::Compare::kEqual);
  EXPECT_EQ((*rules)[0].action, Rule::Action::kLog);

  auto none = parse_rules("default_rules = false\n", "f");
  ASSERT_TRUE(none) << none.error();
  EXPECT_TRUE(none->empty());

  auto empty = parse_rules("", "f");
  ASSERT_TRUE(empty) << empty.error();
  ASSERT_EQ(empty->size(), 1u);
  EXPECT_EQ((*empty)[0].name, "crash-or-unhandled-error");
}

TEST(AlertRulesTest, EachComparisonKeyMapsToItsComparison) {
  const std::pair<const char*, Rule::Compare> cases[] = {
      {"above", Rule::Compare::kAbove},    {"at_least", Rule::Compare::kAtLeast}, {"below", Rule::Compare::kBelow},
      {"at_most", Rule::Compare::kAtMost}, {"equal", Rule::Compare::kEqual},
  };
  for (const auto& [key, compare] : cases) {
    auto rules = parse_rules(
        std::string("default_rules = false\n[[rule]]\nname = \"r\"\nsql = \"SELECT 1\"\n") + key + " = -3\n", "f");
    ASSERT_TRUE(rules) << key << ": " << rules.error();
    EXPECT_EQ((*rules)[0].compare, compare) << key;
    EXPECT_EQ((*rules)[0].threshold, -3.0) << key;
  }
}

TEST(AlertRulesTest, ComparisonsAtTheBoundary) {
  EXPECT_FALSE(passes(Rule::Compare::kAbove, 100, 100));
  EXPECT_TRUE(passes(Rule::Compare::kAbove, 100.5, 100));
  EXPECT_TRUE(passes(Rule::Compare::kAtLeast, 100, 100));
  EXPECT_FALSE(passes(Rule::Compare::kAtLeast, 99.5, 100));
  EXPECT_FALSE(passes(Rule::Compare::kBelow, 100, 100));
  EXPECT_TRUE(passes(Rule::Compare::kBelow, 99.5, 100));
  EXPECT_TRUE(passes(Rule::Compare::kAtMost, 100, 100));
  EXPECT_FALSE(passes(Rule::Compare::kAtMost, 100.5, 100));
  EXPECT_TRUE(passes(Rule::Compare::kEqual, 100, 100));
  EXPECT_FALSE(passes(Rule::Compare::kEqual, 100.5, 100));
  EXPECT_FALSE(passes(Rule::Compare::kEqual, 99.5, 100));
}

TEST(AlertRulesTest, IntervalsInEachUnit) {
  EXPECT_EQ(parse_interval("500ms").value(), 500ms);
  EXPECT_EQ(parse_interval("100ms").value(), 100ms);
  EXPECT_EQ(parse_interval("10s").value(), 10s);
  EXPECT_EQ(parse_interval("5m").value(), 5min);
  EXPECT_EQ(parse_interval("1h").value(), 1h);
  EXPECT_EQ(parse_interval("1s").value(), 1000ms);
}

TEST(AlertRulesTest, BadIntervalsSayWhy) {
  const std::string expected_format = ": write a whole number followed by ms, s, m or h (\"10s\")";
  for (const char* text : {"", "10", "s", "10x", "1.5s", "-5s", "+5s", " 5s", "5 s", "5S", "10sec", "5d"}) {
    auto parsed = parse_interval(text);
    ASSERT_FALSE(parsed) << text;
    EXPECT_EQ(parsed.error(), "bad interval \"" + std::string(text) + "\"" + expected_format);
  }
  EXPECT_EQ(parse_interval("99ms").error(), "interval \"99ms\" is below the 100ms minimum");
  EXPECT_EQ(parse_interval("0s").error(), "interval \"0s\" is below the 100ms minimum");
  EXPECT_EQ(parse_interval("99999999999999999999s").error(), "interval \"99999999999999999999s\" is too large");
  EXPECT_EQ(parse_interval("9999999999h").error(), "interval \"9999999999h\" is too large");
}

TEST(AlertRulesTest, TheDefaultRuleLogsCrashesAndUnhandledErrors) {
  const auto rules = default_rules();
  ASSERT_EQ(rules.size(), 1u);
  EXPECT_EQ(rules[0].name, "crash-or-unhandled-error");
  EXPECT_EQ(rules[0].compare, Rule::Compare::kAtLeast);
  EXPECT_EQ(rules[0].threshold, 1.0);
  EXPECT_EQ(rules[0].action, Rule::Action::kLog);
  EXPECT_EQ(rules[0].interval, 10s);
}

// Every mistake, each with its exact line.
TEST(AlertRulesTest, TomlSyntaxErrorNamesFileAndLine) {
  EXPECT_EQ(error_of("default_rules = true\n[[rule]\n"),
            "alerts.toml:2: Error while parsing table header: expected ']', saw '\\n'");
  EXPECT_EQ(error_of("[[rule]]\nname = \"a\"\nname = \"b\"\n"),
            "alerts.toml:3: Error while parsing key-value pair: cannot redefine existing string 'name'");
}

TEST(AlertRulesTest, UnknownTopLevelKey) {
  EXPECT_EQ(error_of("default_rules = true\ndefault_rule = false\n"),
            "alerts.toml:2: unknown key \"default_rule\" (expected default_rules or [[rule]])");
}

TEST(AlertRulesTest, DefaultRulesMustBeBoolean) {
  EXPECT_EQ(error_of("\ndefault_rules = \"no\"\n"), "alerts.toml:2: default_rules must be true or false");
}

TEST(AlertRulesTest, RuleMustBeATableArray) {
  EXPECT_EQ(error_of("[rule]\nname = \"a\"\n"),
            "alerts.toml:1: rule must be a table array: write each rule under [[rule]]");
}

TEST(AlertRulesTest, UnknownKeyInRule) {
  EXPECT_EQ(error_of("[[rule]]\nname = \"a\"\nsql = \"SELECT 1\"\nabove = 1\nthreshold = 3\n"),
            "alerts.toml:5: unknown key \"threshold\" in [[rule]] (expected name, sql, above, at_least, below, "
            "at_most, equal, interval, timeout, action, command)");
}

TEST(AlertRulesTest, MissingName) {
  EXPECT_EQ(error_of("\n\n[[rule]]\nsql = \"SELECT 1\"\nabove = 1\n"), "alerts.toml:3: [[rule]] has no name");
}

TEST(AlertRulesTest, EmptyName) {
  EXPECT_EQ(error_of("[[rule]]\nname = \"\"\nsql = \"SELECT 1\"\nabove = 1\n"), "alerts.toml:2: name is empty");
}

TEST(AlertRulesTest, NameNotAString) {
  EXPECT_EQ(error_of("[[rule]]\nname = 3\nsql = \"SELECT 1\"\nabove = 1\n"), "alerts.toml:2: name must be a string");
}

TEST(AlertRulesTest, NameWithANewline) {
  EXPECT_EQ(error_of("[[rule]]\nname = \"a\\nb\"\nsql = \"SELECT 1\"\nabove = 1\n"),
            "alerts.toml:2: name must not contain control characters");
}

TEST(AlertRulesTest, DuplicateNames) {
  EXPECT_EQ(error_of("[[rule]]\nname = \"a\"\nsql = \"SELECT 1\"\nabove = 1\n"
                     "[[rule]]\nname = \"b\"\nsql = \"SELECT 1\"\nabove = 1\n"
                     "[[rule]]\nname = \"a\"\nsql = \"SELECT 2\"\nabove = 1\n"),
            "alerts.toml:10: duplicate rule name \"a\" (first at line 2)");
}

TEST(AlertRulesTest, NameOfTheBuiltInRule) {
  const std::string rule = "[[rule]]\nname = \"crash-or-unhandled-error\"\nsql = \"SELECT 1\"\nabove = 1\n";
  EXPECT_EQ(error_of(rule),
            "alerts.toml:2: rule name \"crash-or-unhandled-error\" is the built-in rule's; "
            "set default_rules = false to replace it");
  EXPECT_EQ(error_of("default_rules = false\n" + rule), "(accepted)");
}

TEST(AlertRulesTest, MissingSql) {
  EXPECT_EQ(error_of("[[rule]]\nname = \"a\"\nabove = 1\n"), "alerts.toml:1: rule \"a\" has no sql");
}

TEST(AlertRulesTest, EmptySql) {
  EXPECT_EQ(error_of("[[rule]]\nname = \"a\"\nsql = \"  \"\nabove = 1\n"), "alerts.toml:3: rule \"a\": sql is empty");
}

TEST(AlertRulesTest, SqlNotAString) {
  EXPECT_EQ(error_of("[[rule]]\nname = \"a\"\nsql = [\"SELECT 1\"]\nabove = 1\n"),
            "alerts.toml:3: rule \"a\": sql must be a string");
}

TEST(AlertRulesTest, NoComparison) {
  EXPECT_EQ(error_of("[[rule]]\nname = \"a\"\nsql = \"SELECT 1\"\n"),
            "alerts.toml:1: rule \"a\" has no comparison: write one of above, at_least, below, at_most, equal");
}

TEST(AlertRulesTest, TwoComparisons) {
  EXPECT_EQ(error_of("[[rule]]\nname = \"a\"\nsql = \"SELECT 1\"\nbelow = 1\nabove = 2\n"),
            "alerts.toml:5: rule \"a\": two comparisons (below at line 4, above at line 5); write exactly one");
}

TEST(AlertRulesTest, ThresholdNotANumber) {
  EXPECT_EQ(error_of("[[rule]]\nname = \"a\"\nsql = \"SELECT 1\"\nat_least = \"5\"\n"),
            "alerts.toml:4: rule \"a\": at_least must be a finite number");
  EXPECT_EQ(error_of("[[rule]]\nname = \"a\"\nsql = \"SELECT 1\"\nbelow = nan\n"),
            "alerts.toml:4: rule \"a\": below must be a finite number");
}

TEST(AlertRulesTest, BadInterval) {
  EXPECT_EQ(
      error_of("[[rule]]\nname = \"a\"\nsql = \"SELECT 1\"\nabove = 1\ninterval = \"10x\"\n"),
      "alerts.toml:5: rule \"a\": bad interval \"10x\": write a whole number followed by ms, s, m or h (\"10s\")");
  EXPECT_EQ(error_of("[[rule]]\nname = \"a\"\nsql = \"SELECT 1\"\nabove = 1\ninterval = \"50ms\"\n"),
            "alerts.toml:5: rule \"a\": interval \"50ms\" is below the 100ms minimum");
  EXPECT_EQ(error_of("[[rule]]\nname = \"a\"\nsql = \"SELECT 1\"\nabove = 1\ninterval = 10\n"),
            "alerts.toml:5: rule \"a\": interval must be a string such as \"10s\"");
}

TEST(AlertRulesTest, TimeoutLimitsTheQueryAndDefaultsToFiveSeconds) {
  auto rules = parse_rules("default_rules = false\n[[rule]]\nname = \"a\"\nsql = \"SELECT 1\"\nabove = 1\n"
                           "timeout = \"200ms\"\n[[rule]]\nname = \"b\"\nsql = \"SELECT 1\"\nabove = 1\n",
                           "alerts.toml");
  ASSERT_TRUE(rules) << rules.error();
  ASSERT_EQ(rules->size(), 2u);
  EXPECT_EQ((*rules)[0].timeout, 200ms);
  EXPECT_EQ((*rules)[1].timeout, 5s);
  EXPECT_EQ(default_rules().front().timeout, 5s);
  EXPECT_EQ(shmtrace::drain::alerts::parse_timeout("10ms").value(), 10ms);
  EXPECT_EQ(shmtrace::drain::alerts::parse_timeout("2m").value(), 2min);
}

TEST(AlertRulesTest, BadTimeout) {
  EXPECT_EQ(error_of("[[rule]]\nname = \"a\"\nsql = \"SELECT 1\"\nabove = 1\ntimeout = \"5ms\"\n"),
            "alerts.toml:5: rule \"a\": timeout \"5ms\" is below the 10ms minimum");
  EXPECT_EQ(
      error_of("[[rule]]\nname = \"a\"\nsql = \"SELECT 1\"\nabove = 1\ntimeout = \"2x\"\n"),
      "alerts.toml:5: rule \"a\": bad timeout \"2x\": write a whole number followed by ms, s, m or h (\"10s\")");
  EXPECT_EQ(error_of("[[rule]]\nname = \"a\"\nsql = \"SELECT 1\"\nabove = 1\ntimeout = 2\n"),
            "alerts.toml:5: rule \"a\": timeout must be a string such as \"2s\"");
}

TEST(AlertRulesTest, BadAction) {
  EXPECT_EQ(error_of("[[rule]]\nname = \"a\"\nsql = \"SELECT 1\"\nabove = 1\naction = \"mail\"\n"),
            "alerts.toml:5: rule \"a\": action must be \"log\" or \"exec\", not \"mail\"");
  EXPECT_EQ(error_of("[[rule]]\nname = \"a\"\nsql = \"SELECT 1\"\nabove = 1\naction = true\n"),
            "alerts.toml:5: rule \"a\": action must be \"log\" or \"exec\"");
}

TEST(AlertRulesTest, ExecWithoutCommand) {
  EXPECT_EQ(error_of("[[rule]]\nname = \"a\"\nsql = \"SELECT 1\"\nabove = 1\naction = \"exec\"\n"),
            "alerts.toml:5: rule \"a\": action \"exec\" needs a command");
}

TEST(AlertRulesTest, LogWithCommand) {
  EXPECT_EQ(error_of("[[rule]]\nname = \"a\"\nsql = \"SELECT 1\"\nabove = 1\ncommand = [\"/bin/true\"]\n"),
            "alerts.toml:5: rule \"a\": command is only for action = \"exec\"");
}

TEST(AlertRulesTest, BadCommand) {
  const std::string head = "[[rule]]\nname = \"a\"\nsql = \"SELECT 1\"\nabove = 1\naction = \"exec\"\n";
  EXPECT_EQ(error_of(head + "command = \"/bin/true\"\n"),
            "alerts.toml:6: rule \"a\": command must be an array of strings");
  EXPECT_EQ(error_of(head + "command = [\"/bin/echo\", 3]\n"),
            "alerts.toml:6: rule \"a\": command must be an array of strings");
  EXPECT_EQ(error_of(head + "command = []\n"),
            "alerts.toml:6: rule \"a\": command needs a program as its first element");
  EXPECT_EQ(error_of(head + "command = [\"\", \"x\"]\n"),
            "alerts.toml:6: rule \"a\": command needs a program as its first element");
}

TEST(AlertRulesTest, OneBadRuleRefusesTheWholeFile) {
  auto rules = parse_rules(std::string(kExample) + "\n[[rule]]\nname = \"late\"\nsql = \"SELECT 1\"\n", "alerts.toml");
  ASSERT_FALSE(rules);
  EXPECT_EQ(rules.error(),
            "alerts.toml:16: rule \"late\" has no comparison: write one of above, at_least, below, at_most, equal");
}

TEST(AlertRulesTest, LoadsAFileAndNamesItInErrors) {
  char dir_template[] = "/tmp/alert_rules_test.XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string path = std::string(dir_template) + "/rules.toml";
  { std::ofstream(path) << kExample; }
  auto rules = load_rules(path);
  ASSERT_TRUE(rules) << rules.error();
  ASSERT_EQ(rules->size(), 3u);
  EXPECT_EQ((*rules)[2].origin, path + ":9");

  { std::ofstream(path) << "[[rule]]\nname = \"a\"\nsql = \"SELECT 1\"\nabove = 1\nbelow = 2\n"; }
  auto bad = load_rules(path);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(),
            path + ":5: rule \"a\": two comparisons (above at line 4, below at line 5); write exactly one");

  std::remove(path.c_str());
  auto missing = load_rules(path);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), path + ": cannot read: No such file or directory");
  rmdir(dir_template);
}

// The error is one line whatever the file holds: toml++ quotes the source
// in some descriptions (found by tests/fuzz/alert_rules_fuzz).
TEST(AlertRules, AnErrorIsOneLineWhateverTheFileHolds) {
  for (const char* text : {"default_rules = fal\n[se[rule]]\nsqne = \"slow\"\n",
                           "[[rule]]\nname = \"a\\u0007\\nb\"\nsql = \"SELECT 1\"\nabove = 1\n",
                           "[[rule]]\n\"odd\\nkey\" = 1\n"}) {
    auto rules = parse_rules(text, "rules.toml");
    ASSERT_FALSE(rules) << text;
    EXPECT_EQ(rules.error().find('\n'), std::string::npos) << rules.error();
    EXPECT_EQ(rules.error().rfind("rules.toml:", 0), 0u) << rules.error();
    for (char c : rules.error()) EXPECT_GE(static_cast<unsigned char>(c), 0x20) << rules.error();
  }
}

}  // namespace
