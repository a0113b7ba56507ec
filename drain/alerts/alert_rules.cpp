#include "alerts/alert_rules.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <utility>

namespace shmtrace::drain::alerts {
namespace {

// One table defines the comparisons, so keys, operators and the enum agree.
struct CompareInfo {
  Rule::Compare compare;
  std::string_view key;
  std::string_view op;
};
constexpr std::array<CompareInfo, 5> kCompares = {{
    {Rule::Compare::kAbove, "above", ">"},
    {Rule::Compare::kAtLeast, "at_least", ">="},
    {Rule::Compare::kBelow, "below", "<"},
    {Rule::Compare::kAtMost, "at_most", "<="},
    {Rule::Compare::kEqual, "equal", "=="},
}};

constexpr std::array<std::string_view, 6> kRuleKeysBesideCompares = {"name",    "sql",    "interval",
                                                                      "timeout", "action", "command"};

constexpr std::string_view kDefaultRuleName = "crash-or-unhandled-error";

const CompareInfo* find_compare(std::string_view key) {
  for (const CompareInfo& c : kCompares) {
    if (c.key == key) return &c;
  }
  return nullptr;
}

bool has_control_character(std::string_view text) {
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return true;
  }
  return false;
}

// Builds "source:line: message" errors for one file.
class Parser {
 public:
  explicit Parser(const std::string& source_name) : source_(source_name) {}

  // One line whatever the file holds: toml++ quotes the source in some
  // descriptions, and keys or values named in a message come from the file.
  // (Found by tests/fuzz/alert_rules_fuzz.)
  std::string at(const toml::source_region& where, std::string_view message) const {
    std::string line = source_ + ":" + std::to_string(where.begin.line) + ": ";
    constexpr std::size_t kMost = 400;
    for (char c : message) {
      if (line.size() >= kMost) {
        line += "...";
        break;
      }
      const auto u = static_cast<unsigned char>(c);
      line += u < 0x20 || u == 0x7f ? ' ' : c;
    }
    return line;
  }

  std::expected<std::vector<Rule>, std::string> parse(const toml::table& root) {
    bool with_defaults = true;
    for (auto&& [key, node] : root) {
      if (key == "default_rules") {
        const auto* flag = node.as_boolean();
        if (flag == nullptr) return std::unexpected(at(node.source(), "default_rules must be true or false"));
        with_defaults = flag->get();
      } else if (key != "rule") {
        return std::unexpected(
            at(key.source(), "unknown key \"" + std::string(key.str()) + "\" (expected default_rules or [[rule]])"));
      }
    }
    std::vector<Rule> rules;
    if (with_defaults) rules = default_rules();
    if (const toml::node* node = root.get("rule")) {
      const toml::array* list = node->as_array();
      if (list == nullptr || !list->is_array_of_tables()) {
        return std::unexpected(at(node->source(), "rule must be a table array: write each rule under [[rule]]"));
      }
      for (const toml::node& element : *list) {
        auto rule = parse_rule(*element.as_table());
        if (!rule) return std::unexpected(std::move(rule.error()));
        if (with_defaults && rule->name == kDefaultRuleName) {
          return std::unexpected(source_ + ":" + line_of_name_ + ": rule name \"" + rule->name +
                                 "\" is the built-in rule's; set default_rules = false to replace it");
        }
        if (auto [it, inserted] = first_line_of_name_.emplace(rule->name, line_of_name_); !inserted) {
          return std::unexpected(source_ + ":" + line_of_name_ + ": duplicate rule name \"" + rule->name +
                                 "\" (first at line " + it->second + ")");
        }
        rules.push_back(std::move(*rule));
      }
    }
    return rules;
  }

