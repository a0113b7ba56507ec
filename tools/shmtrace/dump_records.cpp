// shmtrace dump PID|SEGMENT: the records present in one segment, decoded,
// and with --follow the ones that arrive after, until the segment
// disappears or SIGINT/SIGTERM.
//
// What is read (Segment::peek_ring, peek_overflow in the reader): each
// ring's [tail, head), the records the drain has not taken yet, which the
// producer cannot overwrite before the drain moves the tail; and the
// overflow groups still published. Records before the tail were handed back
// to the producer (they are in the drain's database) and may be overwritten
// at any moment, so they are never read: a slot that looks whole may be
// half of a newer record. Positions the drain takes while we read, or
// between two polls of --follow, are reported as one "skipped" line with
// their range, never printed. Nothing is written to the segment.
//
// Order: ring by ring, each in position order (one producer thread at a
// time), then the overflow area in its order, then the error entries.
#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

#include "commands.hpp"
#include "dump.hpp"
#include "live_format.hpp"
#include "reader/hex.hpp"

namespace shmtrace::cli::dump {

namespace {

volatile sig_atomic_t g_stop = 0;
void on_stop(int) { g_stop = 1; }

constexpr const char* kExtraKinds[] = {"error", "skipped", "undecodable"};

// One output line: JSON and text built side by side.
class Line {
 public:
  Line(Format format) : format_(format) {}
  Line& str(std::string_view key, std::string_view value, bool quote = true) {
    json_.str(key, value);
    std::string v;
    if (quote) {
      live::append_json_string(v, value);
    } else {
      v = value;
    }
    text(key, v);
    return *this;
  }
  Line& num(std::string_view key, std::uint64_t value) {
    json_.num(key, value);
    text(key, std::to_string(value));
    return *this;
  }
  Line& inum(std::string_view key, std::int64_t value) {
    json_.num(key, value);
    text(key, std::to_string(value));
    return *this;
  }
  Line& hexnum(std::string_view key, std::uint64_t value) {
    json_.num(key, value);
    text(key, live::hex(value));
    return *this;
  }
  Line& real(std::string_view key, double value) {
    json_.real(key, value);
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", value);
    text(key, buf);
    return *this;
  }
  Line& boolean(std::string_view key, bool value) {
    json_.boolean(key, value);
    if (value) text(key, "true");
    return *this;
  }
  Line& json_only_num(std::string_view key, std::int64_t value) {
    json_.num(key, value);
    return *this;
  }
  Line& json_only_str(std::string_view key, std::string_view value) {
    json_.str(key, value);
    return *this;
  }
  Line& prefix(const std::string& p) {
    prefix_ += p;
    return *this;
  }
  Line& raw_json(std::string_view key, std::string_view json, std::string_view as_text) {
    json_.raw(key, json);
    text(key, std::string(as_text));
    return *this;
  }
  void print() const {
    if (format_ == Format::kJsonl) {
      std::printf("%s\n", json_.text().c_str());
    } else {
      std::printf("%s%s\n", prefix_.c_str(), text_.c_str());
    }
  }

 private:
  void text(std::string_view key, const std::string& value) {
    text_ += ' ';
    text_.append(key);
    text_ += '=';
    text_ += value;
  }
  Format format_;
  live::JsonLine json_;
  std::string prefix_;
  std::string text_;
};

const char* value_type_name(std::uint8_t flags) {
  switch (static_cast<abi::ValueType>(flags & abi::kValueTypeMask)) {
    case abi::ValueType::kInt: return "int";
    case abi::ValueType::kUint: return "uint";
    case abi::ValueType::kDouble: return "double";
    case abi::ValueType::kBool: return "bool";
    case abi::ValueType::kString: return "string";
    case abi::ValueType::kBytes: return "bytes";
    case abi::ValueType::kRepr: return "repr";
  }
  return "unknown";
}

const char* error_kind_name(abi::ErrorKind kind) {
  switch (kind) {
    case abi::ErrorKind::kExplicit: return "explicit";
    case abi::ErrorKind::kException: return "exception";
    case abi::ErrorKind::kCrash: return "crash";
    case abi::ErrorKind::kSpanError: return "span_error";
  }
  return "unknown";
}

bool zero(const std::uint8_t* bytes, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (bytes[i] != 0) return false;
  }
  return true;
}

class Dumper {
 public:
  Dumper(const reader::Segment& segment, const RecordOptions& options)
      : segment_(segment), options_(options), next_(segment.ring_count(), 0), tids_(segment.ring_count(), 0),
        tid_known_(segment.ring_count(), false) {}

