// The C and C++ APIs end to end: a real program writes spans, arguments,
// events and counters; the test reads exactly those values back.
#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

using abi::RecordKind;

struct Arg {
  std::uint8_t flags;
  std::uint64_t aux;
  std::string value;
};

std::map<std::string, Arg> args_by_name(const reader::Segment& segment, const std::vector<reader::DecodedRecord>& records) {
  std::map<std::string, Arg> out;
  for (const auto& d : records) {
    if (d.kind == RecordKind::kArg) out[text(segment, d.name_id)] = Arg{d.flags, d.aux, d.value};
  }
  return out;
}

std::uint8_t type_of(const Arg& a) { return a.flags & abi::kValueTypeMask; }
constexpr std::uint8_t t(abi::ValueType v) { return static_cast<std::uint8_t>(v); }

TEST(ApiProcess, ArgumentsOfEveryTypeWithMaskingAndTruncation) {
  FinishedRun run = run_finished({"args"});
  SegmentGuard guard(run.segment_name);
  ASSERT_EQ(run.result.exit_code, 0) << run.result.err;
  ASSERT_TRUE(run.drained) << run.drained.error().message;
  const reader::Segment& segment = *run.segment;
  auto args = args_by_name(segment, run.drained->records);
  ASSERT_EQ(args.size(), 12u);
  EXPECT_EQ(type_of(args["i"]), t(abi::ValueType::kInt));
  EXPECT_EQ(static_cast<std::int64_t>(args["i"].aux), -42);
  EXPECT_EQ(type_of(args["u"]), t(abi::ValueType::kUint));
  EXPECT_EQ(args["u"].aux, 18446744073709551615ull);
  double d = 0;
  std::memcpy(&d, &args["d"].aux, sizeof d);
  EXPECT_EQ(type_of(args["d"]), t(abi::ValueType::kDouble));
  EXPECT_EQ(d, 2.5);
  EXPECT_EQ(type_of(args["b"]), t(abi::ValueType::kBool));
  EXPECT_EQ(args["b"].aux, 1u);
  EXPECT_EQ(args["s"].value, "hello");
  EXPECT_EQ(type_of(args["raw"]), t(abi::ValueType::kBytes));
  EXPECT_EQ(args["raw"].value, std::string("\x00\x01\x02", 3));
  for (const char* secret : {"password", "api_key", "user_token"}) {
    EXPECT_EQ(args[secret].value, "***") << secret;
    EXPECT_TRUE(args[secret].flags & abi::kArgMasked) << secret;
  }
  EXPECT_EQ(args["custom_pin"].value, "0000");
  // max_repr (1000) cuts the 3000-byte value, flagged.
  EXPECT_EQ(args["big"].value.size(), 1000u);
  EXPECT_TRUE(args["big"].flags & abi::kArgTruncated);
  for (std::size_t i = 0; i < args["big"].value.size(); ++i) {
    ASSERT_EQ(args["big"].value[i], static_cast<char>('A' + i % 26)) << i;
  }
  EXPECT_TRUE(args["ret"].flags & abi::kArgResult);
  EXPECT_EQ(args["ret"].aux, 7u);
  EXPECT_FALSE(args["i"].flags & abi::kArgResult);
  // Every argument belongs to the one span.
  std::uint64_t span = 0;
  for (const auto& r : run.drained->records) {
    if (r.kind == RecordKind::kSpanBegin) span = r.span_id;
  }
  for (const auto& r : run.drained->records) {
    if (r.kind == RecordKind::kArg) EXPECT_EQ(r.span_id, span);
  }
}

TEST(ApiProcess, SensitiveNamesAndReprLimitAreConfigurable) {
  FinishedRun run = run_finished({"args"}, {{"SHMTRACE_SENSITIVE", "pin"}, {"SHMTRACE_MAX_REPR", "4000"}});
  SegmentGuard guard(run.segment_name);
  ASSERT_TRUE(run.drained) << run.drained.error().message;
  auto args = args_by_name(*run.segment, run.drained->records);
  EXPECT_EQ(args["custom_pin"].value, "***");
  EXPECT_EQ(args["password"].value, "hunter2");
  EXPECT_EQ(args["big"].value.size(), 3000u);
  EXPECT_FALSE(args["big"].flags & abi::kArgTruncated);
}

