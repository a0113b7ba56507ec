// Call-site statistics (P13) and the longjmp-proof call stack, end to end:
// real programs (tests/workload/st_stats_threads, st_longjmp,
// tests/programs/st_stats_api) count their own calls and time their own
// waits; after they exit, the reader's statistics of their segment must
// match exactly, whatever the ring dropped or sampling left out.
#include <dirent.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

using abi::RecordKind;

std::vector<std::vector<std::string>> lines_of(const std::string& out) {
  std::vector<std::vector<std::string>> lines;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::vector<std::string> fields;
    for (std::string w; words >> w;) fields.push_back(w);
    if (!fields.empty()) lines.push_back(std::move(fields));
  }
  return lines;
}

// Whether a consumer other than us took records from the segment.
bool consumed_by_another(const reader::Segment& s) {
  for (std::uint32_t r = 0; r < s.ring_count(); ++r) {
    auto info = s.ring_info(r);
    if (info && info->tail != 0) return true;
  }
  return false;
}

// A finished program's segment, removed at scope exit.
struct Finished {
  RunResult result;
  std::string name;
  std::unique_ptr<SegmentGuard> guard;
  std::optional<reader::Segment> segment;
};

Finished run_program(const std::string& program, const std::vector<std::string>& args,
                     const std::vector<EnvChange>& env) {
  Finished f;
  std::vector<std::string> argv{program_path(program)};
  argv.insert(argv.end(), args.begin(), args.end());
  f.result = run(argv, env);
  f.name = find_segment(f.result.pid, 1000);
  if (f.name.empty()) return f;
  f.guard = std::make_unique<SegmentGuard>(f.name);
  auto s = reader::Segment::attach(f.name, reader::Access::kConsume);
  if (!s) {
    ADD_FAILURE() << s.error().message;
    return f;
  }
  f.segment.emplace(std::move(*s));
  return f;
}

// Every record still in the rings, decoded ring by ring. (Not
// drain_segment(): these tests need no error chunks, and a drain run by a
// test beside ours may already have removed a finished process's chunks.)
std::vector<reader::DecodedRecord> ring_records(const reader::Segment& s) {
  std::vector<reader::DecodedRecord> out;
  for (std::uint32_t r = 0; r < s.ring_count(); ++r) {
    auto batch = s.read_ring(r, 1u << 24);
    if (!batch) {
      ADD_FAILURE() << batch.error().message;
      continue;
    }
    reader::DecodeStats stats;
    for (reader::DecodedRecord& d : reader::decode(batch->records, stats)) out.push_back(std::move(d));
    EXPECT_EQ(stats.unknown_kinds + stats.broken_continuations, 0u);
  }
  return out;
}

// "fn <name> <hex address>" lines.
std::map<std::uint64_t, std::string> functions_of(const std::string& out) {
  std::map<std::uint64_t, std::string> by_address;
  for (const auto& l : lines_of(out)) {
    if (l.size() == 3 && l[0] == "fn") by_address[std::stoull(l[2], nullptr, 16)] = l[1];
  }
  return by_address;
}

// ---------------------------------------------------------------------------
// (a), (b): a threaded instrumented program, ring too small / sampled at 1 %
// ---------------------------------------------------------------------------
struct ThreadCounts {
  std::uint32_t tid = 0;
  std::map<std::string, std::uint64_t> calls;
  std::uint64_t total() const {
    std::uint64_t sum = 0;
    for (const auto& [name, n] : calls) sum += n;
    return sum;
  }
};

std::map<int, ThreadCounts> threads_of(const std::string& out) {
  std::map<int, ThreadCounts> threads;
  for (const auto& l : lines_of(out)) {
    if (l.size() < 4 || l[0] != "thread") continue;
    ThreadCounts& t = threads[std::stoi(l[1])];
    if (l[2] == "tid") t.tid = static_cast<std::uint32_t>(std::stoul(l[3]));
    if (l[2] == "count" && l.size() == 5) t.calls[l[3]] = std::stoull(l[4]);
  }
  return threads;
}

// Ring of each thread id (every thread of st_stats_threads owns one).
std::map<std::uint32_t, std::uint32_t> rings_by_tid(const reader::Segment& s) {
  std::map<std::uint32_t, std::uint32_t> rings;
  for (std::uint32_t r = 0; r < s.ring_count(); ++r) {
    auto info = s.ring_info(r);
    if (info && info->state != abi::RingState::kFree) rings[info->tid] = r;
  }
  return rings;
}