  // One pass over rings, overflow and errors; false on a corrupt segment
  // (the line is said).
  bool pass() {
    const std::uint32_t capacity = segment_.header().ring_capacity;
    for (std::uint32_t r = 0; r < segment_.ring_count(); ++r) {
      if (options_.ring && *options_.ring != r) continue;
      auto peek = segment_.peek_ring(r, next_[r], capacity);
      if (!peek) return fail(peek.error().message);
      if (!peek->records.empty() && !tid_known_[r]) {
        // Before the first ThreadStart in view, the writer is the ring's
        // owner if it only ever had one.
        if (auto info = segment_.ring_info(r); info && info->generation <= 1) tids_[r] = info->tid;
        tid_known_[r] = true;
      }
      if (peek->skipped != 0) skipped("ring", r, peek->first_position - peek->skipped, peek->skipped);
      print_unit_run(peek->records, peek->first_position, "ring", r, nullptr);
      next_[r] = peek->end_position;
    }
    auto overflow = segment_.peek_overflow(next_overflow_, segment_.header().overflow_capacity);
    if (!overflow) return fail(overflow.error().message);
    if (overflow->skipped != 0 && !options_.ring) {
      skipped("overflow", abi::kNoRing, overflow->first_position - overflow->skipped, overflow->skipped);
    }
    for (const auto& group : overflow->groups) {
      if (options_.ring && group.front().ring_index != *options_.ring) continue;
      std::vector<abi::Record> records;
      for (const reader::OverflowEntry& e : group) records.push_back(e.record);
      print_unit_run(records, group.front().position, "overflow", group.front().ring_index, &group.front());
    }
    next_overflow_ = overflow->end_position;
    if (!options_.ring && wanted("error")) {
      if (!errors()) return false;
    }
    if (segment_.faulted()) return fail("segment " + segment_.name() + ": truncated while read");
    std::fflush(stdout);
    return true;
  }

 private:
  bool fail(const std::string& message) {
    std::fflush(stdout);
    say("dump", message);
    return false;
  }

  bool wanted(const char* kind) const { return options_.kinds.empty() || options_.kinds.contains(kind); }

  void skipped(const char* source, std::uint32_t ring, std::uint64_t from, std::uint64_t count) {
    if (!wanted("skipped")) return;
    Line line(options_.format);
    line.prefix(std::string("[") + source + (ring != abi::kNoRing ? " " + std::to_string(ring) : "") + "]");
    line.str("kind", "skipped", false).str("source", source, false);
    if (ring != abi::kNoRing) line.num("ring", ring);
    line.num("from", from).num("count", count);
    line.str("why", "handed back to the producer by the drain before dump read them (in its database)");
    line.print();
  }

  // Decodes one run of raw records unit by unit (a head and its
  // continuations), so each keeps its position.
  void print_unit_run(const std::vector<abi::Record>& records, std::uint64_t first_position, const char* source,
                      std::uint32_t ring, const reader::OverflowEntry* overflow) {
    std::size_t i = 0;
    const auto continuation = static_cast<std::uint8_t>(abi::RecordKind::kContinuation);
    while (i < records.size()) {
      std::size_t j = i + 1;
      while (j < records.size() && records[j].kind == continuation) ++j;
      reader::DecodeStats stats;
      const auto decoded = reader::decode(std::span(records.data() + i, j - i), stats);
      const std::uint64_t position = first_position + i;
      if (decoded.empty()) {
        const char* why = stats.empty_records != 0    ? "empty record (never written)"
                          : stats.unknown_kinds != 0  ? "unknown record kind"
                                                      : "broken continuation chain";
        undecodable(source, ring, position, records[i].kind, why);
      } else {
        std::uint32_t tid = overflow != nullptr ? overflow->tid : (ring < tids_.size() ? tids_[ring] : 0);
        const reader::DecodedRecord& d = decoded.front();
        if (overflow == nullptr && d.kind == abi::RecordKind::kThreadStart) {
          tids_[ring] = static_cast<std::uint32_t>(d.aux);
          tid = tids_[ring];
        }
        record(source, ring, position, tid, d);
      }
      i = j;
    }
  }

