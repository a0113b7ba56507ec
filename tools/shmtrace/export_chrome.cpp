// Chrome trace-event JSON (the JSON Object Format that chrome://tracing and
// the Perfetto UI open), streamed: one event per line, written as the scan
// reads it. Tracks are pid/tid with process_name and thread_name metadata
// written before a track's first event; spans are complete ("X") events
// with their arguments, results and ids in args (unfinished ones a "B"
// with no end, which the viewers draw to the end of the trace); events,
// errors, crashes and drop gaps are instant ("i") events; counters are
// counter ("C") events on their process.
//
// Timestamps are microseconds with three decimals, counted from the first
// process's start (otherData.shmtrace_epoch_ns): wall-clock microseconds
// since 1970 have more digits than a double keeps, and the viewers read ts
// as a double.
#include <limits>
#include <set>

#include "export_format.hpp"
#include "export_json.hpp"

namespace shmtrace::cli::exporting {
namespace {

class ChromeWriter {
 public:
  ChromeWriter(Context& c) : c_(c) {
    for (const auto& [key, p] : c.scan.processes()) epoch_ = std::min(epoch_, p.start_ns);
    if (c.scan.processes().empty()) epoch_ = 0;
  }

  std::expected<void, std::string> run() {
    line_ = "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"shmtrace_epoch_ns\":\"" + std::to_string(epoch_) +
            "\",\"timestamps\":\"microseconds since shmtrace_epoch_ns\"},\"traceEvents\":[\n";
    c_.out.write(line_);
    auto done = each_row(c_.scan, &query::SpanScan::next_span, [&](const query::SpanRow& s) {
      write_span(s);
      c_.progress.span(c_.out);
    });
    if (done) done = each_row(c_.scan, &query::SpanScan::next_error, [&](const auto& e) { write_error(e); });
    if (done) done = each_row(c_.scan, &query::SpanScan::next_gap, [&](const auto& g) { write_gap(g); });
    if (done) done = each_row(c_.scan, &query::SpanScan::next_counter, [&](const auto& r) { write_counter(r); });
    if (!done) return done;
    c_.out.write("\n]}\n");
    return {};
  }

 private:
  // A new line_ for the next element of traceEvents: its separator.
  void next_element() {
    line_.clear();
    if (!first_) line_ += ",\n";
    first_ = false;
  }
  // Starts an event: the separator, then {"ph":..,"pid":..,"tid":..,"ts":..
  void begin(const char* phase, std::int64_t pid, std::int64_t tid, std::int64_t ts_ns) {
    next_element();
    line_ += "{\"ph\":\"";
    line_ += phase;
    line_ += "\",\"pid\":" + std::to_string(pid) + ",\"tid\":" + std::to_string(tid) + ",\"ts\":";
    json_micros(line_, ts_ns - epoch_);
  }
  void end() {
    line_ += '}';
    c_.out.write(line_);
  }

  // The process's pid, with its name (and its thread's) written first.
  std::int64_t track(std::int64_t process_key, std::int64_t tid) {
    const query::ProcessInfo* p = c_.scan.process(process_key);
    const std::int64_t pid = p != nullptr ? p->pid : 0;
    if (p != nullptr && processes_.insert(process_key).second) {
      metadata("process_name", pid, pid, p->program());
      metadata_labels(pid, *p);
    }
    if (threads_.insert({process_key, tid}).second) {
      std::string name = c_.scan.thread_name(process_key, tid);
      if (name.empty()) name = (p != nullptr && tid == pid) ? p->program() : "thread " + std::to_string(tid);
      metadata("thread_name", pid, tid, name);
    }
    return pid;
  }
  void metadata(const char* what, std::int64_t pid, std::int64_t tid, const std::string& name) {
    next_element();
    line_ += "{\"ph\":\"M\",\"name\":\"";
    line_ += what;
    line_ += "\",\"pid\":" + std::to_string(pid) + ",\"tid\":" + std::to_string(tid) + ",\"args\":{\"name\":";
    json_string(line_, name);
    line_ += "}}";
    c_.out.write(line_);
  }
  void metadata_labels(std::int64_t pid, const query::ProcessInfo& p) {
    std::string labels = p.cmdline;
    if (p.state == "crashed" || (p.exit_status && *p.exit_status != 0)) {
      labels += " [" + p.state + (p.exit_status ? " " + std::to_string(*p.exit_status) : std::string()) + "]";
    }
    line_.clear();
    line_ += ",\n{\"ph\":\"M\",\"name\":\"process_labels\",\"pid\":" + std::to_string(pid) +
             ",\"tid\":" + std::to_string(pid) + ",\"args\":{\"labels\":";
    json_string(line_, labels);
    line_ += "}}";
    c_.out.write(line_);
  }

