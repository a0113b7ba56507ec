// shmtrace export --format perfetto, decoded by protoc --decode_raw (no
// schema: field numbers, as Perfetto's protos define them): the packets,
// process and thread track descriptors, one slice begin per span and one end
// per finished span on its thread's track, interned names that resolve to
// the database's span names, arguments as debug annotations, counters on
// counter tracks; and the file far smaller than the same trace as JSON.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <set>
#include <sstream>

#include "support/export_fixture.hpp"

namespace shmtrace::test::exporting {
namespace {

// One field of protoc's text output: "N: value" or "N { ... }".
struct Field {
  int number = 0;
  std::string value;  // as protoc prints it (strings quoted)
  std::vector<Field> children;
  std::vector<const Field*> all(int n) const {
    std::vector<const Field*> out;
    for (const Field& f : children) {
      if (f.number == n) out.push_back(&f);
    }
    return out;
  }
  const Field* one(int n) const {
    const auto a = all(n);
    return a.empty() ? nullptr : a.front();
  }
  std::string text(int n) const {
    const Field* f = one(n);
    if (f == nullptr || f->value.size() < 2) return {};
    return f->value.substr(1, f->value.size() - 2);
  }
  std::uint64_t number_of(int n) const {
    const Field* f = one(n);
    return f == nullptr ? 0 : std::stoull(f->value);
  }
};

Field parse_decode_raw(const std::string& text) {
  Field root;
  std::vector<Field*> stack = {&root};
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const auto start = line.find_first_not_of(' ');
    if (start == std::string::npos) continue;
    line = line.substr(start);
    if (line == "}") {
      stack.pop_back();
      continue;
    }
    Field f;
    f.number = std::stoi(line);
    if (line.back() == '{') {
      stack.back()->children.push_back(f);
      stack.push_back(&stack.back()->children.back());
    } else {
      f.value = line.substr(line.find(": ") + 2);
      stack.back()->children.push_back(f);
    }
  }
  return root;
}

class ExportPerfetto : public ExportDatabase {};

TEST_F(ExportPerfetto, DecodesToTracksSlicesAndInternedNamesThatMatchTheDatabase) {
  std::string bytes;
  const RunResult r = export_to({"--format", "perfetto"}, bytes);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_FALSE(bytes.empty());
  const std::string file = db_->path + ".pftrace";
  {
    std::ofstream(file, std::ios::binary) << bytes;
  }
  const RunResult decoded = run({"/bin/sh", "-c", "protoc --decode_raw < " + file});
  std::remove(file.c_str());
  ASSERT_EQ(decoded.exit_code, 0) << "protoc: " << decoded.err;
  const Field trace = parse_decode_raw(decoded.out);

  const Database d(db_->path);
  const auto stored = stored_spans(d);
  // Trace { repeated TracePacket packet = 1 }: nothing else at the top.
  ASSERT_EQ(trace.all(1).size(), trace.children.size());
  std::map<std::uint64_t, const Field*> process_tracks, thread_tracks, counter_tracks;
  std::map<std::uint64_t, std::string> event_names;  // iid -> name, as interned
  std::map<std::uint64_t, int> begins, ends;         // per track uuid
  std::multiset<std::string> begun_names;
  std::multiset<std::string> annotation_names;
  std::map<std::uint64_t, std::string> annotation_iids, category_iids;
  std::multiset<std::string> categories;
  int counters = 0, first_flags = -1;
  std::map<std::uint64_t, std::vector<std::pair<std::uint64_t, std::uint64_t>>> slices;  // track -> (ts, type)
  for (const Field* packet : trace.all(1)) {
    EXPECT_EQ(packet->number_of(10), 1u) << "trusted_packet_sequence_id";
    if (const Field* td = packet->one(60)) {
      const std::uint64_t uuid = td->number_of(1);
      if (td->one(3) != nullptr) process_tracks[uuid] = td;
      else if (td->one(4) != nullptr) thread_tracks[uuid] = td;
      else if (td->one(8) != nullptr) counter_tracks[uuid] = td;
      else ADD_FAILURE() << "a track descriptor of no kind";
    }
    if (const Field* interned = packet->one(12)) {
      for (const Field* n : interned->all(2)) event_names[n->number_of(1)] = n->text(2);
      for (const Field* n : interned->all(3)) annotation_iids[n->number_of(1)] = n->text(2);
      for (const Field* n : interned->all(1)) category_iids[n->number_of(1)] = n->text(2);
    }
    if (const Field* event = packet->one(11)) {
      if (first_flags < 0) first_flags = static_cast<int>(packet->number_of(13));
      const std::uint64_t type = event->number_of(9), track = event->number_of(11);
      if (type == 1 || type == 2) slices[track].emplace_back(packet->number_of(8), type);
      if (type == 1) {
        ++begins[track];
        EXPECT_TRUE(thread_tracks.contains(track)) << "a slice before its track's descriptor";
        begun_names.insert(event_names.at(event->number_of(10)));
        if (event->one(3) != nullptr) categories.insert(category_iids.at(event->number_of(3)));
        for (const Field* a : event->all(4)) annotation_names.insert(annotation_iids.at(a->number_of(1)));
      }
      if (type == 2) ++ends[track];
      if (type == 4) {
        ++counters;
        EXPECT_TRUE(counter_tracks.contains(track));
      }
    }
  }
  EXPECT_EQ(first_flags, 3) << "the first event clears and needs the incremental state";
  // Every process and thread that has a span, error, gap or counter.
  EXPECT_EQ(process_tracks.size(), static_cast<std::size_t>(d.number("SELECT count(*) FROM processes")));
  for (const auto& [uuid, td] : thread_tracks) {
    EXPECT_TRUE(process_tracks.contains(td->number_of(5))) << "a thread track parented to its process";
  }
  std::set<std::pair<std::int64_t, std::int64_t>> span_threads;
  std::multiset<std::string> stored_names;
  int finished = 0;
  for (const StoredSpan& s : stored) {
    span_threads.insert({s.process_key, s.tid});
    stored_names.insert(s.name);
    finished += s.duration_ns.has_value();
  }
  int total_begins = 0, total_ends = 0;
  for (const auto& [track, n] : begins) total_begins += n;
  for (const auto& [track, n] : ends) total_ends += n;
  EXPECT_EQ(total_begins, static_cast<int>(stored.size()));
  EXPECT_EQ(total_ends, finished);
  EXPECT_EQ(begins.size(), span_threads.size());
  EXPECT_EQ(begun_names, stored_names);
  // Read in time order (as trace_processor sorts, file order for ties),
  // every track's begins and ends nest: an end never finds no open slice,
  // and only the crashed thread's "doomed" is left open.
  int left_open = 0;
  for (auto& [track, events] : slices) {
    std::stable_sort(events.begin(), events.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    int depth = 0;
    for (const auto& [ts, type] : events) {
      depth += type == 1 ? 1 : -1;
      EXPECT_GE(depth, 0) << "track " << track << " at " << ts;
    }
    left_open += depth;
  }
  EXPECT_EQ(left_open, static_cast<int>(stored.size()) - finished);
  EXPECT_EQ(left_open, 1);
  EXPECT_EQ(annotation_names.count("span_id"), stored.size());
  std::multiset<std::string> groups;
  for (const auto& row : rows(d, "SELECT grp FROM spans WHERE grp != ''")) groups.insert(row[0]);
  EXPECT_EQ(categories, groups) << "each span's group as its category";
  EXPECT_TRUE(groups.contains("app.core"));
  EXPECT_EQ(annotation_names.count("args.s"), 1u);
  EXPECT_EQ(annotation_names.count("results.ret"), 1u);
  EXPECT_EQ(counters, d.number("SELECT count(*) FROM span_data WHERE kind = 'counter'"));
  EXPECT_EQ(counter_tracks.size(), static_cast<std::size_t>(d.number(
                                       "SELECT count(*) FROM (SELECT DISTINCT process_key, name FROM span_data "
                                       "WHERE kind = 'counter')")));

  std::string json;
  ASSERT_EQ(export_to({"--format", "chrome"}, json).exit_code, 0);
  std::printf("perfetto %zu bytes, chrome JSON %zu bytes: %.2fx smaller\n", bytes.size(), json.size(),
              static_cast<double>(json.size()) / static_cast<double>(bytes.size()));
  // This trace is small and dominated by descriptors and one 3000-byte
  // argument; bench/export_bench measures the ratio on many spans.
  EXPECT_LT(bytes.size(), json.size());
}

}  // namespace
}  // namespace shmtrace::test::exporting
