// OpenTelemetry OTLP/JSON. Without --endpoint: TracesData, one JSON object
// a line (the Collector's file exporter format); with it: the same objects
// as ExportTraceServiceRequest bodies POSTed to URL/v1/traces
// (export_otlp_http.cpp). Batches of --batch spans, grouped per process (one
// ResourceSpans each: service.name, process.pid, host.name, ...), so memory
// holds one batch.
//
// The OTLP/JSON rules: trace and span ids as hex (32 and 16 digits), times
// as decimal strings of Unix nanoseconds, 64-bit integers as strings, enums
// as integers (kind 1 INTERNAL, status code 2 ERROR). A span's errors become
// `exception` events (exception.type, .message, .stacktrace from the
// symbolized frames, or the raw addresses); its arguments and results are
// attributes arg.<name> and result.<name>; its events are span events.
// Parents are exact: a span's parentSpanId is its stored parent; a root
// span of a process started under a span of another process (a traced
// parent, TRACEPARENT) gets that span, from processes.parent_span_id, as
// its remote parent. Errors outside any span have no span to go on and are
// left out; unfinished spans end where their process ended (or start) with
// shmtrace.unfinished = true.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <charconv>
#include <map>

#include "export_format.hpp"
#include "export_json.hpp"
#include "export_otlp_http.hpp"

