// Redaction end to end (SPEC §6): a real program (tests/programs/st_secrets)
// writes secrets and personal data into arguments, results, events and
// errors; after the real drain stored it, no secret is anywhere in the
// database, each such value is still there with [REDACTED] in place of the
// secret, innocent values are byte-identical, and a value over 10 KiB is
// stored at most 10 KiB.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/drain_harness.hpp"
#include "support/test_database.hpp"
#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

namespace h = harness;

// What st_secrets writes; each must be gone from the database.
const std::vector<std::string> kSecrets = {
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "eyJ0eXAiOiJKV1QiLCJhbGci9f8a7b6c5d4e3",
    "hunter2secret",
    "alice.smith@example.com",
    "7946 0958",
    "k3y-V4lue-Z9q8",
};

std::string sql_quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

TEST(DrainRedaction, NoSecretIsStoredAndInnocentValuesAreExact) {
  const SessionScope session;  // its drains take only its producers' segments
  const TempDb db("redaction");
  // The runtime would mask api_key itself ("***"): name no such word there,
  // so the drain's redaction is what this test sees. Long values allowed.
  const RunResult r = run({program_path("st_secrets")}, {{"SHMTRACE_SENSITIVE", "zz_not_a_field"},
                                                         {"SHMTRACE_MAX_REPR", "65536"},
                                                         {"SHMTRACE_RING_RECORDS", "16384"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string segment = find_segment(r.pid, 0);
  ASSERT_NE(segment, "");
  SegmentGuard guard(segment);
  const RunResult drained = run(session.drain({"--db", db.path, "--once"}));
  ASSERT_EQ(drained.exit_code, 0) << drained.err;

  Database d(db);
  ASSERT_EQ(d.error, "");
  const std::string pid = std::to_string(r.pid);
  const std::string data = " FROM span_data r JOIN processes p USING (process_key) WHERE p.pid = " + pid;
  const std::string errors = " FROM errors e JOIN processes p USING (process_key) WHERE p.pid = " + pid;
  ASSERT_EQ(d.number("SELECT count(*)" + data + " AND r.kind IN ('arg', 'result', 'event')"), 16)
      << "every value is stored, redacted or not";
  ASSERT_EQ(d.number("SELECT count(*)" + errors), 3);

  for (const std::string& secret : kSecrets) {
    SCOPED_TRACE(secret);
    const std::string has = "instr(%s, " + sql_quoted(secret) + ") > 0";
    auto where = [&](const char* column) {
      std::string w = has;
      w.replace(w.find("%s"), 2, column);
      return w;
    };
    EXPECT_EQ(d.number("SELECT count(*) FROM span_data WHERE " + where("value")), 0)
        << d.text("SELECT group_concat(name || '=' || value, ' | ') FROM span_data WHERE " + where("value"));
    EXPECT_EQ(d.number("SELECT count(*) FROM errors WHERE " + where("message") + " OR " + where("preview")), 0)
        << d.text("SELECT group_concat(message || ' / ' || preview, ' | ') FROM errors WHERE " + where("message") +
                  " OR " + where("preview"));
    EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE " + where("cmdline")), 0);
  }
  // The values that carried secrets are kept, with the marker in their place.
  EXPECT_EQ(d.number("SELECT count(*)" + data +
                     " AND r.name IN ('aws', 'gh', 'jwt', 'header', 'query', 'contact', 'phone', 'api_key', 'echo', "
                     "'login') AND instr(r.value, '[REDACTED]') > 0"),
            10)
      << d.text("SELECT group_concat(r.name || '=' || r.value, ' | ')" + data);
  EXPECT_EQ(d.text("SELECT r.value" + data + " AND r.name = 'aws'"), "key [REDACTED] in use");
  EXPECT_EQ(d.text("SELECT r.value" + data + " AND r.name = 'query'").find("user=bob"), 0u);
  EXPECT_EQ(d.number("SELECT count(*)" + errors + " AND instr(e.message, '[REDACTED]') > 0"), 2);

  // Innocent values, byte for byte.
  const std::vector<std::pair<std::string, std::string>> innocent = {
      {"path", "/var/lib/app/data-2024-05-01.json"},
      {"version", "v1.2.3 build 20240501 at 10.0.0.1:8080"},
      {"note", "the bearer of bad news; order #123456789"},
      {"author", "Jane Q. Public"},
      {"progress", "step 3 of 7 done in 12.5 ms"},
  };
  for (const auto& [name, value] : innocent) {
    EXPECT_EQ(d.text("SELECT r.value" + data + " AND r.name = " + sql_quoted(name)), value) << name;
  }
  EXPECT_EQ(d.text("SELECT e.message" + errors + " AND e.type = 'PlainError'"), "disk quota 95% on /var/lib/app");

  // Over 10 KiB: stored, bounded, a prefix of what was written.
  std::string big(12 * 1024, 'x');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  const std::string stored = d.text("SELECT r.value" + data + " AND r.name = 'big'");
  EXPECT_GT(stored.size(), 4096u) << "the runtime was allowed the whole value (SHMTRACE_MAX_REPR)";
  EXPECT_LE(stored.size(), 10u * 1024);
  EXPECT_EQ(big.compare(0, stored.size(), stored), 0) << "a cut, not a rewrite";
}

}  // namespace
}  // namespace shmtrace::test
