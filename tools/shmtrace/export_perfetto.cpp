// Perfetto's native trace format, written by our own encoder
// (export_protobuf.hpp): a Trace is a sequence of TracePacket fields, each
// written as soon as the scan yields its row.
//
// - One TrackDescriptor per process (ProcessDescriptor) and per thread
//   (ThreadDescriptor, parented to its process), and one counter track per
//   process and counter name, each written before the track's first event.
// - A span is a TYPE_SLICE_BEGIN at its start and a TYPE_SLICE_END at its
//   end on its thread's track. Spans arrive by start time; the ends wait on
//   a stack per thread (as deep as the calls) and are written once a later
//   span on that thread starts after them, or at the end. A child that
//   would outlive its parent is ended with it (slices on one track nest);
//   an unfinished span gets no end (the UI shows "did not end").
// - Event names, categories (span groups) and debug-annotation names are interned (InternedData on
//   one packet sequence, SEQ_NEEDS_INCREMENTAL_STATE); past 65,536 names the
//   tables are dropped and the sequence's incremental state cleared, so
//   memory stays bounded.
// - Arguments and results are debug annotations; events, errors, crashes
//   and gaps are TYPE_INSTANT events; counters are TYPE_COUNTER values.
//
// Field numbers are those of Perfetto's protos (protos/perfetto/trace/...),
// named at each constant below.
#include <charconv>
#include <map>
#include <unordered_map>
#include <vector>

#include "export_format.hpp"
#include "export_protobuf.hpp"

