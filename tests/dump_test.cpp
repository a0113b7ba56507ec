// shmtrace dump against real processes: st_dump writes a known set of
// records and waits, and what dump lists and decodes must equal it exactly;
// filters, --follow, a segment a SIGKILLed process left, corrupt segments,
// and that dump never changes a byte of the segment it reads.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "support/live_tools.hpp"

namespace shmtrace::test {
namespace {

using Value = nlohmann::json;

// Every non-empty line of `text`, parsed (a malformed line throws, failing
// the test that read it).
std::vector<Value> parse_lines(const std::string& text) {
  std::vector<Value> out;
  for (const std::string& line : lines_of(text)) out.push_back(Value::parse(line));
  return out;
}

// A field as dump wrote it: a string's text, a number's digits.
std::string text_of(const Value& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

std::string str(const Value& v, const char* key) { return v.at(key).get<std::string>(); }

// One comparable line per decoded record, from dump's JSON.
std::string summary(const Value& v) {
  const std::string kind = str(v, "kind");
  if (kind == "thread_start") return kind + " " + str(v, "thread_name");
  if (kind == "span_begin") return kind + " " + str(v, "name") + " group=" + str(v, "group");
  if (kind == "span_end") return kind + " " + str(v, "name") + " " + str(v, "status");
  if (kind == "counter") return kind + " " + str(v, "name") + " " + text_of(v.at("value"));
  if (kind == "event") return kind + " " + str(v, "name") + " " + str(v, "message");
  if (kind == "arg") {
    std::string s = kind + " " + str(v, "name") + " " + str(v, "type") + " " + text_of(v.at("value"));
    if (v.at("result").get<bool>()) s += " result";
    return s;
  }
  if (kind == "error") return kind + " " + str(v, "type") + " " + str(v, "message");
  return kind;
}

std::string key_value() {
  std::string key;
  for (int i = 0; key.size() < 100; ++i) key += "k" + std::to_string(i);
  key.resize(100);
  return key;
}

// What st_dump records writes, in order (after the runtime's thread start
// and process start records).
std::vector<std::string> expected_records() {
  return {"thread_start st_dump",
          "process_start",
          "span_begin alpha group=grp",
          "counter count 0",
          "counter count 1",
          "counter count 2",
          "counter count 3",
          "counter count 4",
          "event note hello",
          "arg key string " + key_value(),
          "arg ratio double 0.25",
          "arg ret int -7 result",
          "span_end alpha err",
          "error DumpError first"};
}

std::vector<std::string> summaries(const std::vector<Value>& values) {
  std::vector<std::string> out;
  for (const Value& v : values) out.push_back(summary(v));
  return out;
}

std::string pid_text(const LiveProducer& p) { return std::to_string(p.pid()); }

// The jsonl listing's entry for `segment`, listing its session only.
std::optional<Value> listed(const std::string& segment, const std::string& session) {
  const RunResult r = run_cli({"dump", "--format", "jsonl", "--session", session});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const Value& v : parse_lines(r.out)) {
    if (v.at("segment").get<std::string>() == segment) return v;
  }
  return std::nullopt;
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Removes a segment the way its drain would, error chunks included (they
// are chained from index 0; the first missing one ends the chain), also
// when the segment is too broken to attach.
void unlink_with_chunks(const std::string& segment) {
  ::shm_unlink(("/" + segment).c_str());
  for (int index = 0; ::shm_unlink(("/" + segment + ".err." + std::to_string(index)).c_str()) == 0; ++index) {
  }
}

TEST(DumpTest, ListShowsWhatTheProducerWrote) {
  LiveProducer p = start_st_dump({"records"});
  SegmentGuard guard(p.segment);
  auto entry = listed(p.segment, p.session);
  ASSERT_TRUE(entry);
  const Value& v = *entry;
  EXPECT_EQ(v.at("pid").get<std::uint64_t>(), static_cast<std::uint64_t>(p.pid()));
  EXPECT_EQ(v.at("program").get<std::string>(), "st_dump");
  EXPECT_EQ(v.at("session").get<std::string>(), p.session);
  EXPECT_EQ(v.at("state").get<std::string>(), "running");
  // 15 records: thread start, process start, span begin, 5 counters, the
  // event, the 100-byte argument (its head and 2 continuations), 2 more
  // arguments, span end.
  EXPECT_EQ(v.at("written").get<std::uint64_t>(), 15u);
  EXPECT_EQ(v.at("overflowed").get<std::uint64_t>(), 0u);
  EXPECT_EQ(v.at("dropped").get<std::uint64_t>(), 0u);
  EXPECT_EQ(v.at("errors_written").get<std::uint64_t>(), 1u);
  EXPECT_EQ(v.at("errors_spilled").get<std::uint64_t>(), 0u);
  EXPECT_EQ(v.at("errors_lost").get<std::uint64_t>(), 0u);
  EXPECT_GE(v.at("error_chunks").get<std::uint64_t>(), 1u);
  EXPECT_EQ(v.at("drain_pid").get<std::uint64_t>(), 0u);
  EXPECT_FALSE(v.at("drain_alive").get<bool>());
  EXPECT_TRUE(v.at("heartbeat_age_ns").is_null());
  ASSERT_EQ(v.at("rings").size(), 1u);
  const Value& ring = v.at("rings")[0];
  EXPECT_EQ(ring.at("ring").get<std::uint64_t>(), 0u);
  EXPECT_EQ(ring.at("tid").get<std::uint64_t>(), static_cast<std::uint64_t>(p.pid()));
  EXPECT_EQ(ring.at("head").get<std::uint64_t>(), 15u);
  EXPECT_EQ(ring.at("tail").get<std::uint64_t>(), 0u);
  EXPECT_EQ(ring.at("lag").get<std::uint64_t>(), 15u);

  // Two more records, one per signal: the listing follows.
  for (int i = 0; i < 2; ++i) {
    ::kill(p.pid(), SIGUSR1);
    ASSERT_TRUE(p.child.wait_for_output("more " + std::to_string(i)));
  }
  entry = listed(p.segment, p.session);
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->at("written").get<std::uint64_t>(), 17u);

  // The text table names it too.
  const RunResult text = run_cli({"dump", "--session", p.session});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find(p.segment), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("head 17 tail 0 lag 17"), std::string::npos) << text.out;
}

TEST(DumpTest, ListedCountersEqualTheReadersWithOverflowAndDrops) {
  // Small rings and overflow area, and no drain: most records overflow or drop.
  const std::string session = unique_session();
  const RunResult r = run({program_path("st_producer"), "sequence", "2", "500"},
                          {{"SHMTRACE_RING_RECORDS", "64"}, {"SHMTRACE_OVERFLOW_RECORDS", "64"},
                           {"SHMTRACE_SESSION", session}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string name = find_segment(r.pid, 0);
  ASSERT_FALSE(name.empty());
  SegmentGuard guard(name);
  auto segment = reader::Segment::attach(name, reader::Access::kReadOnly);
  ASSERT_TRUE(segment) << segment.error().message;
  auto entry = listed(name, session);
  ASSERT_TRUE(entry);
  const Value& v = *entry;
  EXPECT_EQ(v.at("state").get<std::string>(), "exited");
  EXPECT_EQ(v.at("exit_status").get<std::int64_t>(), 0);
  std::uint64_t written = 0, overflowed = 0, dropped = 0;
  std::size_t at = 0;
  for (std::uint32_t i = 0; i < segment->ring_count(); ++i) {
    auto info = segment->ring_info(i);
    ASSERT_TRUE(info) << info.error().message;
    if (info->state == abi::RingState::kFree) continue;
    ASSERT_LT(at, v.at("rings").size());
    const Value& ring = v.at("rings")[at++];
    EXPECT_EQ(ring.at("ring").get<std::uint64_t>(), i);
    EXPECT_EQ(ring.at("head").get<std::uint64_t>(), info->head);
    EXPECT_EQ(ring.at("tail").get<std::uint64_t>(), info->tail);
    EXPECT_EQ(ring.at("overflowed").get<std::uint64_t>(), info->overflowed);
    EXPECT_EQ(ring.at("dropped").get<std::uint64_t>(), info->dropped);
    EXPECT_EQ(ring.at("tid").get<std::uint64_t>(), info->tid);
    written += info->written;
    overflowed += info->overflowed;
    dropped += info->dropped;
  }
  EXPECT_EQ(at, v.at("rings").size());
  const reader::LiveFields live = segment->peek_live();
  EXPECT_EQ(v.at("written").get<std::uint64_t>(), written);
  EXPECT_EQ(v.at("overflowed").get<std::uint64_t>(), overflowed + live.no_ring_overflowed);
  EXPECT_EQ(v.at("dropped").get<std::uint64_t>(), dropped + live.no_ring_dropped);
  EXPECT_EQ(v.at("overflow_pending").get<std::uint64_t>(), live.overflow_enqueue - live.overflow_dequeue);
  // Each thread wrote 500 counters and 32 string arguments, more than 64 + 64 fit.
  // The two workers' rings are full (no drain moves a tail); the main
  // thread's holds its few records.
  std::size_t full = 0;
  for (const Value& ring : v.at("rings")) full += ring.at("head").get<std::uint64_t>() == 64 ? 1 : 0;
  EXPECT_EQ(full, 2u);
  EXPECT_EQ(v.at("rings").size(), 3u);
  EXPECT_EQ(overflowed + live.no_ring_overflowed, 64u);
  EXPECT_GT(dropped, 0u);
}

TEST(DumpTest, DecodedRecordsEqualWhatTheProducerWrote) {
  LiveProducer p = start_st_dump({"records"});
  SegmentGuard guard(p.segment);
  for (const std::string& target : {pid_text(p), p.segment, "/dev/shm/" + p.segment}) {
    const RunResult r = run_cli({"dump", target, "--format", "jsonl"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.err, "");
    const std::vector<Value> values = parse_lines(r.out);
    EXPECT_EQ(summaries(values), expected_records()) << r.out;
    ASSERT_EQ(values.size(), expected_records().size());
    // Positions: one per record, the argument's two continuations between.
    const std::vector<std::uint64_t> positions = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14};
    for (std::size_t i = 0; i < positions.size(); ++i) {
      EXPECT_EQ(values[i].at("source").get<std::string>(), "ring");
      EXPECT_EQ(values[i].at("position").get<std::uint64_t>(), positions[i]);
      EXPECT_EQ(values[i].at("tid").get<std::uint64_t>(), static_cast<std::uint64_t>(p.pid()));
    }
    // The span's begin and end, and the records inside it, carry one id.
    const std::uint64_t span = values[2].at("span_id").get<std::uint64_t>();
    EXPECT_NE(span, 0u);
    for (std::size_t i = 3; i <= 12; ++i) EXPECT_EQ(values[i].at("span_id").get<std::uint64_t>(), span) << i;
    EXPECT_EQ(values[2].at("trace_id").get<std::string>(), values[12].at("trace_id").get<std::string>());
    EXPECT_GE(values[12].at("duration_ns").get<std::int64_t>(), 0);
    // Times: wall clock after the process started, in order.
    for (std::size_t i = 1; i < values.size(); ++i) {
      EXPECT_GE(values[i].at("wall_ns").get<std::int64_t>(), values[i - 1].at("wall_ns").get<std::int64_t>()) << i;
    }
    EXPECT_EQ(values.back().at("source").get<std::string>(), "errors");
    EXPECT_EQ(values.back().at("sequence").get<std::uint64_t>(), 1u);
  }
  // The text form: one line per record and error, names and values readable.
  const RunResult text = run_cli({"dump", pid_text(p)});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  const auto lines = lines_of(text.out);
  ASSERT_EQ(lines.size(), expected_records().size()) << text.out;
  EXPECT_NE(lines[3].find("kind=counter name=\"count\""), std::string::npos) << lines[3];
  EXPECT_NE(lines[3].find("value=0"), std::string::npos) << lines[3];
  EXPECT_NE(lines[8].find("message=\"hello\""), std::string::npos) << lines[8];
  EXPECT_NE(lines.back().find("type=\"DumpError\" message=\"first\""), std::string::npos) << lines.back();
}

TEST(DumpTest, KindAndRingFilter) {
  LiveProducer p = start_st_dump({"records"});
  SegmentGuard guard(p.segment);
  auto kinds = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> args{"dump", pid_text(p), "--format", "jsonl"};
    args.insert(args.end(), extra.begin(), extra.end());
    const RunResult r = run_cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return summaries(parse_lines(r.out));
  };
  EXPECT_EQ(kinds({"--kind", "counter"}), (std::vector<std::string>{"counter count 0", "counter count 1",
                                                                     "counter count 2", "counter count 3",
                                                                     "counter count 4"}));
  // --kind before the target takes one value, not the target too.
  const RunResult before = run_cli({"dump", "--kind", "event", pid_text(p), "--format", "jsonl"});
  EXPECT_EQ(before.exit_code, 0) << before.err;
  EXPECT_EQ(summaries(parse_lines(before.out)), std::vector<std::string>{"event note hello"});
  EXPECT_EQ(kinds({"--kind", "event,span_end"}), (std::vector<std::string>{"event note hello", "span_end alpha err"}));
  EXPECT_EQ(kinds({"--kind", "error"}), (std::vector<std::string>{"error DumpError first"}));
  EXPECT_EQ(kinds({"--kind", "arg", "--kind", "span_begin"}),
            (std::vector<std::string>{"span_begin alpha group=grp", "arg key string " + key_value(),
                                      "arg ratio double 0.25", "arg ret int -7 result"}));
  // --ring: that ring's records only, no error entries (they belong to no ring).
  std::vector<std::string> ring0 = expected_records();
  ring0.pop_back();
  EXPECT_EQ(kinds({"--ring", "0"}), ring0);
  EXPECT_EQ(kinds({"--ring", "1"}), std::vector<std::string>{});
}

TEST(DumpTest, InstrumentedFunctionsAreNamedThroughTheModuleMap) {
  // No API spans, two calls of dump_traced_leaf through the instrumentation hooks.
  LiveProducer p = start_st_dump({"calls", "0", "2", "0"});
  SegmentGuard guard(p.segment);
  const RunResult r = run_cli({"dump", pid_text(p), "--kind", "span_begin,span_end", "--format", "jsonl"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto values = parse_lines(r.out);
  ASSERT_EQ(values.size(), 4u) << r.out;
  for (std::size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(values[i].at("kind").get<std::string>(), i % 2 == 0 ? "span_begin" : "span_end") << r.out;
    if (i % 2 == 0) {
      EXPECT_EQ(values[i].at("function").get<std::string>(), "dump_traced_leaf") << r.out;
      EXPECT_NE(values[i].at("code").get<std::uint64_t>(), 0u);
      EXPECT_EQ(values[i].at("span_id").get<std::uint64_t>(), values[i + 1].at("span_id").get<std::uint64_t>());
    }
  }
  EXPECT_EQ(values[0].at("code").get<std::uint64_t>(), values[2].at("code").get<std::uint64_t>());
}

TEST(DumpTest, FollowPrintsRecordsWrittenAfterItStarted) {
  LiveProducer p = start_st_dump({"records"});
  SegmentGuard guard(p.segment);
  Child follow = Child::start({shmtrace_cli(), "dump", pid_text(p), "--follow", "--format", "jsonl", "--kind", "counter"}, {});
  ASSERT_TRUE(follow.wait_for_output("\"position\":7,"));  // count 4, the last counter present
  for (int i = 0; i < 2; ++i) {
    ::kill(p.pid(), SIGUSR1);
    ASSERT_TRUE(p.child.wait_for_output("more " + std::to_string(i)));
    // The producer's record i lands at position 15 + i.
    ASSERT_TRUE(follow.wait_for_output("\"position\":" + std::to_string(15 + i) + ",")) << i;
  }
  ::kill(follow.pid(), SIGINT);
  const RunResult r = follow.wait();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(summaries(parse_lines(r.out)),
            (std::vector<std::string>{"counter count 0", "counter count 1", "counter count 2", "counter count 3",
                                      "counter count 4", "counter more 0", "counter more 1"}));
}

TEST(DumpTest, SegmentOfAKilledProcessIsDumpedAndFollowedUntilRemoved) {
  LiveProducer p = start_st_dump({"records"});
  SegmentGuard guard(p.segment);
  const std::string pid = pid_text(p);
  ::kill(p.pid(), SIGKILL);
  const RunResult killed = p.child.wait();
  ASSERT_EQ(killed.signal, SIGKILL);
  const RunResult r = run_cli({"dump", pid, "--format", "jsonl"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(summaries(parse_lines(r.out)), expected_records());
  // It still reads as running: SIGKILL leaves the runtime no time to say.
  auto entry = listed(p.segment, p.session);
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->at("written").get<std::uint64_t>(), 15u);

  Child follow = Child::start({shmtrace_cli(), "dump", p.segment, "--follow"}, {});
  ASSERT_TRUE(follow.wait_for_output("DumpError"));
  unlink_with_chunks(p.segment);
  EXPECT_TRUE(exits_within(follow.pid(), 10000)) << "follow did not end when the segment was removed";
  const RunResult ended = follow.wait();
  EXPECT_EQ(ended.exit_code, 0) << ended.err;
  EXPECT_EQ(lines_of(ended.out).size(), expected_records().size()) << ended.out;
}

TEST(DumpTest, BesideAConsumerShowsItAndSkipsWhatItTookWithoutDisturbingIt) {
  LiveProducer p = start_st_dump({"records"});
  SegmentGuard guard(p.segment);
  // This process is the segment's consumer, as a drain would be.
  reader::Segment consumer = attach_consumer(p.segment);
  ASSERT_TRUE(consumer.claim_consumer());
  auto first = drain_segment(consumer);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first->ring_records, 15u);

  auto entry = listed(p.segment, p.session);
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->at("drain_pid").get<std::uint64_t>(), static_cast<std::uint64_t>(::getpid()));
  EXPECT_TRUE(entry->at("drain_alive").get<bool>());
  ASSERT_TRUE(entry->at("heartbeat_age_ns").is_number());
  EXPECT_LT(entry->at("heartbeat_age_ns").get<std::uint64_t>(), 60'000'000'000u);
  EXPECT_EQ(entry->at("rings")[0].at("tail").get<std::uint64_t>(), 15u);
  EXPECT_EQ(entry->at("rings")[0].at("lag").get<std::uint64_t>(), 0u);

  // The ring's records were handed back: dump says so and prints none of
  // them; the error area is not the consumer's to empty, so the error shows.
  const RunResult r = run_cli({"dump", pid_text(p), "--format", "jsonl"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto values = parse_lines(r.out);
  ASSERT_EQ(values.size(), 2u) << r.out;
  EXPECT_EQ(values[0].at("kind").get<std::string>(), "skipped");
  EXPECT_EQ(values[0].at("ring").get<std::uint64_t>(), 0u);
  EXPECT_EQ(values[0].at("from").get<std::uint64_t>(), 0u);
  EXPECT_EQ(values[0].at("count").get<std::uint64_t>(), 15u);
  EXPECT_EQ(summary(values[1]), "error DumpError first");

  // A follower beside the consumer: the consumer still gets every record,
  // exactly once; the follower prints the new record or says it was taken.
  Child follow = Child::start({shmtrace_cli(), "dump", pid_text(p), "--follow", "--format", "jsonl", "--kind",
                               "counter,skipped"},
                              {});
  ASSERT_TRUE(follow.wait_for_output("\"kind\":\"skipped\""));
  ::kill(p.pid(), SIGUSR1);
  ASSERT_TRUE(p.child.wait_for_output("more 0"));
  auto second = drain_segment(consumer);
  ASSERT_TRUE(second) << second.error().message;
  ASSERT_EQ(second->records.size(), 1u);
  EXPECT_EQ(second->records[0].kind, abi::RecordKind::kCounter);
  EXPECT_EQ(text(consumer, second->records[0].name_id), "more");
  auto ring = consumer.ring_info(0);
  ASSERT_TRUE(ring);
  EXPECT_EQ(ring->tail, 16u);
  // Poll until the follower has accounted for position 15 one way or the other.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  RunResult followed;
  for (bool done = false; !done;) {
    done = follow.wait_for_output("\"position\":15,", 50) || follow.wait_for_output("\"from\":15,", 50) ||
           std::chrono::steady_clock::now() > deadline;
  }
  ::kill(follow.pid(), SIGINT);
  followed = follow.wait();
  EXPECT_EQ(followed.exit_code, 0) << followed.err;
  const auto seen = parse_lines(followed.out);
  ASSERT_EQ(seen.size(), 2u) << followed.out;  // the first skipped line, then position 15 either way
  EXPECT_EQ(seen[0].at("kind").get<std::string>(), "skipped");
  if (seen[1].at("kind").get<std::string>() == "skipped") {
    EXPECT_EQ(seen[1].at("from").get<std::uint64_t>(), 15u);
    EXPECT_EQ(seen[1].at("count").get<std::uint64_t>(), 1u);
  } else {
    EXPECT_EQ(summary(seen[1]), "counter more 0");
    EXPECT_EQ(seen[1].at("position").get<std::uint64_t>(), 15u);
  }
}

TEST(DumpTest, PidOfAnExecChainShowsTheNewestSegmentAndSaysSo) {
  LiveProducer p = start_st_dump({"exec-records"});
  auto listed_pid = reader::list_segments(static_cast<std::uint32_t>(p.pid()));
  ASSERT_TRUE(listed_pid);
  ASSERT_EQ(listed_pid->size(), 2u);
  SegmentGuard first((*listed_pid)[0].name);
  SegmentGuard second((*listed_pid)[1].name);
  const RunResult r = run_cli({"dump", pid_text(p), "--format", "jsonl"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(summaries(parse_lines(r.out)), expected_records());
  ASSERT_EQ(lines_of(r.err).size(), 1u) << r.err;
  EXPECT_NE(r.err.find("has 2 segments"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find((*listed_pid)[0].name), std::string::npos) << r.err;
  EXPECT_NE(r.err.find((*listed_pid)[1].name), std::string::npos) << r.err;
  // The older image's segment, by name: its one counter.
  const std::string older = r.err.substr(r.err.rfind(' ') + 1, r.err.size() - r.err.rfind(' ') - 2);
  const RunResult old_image = run_cli({"dump", older, "--format", "jsonl", "--kind", "counter"});
  ASSERT_EQ(old_image.exit_code, 0) << old_image.err;
  EXPECT_EQ(summaries(parse_lines(old_image.out)), std::vector<std::string>{"counter before-exec 1"});
}

// A file in /dev/shm under a segment's name (pid 3999999999, which no
// process has), removed at scope exit.
struct PlantedFile {
  std::string name = "shmtrace.3999999999.00000000000000ab";
  explicit PlantedFile(const std::string& bytes) {
    const int fd = ::open(("/dev/shm/" + name).c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0 || ::write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) {
      throw std::runtime_error("cannot plant " + name);
    }
    ::close(fd);
  }
  ~PlantedFile() { ::unlink(("/dev/shm/" + name).c_str()); }
};

void expect_one_line_naming(const RunResult& r, const std::string& name) {
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(lines_of(r.err).size(), 1u) << r.err;
  EXPECT_NE(r.err.find(name), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(DumpTest, CorruptSegmentsGiveOneLineAndExitOne) {
  {
    PlantedFile bad(std::string(8192, 'x'));  // bad magic
    expect_one_line_naming(run_cli({"dump", bad.name}), bad.name);
    expect_one_line_naming(run_cli({"dump", "3999999999"}), bad.name);
    // The listing names it on stderr, exits 1, and still lists the others.
    LiveProducer p = start_st_dump({"records"});
    SegmentGuard guard(p.segment);
    // (Other tests running beside this one may have planted files of their own.)
    const RunResult list = run_cli({"dump"});
    EXPECT_EQ(list.exit_code, 1);
    std::size_t naming = 0;
    for (const std::string& line : lines_of(list.err)) naming += line.find(bad.name) != std::string::npos ? 1 : 0;
    EXPECT_EQ(naming, 1u) << list.err;
    EXPECT_NE(list.out.find(p.segment), std::string::npos) << list.out;
  }
  {
    // A real header whose sizes lie: the file holds its first 64 KiB only.
    LiveProducer p = start_st_dump({"records"});
    SegmentGuard guard(p.segment);
    const std::string header = file_bytes("/dev/shm/" + p.segment).substr(0, 65536);
    PlantedFile truncated(header);
    expect_one_line_naming(run_cli({"dump", truncated.name}), truncated.name);
    // Under the producer's own name, truncated in place.
    ASSERT_EQ(::truncate(("/dev/shm/" + p.segment).c_str(), 65536), 0);
    expect_one_line_naming(run_cli({"dump", pid_text(p)}), p.segment);
    expect_one_line_naming(run_cli({"dump", p.segment, "--follow"}), p.segment);
    ::kill(p.pid(), SIGKILL);
    (void)p.child.wait();
    unlink_with_chunks(p.segment);
  }
  expect_one_line_naming(run_cli({"dump", "3999999998"}), "3999999998");  // no segment at all
  expect_one_line_naming(run_cli({"dump", "9999999999"}), "9999999999");  // no pid at all
}

TEST(DumpTest, NeverChangesTheSegment) {
  LiveProducer p = start_st_dump({"records"});
  SegmentGuard guard(p.segment);
  const std::string path = "/dev/shm/" + p.segment;
  struct stat before_stat {};
  ASSERT_EQ(::stat(path.c_str(), &before_stat), 0);
  const std::string before = file_bytes(path);
  ASSERT_EQ(before.size(), static_cast<std::size_t>(before_stat.st_size));

  (void)run_cli({"dump"});  // every segment (others' may be broken: exit 1)
  EXPECT_EQ(run_cli({"dump", "--session", p.session}).exit_code, 0);
  EXPECT_EQ(run_cli({"dump", "--format", "jsonl", "--session", p.session}).exit_code, 0);
  EXPECT_EQ(run_cli({"dump", pid_text(p)}).exit_code, 0);
  EXPECT_EQ(run_cli({"dump", p.segment, "--format", "jsonl"}).exit_code, 0);
  EXPECT_EQ(run_cli({"top", "--once", "--interval", "100ms", "--pid", pid_text(p)}).exit_code, 0);
  Child follow = Child::start({shmtrace_cli(), "dump", pid_text(p), "--follow"}, {});
  ASSERT_TRUE(follow.wait_for_output("DumpError"));
  ::kill(follow.pid(), SIGINT);
  EXPECT_EQ(follow.wait().exit_code, 0);

  struct stat after_stat {};
  ASSERT_EQ(::stat(path.c_str(), &after_stat), 0);
  // Not a byte changed (tails, heartbeat, drain pid, overflow positions
  // included), and no page of a hole was allocated by reading it.
  const std::string after = file_bytes(path);
  EXPECT_EQ(after.size(), before.size());
  EXPECT_TRUE(after == before) << "the segment changed";
  EXPECT_EQ(after_stat.st_blocks, before_stat.st_blocks);
  const auto* header = reinterpret_cast<const abi::SegmentHeader*>(after.data());
  EXPECT_EQ(header->drain_pid, 0u);
  EXPECT_EQ(header->drain_heartbeat_ns, 0u);
}

TEST(DumpTest, BadOptionsExitTwo) {
  const std::vector<std::vector<std::string>> bad = {
      {"dump", "--format", "xml"},
      {"dump", "1", "--kind", "nope"},
      {"dump", "--ring", "0"},
      {"dump", "--follow"},
      {"dump", "--session", "1abc"},
      {"dump", "1", "--session", "abc"},
      {"dump", "--bogus"},
      {"dump", "1", "2"},
  };
  for (const auto& args : bad) {
    const RunResult r = run_cli(args);
    EXPECT_EQ(r.exit_code, 2) << args[1] << " " << r.err;
    EXPECT_EQ(lines_of(r.err).size(), 1u) << r.err;
  }
  LiveProducer p = start_st_dump({"records"});
  SegmentGuard guard(p.segment);
  const RunResult r = run_cli({"dump", pid_text(p), "--ring", "100000"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(run_cli({"dump", "--help"}).exit_code, 0);
  // shmtrace-dump is the same command.
  const RunResult alias = run({shmtrace_cli() + "-dump", pid_text(p), "--kind", "error", "--format", "jsonl"});
  EXPECT_EQ(alias.exit_code, 0) << alias.err;
  EXPECT_EQ(summaries(parse_lines(alias.out)), std::vector<std::string>{"error DumpError first"});
}

TEST(DumpTest, ListsOneSession) {
  LiveProducer in = start_st_dump({"records"});
  SegmentGuard guard_in(in.segment);
  LiveProducer out = start_st_dump({"records"});
  SegmentGuard guard_out(out.segment);
  LiveProducer none = start_st_dump({"records"}, {{"SHMTRACE_SESSION", "", true}});
  SegmentGuard guard_none(none.segment);
  const RunResult r = run_cli({"dump", "--session", in.session, "--format", "jsonl"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto values = parse_lines(r.out);
  ASSERT_EQ(values.size(), 1u) << r.out;
  EXPECT_EQ(values[0].at("segment").get<std::string>(), in.segment);
  EXPECT_EQ(values[0].at("session").get<std::string>(), in.session);
  // And a segment of no session lists with an empty one.
  const RunResult all = run_cli({"dump", "--format", "jsonl"});
  bool found = false;
  for (const Value& v : parse_lines(all.out)) {
    if (v.at("segment").get<std::string>() != none.segment) continue;
    found = true;
    EXPECT_EQ(v.at("session").get<std::string>(), "");
  }
  EXPECT_TRUE(found) << all.out;
}

}  // namespace
}  // namespace shmtrace::test