TEST(ApiProcess, NestedSpansEventsAndCountersKeepTheirStructure) {
  FinishedRun run = run_finished({"spans", "5"});
  SegmentGuard guard(run.segment_name);
  ASSERT_EQ(run.result.exit_code, 0) << run.result.err;
  ASSERT_TRUE(run.drained) << run.drained.error().message;
  const reader::Segment& segment = *run.segment;
  std::vector<reader::DecodedRecord> begins, ends, events, counters;
  for (const auto& d : run.drained->records) {
    if (d.kind == RecordKind::kSpanBegin) begins.push_back(d);
    if (d.kind == RecordKind::kSpanEnd) ends.push_back(d);
    if (d.kind == RecordKind::kEvent) events.push_back(d);
    if (d.kind == RecordKind::kCounter) counters.push_back(d);
  }
  ASSERT_EQ(begins.size(), 5u);
  ASSERT_EQ(ends.size(), 5u);
  ASSERT_EQ(events.size(), 5u);
  ASSERT_EQ(counters.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(text(segment, begins[i].name_id), "level" + std::to_string(i));
    EXPECT_EQ(begins[i].aux, i == 0 ? 0u : begins[i - 1].span_id) << "parent of level" << i;
    EXPECT_EQ(text(segment, begins[i].span.group_id), "app.core");  // children inherit the group
    EXPECT_EQ(0, std::memcmp(begins[i].span.trace_id, begins[0].span.trace_id, 16));
    EXPECT_EQ(events[i].span_id, begins[i].span_id);
    EXPECT_EQ(text(segment, events[i].name_id), "tick");
    double ratio = 0;
    std::memcpy(&ratio, &counters[i].aux, sizeof ratio);
    EXPECT_EQ(ratio, i * 0.5);
    // Ends come innermost first and carry the begin time and parent.
    const auto& end = ends[4 - i];
    EXPECT_EQ(end.span_id, begins[i].span_id);
    EXPECT_EQ(end.aux, begins[i].timestamp);
    EXPECT_EQ(end.span.parent_span_id, begins[i].aux);
    EXPECT_GE(end.timestamp, begins[i].timestamp);
    EXPECT_EQ(end.flags & abi::kStatusErr, 0);
  }
  EXPECT_EQ(events[0].value, "a message longer than thirty-two bytes, continued");
  EXPECT_EQ(events[1].value, "short");
}

