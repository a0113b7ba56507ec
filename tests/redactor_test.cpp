// The redactor (drain/redact): every pattern with values that must be
// redacted and values that must not, a corpus of secret-bearing strings none
// of whose secrets may survive, a corpus of innocent strings that must come
// out byte-identical, sensitive names, the 10 KiB bound, and the prefilter
// (redact() must always agree with redact_unfiltered()).
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "redact/redactor.hpp"

namespace {

using shmtrace::drain::kMaxPayloadBytes;
using shmtrace::drain::kRedacted;
using shmtrace::drain::Redaction;
using shmtrace::drain::Redactor;

const Redactor& redactor() {
  static const Redactor r = [] {
    auto created = Redactor::create();
    if (!created) {
      ADD_FAILURE() << created.error();
      std::abort();
    }
    return *created;
  }();
  return r;
}

std::string redacted(std::string value, Redaction* out = nullptr) {
  const Redaction r = redactor().redact(value);
  if (out != nullptr) *out = r;
  return value;
}

// A value, and the parts of it that must not be stored.
struct Secret {
  std::string value;
  std::vector<std::string> secrets;
};

// Checks one value that must lose its secrets, with the prefilter and
// without, and that both ways agree.
void expect_redacted(const Secret& s) {
  Redaction r;
  const std::string out = redacted(s.value, &r);
  EXPECT_GE(r.replaced, 1u) << "nothing replaced in: " << s.value;
  EXPECT_NE(out.find(kRedacted), std::string::npos) << out;
  for (const std::string& secret : s.secrets) {
    EXPECT_EQ(out.find(secret), std::string::npos) << "'" << secret << "' survived in: " << out;
  }
  std::string unfiltered = s.value;
  const Redaction u = redactor().redact_unfiltered(unfiltered);
  EXPECT_EQ(unfiltered, out);
  EXPECT_EQ(u.replaced, r.replaced);
}

void expect_untouched(const std::string& value) {
  Redaction r;
  EXPECT_EQ(redacted(value, &r), value);
  EXPECT_EQ(r.replaced, 0u) << value;
  EXPECT_FALSE(r.changed()) << value;
  std::string unfiltered = value;
  EXPECT_EQ(redactor().redact_unfiltered(unfiltered).replaced, 0u) << value;
}

const std::string kJwt =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
const std::string kPemBody = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0";

// ---------------------------------------------------------------------------
// One pattern at a time: positives (with the secret part) and negatives.

struct PatternCase {
  std::string name;
  std::vector<Secret> positives;
  std::vector<std::string> negatives;
};

std::vector<PatternCase> pattern_cases() {
  return {
      {"key-value",
       {{"password=hunter2 user=bob", {"hunter2"}},
        {"passwd: s3cr3tPass", {"s3cr3tPass"}},
        {"pwd=letmein123", {"letmein123"}},
        {"db_password = Tr0ub4dor", {"Tr0ub4dor"}},
        {R"({"user":"bob","password":"correct horse battery"})", {"correct horse"}},
        {"{'api_key': 'zq8Xp2mN'}", {"zq8Xp2mN"}},
        {"X-Api-Key: 8c1f0a9e2b7d", {"8c1f0a9e2b7d"}},
        {"accessToken=ya29.a0AfH6SMBx", {"ya29.a0AfH6SMBx"}},
        {"GET /x?user=bob&token=deadbeefcafe&page=2", {"deadbeefcafe"}},
        {"Authorization: Digest username=x", {"username=x"}}},
       {"author=Jane Doe", "tokenizer: bert-base-uncased", "secretary=Ann", "Forgot your password? Click here.",
        "password=", "keyboard=us"}},
      {"cli-option",
       {{"--password hunter22 --verbose", {"hunter22"}}, {"mysql --password=Sup3rS3cret -u root", {"Sup3rS3cret"}}},
       {"--author Jane", "--tokenizer bert --verbose"}},
      {"url-password",
       {{"postgres://bob:s3cretpw@db.internal:5432/app", {"s3cretpw"}},
        {"fetch https://u:p4ss@example.org/x failed", {"p4ss"}}},
       {"https://example.org:8443/path", "ssh git@github"}},
      {"auth-scheme",
       {{"sent Bearer 9a8b7c6d5e4f3a2b1c upstream", {"9a8b7c6d5e4f3a2b1c"}},
        {"curl -H 'Authorization: Basic dXNlcjpwYXNzd29yZA=='", {"dXNlcjpwYXNzd29yZA=="}},
        {"basic dXNlcjpwYXNz", {"dXNlcjpwYXNz"}}},
       {"the bearer of bad news", "basic information about the module", "Bearer abc", "basic multi-tenant setup"}},
      {"jwt",
       {{"jwt " + kJwt, {"eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6", "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV"}},
        {"t=" + kJwt.substr(0, kJwt.rfind('.') + 1) + " alg none", {"eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6"}}},
       {"eyJhbGciOiJIUzI1NiJ9 alone", "eyJhbGciOiJIUzI1NiJ9.notjwt.x", "see eyJ.eyJ. docs"}},
      {"aws-access-key",
       {{"aws key AKIAIOSFODNN7EXAMPLE in config", {"AKIAIOSFODNN7EXAMPLE"}}, {"ASIAY34FZKBOKMUTVV7A", {"ASIAY34FZKBOKMUTVV7A"}}},
       {"AKIAIOSFODNN7EXAMPL", "AKIAIOSFODNN7EXAMPLEX", "akiaiosfodnn7example", "AKIA is not a key"}},
      {"github-token",
       {{"token ghp_16C7e42F292c6912E7710c838347Ae178B4a used", {"16C7e42F292c6912E7710c838347Ae178B4a"}},
        {"gho_16C7e42F292c6912E7710c838347Ae178B4a", {"16C7e42F292c6912E7710c838347Ae178B4a"}},
        {"github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMN",
         {"11ABCDEFG0123456789_abcdefghij"}}},
       {"ghp_short", "ghx_16C7e42F292c6912E7710c838347Ae178B4a", "github_pat_short"}},
      {"slack-token",
       {{"xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", {"1234567890-1234567890123-AbCdEf"}},
        {"hook xoxp-9876543210-abcdefghij ok", {"9876543210-abcdefghij"}}},
       {"xoxo-hugs from grandma", "xoxz-1234567890-abcdefghij", "xoxb-short"}},
      {"stripe-key",
       {{"sk_live_4eC39HqLyjWDarjtT1zdp7dc", {"4eC39HqLyjWDarjtT1zdp7dc"}},
        {"key pk_test_TYooMQauvdEDq54NiTphI7jx", {"TYooMQauvdEDq54NiTphI7jx"}},
        {"sk_test_51H8abcdEFGH1234ijkl", {"51H8abcdEFGH1234ijkl"}}},
       {"task_live_updates enabled", "sk_live_short", "sk_prod_4eC39HqLyjWDarjtT1zdp7dc"}},
      {"google-api-key",
       {{"key=AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", {"SyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe"}},
        {"maps AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe loaded", {"SyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe"}}},
       {"AIzaShort123", "AIzbSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe"}},
      {"pem-private-key",
       {{"-----BEGIN RSA PRIVATE KEY-----\n" + kPemBody + "\n-----END RSA PRIVATE KEY-----\nafter", {kPemBody}},
        {"key: -----BEGIN OPENSSH PRIVATE KEY-----\n" + kPemBody + "\n(cut)", {kPemBody}},
        {"-----BEGIN PRIVATE KEY-----\n" + kPemBody + "\n-----END PRIVATE KEY-----", {kPemBody}}},
       {"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUf\n-----END CERTIFICATE-----",
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"}},
      {"email",
       {{"contact bob.smith+tag@example.co.uk now", {"bob.smith", "example.co.uk"}},
        {"Alice <alice@corp.example.com>", {"alice@", "corp.example.com"}},
        {"email a@b.io and C.D@E.ORG", {"a@b.io", "C.D@E.ORG"}}},
       {"@everyone ping", "a@b", "foo@ bar.com", "name@host", "x@1.2", "npm i @scope/pkg"}},
      {"phone",
       {{"+44 20 7946 0958", {"7946", "0958"}},
        {"call (555) 123-4567 today", {"555", "123-4567"}},
        {"555-123-4567", {"123-4567"}},
        {"fax +1 (415) 555-0100.", {"415", "555-0100"}},
        {"+4915112345678", {"4915112345678"}},
        {"tel:555.123.4567", {"555.123.4567"}},
        {"1-800-555-0199", {"800-555-0199", "1-800"}},
        {"020 7946 0958", {"7946 0958"}},
        {"mobile 07700 900123", {"07700", "900123"}},
        {"01 23 45 67 89", {"23 45 67 89"}}},
       {"42", "pid 4242 tid 4243", "2026-11-23", "date 2026-11-23 time 14:05:33", "version 1.2.3",
        "192.168.100.200", "order id 12345678901234567890", "ts=1700000000123", "+5 points", "+1234567",
        "timezone +05:30", "1.555.123.4567", "v555-123-4567", "555-123-45678", "ISBN 978-3-16-148410-0",
        "uuid 123e4567-e89b-12d3-a456-426614174000", "5551234567", "0123456789"}},
  };
}

TEST(RedactorPatterns, EachPatternRedactsItsPositivesAndLeavesItsNegatives) {
  for (const PatternCase& c : pattern_cases()) {
    SCOPED_TRACE(c.name);
    ASSERT_FALSE(c.positives.empty());
    ASSERT_FALSE(c.negatives.empty());
    for (const Secret& s : c.positives) expect_redacted(s);
    for (const std::string& n : c.negatives) expect_untouched(n);
  }
}

TEST(RedactorPatterns, ReplacesOnlyTheValueOfAKeyValuePair) {
  EXPECT_EQ(redacted("password=hunter2 user=bob"), "password=[REDACTED] user=bob");
  EXPECT_EQ(redacted(R"({"password": "a b", "user": "bob"})"), R"({"password": "[REDACTED]", "user": "bob"})");
  EXPECT_EQ(redacted("Authorization: Bearer abc.def-123"), "Authorization: [REDACTED]");
  EXPECT_EQ(redacted("postgres://bob:pw1@db:5432/x"), "postgres://bob:[REDACTED]@db:5432/x");
  EXPECT_EQ(redacted("--token s3cr3t --verbose"), "--token [REDACTED] --verbose");
  EXPECT_EQ(redacted("mail bob@example.com, call 555-123-4567."), "mail [REDACTED], call [REDACTED].");
  EXPECT_EQ(redacted(R"(secret="with \"escaped\" quotes" next=1)"), R"(secret="[REDACTED]" next=1)");
}

TEST(RedactorPatterns, CountsEveryReplacement) {
  Redaction r;
  redacted("password=a token=b mail x@y.org AKIAIOSFODNN7EXAMPLE", &r);
  EXPECT_EQ(r.replaced, 4u);
  EXPECT_FALSE(r.truncated);
}

// ---------------------------------------------------------------------------
// The fixed corpora.

std::vector<Secret> secret_corpus() {
  std::vector<Secret> corpus = {
      {"password=hunter2 user=bob", {"hunter2"}},
      {"PASSWORD=Hunter2!", {"Hunter2!"}},
      {"passwd: s3cr3tPass", {"s3cr3tPass"}},
      {"pwd=letmein123", {"letmein123"}},
      {"secret=abcdef0123", {"abcdef0123"}},
      {"token=tok_9f8e7d6c", {"tok_9f8e7d6c"}},
      {"api_key=KEY12345678", {"KEY12345678"}},
      {"apikey: k-55aa66bb", {"k-55aa66bb"}},
      {R"({"password": "correct horse battery staple"})", {"correct horse battery staple", "horse"}},
      {R"({"user":"bob","api-key":"zq8Xp2mN"})", {"zq8Xp2mN"}},
      {"X-Api-Key: 8c1f0a9e2b7d", {"8c1f0a9e2b7d"}},
      {"accessToken=ya29.a0AfH6SMBx", {"ya29.a0AfH6SMBx"}},
      {"client_secret=9b1c2d3e4f", {"9b1c2d3e4f"}},
      {"AUTH_TOKEN = 0123abcd", {"0123abcd"}},
      {"PRIVATE_KEY=MIIBVgIBADANBgkqhkiG", {"MIIBVgIBADANBgkqhkiG"}},
      {"privateKey: 'MIIBVgIBADANBg'", {"MIIBVgIBADANBg"}},
      {"credentials: user1:pa55w0rd", {"pa55w0rd"}},
      {"oauth_token='tok with spaces'", {"tok with spaces"}},
      {"Cookie: sessionid=abc123xyz; csrftoken=QWERTY987", {"abc123xyz", "QWERTY987"}},
      {"Set-Cookie: PHPSESSID=el4ukv0kqbvoirg7nkp4dncpk3; path=/", {"el4ukv0kqbvoirg7nkp4dncpk3"}},
      {"Authorization: Bearer abc123def456ghi789", {"abc123def456ghi789"}},
      {"curl -H 'Authorization: Basic dXNlcjpwYXNzd29yZA=='", {"dXNlcjpwYXNzd29yZA=="}},
      {"sent Bearer 9a8b7c6d5e4f3a2b1c upstream", {"9a8b7c6d5e4f3a2b1c"}},
      {"GET /x?user=bob&token=deadbeefcafe&page=2", {"deadbeefcafe"}},
      {"--password hunter22 --verbose", {"hunter22"}},
      {"mysql --password=Sup3rS3cret -u root", {"Sup3rS3cret"}},
      {"postgres://bob:s3cretpw@db.internal:5432/app", {"s3cretpw"}},
      {"aws key AKIAIOSFODNN7EXAMPLE in config", {"AKIAIOSFODNN7EXAMPLE"}},
      {"ASIAY34FZKBOKMUTVV7A", {"ASIAY34FZKBOKMUTVV7A"}},
      {"ghp_16C7e42F292c6912E7710c838347Ae178B4a", {"16C7e42F292c6912E7710c838347Ae178B4a"}},
      {"ghs_16C7e42F292c6912E7710c838347Ae178B4a", {"16C7e42F292c6912E7710c838347Ae178B4a"}},
      {"github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMN",
       {"abcdefghijklmnopqrstuvwxyz0123456789"}},
      {"xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", {"AbCdEfGhIjKlMnOpQrStUvWx"}},
      {"sk_live_4eC39HqLyjWDarjtT1zdp7dc", {"4eC39HqLyjWDarjtT1zdp7dc"}},
      {"pk_live_51H8abcdEFGH1234ijkl", {"51H8abcdEFGH1234ijkl"}},
      {"sk_test_51H8abcdEFGH1234ijkl", {"51H8abcdEFGH1234ijkl"}},
      {"maps AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe loaded", {"SyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe"}},
      {"id_token " + kJwt, {"eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6", "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV"}},
      {"-----BEGIN RSA PRIVATE KEY-----\n" + kPemBody + "\n-----END RSA PRIVATE KEY-----", {kPemBody}},
      {"-----BEGIN EC PRIVATE KEY-----\n" + kPemBody, {kPemBody}},
      {"contact bob.smith+tag@example.co.uk now", {"bob.smith", "example.co.uk"}},
      {"From: Alice <alice@corp.example.com>", {"alice@corp"}},
      {"phone +44 20 7946 0958", {"7946 0958"}},
      {"call (555) 123-4567 today", {"123-4567"}},
      {"555-123-4567", {"123-4567"}},
      {"+1 (415) 555-0100", {"555-0100"}},
      {"+4915112345678", {"4915112345678"}},
      {"555.123.4567", {"123.4567"}},
      {"1-800-555-0199", {"555-0199"}},
      {"020 7946 0958", {"7946 0958"}},
      {"01 23 45 67 89", {"45 67 89"}},
      {"login ok for jane.doe@example.com from +33 1 23 45 67 89 with password=Pa$$w0rd",
       {"jane.doe", "23 45 67 89", "Pa$$w0rd"}},
  };
  return corpus;
}

std::vector<std::string> innocent_corpus() {
  return {
      "GET /api/v1/users/1234 200 OK",
      "SELECT * FROM users WHERE id = ?",
      "processed 12345 records in 678 ms",
      "2026-11-23T14:05:33.123Z",
      "date 2026-11-23 time 14:05:33",
      "version 1.2.3 build 10.0.19041.1",
      "connect to 192.168.100.200:8080",
      "10.0.0.1 -> 172.16.254.1 mask 255.255.255.0",
      "order id 12345678901234567890",
      "ts=1700000000123",
      "uuid 123e4567-e89b-12d3-a456-426614174000",
      "author=Jane Doe",
      "tokenizer: bert-base-uncased",
      "secretary=Ann",
      "the bearer of bad news",
      "basic information about the module",
      "Forgot your password? Click here.",
      "score +5 points, delta -3",
      "timezone +05:30",
      "price 1,234,567.89 EUR",
      "pid 4242 tid 4243",
      "ISBN 978-3-16-148410-0",
      "see RFC 7519 section 4.1",
      "0x7ffd5fbff8a0",
      "range 100-200 items",
      "task_live_updates enabled",
      "lat 48.858844, lon 2.294351",
      "xoxo-hugs from grandma",
      "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUf\n-----END CERTIFICATE-----",
      "na\xc3\xafve caf\xc3\xa9 \xe2\x82\xac 12",
      std::string("binary\0bytes\xff\xfe", 15),
  };
}

TEST(RedactorCorpus, NoSecretSurvives) {
  const auto corpus = secret_corpus();
  ASSERT_GE(corpus.size(), 40u);
  for (const Secret& s : corpus) {
    SCOPED_TRACE(s.value);
    expect_redacted(s);
  }
}

TEST(RedactorCorpus, InnocentValuesComeOutByteIdentical) {
  const auto corpus = innocent_corpus();
  ASSERT_GE(corpus.size(), 20u);
  for (const std::string& v : corpus) {
    SCOPED_TRACE(v);
    expect_untouched(v);
  }
}

TEST(RedactorCorpus, SecretsEmbeddedInInnocentTextAreFound) {
  // Every secret surrounded by every innocent string, both ways.
  const auto secrets = secret_corpus();
  const auto innocents = innocent_corpus();
  for (std::size_t i = 0; i < secrets.size(); ++i) {
    const std::string& around = innocents[i % innocents.size()];
    Secret s = secrets[i];
    s.value = around + " ; " + s.value + " \n " + around;
    SCOPED_TRACE(s.value);
    expect_redacted(s);
  }
}

// ---------------------------------------------------------------------------
// Names.

TEST(RedactorNames, SensitiveNames) {
  for (const char* name : {"password", "db_password", "DB_PASSWORD", "X-Api-Key", "api_key", "apiKey", "APIKEY",
                           "accessToken", "access_token", "refresh-token", "auth", "oauth", "Authorization",
                           "client_secret", "secretKey", "passwords", "passwd", "pwd", "user.pwd", "credential",
                           "credentials", "private_key", "privateKey", "PRIVATEKEY", "cookie", "Set-Cookie",
                           "session", "sessionid", "JSESSIONID", "PHPSESSID", "session_id", "password2",
                           "password_hash", "oauth2Token"}) {
    EXPECT_TRUE(redactor().sensitive_name(name)) << name;
  }
  for (const char* name : {"", "user", "author", "authority", "tokenizer", "secretary", "keyboard", "api", "key",
                           "name", "passport", "cwd", "count", "user_id", "sessile"}) {
    EXPECT_FALSE(redactor().sensitive_name(name)) << name;
  }
}

TEST(RedactorNames, RedactNamedMasksTheWholeValueOfASensitiveName) {
  std::string v = "anything at all";
  Redaction r = redactor().redact_named("db_password", v);
  EXPECT_EQ(v, kRedacted);
  EXPECT_EQ(r.replaced, 1u);
  v.clear();
  r = redactor().redact_named("api-key", v);
  EXPECT_EQ(v, kRedacted);  // even an empty value: its emptiness is not stored

  v = "hello bob@example.com";
  r = redactor().redact_named("message", v);
  EXPECT_EQ(v, "hello [REDACTED]");
  EXPECT_EQ(r.replaced, 1u);
  v = "hello";
  r = redactor().redact_named("message", v);
  EXPECT_EQ(v, "hello");
  EXPECT_FALSE(r.changed());
}

TEST(RedactorNames, ExtraNamesFromConfiguration) {
  auto custom = Redactor::create({"ssn", "memberNumber"});
  ASSERT_TRUE(custom.has_value()) << custom.error();
  EXPECT_TRUE(custom->sensitive_name("user_ssn"));
  EXPECT_TRUE(custom->sensitive_name("member-number"));
  EXPECT_TRUE(custom->sensitive_name("password"));  // the defaults stay
  EXPECT_FALSE(redactor().sensitive_name("user_ssn"));

  std::string v = "ssn=123-45-6789 memberNumber: 77 plan=gold";
  EXPECT_EQ(custom->redact(v).replaced, 2u);
  EXPECT_EQ(v, "ssn=[REDACTED] memberNumber: [REDACTED] plan=gold");
  std::string w = "ssn=123-45-6789";
  EXPECT_EQ(redactor().redact(w).replaced, 0u);

  // A name that starts with a digit reaches the prefilter's digit path.
  auto digits = Redactor::create({"2fa_code"});
  ASSERT_TRUE(digits.has_value()) << digits.error();
  for (const char* text : {"2fa_code=123456", "x 2FA-Code: 654321 y", "2facode=1"}) {
    std::string a = text;
    std::string b = text;
    EXPECT_EQ(digits->redact(a).replaced, 1u) << text;
    EXPECT_EQ(digits->redact_unfiltered(b).replaced, 1u) << text;
    EXPECT_EQ(a, b);
    EXPECT_EQ(a.find("123456"), std::string::npos);
  }
}

TEST(RedactorNames, RejectsUselessExtraNames) {
  for (const char* bad : {"", "x", "a-b", "--", "id"}) {
    auto r = Redactor::create({bad});
    ASSERT_FALSE(r.has_value()) << "'" << bad << "'";
    EXPECT_EQ(r.error().find('\n'), std::string::npos);
    EXPECT_NE(r.error().find("redact:"), std::string::npos) << r.error();
  }
  EXPECT_FALSE(Redactor::create({std::string(200, 'a')}).has_value());
  EXPECT_TRUE(Redactor::create({"pin", "x-card-no"}).has_value());
}

// ---------------------------------------------------------------------------
// Empty values and the 10 KiB bound.

TEST(RedactorBound, EmptyValue) {
  std::string v;
  const Redaction r = redactor().redact(v);
  EXPECT_TRUE(v.empty());
  EXPECT_FALSE(r.changed());
  EXPECT_FALSE(redactor().may_contain_secret(""));
  EXPECT_EQ(redactor().redact_unfiltered(v).replaced, 0u);
}

TEST(RedactorBound, ExactlyTheLimitIsKept) {
  std::string v(kMaxPayloadBytes, 'a');
  const Redaction r = redactor().redact(v);
  EXPECT_EQ(v.size(), kMaxPayloadBytes);
  EXPECT_FALSE(r.truncated);
}

TEST(RedactorBound, OneByteMoreIsCut) {
  std::string v(kMaxPayloadBytes + 1, 'a');
  const Redaction r = redactor().redact(v);
  EXPECT_EQ(v, std::string(kMaxPayloadBytes, 'a'));
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(r.replaced, 0u);
  EXPECT_TRUE(r.changed());
}

TEST(RedactorBound, CutsAtAUtf8Boundary) {
  // A character of 2, 3 and 4 bytes starting at every offset that makes it
  // straddle the limit is dropped whole; one that ends at the limit stays.
  for (const std::string ch : {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"}) {
    for (std::size_t before = 0; before <= ch.size(); ++before) {
      const std::size_t start = kMaxPayloadBytes - before;  // where ch begins
      std::string v(start, 'a');
      v += ch;
      v += std::string(100, 'b');
      const Redaction r = redactor().redact(v);
      EXPECT_TRUE(r.truncated);
      const std::size_t expected = before >= ch.size() ? kMaxPayloadBytes : start;
      EXPECT_EQ(v.size(), expected) << "char of " << ch.size() << " bytes at limit-" << before;
      EXPECT_EQ(v.substr(0, start), std::string(start, 'a'));
    }
  }
}

TEST(RedactorBound, NonUtf8IsCutAtTheLimit) {
  std::string v(kMaxPayloadBytes + 10, '\x80');
  EXPECT_TRUE(redactor().redact(v).truncated);
  EXPECT_EQ(v.size(), kMaxPayloadBytes);
}

TEST(RedactorBound, ASecretAcrossTheLimitIsRedactedBeforeTheCut) {
  std::string v(kMaxPayloadBytes - 10, 'x');
  v += " AKIAIOSFODNN7EXAMPLE tail";
  const Redaction r = redactor().redact(v);
  EXPECT_EQ(r.replaced, 1u);
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(v.size(), kMaxPayloadBytes);
  EXPECT_EQ(v.find("AKIA"), std::string::npos);
  EXPECT_EQ(v.substr(kMaxPayloadBytes - 10), " [REDACTED");
}

TEST(RedactorBound, HugeValueIsBoundedAndItsHeadRedacted) {
  std::string v = "password=hunter2 " + std::string(1 << 20, 'z') + " password=tail";
  const Redaction r = redactor().redact(v);
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(r.replaced, 1u);  // the tail lies beyond the scanned bytes, and is cut anyway
  EXPECT_EQ(v.size(), kMaxPayloadBytes);
  EXPECT_TRUE(v.starts_with("password=[REDACTED] zzz"));
}

TEST(RedactorBound, ReplacementsCanGrowAValuePastTheLimit) {
  std::string v;
  while (v.size() < kMaxPayloadBytes - 8) v += "pwd=1 ";
  const Redaction r = redactor().redact(v);
  EXPECT_TRUE(r.truncated);
  EXPECT_GT(r.replaced, 1000u);
  EXPECT_EQ(v.size(), kMaxPayloadBytes);
  EXPECT_EQ(v.find("=1"), std::string::npos);
}

// ---------------------------------------------------------------------------
// The prefilter never hides a match: redact() == redact_unfiltered() on
// values built at random from pieces of secrets, innocent text, digits and
// separators (which makes near-misses of every pattern).

TEST(RedactorPrefilter, AgreesWithTheUnfilteredPatternsOnRandomValues) {
  std::vector<std::string> pieces;
  for (const Secret& s : secret_corpus()) {
    pieces.push_back(s.value);
    const std::size_t half = s.value.size() / 2;
    pieces.push_back(s.value.substr(0, half));
    pieces.push_back(s.value.substr(half));
  }
  for (const std::string& s : innocent_corpus()) pieces.push_back(s);
  for (const char* p : {" ", "-", ".", "+", "(", ")", "@", "=", ":", "\"", "'", "_", "0", "1", "12", "123", "4567",
                        "555", "0958", "20 ", "Bearer ", "basic ", "Token", "KEY", "eyJ", "AKIA", "\n", "\xc3\xa9"}) {
    pieces.emplace_back(p);
  }
  std::mt19937 rng(20261123);
  std::uniform_int_distribution<std::size_t> pick(0, pieces.size() - 1);
  std::uniform_int_distribution<int> count(1, 8);
  std::size_t with_secret = 0;
  for (int i = 0; i < 10000; ++i) {
    std::string v;
    for (int k = count(rng); k > 0; --k) v += pieces[pick(rng)];
    std::string filtered = v;
    std::string unfiltered = v;
    const Redaction a = redactor().redact(filtered);
    const Redaction b = redactor().redact_unfiltered(unfiltered);
    ASSERT_EQ(filtered, unfiltered) << "input: " << v;
    ASSERT_EQ(a.replaced, b.replaced) << "input: " << v;
    if (b.replaced != 0) {
      ++with_secret;
      ASSERT_TRUE(redactor().may_contain_secret(v)) << v;
    }
  }
  EXPECT_GT(with_secret, 500u);  // the test exercised both sides
}

TEST(RedactorPrefilter, SkipsTypicalValues) {
  // The common case must not reach the patterns at all.
  for (const char* v : {"GET /api/v1/users/1234 200 OK", "SELECT * FROM users WHERE id = ?",
                        "processed 12345 records in 678 ms", "2026-11-23T14:05:33.123Z", "version 1.2.3",
                        "connect to 192.168.100.200:8080", "order id 12345678901234567890", "ts=1700000000123",
                        "user=bob role=admin", "std::vector<int>::push_back", "/usr/lib/x86_64-linux-gnu/libc.so.6",
                        "retry 3 of 5 after 250 ms", "price 1,234,567.89 EUR", ""}) {
    EXPECT_FALSE(redactor().may_contain_secret(v)) << v;
  }
}

TEST(Redactor, CopiesShareThePatterns) {
  const Redactor copy = redactor();
  std::string v = "token=abc";
  EXPECT_EQ(copy.redact(v).replaced, 1u);
  EXPECT_EQ(v, "token=[REDACTED]");
}

// A value cut by the producer at its limit ends in a partial token that no
// pattern recognizes any more: it goes too, and nothing before it.
TEST(RedactorCut, TheTokenACutValueEndsInIsRedacted) {
  struct Case {
    std::string cut;
    std::string stored;
  };
  for (const Case& c : {Case{"config loaded, key AKIA04QWER", "config loaded, key [REDACTED]"},
                        Case{"push with ghp_04aB3dE5", "push with [REDACTED]"},
                        Case{"charge via sk_live_4eC39Hq", "charge via [REDACTED]"},
                        Case{"mail from bob.smith@exam", "mail from [REDACTED]"},
                        Case{"header \"Authorization: Bearer eyJhbGciOiJIUz", "header \"Authorization: [REDACTED]"},
                        Case{"list (alpha, beta, gam", "list (alpha, beta, [REDACTED]"},
                        Case{"ends with a space ", "ends with a space "},
                        Case{"ends with a bracket]", "ends with a bracket]"},
                        Case{"", ""}}) {
    std::string v = c.cut;
    redactor().redact_cut(v);
    EXPECT_EQ(v, c.stored) << "input: " << c.cut;
  }
  // Secrets the patterns still see are replaced as in any value.
  std::string v = "password=hunter2 then AKIAIOSFODNN7EXAMPLE and more";
  EXPECT_EQ(redactor().redact_cut(v).replaced, 3u);
  EXPECT_EQ(v, "password=[REDACTED] then [REDACTED] and [REDACTED]");
  // A sensitive name hides the whole value, cut or not.
  std::string named = "hunter2 and more";
  EXPECT_EQ(redactor().redact_named_cut("password", named).replaced, 1u);
  EXPECT_EQ(named, "[REDACTED]");
  // Never past the stored bound.
  std::string huge(kMaxPayloadBytes - 5, 'x');
  huge += " abcdefgh";
  const Redaction r = redactor().redact_cut(huge);
  EXPECT_EQ(huge.size(), kMaxPayloadBytes);
  EXPECT_TRUE(huge.ends_with(" [REDACTED]") || huge.ends_with("x[REDACTED]")) << huge.substr(huge.size() - 20);
  EXPECT_TRUE(r.truncated);
}

}  // namespace