 private:
  std::expected<Rule, std::string> parse_rule(const toml::table& table) {
    for (auto&& [key, node] : table) {
      const bool known = find_compare(key.str()) != nullptr ||
                         std::ranges::find(kRuleKeysBesideCompares, key.str()) != kRuleKeysBesideCompares.end();
      if (!known) {
        return std::unexpected(at(key.source(), "unknown key \"" + std::string(key.str()) +
                                                    "\" in [[rule]] (expected name, sql, above, at_least, below, "
                                                    "at_most, equal, interval, timeout, action, command)"));
      }
    }
    Rule rule;
    rule.origin = source_ + ":" + std::to_string(table.source().begin.line);

    const toml::node* name = table.get("name");
    if (name == nullptr) return std::unexpected(at(table.source(), "[[rule]] has no name"));
    if (!name->is_string()) return std::unexpected(at(name->source(), "name must be a string"));
    rule.name = name->as_string()->get();
    if (rule.name.empty()) return std::unexpected(at(name->source(), "name is empty"));
    if (has_control_character(rule.name)) {
      return std::unexpected(at(name->source(), "name must not contain control characters"));
    }
    line_of_name_ = std::to_string(name->source().begin.line);
    const std::string quoted = "rule \"" + rule.name + "\"";

    const toml::node* sql = table.get("sql");
    if (sql == nullptr) return std::unexpected(at(table.source(), quoted + " has no sql"));
    if (!sql->is_string()) return std::unexpected(at(sql->source(), quoted + ": sql must be a string"));
    rule.sql = sql->as_string()->get();
    if (rule.sql.find_first_not_of(" \t\r\n") == std::string::npos) {
      return std::unexpected(at(sql->source(), quoted + ": sql is empty"));
    }

    const CompareInfo* compare = nullptr;
    const toml::node* threshold = nullptr;
    for (const CompareInfo& c : kCompares) {
      const toml::node* node = table.get(c.key);
      if (node == nullptr) continue;
      if (compare != nullptr) {
        // Report at the later of the two lines: the one to delete, usually.
        const bool later = node->source().begin.line >= threshold->source().begin.line;
        const toml::node* second = later ? node : threshold;
        const CompareInfo* first_info = later ? compare : &c;
        const CompareInfo* second_info = later ? &c : compare;
        const toml::node* first = later ? threshold : node;
        return std::unexpected(at(
            second->source(), quoted + ": two comparisons (" + std::string(first_info->key) + " at line " +
                                  std::to_string(first->source().begin.line) + ", " + std::string(second_info->key) +
                                  " at line " + std::to_string(second->source().begin.line) + "); write exactly one"));
      }
      compare = &c;
      threshold = node;
    }
    if (compare == nullptr) {
      return std::unexpected(
          at(table.source(), quoted + " has no comparison: write one of above, at_least, below, at_most, equal"));
    }
    const std::optional<double> value = threshold->value<double>();
    if (!threshold->is_number() || !value || !std::isfinite(*value)) {
      return std::unexpected(
          at(threshold->source(), quoted + ": " + std::string(compare->key) + " must be a finite number"));
    }
    rule.compare = compare->compare;
    rule.threshold = *value;

    if (const toml::node* interval = table.get("interval")) {
      if (!interval->is_string()) {
        return std::unexpected(at(interval->source(), quoted + ": interval must be a string such as \"10s\""));
      }
      auto parsed = parse_interval(interval->as_string()->get());
      if (!parsed) return std::unexpected(at(interval->source(), quoted + ": " + parsed.error()));
      rule.interval = *parsed;
    }

    if (const toml::node* timeout = table.get("timeout")) {
      if (!timeout->is_string()) {
        return std::unexpected(at(timeout->source(), quoted + ": timeout must be a string such as \"2s\""));
      }
      auto parsed = parse_timeout(timeout->as_string()->get());
      if (!parsed) return std::unexpected(at(timeout->source(), quoted + ": " + parsed.error()));
      rule.timeout = *parsed;
    }

    const toml::node* action = table.get("action");
    if (action != nullptr) {
      const auto* text = action->as_string();
      if (text == nullptr) {
        return std::unexpected(at(action->source(), quoted + ": action must be \"log\" or \"exec\""));
      }
      if (text->get() != "log" && text->get() != "exec") {
        return std::unexpected(
            at(action->source(), quoted + ": action must be \"log\" or \"exec\", not \"" + text->get() + "\""));
      }
      rule.action = text->get() == "exec" ? Rule::Action::kExec : Rule::Action::kLog;
    }

    const toml::node* command = table.get("command");
    if (rule.action == Rule::Action::kLog) {
      if (command != nullptr) {
        return std::unexpected(at(command->source(), quoted + ": command is only for action = \"exec\""));
      }
      return rule;
    }
    if (command == nullptr) {
      return std::unexpected(at(action->source(), quoted + ": action \"exec\" needs a command"));
    }
    const toml::array* argv = command->as_array();
    if (argv == nullptr || (!argv->empty() && !argv->is_homogeneous(toml::node_type::string))) {
      return std::unexpected(at(command->source(), quoted + ": command must be an array of strings"));
    }
    for (const toml::node& arg : *argv) rule.command.push_back(arg.as_string()->get());
    if (rule.command.empty() || rule.command.front().empty()) {
      return std::unexpected(at(command->source(), quoted + ": command needs a program as its first element"));
    }
    return rule;
  }

  const std::string& source_;
  std::string line_of_name_;  // of the rule parse_rule last read
  std::map<std::string, std::string, std::less<>> first_line_of_name_;
};

}  // namespace