  void write_span(const query::SpanRow& s) {
    const std::int64_t pid = track(s.process_key, s.tid);
    begin(s.duration_ns ? "X" : "B", pid, s.tid, s.start_ns);
    if (s.duration_ns) {
      line_ += ",\"dur\":";
      json_micros(line_, *s.duration_ns);
    }
    line_ += ",\"name\":";
    json_string(line_, s.name);
    line_ += ",\"cat\":";
    json_string(line_, s.group.empty() ? "span" : s.group);
    line_ += ",\"args\":{\"span_id\":\"" + query::span_hex(s.span_id) + "\"";
    if (s.parent_span_id != 0) line_ += ",\"parent_span_id\":\"" + query::span_hex(s.parent_span_id) + "\"";
    if (!s.trace_id.empty()) {
      line_ += ",\"trace_id\":";
      json_string(line_, s.trace_id);
    }
    if (s.status != 0) line_ += ",\"status\":\"error\"";
    if (!s.duration_ns) line_ += ",\"unfinished\":true";
    data_object("arguments", s, "arg");
    data_object("results", s, "result");
    line_ += "}";
    end();
    for (const query::SpanDatum& d : s.data) {
      if (d.kind != "event") continue;
      begin("i", pid, s.tid, d.ts_ns);
      line_ += ",\"s\":\"t\",\"cat\":\"event\",\"name\":";
      json_string(line_, d.name);
      line_ += ",\"args\":{\"value\":";
      json_value(line_, d.value, d.value_type);
      line_ += "}";
      end();
    }
  }
  void data_object(const char* key, const query::SpanRow& s, std::string_view kind) {
    bool any = false;
    for (const query::SpanDatum& d : s.data) {
      if (d.kind != kind) continue;
      line_ += any ? "," : std::string(",\"") + key + "\":{";
      any = true;
      json_string(line_, d.name);
      line_ += ':';
      json_value(line_, d.value, d.value_type);
    }
    if (any) line_ += '}';
  }

  void write_error(const query::ErrorRow& e) {
    const std::int64_t pid = track(e.process_key, e.tid);
    const bool crash = e.kind == "crash";
    begin("i", pid, e.tid, e.ts_ns);
    // A crash ends the whole process: drawn across it.
    line_ += crash ? ",\"s\":\"p\",\"cat\":\"crash\",\"name\":" : ",\"s\":\"t\",\"cat\":\"error\",\"name\":";
    json_string(line_, (crash ? "crash: " : "error: ") + e.type);
    line_ += ",\"args\":{\"kind\":";
    json_string(line_, e.kind);
    line_ += ",\"type\":";
    json_string(line_, e.type);
    line_ += ",\"message\":";
    json_string(line_, e.message);
    if (e.span_id != 0) line_ += ",\"span_id\":\"" + query::span_hex(e.span_id) + "\"";
    if (e.signal != 0) line_ += ",\"signal\":" + std::to_string(e.signal);
    line_ += ",\"frames\":";
    json_string(line_, e.symbols.empty() ? e.frames : e.symbols);
    line_ += "}";
    end();
  }

  void write_gap(const query::GapRow& g) {
    const std::int64_t pid = track(g.process_key, g.tid);
    begin("i", pid, g.tid, g.ts_ns);
    line_ += ",\"s\":\"t\",\"cat\":\"gap\",\"name\":";
    json_string(line_, std::to_string(g.dropped) + " records dropped");
    line_ += ",\"args\":{\"dropped\":" + std::to_string(g.dropped) + ",\"first_ns\":\"" + std::to_string(g.first_ns) +
             "\",\"last_ns\":\"" + std::to_string(g.last_ns) + "\"}";
    end();
  }

  void write_counter(const query::CounterRow& r) {
    const std::int64_t pid = track(r.process_key, r.tid);
    begin("C", pid, r.tid, r.ts_ns);
    line_ += ",\"name\":";
    json_string(line_, r.name);
    line_ += ",\"args\":{";
    json_string(line_, r.name);
    line_ += ':';
    // A counter's value is a number; one that is not (text) is left out as 0
    // rather than break the viewers' counter tracks.
    const std::size_t at = line_.size();
    json_value(line_, r.value, r.value_type);
    if (line_[at] == '"') {
      line_.resize(at);
      line_ += '0';
    }
    line_ += "}";
    end();
  }

  Context& c_;
  std::string line_;
  bool first_ = true;
  std::int64_t epoch_ = std::numeric_limits<std::int64_t>::max();
  std::set<std::int64_t> processes_;
  std::set<std::pair<std::int64_t, std::int64_t>> threads_;
};

}  // namespace

std::expected<void, std::string> write_chrome(Context& c) { return ChromeWriter(c).run(); }

}  // namespace shmtrace::cli::exporting