namespace shmtrace::cli::exporting {
namespace {

// trace.proto: message Trace { repeated TracePacket packet = 1; }
constexpr std::uint32_t kTracePacket = 1;
// trace_packet.proto, TracePacket:
constexpr std::uint32_t kTimestamp = 8;                 // optional uint64 timestamp = 8
constexpr std::uint32_t kTrustedSequenceId = 10;        // uint32 trusted_packet_sequence_id = 10
constexpr std::uint32_t kTrackEvent = 11;               // TrackEvent track_event = 11
constexpr std::uint32_t kInternedData = 12;             // optional InternedData interned_data = 12
constexpr std::uint32_t kSequenceFlags = 13;            // optional uint32 sequence_flags = 13
constexpr std::uint32_t kTrackDescriptor = 60;          // TrackDescriptor track_descriptor = 60
constexpr std::uint64_t kSeqIncrementalStateCleared = 1;  // SequenceFlags.SEQ_INCREMENTAL_STATE_CLEARED
constexpr std::uint64_t kSeqNeedsIncrementalState = 2;    // SequenceFlags.SEQ_NEEDS_INCREMENTAL_STATE
// track_event/track_descriptor.proto, TrackDescriptor:
constexpr std::uint32_t kTrackUuid = 1;     // optional uint64 uuid = 1
constexpr std::uint32_t kTrackName = 2;     // optional string name = 2
constexpr std::uint32_t kTrackProcess = 3;  // optional ProcessDescriptor process = 3
constexpr std::uint32_t kTrackThread = 4;   // optional ThreadDescriptor thread = 4
constexpr std::uint32_t kTrackParent = 5;   // optional uint64 parent_uuid = 5
constexpr std::uint32_t kTrackCounter = 8;  // optional CounterDescriptor counter = 8
// track_event/process_descriptor.proto, ProcessDescriptor:
constexpr std::uint32_t kProcessPid = 1;      // optional int32 pid = 1
constexpr std::uint32_t kProcessCmdline = 2;  // repeated string cmdline = 2
constexpr std::uint32_t kProcessName = 6;     // optional string process_name = 6
// track_event/thread_descriptor.proto, ThreadDescriptor:
constexpr std::uint32_t kThreadPid = 1;   // optional int32 pid = 1
constexpr std::uint32_t kThreadTid = 2;   // optional int32 tid = 2
constexpr std::uint32_t kThreadName = 5;  // optional string thread_name = 5
// track_event/track_event.proto, TrackEvent:
constexpr std::uint32_t kEventDebugAnnotations = 4;  // repeated DebugAnnotation debug_annotations = 4
constexpr std::uint32_t kEventType = 9;              // optional Type type = 9
constexpr std::uint32_t kEventNameIid = 10;          // uint64 name_iid = 10
constexpr std::uint32_t kEventTrackUuid = 11;        // optional uint64 track_uuid = 11
constexpr std::uint32_t kEventCategoryIids = 3;      // repeated uint64 category_iids = 3
constexpr std::uint32_t kEventCounterValue = 30;     // int64 counter_value = 30
constexpr std::uint32_t kEventDoubleCounterValue = 44;  // double double_counter_value = 44
constexpr std::uint64_t kTypeSliceBegin = 1;  // Type.TYPE_SLICE_BEGIN
constexpr std::uint64_t kTypeSliceEnd = 2;    // Type.TYPE_SLICE_END
constexpr std::uint64_t kTypeInstant = 3;     // Type.TYPE_INSTANT
constexpr std::uint64_t kTypeCounter = 4;     // Type.TYPE_COUNTER
// interned_data/interned_data.proto, InternedData:
constexpr std::uint32_t kInternedCategories = 1;       // repeated EventCategory event_categories = 1
constexpr std::uint32_t kInternedEventNames = 2;       // repeated EventName event_names = 2
constexpr std::uint32_t kInternedAnnotationNames = 3;  // repeated DebugAnnotationName debug_annotation_names = 3
// EventCategory, EventName and DebugAnnotationName: optional uint64 iid = 1;
// optional string name = 2.
constexpr std::uint32_t kInternIid = 1;
constexpr std::uint32_t kInternName = 2;
// track_event/debug_annotation.proto, DebugAnnotation:
constexpr std::uint32_t kAnnotationNameIid = 1;  // uint64 name_iid = 1
constexpr std::uint32_t kAnnotationBool = 2;     // bool bool_value = 2
constexpr std::uint32_t kAnnotationUint = 3;     // uint64 uint_value = 3
constexpr std::uint32_t kAnnotationInt = 4;      // int64 int_value = 4
constexpr std::uint32_t kAnnotationDouble = 5;   // double double_value = 5
constexpr std::uint32_t kAnnotationString = 6;   // string string_value = 6

constexpr std::uint32_t kSequence = 1;  // every packet is on one sequence
constexpr std::size_t kMaxInterned = 65536;
constexpr std::size_t kFlushBytes = 256 * 1024;

template <class T>
bool parse(std::string_view text, T& value) {
  const auto r = std::from_chars(text.data(), text.data() + text.size(), value);
  return r.ec == std::errc{} && r.ptr == text.data() + text.size();
}

class PerfettoWriter {
 public:
  explicit PerfettoWriter(Context& c) : c_(c) {}

  std::expected<void, std::string> run() {
    auto done = each_row(c_.scan, &query::SpanScan::next_span, [&](const query::SpanRow& s) {
      write_span(s);
      c_.progress.span(c_.out);
    });
    if (!done) return done;
    for (auto& [key, stack] : open_) {
      while (!stack.empty()) pop(key, stack);
    }
    done = each_row(c_.scan, &query::SpanScan::next_error, [&](const query::ErrorRow& error) {
      const bool crash = error.kind == "crash";
      begin_event(error.ts_ns, kTypeInstant, thread_track(error.process_key, error.tid),
                                            (crash ? "crash: " : "error: ") + error.type);
      annotate_string("kind", error.kind);
      annotate_string("message", error.message);
      if (error.signal != 0) annotate_int("signal", error.signal);
      annotate_string("frames", error.symbols.empty() ? error.frames : error.symbols);
      end_event();
    });
    if (done) done = each_row(c_.scan, &query::SpanScan::next_gap, [&](const query::GapRow& gap) {
      begin_event(gap.ts_ns, kTypeInstant, thread_track(gap.process_key, gap.tid),
                                            std::to_string(gap.dropped) + " records dropped");
      annotate_int("dropped", gap.dropped);
      annotate_int("first_ns", gap.first_ns);
      annotate_int("last_ns", gap.last_ns);
      end_event();
    });
    if (done) done = each_row(c_.scan, &query::SpanScan::next_counter, [&](const auto& r) { write_counter(r); });
    if (!done) return done;
    flush(true);
    return {};
  }

