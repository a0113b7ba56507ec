// End to end: the instrumented multi-process workload (tests/workload) runs
// with the runtime; every worker's spans, resolved to function names through
// the module map after the workers have exited, are counted per function and
// must equal the calls each worker counted itself. Also: the process tree,
// the trace across fork+exec, the exception that leaves a span, a crash.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstring>
#include <map>
#include <optional>
#include <sstream>

#include "support/test_support.hpp"
#include "symbols/resolver.hpp"

namespace shmtrace::test {
namespace {

using abi::RecordKind;

using Worker = WorkloadWorker;

// What one exec'd worker image left: its spans by resolved function name.
struct Image {
  std::string segment_name;
  std::optional<reader::Segment> segment;
  Drained drained;
  std::map<std::uint64_t, std::string> span_name;   // span id -> function (resolved)
  std::map<std::uint64_t, std::uint64_t> parent;    // span id -> parent span id
  std::map<std::string, std::uint64_t> ends;        // function -> span ends
  std::map<std::string, std::uint64_t> err_ends;    // function -> span ends with ERR
};

// Resolves "@0x<address>" names (functions outside the dynamic symbol table)
// through the segment's module map, as the drain will.
std::string function_name(const reader::Segment& segment, symbols::Resolver& resolver, std::uint32_t id) {
  const std::string name = text(segment, id);
  if (name.rfind("@0x", 0) != 0) return name;
  auto symbol = resolver.resolve(std::stoull(name.substr(3), nullptr, 16));
  return symbol ? symbol->function : name + " (" + symbol.error() + ")";
}

// The segment of the worker's exec'd image (its post-fork segment is marked exec'd).
std::optional<Image> load_image(pid_t pid) {
  auto listed = reader::list_segments(static_cast<std::uint32_t>(pid));
  if (!listed) return std::nullopt;
  for (const auto& l : *listed) {
    auto s = reader::Segment::attach(l.name, reader::Access::kConsume);
    if (!s || s->state() == abi::ProcessState::kExeced) continue;
    Image image;
    image.segment_name = l.name;
    image.segment.emplace(std::move(*s));
    auto drained = drain_segment(*image.segment);
    if (!drained) return std::nullopt;
    image.drained = std::move(*drained);
    auto modules = image.segment->modules();
    if (!modules) return std::nullopt;
    std::vector<symbols::Module> list;
    for (const auto& m : *modules) list.push_back({m.path, m.base, m.size, m.build_id_hex});
    auto resolver = symbols::Resolver::create(list);
    if (!resolver) return std::nullopt;
    for (const auto& d : image.drained.records) {
      if (d.kind == RecordKind::kSpanBegin) image.parent[d.span_id] = d.aux;
      if (d.kind != RecordKind::kSpanEnd) continue;
      const std::string name = function_name(*image.segment, *resolver, d.name_id);
      image.span_name[d.span_id] = name;
      ++image.ends[name];
      if (d.flags & abi::kStatusErr) ++image.err_ends[name];
    }
    return image;
  }
  return std::nullopt;
}

void remove_all_segments(const std::map<int, Worker>& workers, pid_t parent) {
  remove_segments_of(parent);
  for (const auto& [index, w] : workers) remove_segments_of(w.pid);
}

TEST(WorkloadProcess, SpanCountsPerFunctionEqualTheProgramsOwnCounts) {
  const RunResult r = run({program_path("st_workload"), "--workers", "3", "--iterations", "500"});
  const std::map<int, Worker> workers = parse_workload_output(r.out);
  struct Cleanup {
    const std::map<int, Worker>& w;
    pid_t p;
    ~Cleanup() { remove_all_segments(w, p); }
  } cleanup{workers, r.pid};
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(workers.size(), 3u) << r.out;

  const std::string parent_name = find_segment(r.pid, 0);
  reader::Segment parent = attach_consumer(parent_name);
  auto parent_records = drain_segment(parent);
  ASSERT_TRUE(parent_records) << parent_records.error().message;
  const std::uint8_t* run_trace = nullptr;
  for (const auto& d : parent_records->records) {
    if (d.kind == RecordKind::kSpanBegin && text(parent, d.name_id) == "run") run_trace = d.span.trace_id;
  }
  ASSERT_NE(run_trace, nullptr) << "the parent's \"run\" span";
  for (const auto& [index, w] : workers) {
    SCOPED_TRACE("worker " + std::to_string(index));
    EXPECT_EQ(w.status, "0");
    ASSERT_GE(w.counts.size(), 15u);
    auto image = load_image(w.pid);
    ASSERT_TRUE(image.has_value()) << "no readable segment for pid " << w.pid;
    const abi::SegmentHeader& h = image->segment->header();
    EXPECT_EQ(h.ppid, static_cast<std::uint32_t>(r.pid)) << "process tree";
    EXPECT_EQ(0, std::memcmp(h.trace_id, run_trace, 16)) << "the worker joined the parent's trace";
    EXPECT_NE(h.parent_span_id, 0u) << "the parent's open span came through TRACEPARENT";
    EXPECT_EQ(image->segment->state(), abi::ProcessState::kExited);
    for (const auto& [function, calls] : w.counts) {
      EXPECT_EQ(image->ends[function], calls) << function;
    }
    // Nesting: every quote() span sits inside a handle_order() span.
    const std::string handle = "shop::api::handle_order(int, double)";
    const std::string quote = "shop::pricing::quote(int, double)";
    std::uint64_t quotes = 0;
    for (const auto& [span, name] : image->span_name) {
      if (name != quote) continue;
      ++quotes;
      EXPECT_EQ(image->span_name[image->parent[span]], handle);
    }
    EXPECT_EQ(quotes, w.counts.at(quote));
    // The exception that leaves close_books: ERR spans and one error record.
    EXPECT_EQ(image->err_ends["shop::api::close_books(int)"], 1u);
    std::uint64_t logic_errors = 0;
    for (const auto& e : image->drained.errors) logic_errors += e.type == "std::logic_error";
    EXPECT_EQ(logic_errors, 1u);
  }
}

TEST(WorkloadProcess, ACrashedWorkerLeavesACrashRecordAndTheOthersAreWhole) {
  const RunResult r = run({program_path("st_workload"), "--workers", "3", "--iterations", "400", "--crash"},
                          without_sanitizer_signal_handlers());
  const std::map<int, Worker> workers = parse_workload_output(r.out);
  struct Cleanup {
    const std::map<int, Worker>& w;
    pid_t p;
    ~Cleanup() { remove_all_segments(w, p); }
  } cleanup{workers, r.pid};
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_EQ(workers.size(), 3u);
  EXPECT_EQ(workers.at(1).status, "signal:11");
  auto crashed = load_image(workers.at(1).pid);
  ASSERT_TRUE(crashed.has_value());
  EXPECT_EQ(crashed->segment->state(), abi::ProcessState::kCrashed);
  EXPECT_EQ(crashed->segment->exit_status(), SIGSEGV);
  std::uint64_t crash_records = 0;
  for (const auto& e : crashed->drained.errors) crash_records += e.kind == abi::ErrorKind::kCrash;
  EXPECT_EQ(crash_records, 1u);
  // It crashed halfway: its first 200 orders were all recorded.
  EXPECT_GE(crashed->ends["shop::api::handle_order(int, double)"], 199u);
  for (int index : {0, 2}) {
    auto image = load_image(workers.at(index).pid);
    ASSERT_TRUE(image.has_value());
    for (const auto& [function, calls] : workers.at(index).counts) EXPECT_EQ(image->ends[function], calls) << function;
  }
}

}  // namespace
}  // namespace shmtrace::test