using StatsByThread = std::map<std::uint32_t, std::map<std::string, reader::CallSiteStats>>;

// Checks each thread's statistics against its own counts; fills `out` with
// the statistics by (tid, function).
void expect_exact_counts(const Finished& f, StatsByThread& out) {
  const auto functions = functions_of(f.result.out);
  const auto threads = threads_of(f.result.out);
  EXPECT_EQ(functions.size(), 4u) << f.result.out;
  EXPECT_EQ(threads.size(), 4u) << f.result.out;
  const auto rings = rings_by_tid(*f.segment);
  for (const auto& [index, thread] : threads) {
    SCOPED_TRACE("thread " + std::to_string(index));
    ASSERT_TRUE(rings.count(thread.tid)) << "no ring for tid " << thread.tid;
    auto stats = f.segment->call_site_stats(rings.at(thread.tid));
    EXPECT_TRUE(stats) << stats.error().message;
    if (!stats) continue;
    std::map<std::string, reader::CallSiteStats>& by_name = out[thread.tid];
    for (const reader::CallSiteStats& s : *stats) {
      if (s.kind == abi::CallSiteKind::kOther) {
        EXPECT_EQ(s.calls, 0u);  // 4 sites: the table never filled
        continue;
      }
      ASSERT_EQ(s.kind, abi::CallSiteKind::kCode);
      ASSERT_TRUE(functions.count(s.address)) << std::hex << s.address;
      by_name[functions.at(s.address)] = s;
    }
    for (const auto& [name, calls] : thread.calls) {
      ASSERT_TRUE(by_name.count(name)) << name;
      const reader::CallSiteStats& s = by_name.at(name);
      EXPECT_EQ(s.calls, calls) << name;
      EXPECT_EQ(s.completed, calls) << name;  // every call ended: histogram count == calls
      EXPECT_EQ(s.unfinished, 0u) << name;
      EXPECT_EQ(s.errors, 0u) << name;
      EXPECT_EQ(s.tid, thread.tid) << name;
      EXPECT_LE(s.min_ns, s.quantile_ns(0.5)) << name;
      EXPECT_LE(s.quantile_ns(0.5), s.max_ns) << name;
    }
    EXPECT_EQ(by_name.size(), thread.calls.size());
  }
}

TEST(StatsProcess, CountsExactWhileATinyRingDropsAlmostEverything) {
  Finished f = run_program("st_stats_threads", {"4", "3000"},
                           {{"SHMTRACE_RING_RECORDS", "64"}, {"SHMTRACE_OVERFLOW_RECORDS", "64"}});
  ASSERT_EQ(f.result.exit_code, 0) << f.result.err;
  ASSERT_TRUE(f.segment.has_value()) << "the segment is gone: did a drain run beside the test?";
  StatsByThread stats;
  expect_exact_counts(f, stats);

  ASSERT_FALSE(consumed_by_another(*f.segment)) << "another consumer took records: did a drain run beside the test?";
  // Accounting (abi.hpp): every record a thread tried to write is stored in
  // its ring, stored in the overflow area, or dropped; a thread wrote
  // ThreadStart, a begin and an end per call, ThreadEnd, and drop markers.
  auto overflow = f.segment->read_overflow(1u << 20);
  ASSERT_TRUE(overflow) << overflow.error().message;
  const auto rings = rings_by_tid(*f.segment);
  for (const auto& [index, thread] : threads_of(f.result.out)) {
    const std::uint32_t ring = rings.at(thread.tid);
    auto info = f.segment->ring_info(ring);
    ASSERT_TRUE(info);
    auto batch = f.segment->read_ring(ring, 1u << 20);
    ASSERT_TRUE(batch);
    std::uint64_t markers = 0;
    for (const abi::Record& r : batch->records) markers += r.kind == static_cast<std::uint8_t>(RecordKind::kDropMarker);
    for (const auto& e : overflow->entries) {
      if (e.ring_index == ring) markers += e.record.kind == static_cast<std::uint8_t>(RecordKind::kDropMarker);
    }
    EXPECT_EQ(info->written + info->overflowed + info->dropped, 2 * thread.total() + 2 + markers)
        << "thread " << index;
    EXPECT_GT(info->dropped, thread.total()) << "the ring was meant to drop most spans";
  }
}