 private:
  struct Open {
    std::int64_t end_ns;  // INT64_MAX: unfinished
  };

  void write_span(const query::SpanRow& s) {
    const std::uint64_t track = thread_track(s.process_key, s.tid);
    auto& stack = open_[track];
    while (!stack.empty() && stack.back().end_ns <= s.start_ns) pop(track, stack);
    std::int64_t end = s.duration_ns ? s.start_ns + *s.duration_ns : INT64_MAX;
    if (!stack.empty() && end > stack.back().end_ns) end = stack.back().end_ns;
    stack.push_back(Open{end});
    begin_event(s.start_ns, kTypeSliceBegin, track, s.name);
    if (!s.group.empty()) fields_.varint(kEventCategoryIids, intern(categories_, s.group, new_categories_));
    annotate_uint("span_id", s.span_id);
    if (s.parent_span_id != 0) annotate_uint("parent_span_id", s.parent_span_id);
    if (s.status != 0) annotate_string("status", "error");
    for (const query::SpanDatum& d : s.data) {
      if (d.kind == "arg") annotate_value("args." + d.name, d.value, d.value_type);
      else if (d.kind == "result") annotate_value("results." + d.name, d.value, d.value_type);
    }
    end_event();
    for (const query::SpanDatum& d : s.data) {
      if (d.kind != "event") continue;
      begin_event(d.ts_ns, kTypeInstant, track, d.name);
      annotate_value("value", d.value, d.value_type);
      end_event();
    }
  }

  void pop(std::uint64_t track, std::vector<Open>& stack) {
    const std::int64_t end = stack.back().end_ns;
    stack.pop_back();
    if (end == INT64_MAX) return;  // did not end
    const std::size_t packet = w_.begin(kTracePacket);
    w_.varint(kTimestamp, static_cast<std::uint64_t>(end));
    w_.varint(kTrustedSequenceId, kSequence);
    const std::size_t event = w_.begin(kTrackEvent);
    w_.varint(kEventType, kTypeSliceEnd);
    w_.varint(kEventTrackUuid, track);
    w_.end(event);
    w_.end(packet);
    flush(false);
  }

  void write_counter(const query::CounterRow& r) {
    const auto key = std::make_pair(r.process_key, r.name);
    auto found = counters_.find(key);
    if (found == counters_.end()) {
      const std::uint64_t parent = process_track(r.process_key);
      const std::uint64_t uuid = next_uuid_++;
      found = counters_.emplace(key, uuid).first;
      const std::size_t packet = w_.begin(kTracePacket);
      w_.varint(kTrustedSequenceId, kSequence);
      const std::size_t track = w_.begin(kTrackDescriptor);
      w_.varint(kTrackUuid, uuid);
      w_.varint(kTrackParent, parent);
      w_.bytes(kTrackName, r.name);
      w_.end(w_.begin(kTrackCounter));  // an empty CounterDescriptor marks a counter track
      w_.end(track);
      w_.end(packet);
    }
    const std::size_t packet = w_.begin(kTracePacket);
    w_.varint(kTimestamp, static_cast<std::uint64_t>(r.ts_ns));
    w_.varint(kTrustedSequenceId, kSequence);
    const std::size_t event = w_.begin(kTrackEvent);
    w_.varint(kEventType, kTypeCounter);
    w_.varint(kEventTrackUuid, found->second);
    std::int64_t i = 0;
    double d = 0;
    if ((r.value_type == "int" || r.value_type == "uint" || r.value_type == "bool") && parse(r.value, i)) {
      w_.int64(kEventCounterValue, i);
    } else if (parse(r.value, d)) {
      w_.fixed_double(kEventDoubleCounterValue, d);
    } else {
      w_.int64(kEventCounterValue, r.value == "true" ? 1 : 0);
    }
    w_.end(event);
    w_.end(packet);
    flush(false);
  }

