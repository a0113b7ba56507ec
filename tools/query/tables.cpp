#include "tables.hpp"

#include <cstring>
#include <string>

namespace shmtrace::query {
namespace {

using K = Column::Kind;

Cell opt(const std::optional<std::int64_t>& v) { return v ? Cell{*v} : Cell{}; }

std::string base_name(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::string process_status(const ProcessNode& n) {
  if (n.state == "exited" && n.exit_status) return "exit " + std::to_string(*n.exit_status);
  if (n.state == "crashed" && n.exit_status) {
    const char* name = sigabbrev_np(static_cast<int>(*n.exit_status));
    return "signal " + std::to_string(*n.exit_status) + (name != nullptr ? std::string(" (SIG") + name + ")" : "");
  }
  if (n.state == "execed") return "exec " + n.exec_target;
  return n.state;
}

Table functions_table(const std::vector<FunctionStats>& rows) {
  Table t;
  t.columns = {{"function", K::kText}, {"calls", K::kNumber},     {"errors", K::kNumber},
               {"unfinished", K::kNumber}, {"total_ns", K::kDuration}, {"self_ns", K::kDuration},
               {"mean_ns", K::kDuration},  {"p50_ns", K::kDuration},   {"p95_ns", K::kDuration},
               {"p99_ns", K::kDuration},   {"max_ns", K::kDuration}};
  for (const FunctionStats& s : rows) {
    t.rows.push_back({s.name, s.calls, s.errors, s.unfinished, s.total_ns, s.self_ns, s.mean_ns, s.p50_ns, s.p95_ns,
                      s.p99_ns, s.max_ns});
  }
  return t;
}

Table processes_table(const std::vector<ProcessNode>& rows, Format format) {
  Table t;
  if (format == Format::kText) {
    t.columns = {{"process", K::kText}, {"pid", K::kNumber}, {"how", K::kText}, {"duration", K::kDuration},
                 {"status", K::kText},  {"dropped", K::kNumber}, {"command", K::kText}};
    for (const ProcessNode& n : rows) {
      const Cell duration = n.end_ns ? Cell{*n.end_ns - n.start_ns} : Cell{};
      t.rows.push_back({std::string(2 * static_cast<std::size_t>(n.depth), ' ') + base_name(n.exe), n.pid, n.origin,
                        duration, process_status(n), n.records_dropped, n.cmdline});
    }
    return t;
  }
  t.columns = {{"process_key", K::kNumber}, {"parent_key", K::kNumber}, {"depth", K::kNumber},
               {"pid", K::kNumber},         {"ppid", K::kNumber},       {"origin", K::kText},
               {"exe", K::kText},           {"cmdline", K::kText},      {"session", K::kText},
               {"state", K::kText},         {"exit_status", K::kNumber}, {"signal", K::kNumber},
               {"start_ns", K::kTime},      {"end_ns", K::kTime},       {"duration_ns", K::kDuration},
               {"exec_target", K::kText},   {"records_dropped", K::kNumber}};
  for (const ProcessNode& n : rows) {
    const bool crashed = n.state == "crashed";
    t.rows.push_back({n.process_key, n.parent_key, static_cast<std::int64_t>(n.depth), n.pid, n.ppid, n.origin, n.exe,
                      n.cmdline, n.session, n.state, crashed ? Cell{} : opt(n.exit_status),
                      crashed ? opt(n.exit_status) : Cell{}, n.start_ns, opt(n.end_ns),
                      n.end_ns ? Cell{*n.end_ns - n.start_ns} : Cell{}, n.exec_target, n.records_dropped});
  }
  return t;
}

Table errors_table(const std::vector<ErrorEntry>& rows) {
  Table t;
  t.columns = {{"time_ns", K::kTime},   {"pid", K::kNumber},    {"tid", K::kNumber},
               {"kind", K::kText},      {"type", K::kText},     {"message", K::kText},
               {"signal", K::kNumber},  {"span_path", K::kText}, {"frames", K::kText}};
  for (const ErrorEntry& e : rows) {
    List frames{e.symbols.empty() ? e.frames : e.symbols, " < "};
    t.rows.push_back({e.ts_ns, e.pid, e.tid, e.kind, e.type, e.message, static_cast<std::int64_t>(e.signal),
                      List{e.path, " > "}, frames});
  }
  return t;
}

Table slowest_table(const std::vector<SpanEntry>& rows) {
  Table t;
  t.columns = {{"duration_ns", K::kDuration}, {"pid", K::kNumber},    {"tid", K::kNumber},
               {"name", K::kText},            {"start_ns", K::kTime}, {"status", K::kNumber},
               {"span_path", K::kText}};
  for (const SpanEntry& s : rows) {
    t.rows.push_back({s.duration_ns, s.pid, s.tid, s.name, s.start_ns, static_cast<std::int64_t>(s.status),
                      List{s.path, " > "}});
  }
  return t;
}

Table drops_processes_table(const Drops& d) {
  Table t;
  t.columns = {{"pid", K::kNumber}, {"program", K::kText}, {"records_dropped", K::kNumber}};
  for (const ProcessDrops& p : d.processes) t.rows.push_back({p.pid, p.exe, p.records_dropped});
  return t;
}

Table drops_threads_table(const Drops& d) {
  Table t;
  t.columns = {{"pid", K::kNumber},     {"tid", K::kNumber},      {"program", K::kText}, {"gaps", K::kNumber},
               {"dropped", K::kNumber}, {"first_ns", K::kTime}, {"last_ns", K::kTime}};
  for (const ThreadDrops& g : d.threads) {
    t.rows.push_back({g.pid, g.tid, g.exe, g.gaps, g.dropped, g.first_ns, g.last_ns});
  }
  return t;
}

}  // namespace shmtrace::query
