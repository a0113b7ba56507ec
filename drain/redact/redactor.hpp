// The drain's redactor (SPEC §6, "Safety of data"): every text value passes
// through it before the store writes it to SQLite.
//
// What it does to a value:
//   - a value whose *name* is sensitive (password, api_key, accessToken, ...)
//     is stored as kRedacted, whole (redact_named);
//   - anywhere in any value, these are replaced by kRedacted:
//       key=value, key: value, "key": "value", --key value whose key is a
//         sensitive name (only the value goes: "password=hunter2 user=bob"
//         -> "password=[REDACTED] user=bob"); an "Authorization: Bearer x"
//         value loses its scheme too;
//       the password of a URL (scheme://user:PASSWORD@host);
//       "Bearer <token>" / "Basic <base64>" (the token only, when it looks
//         random: a digit, one of + / = _, or a lower-case letter followed
//         by a capital, or 24+ characters; "the bearer of bad news" stays);
//       PEM private key blocks (to the end of the value when the END line
//         is missing: a cut block must not leak its body);
//       AWS access key ids, GitHub, Slack, Stripe and Google API keys, JWTs;
//       e-mail addresses;
//       phone numbers: +<country> forms with 8+ digits, (555) 123-4567,
//         555-123-4567, 555.123.4567, 020 7946 0958, 07700 900123,
//         01 23 45 67 89. Never plain integers, long ids without
//         separators, dates, times, version strings or IPv4 addresses: a
//         number glued to a letter, digit, or to . - / : _ followed by a
//         digit is not a phone number.
//   - the result is bounded to kMaxPayloadBytes, cut at a UTF-8 boundary.
//
// Sensitive names. A name is sensitive when one of the words below occurs in
// it and ends a word part of it, optionally followed by "s" or "id". Word
// parts are split at non-alphanumerics and at camelCase humps, and compared
// without case: "db_password", "X-Api-Key", "accessToken", "sessionid",
// "PHPSESSID", "client_secret", "password_hash" and "oauth" are sensitive;
// "author", "tokenizer", "secretary" are not. Default words: password,
// passwd, pwd, secret, token, api_key, apikey, auth, authorization,
// credential, private_key, cookie, session, sessid ("sessid" added to the
// list for PHPSESSID-style cookies). An '_' in a word also matches '-', '.'
// or nothing, so "api_key" covers "api-key", "apiKey" and "APIKEY": give
// extra names with their parts separated ("member_number", "memberNumber").
//
// Speed. Most values hold no secret, so redact() first runs a one-pass scan
// (no allocation) that says whether any pattern *could* match: a keyword of
// some pattern (by a table of 3-byte hashes, then a compare), an '@', a '+' before a
// digit, or a phone-number-shaped digit group. Only then does the combined
// RE2 run. Values over 512 bytes go straight to the RE2, whose DFA scans
// about as fast per byte (see bench/redact_bench.cpp; a SIMD scan would be
// the next step). The scan never rejects a value a pattern would match:
// redact_unfiltered() is the same without it, and the tests compare the two.
// sensitive_name() costs a normalisation and a search per word: the store
// should remember its answer per interned name.
//
// Thread safety: a Redactor is immutable after create(); its methods may run
// on any number of threads at once. Copies share the compiled patterns.
#ifndef SHMTRACE_DRAIN_REDACT_REDACTOR_HPP
#define SHMTRACE_DRAIN_REDACT_REDACTOR_HPP

#include <cstddef>
#include <expected>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace shmtrace::drain {

// Stored bytes per value at most (SPEC §6).
inline constexpr std::size_t kMaxPayloadBytes = 10 * 1024;
inline constexpr std::string_view kRedacted = "[REDACTED]";

// What redact() did to one value. The store counts the two causes apart.
struct Redaction {
  std::size_t replaced = 0;  // secrets replaced by kRedacted (0: none)
  bool truncated = false;    // the value was cut to kMaxPayloadBytes
  bool changed() const { return replaced != 0 || truncated; }
};

class Redactor {
 public:
  // The default sensitive words plus extra_names (from the configuration;
  // each is a name like the ones above, compared the same way). Fails with a
  // one-line message when an extra name has fewer than 3 letters or digits
  // (it would mask nearly everything) or a pattern does not compile.
  static std::expected<Redactor, std::string> create(std::vector<std::string> extra_names = {});

  bool sensitive_name(std::string_view name) const;

  // Replaces the secrets in `value` in place, then bounds it. The text is
  // scanned up to kMaxPayloadBytes + kScanSlackBytes: a secret that starts
  // before the cut is replaced whole, and a huge value costs a bounded time.
  Redaction redact(std::string& value) const;

  // The stored form of a named value: kRedacted whole (replaced = 1) when
  // the name is sensitive, whatever the value, else redact(value).
  Redaction redact_named(std::string_view name, std::string& value) const;

  // A value the producer cut at its limit (an argument at max_repr, an error
  // message at its 500 bytes): redact(), then the token the value ends in
  // (the bytes after its last space, quote or bracket) is replaced too,
  // whatever it holds. It may be the first bytes of a secret that no pattern
  // recognizes any more once cut (AKIA04QWER, ghp_04aB3dE5, sk_live_4e,
  // bob@exam); a cut word is lost as well, which costs nothing a cut value
  // had not lost already.
  Redaction redact_cut(std::string& value) const;
  // redact_named() for a value the producer cut.
  Redaction redact_named_cut(std::string_view name, std::string& value) const;
  // The trailing-token step of redact_cut() alone.
  static Redaction redact_cut_tail(std::string& value);

  // The prefilter alone: false means redact() will replace nothing.
  bool may_contain_secret(std::string_view value) const;

  // redact() without the prefilter (always runs the patterns). For the tests
  // and the benchmark; the result is the same as redact()'s.
  Redaction redact_unfiltered(std::string& value) const;

  // Bytes scanned past kMaxPayloadBytes before the final cut.
  static constexpr std::size_t kScanSlackBytes = 4 * 1024;

  struct Impl;  // the compiled patterns and the prefilter tables

 private:
  explicit Redactor(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace shmtrace::drain

#endif  // SHMTRACE_DRAIN_REDACT_REDACTOR_HPP