  // Track uuids are handed out in order of first use: small numbers are
  // one-byte varints on every event.
  std::uint64_t process_track(std::int64_t key) {
    auto [it, fresh] = process_uuids_.emplace(key, next_uuid_);
    if (!fresh) return it->second;
    const std::uint64_t uuid = next_uuid_++;
    const query::ProcessInfo* p = c_.scan.process(key);
    const std::size_t packet = w_.begin(kTracePacket);
    w_.varint(kTrustedSequenceId, kSequence);
    const std::size_t track = w_.begin(kTrackDescriptor);
    w_.varint(kTrackUuid, uuid);
    const std::size_t process = w_.begin(kTrackProcess);
    w_.int64(kProcessPid, p != nullptr ? p->pid : 0);
    if (p != nullptr) {
      w_.bytes(kProcessCmdline, p->cmdline);
      w_.bytes(kProcessName, p->program());
    }
    w_.end(process);
    w_.end(track);
    w_.end(packet);
    return uuid;
  }

  std::uint64_t thread_track(std::int64_t key, std::int64_t tid) {
    if (auto it = thread_uuids_.find({key, tid}); it != thread_uuids_.end()) return it->second;
    const std::uint64_t parent = process_track(key);
    const std::uint64_t uuid = next_uuid_++;
    thread_uuids_.emplace(std::make_pair(key, tid), uuid);
    const query::ProcessInfo* p = c_.scan.process(key);
    std::string name = c_.scan.thread_name(key, tid);
    if (name.empty() && p != nullptr && p->pid == tid) name = p->program();
    const std::size_t packet = w_.begin(kTracePacket);
    w_.varint(kTrustedSequenceId, kSequence);
    const std::size_t track = w_.begin(kTrackDescriptor);
    w_.varint(kTrackUuid, uuid);
    w_.varint(kTrackParent, parent);
    const std::size_t thread = w_.begin(kTrackThread);
    w_.int64(kThreadPid, p != nullptr ? p->pid : 0);
    w_.int64(kThreadTid, tid);
    if (!name.empty()) w_.bytes(kThreadName, name);
    w_.end(thread);
    w_.end(track);
    w_.end(packet);
    return uuid;
  }

  // A TrackEvent packet is assembled at end_event(): its fields (categories,
  // debug annotations) are gathered in fields_ first, because the names
  // they intern must go into the packet's one InternedData, ahead of them.
  void begin_event(std::int64_t ts, std::uint64_t type, std::uint64_t track, const std::string& name) {
    if (names_.size() + annotation_names_.size() + categories_.size() >= kMaxInterned) {
      // Start the sequence's incremental state afresh: the next packet says
      // so and interns again what it uses.
      names_.clear();
      annotation_names_.clear();
      categories_.clear();
      next_iid_ = 1;
      cleared_pending_ = true;
    }
    event_ts_ = ts;
    event_type_ = type;
    event_track_ = track;
    event_name_ = intern(names_, name, new_names_);
    fields_.clear();
  }
  void end_event() {
    const std::size_t packet = w_.begin(kTracePacket);
    w_.varint(kTimestamp, static_cast<std::uint64_t>(event_ts_));
    w_.varint(kTrustedSequenceId, kSequence);
    w_.varint(kSequenceFlags,
              kSeqNeedsIncrementalState | (cleared_pending_ || first_ ? kSeqIncrementalStateCleared : 0));
    cleared_pending_ = false;
    first_ = false;
    if (!new_names_.empty() || !new_annotation_names_.empty() || !new_categories_.empty()) {
      const std::size_t interned = w_.begin(kInternedData);
      for (const auto& [iid, text] : new_categories_) {
        const std::size_t entry = w_.begin(kInternedCategories);
        w_.varint(kInternIid, iid);
        w_.bytes(kInternName, text);
        w_.end(entry);
      }
      for (const auto& [iid, text] : new_names_) {
        const std::size_t entry = w_.begin(kInternedEventNames);
        w_.varint(kInternIid, iid);
        w_.bytes(kInternName, text);
        w_.end(entry);
      }
      for (const auto& [iid, text] : new_annotation_names_) {
        const std::size_t entry = w_.begin(kInternedAnnotationNames);
        w_.varint(kInternIid, iid);
        w_.bytes(kInternName, text);
        w_.end(entry);
      }
      w_.end(interned);
      new_names_.clear();
      new_annotation_names_.clear();
      new_categories_.clear();
    }
    const std::size_t event = w_.begin(kTrackEvent);
    w_.varint(kEventType, event_type_);
    w_.varint(kEventTrackUuid, event_track_);
    w_.varint(kEventNameIid, event_name_);
    w_.raw(fields_.data());
    w_.end(event);
    w_.end(packet);
    flush(false);
  }