std::string_view compare_key(Rule::Compare compare) noexcept {
  for (const CompareInfo& c : kCompares) {
    if (c.compare == compare) return c.key;
  }
  return "?";
}

std::string_view compare_operator(Rule::Compare compare) noexcept {
  for (const CompareInfo& c : kCompares) {
    if (c.compare == compare) return c.op;
  }
  return "?";
}

std::string_view action_name(Rule::Action action) noexcept { return action == Rule::Action::kExec ? "exec" : "log"; }

bool passes(Rule::Compare compare, double value, double threshold) noexcept {
  switch (compare) {
    case Rule::Compare::kAbove:
      return value > threshold;
    case Rule::Compare::kAtLeast:
      return value >= threshold;
    case Rule::Compare::kBelow:
      return value < threshold;
    case Rule::Compare::kAtMost:
      return value <= threshold;
    case Rule::Compare::kEqual:
      return value == threshold;
  }
  return false;
}

namespace {

// "500ms", "10s", ... for `what` ("interval", "timeout"), at least `minimum`.
std::expected<std::chrono::milliseconds, std::string> parse_duration(std::string_view text, std::string_view what,
                                                                     std::chrono::milliseconds minimum,
                                                                     std::string_view minimum_text) {
  const std::string quoted = "\"" + std::string(text) + "\"";
  const std::string name(what);
  const auto bad = [&] {
    return std::unexpected("bad " + name + " " + quoted +
                           ": write a whole number followed by ms, s, m or h (\"10s\")");
  };
  if (text.empty() || text.front() < '0' || text.front() > '9') return bad();  // from_chars takes a '-'
  std::int64_t count = 0;
  const char* const end = text.data() + text.size();
  const auto [unit, ec] = std::from_chars(text.data(), end, count);
  if (ec == std::errc::result_out_of_range) return std::unexpected(name + " " + quoted + " is too large");
  if (ec != std::errc{} || unit == text.data()) return bad();
  const std::string_view suffix(unit, static_cast<std::size_t>(end - unit));
  std::int64_t factor = 0;
  if (suffix == "ms") {
    factor = 1;
  } else if (suffix == "s") {
    factor = 1'000;
  } else if (suffix == "m") {
    factor = 60'000;
  } else if (suffix == "h") {
    factor = 3'600'000;
  } else {
    return bad();
  }
  // The evaluator works in nanoseconds: the duration must fit there.
  constexpr std::int64_t kMaxMilliseconds = std::numeric_limits<std::int64_t>::max() / 1'000'000;
  if (count > kMaxMilliseconds / factor) return std::unexpected(name + " " + quoted + " is too large");
  const std::chrono::milliseconds duration{count * factor};
  if (duration < minimum) {
    return std::unexpected(name + " " + quoted + " is below the " + std::string(minimum_text) + " minimum");
  }
  return duration;
}

}  // namespace

std::expected<std::chrono::milliseconds, std::string> parse_interval(std::string_view text) {
  return parse_duration(text, "interval", kMinimumInterval, "100ms");
}

std::expected<std::chrono::milliseconds, std::string> parse_timeout(std::string_view text) {
  return parse_duration(text, "timeout", kMinimumTimeout, "10ms");
}

std::vector<Rule> default_rules() {
  Rule crash;
  crash.name = std::string(kDefaultRuleName);
  // A crash usually leaves both a 'crash' error and a 'crashed' process, so
  // the value counts events rather than distinct crashes. Bounded by :now so
  // that a row stamped after this evaluation is counted by the next one.
  crash.sql =
      "SELECT (SELECT count(*) FROM errors WHERE kind IN ('crash', 'exception')"
      " AND ts_ns > :since AND ts_ns <= :now)"
      " + (SELECT count(*) FROM processes WHERE state = 'crashed'"
      " AND end_ns > :since AND end_ns <= :now)";
  crash.compare = Rule::Compare::kAtLeast;
  crash.threshold = 1;
  crash.interval = std::chrono::milliseconds{10'000};
  crash.action = Rule::Action::kLog;
  crash.origin = "built-in";
  return {std::move(crash)};
}

std::expected<std::vector<Rule>, std::string> parse_rules(std::string_view text, const std::string& source_name) {
  Parser parser(source_name);
  try {
    const toml::table root = toml::parse(text, source_name);
    return parser.parse(root);
  } catch (const toml::parse_error& e) {
    return std::unexpected(parser.at(e.source(), e.description()));
  }
}

std::expected<std::vector<Rule>, std::string> load_rules(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::unexpected(path + ": cannot read: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return std::unexpected(path + ": cannot read: " + std::strerror(errno));
  return parse_rules(text.str(), path);
}

}  // namespace shmtrace::drain::alerts