  void undecodable(const char* source, std::uint32_t ring, std::uint64_t position, std::uint8_t kind,
                   const char* why) {
    if (!wanted("undecodable")) return;
    Line line(options_.format);
    line.prefix(std::string("[") + source + (ring != abi::kNoRing ? " " + std::to_string(ring) : "") + " #" +
                std::to_string(position) + "]");
    line.str("kind", "undecodable", false).str("source", source, false);
    if (ring != abi::kNoRing) line.num("ring", ring);
    line.num("position", position).num("record_kind", kind).str("why", why);
    line.print();
  }

  void times(Line& line, std::uint64_t ticks) {
    const reader::ClockConverter& clock = segment_.clock();
    const std::uint64_t ref = segment_.header().clock_ref_ticks;
    const std::int64_t wall = clock.to_wall_ns(ticks);
    const std::int64_t rel = ticks >= ref ? clock.duration_ns(ref, ticks) : -clock.duration_ns(ticks, ref);
    line.json_only_num("timestamp", static_cast<std::int64_t>(ticks));
    line.json_only_str("time", live::iso_time(wall));
    line.json_only_num("wall_ns", wall);
    line.json_only_num("rel_ns", rel);
    char buf[48];
    std::snprintf(buf, sizeof buf, " %s +%.9fs", live::time_of_day(wall).c_str(), static_cast<double>(rel) / 1e9);
    line.prefix(buf);
  }

  std::string name_of(std::uint32_t id) { return id == 0 ? "" : live::string_or_note(segment_, id); }

  void trace(Line& line, const std::uint8_t* id) {
    if (!zero(id, 16)) line.str("trace_id", reader::to_hex(id, 16), false);
  }