TEST(StatsProcess, CountsExactAtSampleRateOnePercent) {
  Finished f = run_program("st_stats_threads", {"4", "3000"}, {{"SHMTRACE_SAMPLE_RATE", "0.01"}});
  ASSERT_EQ(f.result.exit_code, 0) << f.result.err;
  ASSERT_TRUE(f.segment.has_value()) << "the segment is gone: did a drain run beside the test?";
  StatsByThread stats;
  expect_exact_counts(f, stats);
  ASSERT_FALSE(consumed_by_another(*f.segment)) << "another consumer took records: did a drain run beside the test?";
  // The recorded spans are the kept traces only: a few percent of the calls.
  std::uint64_t recorded = 0;
  std::uint64_t calls = 0;
  for (const auto& d : ring_records(*f.segment)) recorded += d.kind == RecordKind::kSpanBegin;
  for (const auto& [tid, by_name] : stats) {
    for (const auto& [name, s] : by_name) calls += s.calls;
  }
  EXPECT_GT(recorded, 0u);
  EXPECT_LT(recorded * 10, calls) << recorded << " of " << calls;
}

// ---------------------------------------------------------------------------
// (c): API spans of known duration
// ---------------------------------------------------------------------------
TEST(StatsProcess, ApiSpanPercentilesMatchWhatTheProgramMeasured) {
  Finished f = run_program("st_stats_api", {"busy", "200"}, {});
  ASSERT_EQ(f.result.exit_code, 0) << f.result.err;
  ASSERT_TRUE(f.segment.has_value()) << "the segment is gone: did a drain run beside the test?";
  auto stats = f.segment->call_site_stats();
  ASSERT_TRUE(stats) << stats.error().message;
  std::map<std::string, reader::CallSiteStats> by_name;
  for (const reader::CallSiteStats& s : *stats) {
    if (s.kind == abi::CallSiteKind::kName) by_name[text(*f.segment, s.name_id)] = s;
  }
  int checked = 0;
  for (const auto& l : lines_of(f.result.out)) {
    if (l.size() != 6 || l[0] != "measured") continue;
    const std::string& name = l[1];
    SCOPED_TRACE(name);
    const double inner = std::stod(l[3]);
    const double outer = std::stod(l[5]);
    ASSERT_TRUE(by_name.count(name));
    const reader::CallSiteStats& s = by_name.at(name);
    EXPECT_EQ(s.calls, 200u);
    EXPECT_EQ(s.completed, s.calls);  // histogram count == calls
    EXPECT_EQ(s.errors, 0u);
    const double p50 = s.quantile_ns(0.5);
    EXPECT_LE(s.min_ns, p50);
    EXPECT_LE(p50, s.max_ns);
    // The span lies between the program's inner and outer measurements.
    EXPECT_GE(p50, inner * 0.97) << "inner p50 " << inner;
    EXPECT_LE(p50, outer * 1.03) << "outer p50 " << outer;
    ++checked;
  }
  EXPECT_EQ(checked, 3) << f.result.out;
  ASSERT_TRUE(by_name.count("busy"));
  EXPECT_EQ(by_name.at("busy").calls, 1u);
}

// ---------------------------------------------------------------------------
// (e): a full table sends further call sites to "other", counted exactly;
// the ring's statistics add up over the threads that reuse it.
// ---------------------------------------------------------------------------
TEST(StatsProcess, FullTableGoesToOtherAndRingReuseAccumulates) {
  constexpr int kNames = 10;
  constexpr int kThreads = 3;
  constexpr int kSites = 4;
  Finished f = run_program("st_stats_api", {"sites", std::to_string(kNames), std::to_string(kThreads)},
                           {{"SHMTRACE_STATS_SITES", std::to_string(kSites)}});
  ASSERT_EQ(f.result.exit_code, 0) << f.result.err;
  ASSERT_TRUE(f.segment.has_value()) << "the segment is gone: did a drain run beside the test?";
  EXPECT_EQ(f.segment->header().ring_stats_bytes, (kSites + 1) * sizeof(abi::StatsSlot));
  // What each thread did (st_stats_api.cpp): name i, i + 1 calls, every
  // 3rd call of the thread with status ERR.
  std::map<std::string, std::uint64_t> calls;
  std::map<std::string, std::uint64_t> errors;
  for (int t = 0; t < kThreads; ++t) {
    unsigned call = 0;
    for (int i = 0; i < kNames; ++i) {
      for (int n = 0; n <= i; ++n) {
        const std::string name = "site-" + std::to_string(i);
        ++calls[name];
        if (++call % 3 == 0) ++errors[name];
      }
    }
  }
  auto stats = f.segment->call_site_stats();
  ASSERT_TRUE(stats) << stats.error().message;
  std::map<std::string, std::uint64_t> got_calls;
  std::map<std::string, std::uint64_t> got_errors;
  std::uint64_t other_calls = 0;
  std::uint64_t other_errors = 0;
  std::uint64_t other_completed = 0;
  for (const reader::CallSiteStats& s : *stats) {
    if (s.kind == abi::CallSiteKind::kOther) {
      other_calls += s.calls;
      other_errors += s.errors;
      other_completed += s.completed;
      continue;
    }
    ASSERT_EQ(s.kind, abi::CallSiteKind::kName);
    got_calls[text(*f.segment, s.name_id)] += s.calls;
    got_errors[text(*f.segment, s.name_id)] += s.errors;
    EXPECT_EQ(s.completed, s.calls);
  }
  std::uint64_t expect_other_calls = 0;
  std::uint64_t expect_other_errors = 0;
  for (int i = 0; i < kNames; ++i) {
    const std::string name = "site-" + std::to_string(i);
    if (i < kSites) {
      EXPECT_EQ(got_calls[name], calls[name]) << name;
      EXPECT_EQ(got_errors[name], errors[name]) << name;
    } else {
      EXPECT_EQ(got_calls.count(name), 0u) << name << " has a slot although the table was full";
      expect_other_calls += calls[name];
      expect_other_errors += errors[name];
    }
  }
  EXPECT_EQ(got_calls.size(), static_cast<std::size_t>(kSites));
  EXPECT_EQ(other_calls, expect_other_calls);
  EXPECT_EQ(other_errors, expect_other_errors);
  EXPECT_EQ(other_completed, expect_other_calls);
}