  void annotate_name(const std::string& name) {
    fields_.varint(kAnnotationNameIid, intern(annotation_names_, name, new_annotation_names_));
  }
  void annotate_string(const std::string& name, const std::string& value) {
    const std::size_t a = fields_.begin(kEventDebugAnnotations);
    annotate_name(name);
    fields_.bytes(kAnnotationString, value);
    fields_.end(a);
  }
  void annotate_int(const std::string& name, std::int64_t value) {
    const std::size_t a = fields_.begin(kEventDebugAnnotations);
    annotate_name(name);
    fields_.int64(kAnnotationInt, value);
    fields_.end(a);
  }
  void annotate_uint(const std::string& name, std::uint64_t value) {
    const std::size_t a = fields_.begin(kEventDebugAnnotations);
    annotate_name(name);
    fields_.varint(kAnnotationUint, value);
    fields_.end(a);
  }
  void annotate_value(const std::string& name, const std::string& value, const std::string& type) {
    std::int64_t i = 0;
    std::uint64_t u = 0;
    double d = 0;
    const std::size_t a = fields_.begin(kEventDebugAnnotations);
    annotate_name(name);
    if (type == "int" && parse(value, i)) fields_.int64(kAnnotationInt, i);
    else if (type == "uint" && parse(value, u)) fields_.varint(kAnnotationUint, u);
    else if (type == "double" && parse(value, d)) fields_.fixed_double(kAnnotationDouble, d);
    else if (type == "bool" && (value == "true" || value == "false")) fields_.varint(kAnnotationBool, value == "true");
    else fields_.bytes(kAnnotationString, value);
    fields_.end(a);
  }

  using Interned = std::unordered_map<std::string, std::uint64_t>;
  using Fresh = std::vector<std::pair<std::uint64_t, std::string>>;
  std::uint64_t intern(Interned& table, const std::string& text, Fresh& fresh) {
    if (auto it = table.find(text); it != table.end()) return it->second;
    const std::uint64_t iid = next_iid_++;
    table.emplace(text, iid);
    fresh.emplace_back(iid, text);
    return iid;
  }

  void flush(bool last) {
    if (!last && w_.size() < kFlushBytes) return;
    c_.out.write(w_.data());
    w_.clear();
  }

  Context& c_;
  ProtoWriter w_;
  ProtoWriter fields_;  // the TrackEvent being written: categories and debug annotations
  std::map<std::uint64_t, std::vector<Open>> open_;  // per thread track: the slices not yet ended
  std::map<std::pair<std::int64_t, std::string>, std::uint64_t> counters_;
  std::map<std::int64_t, std::uint64_t> process_uuids_;
  std::map<std::pair<std::int64_t, std::int64_t>, std::uint64_t> thread_uuids_;
  std::uint64_t next_uuid_ = 1;
  Interned names_, annotation_names_, categories_;
  Fresh new_names_, new_annotation_names_, new_categories_;
  std::uint64_t next_iid_ = 1;
  bool cleared_pending_ = false;
  bool first_ = true;
  std::int64_t event_ts_ = 0;
  std::uint64_t event_type_ = 0;
  std::uint64_t event_track_ = 0;
  std::uint64_t event_name_ = 0;
};

}  // namespace

std::expected<void, std::string> write_perfetto(Context& c) { return PerfettoWriter(c).run(); }

}  // namespace shmtrace::cli::exporting