  void record(const char* source, std::uint32_t ring, std::uint64_t position, std::uint32_t tid,
              const reader::DecodedRecord& d) {
    const char* kind = abi::record_kind_name(d.kind);
    if (!wanted(kind)) return;
    Line line(options_.format);
    line.prefix(std::string("[") + source + (ring != abi::kNoRing ? " " + std::to_string(ring) : "") + " #" +
                std::to_string(position) + " tid " + std::to_string(tid) + "]");
    line.json_only_str("source", source);
    if (ring != abi::kNoRing) line.json_only_num("ring", ring);
    line.json_only_num("position", static_cast<std::int64_t>(position));
    line.json_only_num("tid", tid);
    times(line, d.timestamp);
    line.str("kind", kind, false);
    std::string name = name_of(d.name_id);
    const std::uint64_t code = d.kind == abi::RecordKind::kSpanBegin ? d.span.parent_span_id : 0;
    if (code != 0) {
      const std::string function = code_names_.name(segment_, code);
      if (name.empty()) name = function;
      line.json_only_str("function", function);
    }
    if (name.empty()) {
      line.json_only_str("name", name);  // the text line leaves an empty name out
    } else {
      line.str("name", name);
    }
    if (d.name_id != 0) line.json_only_num("name_id", d.name_id);
    switch (d.kind) {
      case abi::RecordKind::kSpanBegin:
        line.hexnum("span_id", d.span_id).hexnum("parent_span_id", d.aux);
        if (code != 0) line.hexnum("code", code);
        if (d.span.group_id != 0) line.str("group", name_of(d.span.group_id));
        trace(line, d.span.trace_id);
        break;
      case abi::RecordKind::kSpanEnd: {
        line.hexnum("span_id", d.span_id).hexnum("parent_span_id", d.span.parent_span_id);
        line.num("begin_timestamp", d.aux);
        if (d.timestamp >= d.aux) line.inum("duration_ns", segment_.clock().duration_ns(d.aux, d.timestamp));
        line.str("status", (d.flags & abi::kStatusErr) != 0 ? "err" : "ok", false);
        line.boolean("unfinished", (d.flags & abi::kSpanUnfinished) != 0);
        line.boolean("remote_parent", (d.flags & abi::kSpanRemoteParent) != 0);
        if (d.span.error_ref != 0) line.num("error_ref", d.span.error_ref);
        if (d.span.group_id != 0) line.str("group", name_of(d.span.group_id));
        trace(line, d.span.trace_id);
        break;
      }
      case abi::RecordKind::kEvent:
        line.hexnum("span_id", d.span_id).str("status", (d.flags & abi::kStatusErr) != 0 ? "err" : "ok", false);
        line.str("message", d.value);
        break;
      case abi::RecordKind::kCounter:
        line.hexnum("span_id", d.span_id);
        if ((d.flags & abi::kValueTypeMask) == static_cast<std::uint8_t>(abi::ValueType::kDouble)) {
          double v = 0;
          std::memcpy(&v, &d.aux, sizeof v);
          line.str("type", "double", false).real("value", v);
        } else {
          line.str("type", "int", false).inum("value", static_cast<std::int64_t>(d.aux));
        }
        break;
      case abi::RecordKind::kArg:
        arg(line, d);
        break;
      case abi::RecordKind::kDropMarker:
        line.num("dropped", d.aux).num("dropped_total", d.drop.dropped_total);
        line.num("first_drop_timestamp", d.drop.first_drop_timestamp);
        line.num("last_drop_timestamp", d.drop.last_drop_timestamp);
        break;
      case abi::RecordKind::kThreadStart:
      case abi::RecordKind::kThreadEnd: {
        const std::string thread(d.thread.name, ::strnlen(d.thread.name, sizeof d.thread.name));
        line.num("thread_tid", d.aux).str("thread_name", thread).num("generation", d.thread.generation);
        if (d.thread.ring_index != abi::kNoRing) line.num("ring_index", d.thread.ring_index);
        break;
      }
      default:
        line.num("value", d.aux);
        break;
    }
    line.print();
  }

  void arg(Line& line, const reader::DecodedRecord& d) {
    line.hexnum("span_id", d.span_id).str("type", value_type_name(d.flags), false);
    switch (static_cast<abi::ValueType>(d.flags & abi::kValueTypeMask)) {
      case abi::ValueType::kInt: line.inum("value", static_cast<std::int64_t>(d.aux)); break;
      case abi::ValueType::kUint: line.num("value", d.aux); break;
      case abi::ValueType::kBool: line.boolean("value", d.aux != 0); break;
      case abi::ValueType::kDouble: {
        double v = 0;
        std::memcpy(&v, &d.aux, sizeof v);
        line.real("value", v);
        break;
      }
      case abi::ValueType::kBytes:
        line.str("value_hex", reader::to_hex(reinterpret_cast<const std::uint8_t*>(d.value.data()), d.value.size()),
                 false);
        break;
      default: line.str("value", d.value); break;
    }
    line.boolean("result", (d.flags & abi::kArgResult) != 0);
    line.boolean("masked", (d.flags & abi::kArgMasked) != 0);
    line.boolean("truncated", (d.flags & abi::kArgTruncated) != 0);
  }

  bool errors() {
    const reader::LiveFields live = segment_.peek_live();
    // A writer gone (the process ended, or died without saying so) never
    // commits a half-written entry: step over it rather than stop there.
    const bool alive = ::kill(static_cast<pid_t>(segment_.header().pid), 0) == 0 || errno == EPERM;
    const bool writer_gone = live.state != abi::ProcessState::kRunning || !alive;
    while (true) {
      auto batch = segment_.read_errors(error_cursor_, 1024, writer_gone);
      if (!batch) return fail(batch.error().message);
      if (!batch->warning.empty()) say("dump", batch->warning);
      error_cursor_ = batch->next;
      for (const reader::ErrorRecord& e : batch->errors) error(e);
      if (batch->errors.empty()) return true;
    }
  }