TEST(StatsProcess, StatisticsOffLeavesNoTable) {
  Finished f = run_program("st_stats_api", {"sites", "3", "1"}, {{"SHMTRACE_STATS_SITES", "0"}});
  ASSERT_EQ(f.result.exit_code, 0) << f.result.err;
  ASSERT_TRUE(f.segment.has_value()) << "the segment is gone: did a drain run beside the test?";
  EXPECT_EQ(f.segment->header().ring_stats_bytes, 0u);
  auto stats = f.segment->call_site_stats();
  ASSERT_TRUE(stats);
  EXPECT_TRUE(stats->empty());
  ASSERT_FALSE(consumed_by_another(*f.segment)) << "another consumer took records: did a drain run beside the test?";
  std::uint64_t ends = 0;
  for (const auto& d : ring_records(*f.segment)) ends += d.kind == RecordKind::kSpanEnd;
  EXPECT_EQ(ends, 6u);  // 1 + 2 + 3 spans, recorded as before
}

// ---------------------------------------------------------------------------
// (d): longjmp out of nested frames, and a 20,000-deep recursion
// ---------------------------------------------------------------------------
TEST(StatsProcess, LongjmpClosesSkippedFramesAndDeepRecursionIsWhole) {
  constexpr int kDepth = 20000;
  const std::vector<int> dives = {0, 1, 3, 10, 50};
  std::vector<std::string> args = {std::to_string(kDepth)};
  for (int d : dives) args.push_back(std::to_string(d));
  Finished f = run_program("st_longjmp", args, {{"SHMTRACE_RING_RECORDS", "131072"}, {"SHMTRACE_MAX_THREADS", "4"}});
  ASSERT_EQ(f.result.exit_code, 0) << f.result.err;
  ASSERT_TRUE(f.segment.has_value()) << "the segment is gone: did a drain run beside the test?";
  const auto functions = functions_of(f.result.out);
  std::map<std::string, std::uint64_t> counts;
  std::vector<double> settle_ns;
  for (const auto& l : lines_of(f.result.out)) {
    if (l.size() == 3 && l[0] == "count") counts[l[1]] = std::stoull(l[2]);
    if (l.size() == 3 && l[0] == "settle_ns") settle_ns.push_back(std::stod(l[2]));
  }
  ASSERT_EQ(counts.size(), 6u) << f.result.out;
  std::uint64_t expect_dives = 0;
  for (int d : dives) expect_dives += static_cast<std::uint64_t>(d) + 1;
  EXPECT_EQ(counts["dive"], expect_dives);
  EXPECT_EQ(counts["recurse"], kDepth + 1u);

  // Statistics: calls exact; the skipped dive frames unfinished, the rest ended.
  auto stats = f.segment->call_site_stats();
  ASSERT_TRUE(stats) << stats.error().message;
  std::map<std::string, reader::CallSiteStats> by_name;
  for (const reader::CallSiteStats& s : *stats) {
    if (s.kind == abi::CallSiteKind::kCode && functions.count(s.address)) by_name[functions.at(s.address)] = s;
  }
  for (const auto& [name, calls] : counts) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(by_name.count(name));
    const reader::CallSiteStats& s = by_name.at(name);
    EXPECT_EQ(s.calls, calls);
    EXPECT_EQ(s.errors, 0u);
    if (name == "dive") {
      EXPECT_EQ(s.unfinished, calls);
      EXPECT_EQ(s.completed, 0u);
    } else {
      EXPECT_EQ(s.unfinished, 0u);
      EXPECT_EQ(s.completed, calls);
    }
  }

  // Records: every span of the run is in the ring.
  const std::vector<reader::DecodedRecord> records = ring_records(*f.segment);
  ASSERT_FALSE(consumed_by_another(*f.segment)) << "another consumer took records: did a drain run beside the test?";
  std::map<std::uint64_t, std::uint64_t> code_of;    // span id -> function address
  std::map<std::uint64_t, std::uint64_t> parent_of;  // span id -> parent span id
  std::vector<std::uint64_t> recurse_spans;          // in begin order
  std::map<std::string, std::uint64_t> ends;
  std::map<std::string, std::uint64_t> unfinished_ends;
  std::vector<double> settle_spans_ns;
  for (const auto& d : records) {
    if (d.kind == RecordKind::kSpanBegin) {
      code_of[d.span_id] = d.span.parent_span_id;  // SpanBegin payload: the code address
      parent_of[d.span_id] = d.aux;
      if (functions.count(d.span.parent_span_id) && functions.at(d.span.parent_span_id) == "recurse") {
        recurse_spans.push_back(d.span_id);
      }
    }
    if (d.kind != RecordKind::kSpanEnd) continue;
    ASSERT_TRUE(code_of.count(d.span_id)) << "end without begin";
    const std::string name = functions.count(code_of[d.span_id]) ? functions.at(code_of[d.span_id]) : "?";
    ++ends[name];
    const bool unfinished = (d.flags & abi::kSpanUnfinished) != 0;
    if (unfinished) {
      ++unfinished_ends[name];
      EXPECT_TRUE(d.flags & abi::kStatusErr) << name;
    } else {
      EXPECT_EQ(d.flags & abi::kStatusErr, 0) << name;
    }
    EXPECT_EQ(d.span.parent_span_id, parent_of[d.span_id]) << name;  // the end names the same parent
    if (name == "settle") {
      settle_spans_ns.push_back(static_cast<double>(f.segment->clock().duration_ns(d.aux, d.timestamp)));
    }
  }
  for (const auto& [name, calls] : counts) EXPECT_EQ(ends[name], calls) << name;
  EXPECT_EQ(unfinished_ends["dive"], expect_dives);
  EXPECT_EQ(unfinished_ends.size(), 1u);

  // Parents after the jumps: after_jump under guarded, settle under session,
  // each guarded under a session, each session a root.
  for (const auto& [span, code] : code_of) {
    if (!functions.count(code)) continue;
    const std::string& name = functions.at(code);
    const std::uint64_t parent = parent_of[span];
    const std::string parent_name =
        code_of.count(parent) && functions.count(code_of[parent]) ? functions.at(code_of[parent]) : "(none)";
    if (name == "after_jump") EXPECT_EQ(parent_name, "guarded");
    if (name == "settle") EXPECT_EQ(parent_name, "session");
    if (name == "guarded") EXPECT_EQ(parent_name, "session");
    if (name == "session") EXPECT_EQ(parent, 0u);
  }
  // The recursion: one chain, 20,001 deep.
  ASSERT_EQ(recurse_spans.size(), kDepth + 1u);
  EXPECT_EQ(parent_of[recurse_spans[0]], 0u);
  for (std::size_t i = 1; i < recurse_spans.size(); ++i) {
    ASSERT_EQ(parent_of[recurse_spans[i]], recurse_spans[i - 1]) << i;
  }
  // Durations after the jumps: each settle span holds the wait it measured.
  ASSERT_EQ(settle_spans_ns.size(), dives.size());
  ASSERT_EQ(settle_ns.size(), dives.size());
  for (std::size_t i = 0; i < dives.size(); ++i) {
    EXPECT_GE(settle_spans_ns[i], settle_ns[i] * 0.97) << i;
    EXPECT_LE(settle_spans_ns[i], settle_ns[i] + 1e6) << i;
  }
}

}  // namespace
}  // namespace shmtrace::test