TEST(ApiProcess, TraceparentFromTheEnvironmentParentsTheRootSpans) {
  const std::string trace = "0123456789abcdef0123456789abcdef";
  FinishedRun run = run_finished({"spans", "2"}, {{"TRACEPARENT", "00-" + trace + "-00000000000000aa-01"}});
  SegmentGuard guard(run.segment_name);
  ASSERT_TRUE(run.drained) << run.drained.error().message;
  const abi::SegmentHeader& h = run.segment->header();
  EXPECT_EQ(h.parent_span_id, 0xaau);
  EXPECT_EQ(h.trace_flags, 1u);
  std::vector<reader::DecodedRecord> begins;
  for (const auto& d : run.drained->records) {
    if (d.kind == RecordKind::kSpanBegin) begins.push_back(d);
  }
  ASSERT_EQ(begins.size(), 2u);
  EXPECT_EQ(begins[0].aux, 0xaau);
  EXPECT_TRUE(begins[0].flags & abi::kSpanRemoteParent);
  const std::uint8_t expect[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                                   0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
  EXPECT_EQ(0, std::memcmp(begins[0].span.trace_id, expect, 16));
  EXPECT_EQ(0, std::memcmp(begins[1].span.trace_id, expect, 16));
  EXPECT_EQ(begins[1].aux, begins[0].span_id);
}

TEST(ApiProcess, CppApiCapturesValuesAndExceptions) {
  const RunResult r = run({program_path("st_cpp_api")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string name = find_segment(r.pid, 0);
  SegmentGuard guard(name);
  reader::Segment segment = attach_consumer(name);
  auto drained = drain_segment(segment);
  ASSERT_TRUE(drained) << drained.error().message;
  std::map<std::string, std::vector<reader::DecodedRecord>> ends;
  for (const auto& d : drained->records) {
    if (d.kind == RecordKind::kSpanEnd) ends[text(segment, d.name_id)].push_back(d);
  }
  ASSERT_EQ(ends["app::db::Store::get"].size(), 1u);
  ASSERT_EQ(ends["app::db::Store::put"].size(), 1u);
  ASSERT_EQ(ends["app::db::Store::fail"].size(), 2u);
  ASSERT_EQ(ends["app::db::Store::recover"].size(), 1u);
  ASSERT_EQ(ends["outer"].size(), 1u);
  EXPECT_EQ(text(segment, ends["app::db::Store::get"][0].span.group_id), "app::db");
  EXPECT_EQ(text(segment, ends["outer"][0].span.group_id), "app");
  for (const auto& fail : ends["app::db::Store::fail"]) EXPECT_TRUE(fail.flags & abi::kStatusErr);
  EXPECT_FALSE(ends["app::db::Store::recover"][0].flags & abi::kStatusErr);  // caught inside
  EXPECT_TRUE(ends["outer"][0].flags & abi::kStatusErr);                     // the exception left it
  // Arguments keyed "span/argument".
  std::map<std::uint64_t, std::string> span_name;
  for (const auto& [name, list] : ends) {
    for (const auto& e : list) span_name[e.span_id] = name;
  }
  std::map<std::string, Arg> args;
  for (const auto& d : drained->records) {
    if (d.kind == RecordKind::kArg) args[span_name[d.span_id] + "/" + text(segment, d.name_id)] = {d.flags, d.aux, d.value};
  }
  ASSERT_EQ(args.size(), 7u);
  EXPECT_EQ(type_of(args["app::db::Store::get/key"]), t(abi::ValueType::kInt));
  EXPECT_EQ(args["app::db::Store::get/key"].aux, 21u);
  EXPECT_EQ(args["app::db::Store::get/columns"].value, "std::vector<int>[size=7]{1, 2, 3, 4, 5, ...}");
  EXPECT_EQ(args["app::db::Store::get/value"].aux, 42u);
  EXPECT_TRUE(args["app::db::Store::get/value"].flags & abi::kArgResult);
  EXPECT_EQ(args["app::db::Store::put/key"].value, "Key(3/9)");
  EXPECT_EQ(type_of(args["app::db::Store::put/key"]), t(abi::ValueType::kRepr));
  EXPECT_EQ(args["app::db::Store::put/fields"].value, "std::map<std::string, int>[size=2]{\"a\": 1, \"b\": 2}");
  EXPECT_EQ(args["app::db::Store::put/blob"].value, "<app::db::Opaque>");
  EXPECT_EQ(args["app::db::Store::put/password"].value, "***");

  // Two throws of "disk full": each left a `fail` span (one caught inside
  // `recover`, one escaping `outer`): one error record per throw, linked from
  // every span it left; the span that caught it has none.
  ASSERT_EQ(drained->errors.size(), 2u);
  for (const auto& e : drained->errors) {
    EXPECT_EQ(e.kind, abi::ErrorKind::kException);
    EXPECT_EQ(e.type, "std::runtime_error");
    EXPECT_EQ(e.message, "disk full");
    EXPECT_GE(e.frames.size(), 1u);
    EXPECT_EQ(text(segment, e.span_name_id), "app::db::Store::fail");
  }
  const auto& fails = ends["app::db::Store::fail"];
  EXPECT_EQ(fails[0].span.error_ref, static_cast<std::uint32_t>(drained->errors[0].sequence));
  EXPECT_EQ(fails[1].span.error_ref, static_cast<std::uint32_t>(drained->errors[1].sequence));
  EXPECT_EQ(ends["outer"][0].span.error_ref, static_cast<std::uint32_t>(drained->errors[1].sequence));
  EXPECT_EQ(ends["app::db::Store::recover"][0].span.error_ref, 0u);
}

}  // namespace
}  // namespace shmtrace::test