  void error(const reader::ErrorRecord& e) {
    Line line(options_.format);
    line.prefix("[error #" + std::to_string(e.sequence) + " tid " + std::to_string(e.tid) + "]");
    line.json_only_str("source", "errors");
    line.json_only_num("tid", e.tid);
    times(line, e.timestamp);
    line.str("kind", "error", false).str("error_kind", error_kind_name(e.kind), false).num("sequence", e.sequence);
    if (e.span_id != 0) line.hexnum("span_id", e.span_id);
    if (e.span_name_id != 0) line.str("span_name", name_of(e.span_name_id));
    if (e.group_id != 0) line.str("group", name_of(e.group_id));
    trace(line, e.trace_id);
    line.str("type", e.type).str("message", e.message);
    if (!e.preview.empty()) line.str("preview", e.preview);
    if (e.kind == abi::ErrorKind::kCrash) line.num("signal", e.signal).hexnum("fault_address", e.fault_address);
    if (!e.frames.empty()) {
      std::string json = "[";
      std::string text;
      for (std::uint64_t f : e.frames) {
        const std::string frame = code_names_.name(segment_, f) + " (" + live::hex(f) + ")";
        if (json.size() > 1) json += ',';
        live::append_json_string(json, frame);
        text += (text.empty() ? "" : " <- ") + frame;
      }
      json += ']';
      std::string quoted;
      live::append_json_string(quoted, text);
      line.raw_json("frames", json, quoted);
    }
    line.print();
  }

  const reader::Segment& segment_;
  const RecordOptions& options_;
  std::vector<std::uint64_t> next_;  // per ring: the next position to read
  std::vector<std::uint32_t> tids_;  // per ring: the thread writing it, as far as seen
  std::vector<bool> tid_known_;
  std::uint64_t next_overflow_ = 0;
  reader::ErrorCursor error_cursor_;
  live::CodeNames code_names_;
};

bool segment_exists(const std::string& name) {
  struct stat st {};
  return ::lstat(("/dev/shm/" + name).c_str(), &st) == 0 || errno != ENOENT;
}

void sleep_ns(std::int64_t ns) {
  timespec t{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  ::nanosleep(&t, nullptr);  // EINTR (SIGINT) ends it early, as wanted
}

}  // namespace

bool known_kind(const std::string& name) {
  for (const char* extra : kExtraKinds) {
    if (name == extra) return true;
  }
  for (int v = 1; v < 256; ++v) {
    if (abi::record_kind_known(static_cast<std::uint8_t>(v)) &&
        name == abi::record_kind_name(static_cast<abi::RecordKind>(v))) {
      return true;
    }
  }
  return false;
}

int records(const RecordOptions& options) {
  auto picked = live::pick_segment(options.target);
  if (!picked) {
    say("dump", picked.error().message);
    return 1;
  }
  if (!picked->note.empty()) say("dump", picked->note);
  const reader::Segment& segment = picked->segment;
  if (options.ring && *options.ring >= segment.ring_count()) {
    say("dump", "segment " + segment.name() + ": --ring " + std::to_string(*options.ring) + " out of range (" +
                    std::to_string(segment.ring_count()) + " rings)");
    return 2;
  }
  Dumper dumper(segment, options);
  if (!options.follow) return dumper.pass() ? 0 : 1;

  struct sigaction action {};
  action.sa_handler = on_stop;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  while (g_stop == 0) {
    // Looked at before the pass: a segment removed meanwhile still gets the
    // pass that shows its last records (the mapping outlives the name).
    const bool exists = segment_exists(segment.name());
    if (!dumper.pass()) return 1;
    if (!exists) return 0;
    sleep_ns(options.poll_ns);
  }
  return 0;
}

}  // namespace shmtrace::cli::dump