namespace shmtrace::cli::exporting {
namespace {

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "unknown";
  return name;
}

void key(std::string& out, std::string_view k) {
  out += "{\"key\":";
  json_string(out, k);
  out += ",\"value\":";
}

void string_attribute(std::string& out, std::string_view k, std::string_view v) {
  key(out, k);
  out += "{\"stringValue\":";
  json_string(out, v);
  out += "}}";
}

void int_attribute(std::string& out, std::string_view k, std::int64_t v) {
  key(out, k);
  out += "{\"intValue\":\"" + std::to_string(v) + "\"}}";
}

// A span_data value as an AnyValue: int64 as intValue, doubles as
// doubleValue, bools as boolValue, the rest (and uint past int64) as text.
void typed_attribute(std::string& out, std::string_view k, const std::string& value, std::string_view type) {
  std::int64_t i = 0;
  double d = 0;
  const auto whole = [&](auto& into) {
    const auto r = std::from_chars(value.data(), value.data() + value.size(), into);
    return r.ec == std::errc{} && r.ptr == value.data() + value.size();
  };
  key(out, k);
  if ((type == "int" || type == "uint") && whole(i)) {
    out += "{\"intValue\":\"" + value + "\"}}";
  } else if (type == "double" && whole(d) && std::isfinite(d)) {
    out += "{\"doubleValue\":" + value + "}}";
  } else if (type == "bool" && (value == "true" || value == "false")) {
    out += "{\"boolValue\":" + value + "}}";
  } else {
    out += "{\"stringValue\":";
    json_string(out, value);
    out += "}}";
  }
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

class OtlpWriter {
 public:
  OtlpWriter(Context& c, const OtlpOptions& o) : c_(c), options_(o), host_(host_name()) {}

  std::expected<void, std::string> run() {
    if (!options_.endpoint.empty()) {
      auto sender = OtlpSender::make(options_.endpoint, options_.timeout_s);
      if (!sender) return std::unexpected(sender.error());
      sender_.emplace(std::move(*sender));
    }
    auto done = each_row(c_.scan, &query::SpanScan::next_span,
                         [&](const query::SpanRow& s) -> std::expected<void, std::string> {
                           add(s);
                           c_.progress.span(c_.out);
                           if (batched_ >= options_.batch_spans) return flush();
                           return {};
                         });
    if (!done) return done;
    return flush();
  }

 private:
  void add(const query::SpanRow& s) {
    const query::ProcessInfo* p = c_.scan.process(s.process_key);
    std::string& out = pending_[s.process_key];
    if (!out.empty()) out += ',';
    std::string trace = lower(s.trace_id);
    if (trace.empty() && p != nullptr) trace = lower(p->trace_id);
    if (trace.empty()) {
      // A span with no trace (none was ever set): one made from its process,
      // stable across exports.
      trace = query::span_hex(static_cast<std::uint64_t>(p != nullptr ? p->start_ns : 0)) +
              query::span_hex(static_cast<std::uint64_t>(s.process_key));
    }
    std::uint64_t parent = s.parent_span_id;
    if (parent == 0 && p != nullptr && p->parent_span_id != 0 && lower(p->trace_id) == trace) {
      parent = p->parent_span_id;  // remote parent, in the process that started this one
    }
    out += "{\"traceId\":\"" + trace + "\",\"spanId\":\"" + query::span_hex(s.span_id) + "\"";
    if (parent != 0) out += ",\"parentSpanId\":\"" + query::span_hex(parent) + "\"";
    out += ",\"name\":";
    json_string(out, s.name);
    std::int64_t end = s.start_ns;
    if (s.duration_ns) end = s.start_ns + *s.duration_ns;
    else if (p != nullptr && p->end_ns) end = std::max(s.start_ns, *p->end_ns);
    out += ",\"kind\":1,\"startTimeUnixNano\":\"" + std::to_string(s.start_ns) + "\",\"endTimeUnixNano\":\"" +
           std::to_string(end) + "\",\"attributes\":[";
    int_attribute(out, "thread.id", s.tid);
    if (!s.group.empty()) {
      out += ',';
      string_attribute(out, "shmtrace.group", s.group);
    }
    if (!s.duration_ns) out += ",{\"key\":\"shmtrace.unfinished\",\"value\":{\"boolValue\":true}}";
    for (const query::SpanDatum& d : s.data) {
      if (d.kind != "arg" && d.kind != "result") continue;
      out += ',';
      typed_attribute(out, (d.kind == "arg" ? "arg." : "result.") + d.name, d.value, d.value_type);
    }
    out += "],\"events\":[";
    bool first = true;
    for (const query::SpanDatum& d : s.data) {
      if (d.kind != "event") continue;
      if (!first) out += ',';
      first = false;
      out += "{\"timeUnixNano\":\"" + std::to_string(d.ts_ns) + "\",\"name\":";
      json_string(out, d.name);
      out += ",\"attributes\":[";
      typed_attribute(out, "value", d.value, d.value_type);
      out += "]}";
    }
    std::string status_message;
    for (const query::ErrorRow& e : s.errors) {
      if (!first) out += ',';
      first = false;
      out += "{\"timeUnixNano\":\"" + std::to_string(e.ts_ns) + "\",\"name\":\"exception\",\"attributes\":[";
      string_attribute(out, "exception.type", e.type);
      out += ',';
      string_attribute(out, "exception.message", e.message);
      out += ',';
      string_attribute(out, "exception.stacktrace", e.symbols.empty() ? e.frames : e.symbols);
      out += ',';
      string_attribute(out, "shmtrace.error_kind", e.kind);
      out += "]}";
      if (status_message.empty() || e.sequence == s.error_sequence) status_message = e.type + ": " + e.message;
    }
    out += "]";
    if (s.status != 0) {
      out += ",\"status\":{\"code\":2,\"message\":";
      json_string(out, status_message);
      out += "}";
    } else {
      out += ",\"status\":{}";
    }
    out += "}";
    ++batched_;
  }

  void resource(std::string& out, std::int64_t process_key) {
    const query::ProcessInfo* p = c_.scan.process(process_key);
    out += "{\"resource\":{\"attributes\":[";
    string_attribute(out, "service.name", p != nullptr ? p->program() : "unknown");
    out += ',';
    int_attribute(out, "process.pid", p != nullptr ? p->pid : 0);
    out += ',';
    string_attribute(out, "host.name", host_);
    if (p != nullptr) {
      out += ',';
      int_attribute(out, "process.parent_pid", p->ppid);
      out += ',';
      string_attribute(out, "process.executable.path", p->exe);
      out += ',';
      string_attribute(out, "process.command_line", p->cmdline);
      if (!p->session.empty()) {
        out += ',';
        string_attribute(out, "shmtrace.session", p->session);
      }
    }
    out += "]},\"scopeSpans\":[{\"scope\":{\"name\":\"shmtrace\"},\"spans\":[";
  }

  std::expected<void, std::string> flush() {
    if (batched_ == 0) return {};
    std::string body = "{\"resourceSpans\":[";
    bool first = true;
    for (auto& [process_key, spans] : pending_) {
      if (!first) body += ',';
      first = false;
      resource(body, process_key);
      body += spans;
      body += "]}]}";
    }
    body += "]}";
    pending_.clear();
    batched_ = 0;
    if (sender_) return sender_->send(body);
    body += '\n';
    c_.out.write(body);
    return {};
  }

  Context& c_;
  OtlpOptions options_;
  std::string host_;
  std::optional<OtlpSender> sender_;
  std::map<std::int64_t, std::string> pending_;  // per process: its spans' JSON, comma-separated
  std::size_t batched_ = 0;
};

}  // namespace

std::expected<void, std::string> write_otlp(Context& c, const OtlpOptions& options) {
  return OtlpWriter(c, options).run();
}

}  // namespace shmtrace::cli::exporting
