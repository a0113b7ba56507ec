// The redactor: one combined RE2 over every pattern, behind a one-pass
// prefilter that lets the common value (no secret) through without running
// it. See redactor.hpp for what is replaced and why.
#include "redact/redactor.hpp"

#include <re2/re2.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

namespace shmtrace::drain {

namespace {

// The default sensitive words (normalised: lower case, '_' between parts).
constexpr std::string_view kDefaultWords[] = {
    "password", "passwd",     "pwd",         "secret", "token",   "api_key", "apikey",
    "auth",     "authorization", "credential", "private_key", "cookie", "session", "sessid",
};

// Literals one of which every pattern other than key=value, e-mail and phone
// contains (compared without case; the prefilter's '_' also matches '-', '.'
// or nothing). The key=value pattern's literals are the sensitive words.
constexpr std::string_view kPatternKeywords[] = {
    "akia",    "asia",    "ghp_",    "gho_",    "ghs_",    "ghu_",    "ghr_",   "github_pat_", "xox",   "sk_live",
    "sk_test", "pk_live", "pk_test", "rk_live", "rk_test", "aiza",    "eyj",    "bearer",      "basic", "-----begin",
};

// Longest value the prefilter looks at before the patterns run.
constexpr std::size_t kPrefilterMaxBytes = 512;
// Longest extra name accepted: a longer one is a configuration mistake.
constexpr std::size_t kMaxNameBytes = 128;
// Submatches of the combined pattern, its whole match included.
constexpr int kMaxSubmatches = 40;

constexpr std::array<unsigned char, 256> make_lower() {
  std::array<unsigned char, 256> t{};
  for (int c = 0; c < 256; ++c) {
    t[c] = static_cast<unsigned char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
  }
  return t;
}
constexpr std::array<unsigned char, 256> kLower = make_lower();

// A 15-bit hash of 3 bytes that folds ASCII case (the low 5 bits of 'A' and
// 'a' are equal). Collisions only cost a keyword compare.
constexpr unsigned kTrigrams = 1u << 15;
constexpr unsigned trigram(unsigned char a, unsigned char b, unsigned char c) {
  return ((a & 0x1Fu) << 10) | ((b & 0x1Fu) << 5) | (c & 0x1Fu);
}

// The prefilter's byte classes for e-mail and phone numbers.
enum class ScanClass : std::uint8_t { kOther, kDigit, kSeparator, kAt, kPlus };
constexpr std::array<ScanClass, 256> make_scan_class() {
  std::array<ScanClass, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = ScanClass::kDigit;
  t[' '] = t['.'] = t['-'] = ScanClass::kSeparator;
  t['@'] = ScanClass::kAt;
  t['+'] = ScanClass::kPlus;
  return t;
}
constexpr std::array<ScanClass, 256> kScanClass = make_scan_class();

constexpr bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
constexpr bool is_lower(unsigned char c) { return c >= 'a' && c <= 'z'; }
constexpr bool is_upper(unsigned char c) { return c >= 'A' && c <= 'Z'; }
constexpr bool is_alnum(unsigned char c) { return is_digit(c) || is_lower(c) || is_upper(c); }

// Name -> lower case word parts joined by '_': "X-Api-Key" -> "x_api_key",
// "accessToken" -> "access_token", "APIKey" -> "api_key". `out` holds at
// least 2 * name.size() bytes; returns the length written.
std::size_t normalize_into(std::string_view name, char* out) {
  std::size_t len = 0;
  const auto at = [&](std::size_t i) { return static_cast<unsigned char>(name[i]); };
  for (std::size_t i = 0; i < name.size(); ++i) {
    const unsigned char c = at(i);
    if (!is_alnum(c)) {
      if (len != 0 && out[len - 1] != '_') out[len++] = '_';
      continue;
    }
    if (is_upper(c) && i > 0 && len != 0 && out[len - 1] != '_') {
      const unsigned char prev = at(i - 1);
      const bool next_lower = i + 1 < name.size() && is_lower(at(i + 1));
      if (is_lower(prev) || is_digit(prev) || (is_upper(prev) && next_lower)) out[len++] = '_';
    }
    out[len++] = static_cast<char>(kLower[c]);
  }
  while (len != 0 && out[len - 1] == '_') --len;
  return len;
}

std::string normalize(std::string_view name) {
  std::string out(2 * name.size(), '\0');
  out.resize(normalize_into(name, out.data()));
  return out;
}

// Where `word` (normalised) ends when it occurs in `norm` at `at`, or npos.
// Separators are loose both ways, as in the patterns: the word's '_' also
// matches nothing, and a '_' the name has inside the word is skipped, so
// "apikey" is found in "api_key" and "member_number" in "membernumber".
std::size_t match_word(std::string_view norm, std::size_t at, std::string_view word) {
  std::size_t t = at;
  for (const char wc : word) {
    if (wc == '_') {
      if (t < norm.size() && norm[t] == '_') ++t;
      continue;
    }
    if (t > at && t < norm.size() && norm[t] == '_') ++t;
    if (t >= norm.size() || norm[t] != wc) return std::string_view::npos;
    ++t;
  }
  return t;
}

// A word found at `end` in a normalised name ends a part there, maybe after
// a plural "s" or an "id" ("passwords", "sessionid").
bool ends_part(std::string_view norm, std::size_t end) {
  const auto boundary = [&](std::size_t i) { return i >= norm.size() || !is_lower(static_cast<unsigned char>(norm[i])); };
  if (boundary(end)) return true;
  if (norm[end] == 's' && boundary(end + 1)) return true;
  return norm.substr(end, 2) == "id" && boundary(end + 2);
}

// The Bearer/Basic credential heuristic: random-looking, not an English word.
bool looks_random(std::string_view token) {
  if (token.size() < 8) return false;
  if (token.size() >= 24) return true;
  bool seen_lower = false;
  for (const char ch : token) {
    const auto c = static_cast<unsigned char>(ch);
    if (is_digit(c) || c == '+' || c == '/' || c == '=' || c == '_') return true;
    if (is_upper(c) && seen_lower) return true;
    seen_lower = seen_lower || is_lower(c);
  }
  return false;
}

// A phone-number match is one only when it is not part of a longer token:
// no letter, digit or '_' beside it, nor . - / : with a digit beyond.
bool phone_stands_alone(std::string_view text, std::size_t start, std::size_t end) {
  const auto at = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const auto joiner = [](unsigned char c) { return c == '.' || c == '-' || c == '/' || c == ':'; };
  if (start > 0) {
    const unsigned char prev = at(start - 1);
    if (is_alnum(prev) || prev == '_') return false;
    if (joiner(prev) && start > 1 && is_digit(at(start - 2))) return false;
  }
  if (end < text.size()) {
    const unsigned char next = at(end);
    if (is_alnum(next) || next == '_') return false;
    if (joiner(next) && end + 1 < text.size() && is_digit(at(end + 1))) return false;
  }
  return true;
}

std::size_t count_digits(std::string_view s) {
  return static_cast<std::size_t>(std::count_if(s.begin(), s.end(), [](char c) { return is_digit(static_cast<unsigned char>(c)); }));
}

// Cuts `value` to at most `limit` bytes without splitting a UTF-8 sequence
// (a value that is not UTF-8 there is cut at the limit). True if it cut.
bool cut_utf8(std::string& value, std::size_t limit) {
  if (value.size() <= limit) return false;
  const auto continuation = [&](std::size_t i) { return (static_cast<unsigned char>(value[i]) & 0xC0) == 0x80; };
  // value[limit] is the first byte to go; if it continues a sequence, the
  // sequence's lead byte (at most 3 back) goes too.
  std::size_t cut = limit;
  while (cut > 0 && cut + 3 > limit && continuation(cut)) --cut;
  if (continuation(cut)) cut = limit;
  value.resize(cut);
  return true;
}

enum class Kind : std::uint8_t {
  kWhole,        // replace the rule's one group
  kKeyValue,     // group 1: the key (must be a sensitive name); then value groups, one participates
  kAuthScheme,   // Bearer/Basic: the token group, when it looks random
  kPhone,        // the number, when it stands alone
  kPlusPhone,    // +<country> number: also 8 digits at least
};

struct RuleSpec {
  std::string_view name;
  Kind kind;
  std::string pattern;
};

struct Rule {
  Kind kind;
  int first_group;  // of the combined pattern
  int last_group;
};

// Regex for a normalised word: parts joined by an optional separator.
std::string word_regex(std::string_view word) {
  std::string out;
  std::size_t begin = 0;
  while (begin <= word.size()) {
    std::size_t end = word.find('_', begin);
    if (end == std::string_view::npos) end = word.size();
    if (!out.empty()) out += "[_.-]?";
    out += RE2::QuoteMeta(re2::StringPiece(word.data() + begin, end - begin));
    begin = end + 1;
  }
  return out;
}

std::vector<RuleSpec> rule_specs(const std::vector<std::string>& words) {
  std::string alternation;
  for (const std::string& w : words) {
    if (!alternation.empty()) alternation += '|';
    alternation += word_regex(w);
  }
  const std::string key = "[A-Za-z0-9_.-]*(?i:" + alternation + ")[A-Za-z0-9_.-]*";
  const std::string quoted = R"re("((?:[^"\\]|\\.)*)"|'([^']*)')re";
  std::vector<RuleSpec> specs;
  specs.push_back({"pem-private-key", Kind::kWhole,
                   R"re((-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|$)))re"});
  specs.push_back({"key-value", Kind::kKeyValue,
                   "(" + key + R"re()["']?[ \t]*[:=][ \t]*(?:)re" + quoted +
                       R"re(|((?i:(?:bearer|basic|token|digest)[ \t]+)?[^\s,;&"'\]})]+)))re"});
  specs.push_back({"cli-option", Kind::kKeyValue, "(--" + key + R"re()[ \t]+(?:)re" + quoted + R"re(|([^\s"'-]\S*)))re"});
  specs.push_back({"url-password", Kind::kWhole, R"re([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:([^/\s@]+)@)re"});
  specs.push_back({"auth-scheme", Kind::kAuthScheme, R"re(\b(?i:bearer|basic)[ \t]+([A-Za-z0-9._~+/-]+=*))re"});
  specs.push_back({"jwt", Kind::kWhole, R"re(\b(eyJ[A-Za-z0-9_-]{2,}\.eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*))re"});
  specs.push_back({"aws-access-key", Kind::kWhole, R"re(\b((?:AKIA|ASIA)[0-9A-Z]{16})\b)re"});
  specs.push_back({"github-token", Kind::kWhole, R"re(\b(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}))re"});
  specs.push_back({"slack-token", Kind::kWhole, R"re(\b(xox[abprs]-[A-Za-z0-9-]{10,}))re"});
  specs.push_back({"stripe-key", Kind::kWhole, R"re(\b([spr]k_(?:live|test)_[A-Za-z0-9]{16,}))re"});
  specs.push_back({"google-api-key", Kind::kWhole, R"re(\b(AIza[0-9A-Za-z_-]{35}))re"});
  specs.push_back({"email", Kind::kWhole, R"re(([A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}))re"});
  specs.push_back({"phone-international", Kind::kPlusPhone, R"re((\+[1-9][0-9]{0,3}(?:[ .-]?\(?[0-9]{1,4}\)?){1,6}))re"});
  specs.push_back({"phone-nanp", Kind::kPhone, R"re(((?:\b1[ -])?\(?[2-9][0-9]{2}\)?[ .-]?[0-9]{3}[ .-][0-9]{4}))re"});
  specs.push_back({"phone-trunk", Kind::kPhone, R"re((0[1-9][0-9]{1,3}(?:[ -][0-9]{3,4}[ -][0-9]{4}|[ -][0-9]{6,8})))re"});
  specs.push_back({"phone-pairs", Kind::kPhone, R"re((0[1-9](?:[ .][0-9]{2}){4}))re"});
  return specs;
}

RE2::Options regex_options() {
  RE2::Options options;
  options.set_encoding(RE2::Options::EncodingLatin1);  // bytes: any input is valid, UTF-8 or not
  options.set_log_errors(false);
  options.set_max_mem(64 << 20);
  return options;
}

}  // namespace

struct Redactor::Impl {
  std::vector<std::string> words;     // normalised sensitive words
  std::vector<std::string> keywords;  // prefilter literals, lower case
  std::array<std::vector<std::uint16_t>, 256> keywords_by_first;
  std::array<std::uint64_t, kTrigrams / 64> trigrams{};  // trigram() of every keyword's first 3 bytes
  std::unique_ptr<RE2> regex;
  int groups = 0;
  std::vector<Rule> rules;
  std::vector<std::uint16_t> rule_of_group;  // index by group number

  bool sensitive(std::string_view name) const;
  bool keyword_at(const unsigned char* p, std::size_t n, std::size_t i) const;
  bool may_match(std::string_view value) const;
  std::size_t replace(std::string& value) const;
  Redaction redact(std::string& value, bool prefilter) const;

  void add_keyword(std::string keyword) {
    const auto index = static_cast<std::uint16_t>(keywords.size());
    const auto k0 = static_cast<unsigned char>(keyword[0]);
    keywords_by_first[k0].push_back(index);
    std::vector<std::string> starts;
    text_starts(keyword, "", starts);
    for (const std::string& t : starts) {
      const unsigned bit = trigram(static_cast<unsigned char>(t[0]), static_cast<unsigned char>(t[1]),
                                   static_cast<unsigned char>(t[2]));
      trigrams[bit / 64] |= std::uint64_t{1} << (bit % 64);
    }
    keywords.push_back(std::move(keyword));
  }

  // The first 3 bytes of every text the keyword matches ('_': '_', '-', '.'
  // or nothing).
  static void text_starts(std::string_view keyword, const std::string& so_far, std::vector<std::string>& out) {
    if (so_far.size() == 3 || keyword.empty()) {
      if (so_far.size() == 3) out.push_back(so_far);
      return;
    }
    if (keyword[0] == '_') {
      for (const char sep : {'_', '-', '.'}) text_starts(keyword.substr(1), so_far + sep, out);
      text_starts(keyword.substr(1), so_far, out);
    } else {
      text_starts(keyword.substr(1), so_far + keyword[0], out);
    }
  }
};

bool Redactor::Impl::sensitive(std::string_view name) const {
  std::array<char, 2 * kMaxNameBytes> stack;
  std::string heap;
  char* buffer = stack.data();
  if (name.size() > kMaxNameBytes) {
    heap.resize(2 * name.size());
    buffer = heap.data();
  }
  const std::string_view norm(buffer, normalize_into(name, buffer));
  for (const std::string& word : words) {
    for (std::size_t at = norm.find(word[0]); at != std::string_view::npos; at = norm.find(word[0], at + 1)) {
      const std::size_t end = match_word(norm, at, word);
      if (end != std::string_view::npos && ends_part(norm, end)) return true;
    }
  }
  return false;
}

bool Redactor::Impl::keyword_at(const unsigned char* p, std::size_t n, std::size_t i) const {
  if (i + 2 >= n) return false;
  const unsigned bit = trigram(p[i], p[i + 1], p[i + 2]);
  if ((trigrams[bit / 64] >> (bit % 64) & 1) == 0) return false;
  for (const std::uint16_t k : keywords_by_first[kLower[p[i]]]) {
    std::size_t t = i;
    bool match = true;
    for (const char kc : keywords[k]) {
      if (kc == '_') {
        if (t < n && (p[t] == '_' || p[t] == '-' || p[t] == '.')) ++t;
        continue;
      }
      if (t >= n || kLower[p[t]] != static_cast<unsigned char>(kc)) {
        match = false;
        break;
      }
      ++t;
    }
    if (match) return true;
  }
  return false;
}

// One pass; true when some pattern could match. Each condition is implied by
// some pattern: a keyword (key=value, tokens, Bearer, PEM), '@' (e-mail, URL
// password), '+' and a digit (international phone), three digits, one of
// " .-", four digits (every national phone form but the pairs), five
// two-digit groups (the pairs).
bool Redactor::Impl::may_match(std::string_view value) const {
  const auto* p = reinterpret_cast<const unsigned char*>(value.data());
  const std::size_t n = value.size();
  int group = 0;       // digits in the current run
  int prev_group = 0;  // digits in the run before the last single separator
  int pairs = 0;       // two-digit runs in a row, each followed by a single separator
  for (std::size_t i = 0; i < n; ++i) {
    // Keywords: a table probe, a compare on a hit.
    if (i + 2 < n) {
      const unsigned bit = trigram(p[i], p[i + 1], p[i + 2]);
      if ((trigrams[bit / 64] >> (bit % 64) & 1) != 0 && keyword_at(p, n, i)) return true;
    }
    // '@', '+' and a digit, and the phone-number shapes.
    switch (kScanClass[p[i]]) {
      case ScanClass::kOther:
        group = 0;
        prev_group = 0;
        pairs = 0;
        break;
      case ScanClass::kDigit:
        ++group;
        if ((group == 4 && prev_group >= 3) || (group == 2 && pairs >= 4)) return true;
        break;
      case ScanClass::kSeparator:
        if (group > 0) {
          pairs = group == 2 ? pairs + 1 : 0;
          prev_group = group;
          group = 0;
        } else {
          prev_group = 0;
          pairs = 0;
        }
        break;
      case ScanClass::kAt:
        return true;
      case ScanClass::kPlus:
        if (i + 1 < n && p[i + 1] >= '1' && p[i + 1] <= '9') return true;
        group = 0;
        prev_group = 0;
        pairs = 0;
        break;
    }
  }
  return false;
}

std::size_t Redactor::Impl::replace(std::string& value) const {
  std::array<re2::StringPiece, kMaxSubmatches> sub;
  const re2::StringPiece text(value);
  const std::size_t n = value.size();
  const auto offset = [&](const re2::StringPiece& s) { return static_cast<std::size_t>(s.data() - value.data()); };
  std::string out;
  std::size_t copied = 0;  // value[0, copied) is in `out` already
  std::size_t replaced = 0;
  std::size_t pos = 0;
  while (pos < n && regex->Match(text, pos, n, RE2::UNANCHORED, sub.data(), groups + 1)) {
    const std::size_t start = offset(sub[0]);
    const std::size_t end = start + sub[0].size();
    int g = 1;
    while (g <= groups && sub[g].data() == nullptr) ++g;
    if (g > groups) break;  // cannot happen: every rule's first group always takes part
    const Rule& rule = rules[rule_of_group[g]];
    re2::StringPiece target;
    std::size_t next = end;
    switch (rule.kind) {
      case Kind::kWhole:
        target = sub[g];
        break;
      case Kind::kKeyValue:
        if (sensitive(std::string_view(sub[g].data(), sub[g].size()))) {
          for (int v = g + 1; v <= rule.last_group; ++v) {
            if (sub[v].data() != nullptr) {
              target = sub[v];
              break;
            }
          }
        } else {
          // Not a sensitive key after all: its value is looked at again.
          next = offset(sub[g]) + sub[g].size();
        }
        break;
      case Kind::kAuthScheme:
        if (looks_random(std::string_view(sub[g].data(), sub[g].size()))) {
          target = sub[g];
        } else {
          next = offset(sub[g]);
        }
        break;
      case Kind::kPlusPhone:
      case Kind::kPhone:
        if ((rule.kind == Kind::kPhone || count_digits(std::string_view(sub[g].data(), sub[g].size())) >= 8) &&
            phone_stands_alone(value, start, end)) {
          target = sub[g];
        } else {
          next = start + 1;
        }
        break;
    }
    if (target.data() != nullptr && !target.empty()) {
      const std::size_t t = offset(target);
      out.append(value, copied, t - copied);
      out += kRedacted;
      copied = t + target.size();
      ++replaced;
    }
    pos = std::max(next, pos + 1);
  }
  if (replaced != 0) {
    out.append(value, copied, std::string::npos);
    value.swap(out);
  }
  return replaced;
}

Redaction Redactor::Impl::redact(std::string& value, bool prefilter) const {
  Redaction result;
  const bool precut = cut_utf8(value, kMaxPayloadBytes + kScanSlackBytes);
  // Past kPrefilterMaxBytes the combined RE2's DFA alone is as fast as the
  // scan (measured by bench/redact_bench.cpp), so it runs directly.
  if (!value.empty() && (!prefilter || value.size() > kPrefilterMaxBytes || may_match(value))) {
    result.replaced = replace(value);
  }
  result.truncated = cut_utf8(value, kMaxPayloadBytes) || precut;
  return result;
}

std::expected<Redactor, std::string> Redactor::create(std::vector<std::string> extra_names) {
  auto impl = std::make_shared<Impl>();
  std::vector<std::string> words(std::begin(kDefaultWords), std::end(kDefaultWords));
  for (const std::string& name : extra_names) {
    if (name.size() > kMaxNameBytes) {
      return std::unexpected("redact: sensitive name '" + name.substr(0, 32) + "...' is longer than " +
                             std::to_string(kMaxNameBytes) + " bytes");
    }
    std::string norm = normalize(name);
    if (std::count_if(norm.begin(), norm.end(), [](char c) { return c != '_'; }) < 3) {
      return std::unexpected("redact: sensitive name '" + name +
                             "' needs at least 3 letters or digits (a shorter one would mask almost every value)");
    }
    words.push_back(std::move(norm));
  }
  std::sort(words.begin(), words.end());
  words.erase(std::unique(words.begin(), words.end()), words.end());
  impl->words = words;

  for (const std::string& w : words) impl->add_keyword(w);
  for (const std::string_view k : kPatternKeywords) impl->add_keyword(std::string(k));

  std::string combined;
  const RE2::Options options = regex_options();
  impl->rule_of_group.push_back(0);  // group 0: the whole match
  for (const RuleSpec& spec : rule_specs(words)) {
    const RE2 alone(spec.pattern, options);
    if (!alone.ok()) return std::unexpected("redact: pattern " + std::string(spec.name) + ": " + alone.error());
    const int first = impl->groups + 1;
    impl->groups += alone.NumberOfCapturingGroups();
    if (alone.NumberOfCapturingGroups() < 1) {
      return std::unexpected("redact: pattern " + std::string(spec.name) + " has no capturing group");
    }
    impl->rules.push_back(Rule{spec.kind, first, impl->groups});
    impl->rule_of_group.resize(static_cast<std::size_t>(impl->groups) + 1,
                               static_cast<std::uint16_t>(impl->rules.size() - 1));
    if (!combined.empty()) combined += '|';
    combined += "(?:" + spec.pattern + ")";
  }
  if (impl->groups + 1 > kMaxSubmatches) {
    return std::unexpected("redact: " + std::to_string(impl->groups) + " capturing groups, more than " +
                           std::to_string(kMaxSubmatches - 1));
  }
  impl->regex = std::make_unique<RE2>(combined, options);
  if (!impl->regex->ok()) return std::unexpected("redact: combined pattern: " + impl->regex->error());
  return Redactor(std::move(impl));
}

bool Redactor::sensitive_name(std::string_view name) const { return impl_->sensitive(name); }

Redaction Redactor::redact(std::string& value) const { return impl_->redact(value, true); }

Redaction Redactor::redact_unfiltered(std::string& value) const { return impl_->redact(value, false); }

bool Redactor::may_contain_secret(std::string_view value) const { return impl_->may_match(value); }

Redaction Redactor::redact_named(std::string_view name, std::string& value) const {
  if (impl_->sensitive(name)) {
    value.assign(kRedacted);
    return Redaction{.replaced = 1, .truncated = false};
  }
  return impl_->redact(value, true);
}

namespace {

// Bytes that end the token a cut value ends in: a secret never holds them.
bool token_separator(char c) {
  switch (c) {
    case ' ': case '\t': case '\n': case '\r': case '\f': case '\v':
    case '"': case '\'': case '`': case ',': case ';': case '(': case ')':
    case '<': case '>': case '[': case ']': case '{': case '}': case '|':
      return true;
    default:
      return false;
  }
}

}  // namespace

Redaction Redactor::redact_cut_tail(std::string& value) {
  std::size_t start = value.size();
  while (start > 0 && !token_separator(value[start - 1])) --start;
  if (start == value.size()) return {};
  value.replace(start, std::string::npos, kRedacted);
  return Redaction{.replaced = 1, .truncated = false};
}

Redaction Redactor::redact_cut(std::string& value) const {
  Redaction done = impl_->redact(value, true);
  done.replaced += redact_cut_tail(value).replaced;
  // The marker may have taken the value past the bound again: what comes
  // before it gives way, so the value still ends in the marker.
  if (value.size() > kMaxPayloadBytes) {
    std::size_t cut = kMaxPayloadBytes - kRedacted.size();
    while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xC0) == 0x80) --cut;
    value.replace(cut, std::string::npos, kRedacted);
    done.truncated = true;
  }
  return done;
}

Redaction Redactor::redact_named_cut(std::string_view name, std::string& value) const {
  if (impl_->sensitive(name)) return redact_named(name, value);
  return redact_cut(value);
}

}  // namespace shmtrace::drain
