#include "sections.hpp"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <map>
#include <set>
#include <sstream>

#include "shmtrace/abi.hpp"
#include "store/histogram_blob.hpp"
#include "where.hpp"

namespace shmtrace::query {
namespace {

// Conditions on a table with the columns ts (time), process_key, tid, name
// and grp (any of which may be "" when the table lacks it).
struct Columns {
  std::string time, process_key, tid, name, group, trace;
};

Where where_of(const Filter& f, const Columns& c) {
  Where w;
  if (!c.time.empty() && f.since_ns != 0) w.add(c.time + " >= ?", {f.since_ns});
  if (!c.time.empty() && f.until_ns != 0) w.add(c.time + " < ?", {f.until_ns});
  if (!c.process_key.empty()) add_pid_filter(w, c.process_key, f.pids);
  if (!c.tid.empty()) w.in(c.tid, f.tids);
  if (!c.name.empty()) w.in(c.name, f.names);
  if (!c.group.empty()) w.in(c.group, f.groups);
  if (!c.trace.empty() && !f.trace_id.empty()) w.add(c.trace + " = ?", {f.trace_id});
  return w;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (!l.empty()) out.push_back(l);
  }
  return out;
}

std::vector<std::string> words_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

}  // namespace

std::optional<SortKey> parse_sort_key(std::string_view name) {
  if (name == "total") return SortKey::kTotal;
  if (name == "self") return SortKey::kSelf;
  if (name == "calls") return SortKey::kCalls;
  if (name == "p99") return SortKey::kP99;
  return std::nullopt;
}

namespace {

// One function's figures summed over its statistics rows, and its latency
// histograms merged. The quantiles are shmtrace_quantile's (the SQL
// function function_stats uses), computed once for all three: buckets of
// the same clock add up; each bucket is its nanosecond range; the
// q-quantile is the midpoint of the range holding the ceil(q * n)-th call.
struct FunctionSums {
  FunctionStats s;
  bool have_min = false, have_max = false;
  // Per producer clock (ns per tick): calls per bucket.
  std::map<double, std::vector<std::uint64_t>> buckets;
};

void add_histogram(FunctionSums& f, const void* blob, int size) {
  const auto h = drain::histogram::decode(blob, static_cast<std::size_t>(size > 0 ? size : 0));
  if (!h) return;  // the SQL function refuses it; here it only adds nothing
  std::vector<std::uint64_t>& counts = f.buckets[h->ns_per_tick];
  if (counts.empty()) counts.assign(abi::kStatsBuckets, 0);
  for (const drain::histogram::Bucket& b : h->buckets) {
    if (b.index < counts.size()) counts[b.index] += b.count;
  }
}

void finish_quantiles(FunctionSums& f) {
  std::map<std::pair<double, double>, std::uint64_t> ranges;
  std::uint64_t total = 0;
  for (const auto& [ns_per_tick, counts] : f.buckets) {
    drain::histogram::Histogram clock;
    clock.ns_per_tick = ns_per_tick;
    for (std::uint32_t b = 0; b < counts.size(); ++b) {
      if (counts[b] == 0) continue;
      ranges[{drain::histogram::lower_ns(clock, b), drain::histogram::upper_ns(clock, b)}] += counts[b];
      total += counts[b];
    }
  }
  if (total == 0) return;
  const auto rank_of = [&](double q) {
    return std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total))));
  };
  const std::uint64_t r50 = rank_of(0.5), r95 = rank_of(0.95), r99 = rank_of(0.99);
  std::uint64_t seen = 0;
  bool got50 = false, got95 = false;
  for (const auto& [range, count] : ranges) {
    seen += count;
    const double mid = (range.first + range.second) / 2;
    if (!got50 && seen >= r50) f.s.p50_ns = mid, got50 = true;
    if (!got95 && seen >= r95) f.s.p95_ns = mid, got95 = true;
    if (seen >= r99) {
      f.s.p99_ns = mid;
      break;
    }
  }
}

}  // namespace

Result<std::vector<FunctionStats>> functions(sqlite3* db, const Filter& f, SortKey sort, int limit) {
  // An interval [start_ns, end_ns) counts when it overlaps the window.
  Where w;
  if (f.since_ns != 0) w.add("end_ns > ?", {f.since_ns});
  if (f.until_ns != 0) w.add("start_ns < ?", {f.until_ns});
  add_pid_filter(w, "process_key", f.pids);
  w.in("tid", f.tids);
  w.in("name", f.names);
  if (!f.groups.empty()) {
    Where g;
    g.in("grp", f.groups);
    w.add("name IN (SELECT DISTINCT name FROM spans" + g.sql() + ")", g.params());
  }
  // One pass over the rows, summed here: the three quantiles from one merge
  // of the histograms instead of three (this is most of the section's time).
  auto q = Query::prepare(db,
                          "SELECT name, calls, errors, unfinished, completed, total_ns, self_ns, min_ns, max_ns, "
                          "histogram FROM call_stats" + w.sql(),
                          w.params());
  if (!q) return std::unexpected("functions: " + q.error());
  std::unordered_map<std::string, FunctionSums> by_name;
  auto read = q->each_row("functions", [&] {
    const auto* name_text = sqlite3_column_text(q->get(), 0);
    const std::string name(name_text != nullptr ? reinterpret_cast<const char*>(name_text) : "",
                           static_cast<std::size_t>(sqlite3_column_bytes(q->get(), 0)));
    FunctionSums& sums = by_name[name];
    sums.s.calls += q->integer(1);
    sums.s.errors += q->integer(2);
    sums.s.unfinished += q->integer(3);
    sums.s.completed += q->integer(4);
    sums.s.total_ns += q->real(5);
    sums.s.self_ns += q->real(6);
    if (!q->is_null(7) && (!sums.have_min || q->real(7) < sums.s.min_ns)) sums.s.min_ns = q->real(7), sums.have_min = true;
    if (!q->is_null(8) && (!sums.have_max || q->real(8) > sums.s.max_ns)) sums.s.max_ns = q->real(8), sums.have_max = true;
    add_histogram(sums, sqlite3_column_blob(q->get(), 9), sqlite3_column_bytes(q->get(), 9));
  });
  if (!read) return std::unexpected(read.error());
  std::vector<FunctionStats> out;
  out.reserve(by_name.size());
  for (auto& [name, sums] : by_name) {
    finish_quantiles(sums);
    sums.s.name = name;
    sums.s.mean_ns = sums.s.completed > 0 ? sums.s.total_ns / static_cast<double>(sums.s.completed) : 0;
    out.push_back(std::move(sums.s));
  }
  const auto key = [sort](const FunctionStats& s) {
    switch (sort) {
      case SortKey::kSelf: return s.self_ns;
      case SortKey::kCalls: return static_cast<double>(s.calls);
      case SortKey::kP99: return s.p99_ns;
      case SortKey::kTotal: break;
    }
    return s.total_ns;
  };
  std::sort(out.begin(), out.end(), [&](const FunctionStats& a, const FunctionStats& b) {
    const double ka = key(a), kb = key(b);
    return ka != kb ? ka > kb : a.name < b.name;
  });
  if (limit > 0 && out.size() > static_cast<std::size_t>(limit)) out.resize(static_cast<std::size_t>(limit));
  return out;
}

Result<std::vector<ProcessNode>> process_tree(sqlite3* db, const Filter& f) {
  auto q = Query::prepare(db,
                          "SELECT process_key, pid, ppid, exe, cmdline, session, state, exit_status, start_ns, end_ns, "
                          "coalesce(exec_target, ''), records_dropped FROM processes ORDER BY start_ns, process_key",
                          {});
  if (!q) return std::unexpected("processes: " + q.error());
  std::vector<ProcessNode> all;
  auto read = q->each_row("processes", [&] {
    ProcessNode n;
    n.process_key = q->integer(0);
    n.pid = q->integer(1);
    n.ppid = q->integer(2);
    n.exe = q->text(3);
    n.cmdline = q->text(4);
    n.session = q->text(5);
    n.state = q->text(6);
    if (!q->is_null(7)) n.exit_status = q->integer(7);
    n.start_ns = q->integer(8);
    if (!q->is_null(9)) n.end_ns = q->integer(9);
    n.exec_target = q->text(10);
    n.records_dropped = q->integer(11);
    all.push_back(std::move(n));
  });
  if (!read) return std::unexpected(read.error());
  // How each child came to be: the parent's lifecycle event naming its pid
  // (fork, vfork, spawn...).
  std::map<std::pair<std::int64_t, std::int64_t>, std::string> how;  // (parent key, child pid) -> kind
  auto ev = Query::prepare(db,
                           "SELECT process_key, value, kind FROM process_events "
                           "WHERE kind NOT IN ('thread_start', 'thread_end', 'exec', 'exit', 'process_start')",
                           {});
  if (!ev) return std::unexpected("process_events: " + ev.error());
  read = ev->each_row("process_events", [&] {
    how.emplace(std::pair{ev->integer(0), ev->integer(1)}, ev->text(2));
  });
  if (!read) return std::unexpected(read.error());
  // Parent: the image of the same pid that exec'd into this one (the latest
  // earlier image in state execed), else the image of ppid alive when this
  // one started (the latest started at or before it).
  std::map<std::int64_t, std::vector<std::size_t>> by_pid;
  for (std::size_t i = 0; i < all.size(); ++i) by_pid[all[i].pid].push_back(i);
  for (std::size_t i = 0; i < all.size(); ++i) {
    ProcessNode& n = all[i];
    n.origin = "root";
    const std::vector<std::size_t>& same = by_pid[n.pid];
    for (auto it = same.rbegin(); it != same.rend(); ++it) {
      if (*it < i && all[*it].state == "execed") {
        n.parent_key = all[*it].process_key;
        n.origin = "exec";
        break;
      }
    }
    if (n.parent_key != 0) continue;
    auto parents = by_pid.find(n.ppid);
    if (parents == by_pid.end()) continue;
    for (auto it = parents->second.rbegin(); it != parents->second.rend(); ++it) {
      if (*it != i && all[*it].start_ns <= n.start_ns) {
        n.parent_key = all[*it].process_key;
        auto h = how.find({n.parent_key, n.pid});
        n.origin = h != how.end() ? h->second : "child";
        break;
      }
    }
  }
  // Keep: images alive in the window; with --pid, those pids' images and
  // their ancestors and descendants.
  std::map<std::int64_t, std::size_t> index;
  for (std::size_t i = 0; i < all.size(); ++i) index[all[i].process_key] = i;
  std::vector<bool> keep(all.size(), f.pids.empty());
  if (!f.pids.empty()) {
    std::set<std::int64_t> pids(f.pids.begin(), f.pids.end());
    std::vector<bool> chosen(all.size(), false);
    for (std::size_t i = 0; i < all.size(); ++i) chosen[i] = pids.count(all[i].pid) != 0;
    for (std::size_t i = 0; i < all.size(); ++i) {
      // Kept when it or an ancestor was chosen (descendants), and the
      // ancestors of every chosen image.
      for (std::size_t j = i, hops = 0; hops <= all.size(); ++hops) {
        if (chosen[j]) {
          keep[i] = true;
          break;
        }
        auto p = index.find(all[j].parent_key);
        if (all[j].parent_key == 0 || p == index.end()) break;
        j = p->second;
      }
      if (!chosen[i]) continue;
      for (std::size_t j = i, hops = 0; hops <= all.size(); ++hops) {
        keep[j] = true;
        auto p = index.find(all[j].parent_key);
        if (all[j].parent_key == 0 || p == index.end()) break;
        j = p->second;
      }
    }
  }
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (f.since_ns != 0 && all[i].end_ns && *all[i].end_ns < f.since_ns) keep[i] = false;
    if (f.until_ns != 0 && all[i].start_ns >= f.until_ns) keep[i] = false;
  }
  // Tree order: depth-first from the roots (an image whose parent is not
  // kept is a root), children by start time (the order of `all`).
  std::map<std::int64_t, std::vector<std::size_t>> children;
  std::vector<std::size_t> roots;
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (!keep[i]) continue;
    auto p = index.find(all[i].parent_key);
    if (all[i].parent_key != 0 && p != index.end() && keep[p->second]) children[all[i].parent_key].push_back(i);
    else roots.push_back(i);
  }
  std::vector<ProcessNode> out;
  std::vector<std::pair<std::size_t, int>> stack;
  for (auto it = roots.rbegin(); it != roots.rend(); ++it) stack.emplace_back(*it, 0);
  std::vector<bool> placed(all.size(), false);
  while (!stack.empty()) {
    auto [i, depth] = stack.back();
    stack.pop_back();
    if (placed[i]) continue;  // a cycle in hostile ppids: each image once
    placed[i] = true;
    ProcessNode n = all[i];
    n.depth = depth;
    out.push_back(n);
    auto c = children.find(n.process_key);
    if (c == children.end()) continue;
    for (auto it = c->second.rbegin(); it != c->second.rend(); ++it) stack.emplace_back(*it, depth + 1);
  }
  return out;
}

Result<std::vector<std::string>> span_path(sqlite3* db, std::int64_t process_key, std::int64_t span_id) {
  auto q = Query::prepare(db, "SELECT name, parent_span_id FROM spans WHERE process_key = ? AND span_id = ?", {});
  if (!q) return std::unexpected("span path: " + q.error());
  std::vector<std::string> path;
  std::set<std::int64_t> seen;
  std::int64_t id = span_id;
  // Parent links are the producer's data: a cycle or a very deep chain ends the walk.
  while (id != 0 && seen.insert(id).second && path.size() < 4096) {
    q->rerun(process_key);
    sqlite3_bind_int64(q->get(), 2, id);
    auto row = q->step();
    if (!row) return std::unexpected("span path: " + row.error());
    if (!*row) {
      if (id != span_id || !path.empty()) path.push_back("[dropped]");
      break;
    }
    path.push_back(q->text(0));
    id = q->integer(1);
  }
  std::reverse(path.begin(), path.end());
  return path;
}

Result<std::vector<ErrorEntry>> errors(sqlite3* db, const Filter& f, int limit) {
  const Where w = where_of(f, {"e.ts_ns", "e.process_key", "e.tid", "e.span_name", "e.grp", "e.trace_id"});
  const std::string sql =
      "SELECT * FROM (SELECT e.process_key, p.pid, e.tid, e.sequence, e.ts_ns, e.kind, e.type, e.message, p.exe, "
      "e.span_id, e.span_name, e.grp, e.trace_id, e.signal, e.fault_address, e.symbols, e.frames "
      "FROM errors e JOIN processes p USING (process_key)" + w.sql() + " ORDER BY e.ts_ns DESC, e.sequence DESC" +
      (limit > 0 ? " LIMIT " + std::to_string(limit) : std::string()) + ") ORDER BY ts_ns, sequence";
  auto q = Query::prepare(db, sql, w.params());
  if (!q) return std::unexpected("errors: " + q.error());
  std::vector<ErrorEntry> out;
  auto read = q->each_row("errors", [&] {
    ErrorEntry e;
    e.process_key = q->integer(0);
    e.pid = q->integer(1);
    e.tid = q->integer(2);
    e.sequence = q->integer(3);
    e.ts_ns = q->integer(4);
    e.kind = q->text(5);
    e.type = q->text(6);
    e.message = q->text(7);
    e.exe = q->text(8);
    e.span_id = q->integer(9);
    e.span_name = q->text(10);
    e.group = q->text(11);
    e.trace_id = q->text(12);
    e.signal = static_cast<int>(q->integer(13));
    e.fault_address = q->integer(14);
    e.symbols = lines_of(q->text(15));
    e.frames = words_of(q->text(16));
    out.push_back(std::move(e));
  });
  if (!read) return std::unexpected(read.error());
  for (ErrorEntry& e : out) {
    auto p = span_path(db, e.process_key, e.span_id);
    if (!p) return std::unexpected(p.error());
    e.path = std::move(*p);
    if (e.path.empty() && !e.span_name.empty()) e.path.push_back(e.span_name);
  }
  return out;
}

Result<std::vector<SpanEntry>> slowest(sqlite3* db, const Filter& f, int limit) {
  const Where w = where_of(f, {"start_ns", "process_key", "tid", "name", "grp", "trace_id"});
  const std::string sql =
      "SELECT process_key, tid, span_id, parent_span_id, name, grp, trace_id, start_ns, duration_ns, status "
      "FROM spans WHERE duration_ns IS NOT NULL" + w.and_sql() + " ORDER BY duration_ns DESC LIMIT " +
      std::to_string(limit > 0 ? limit : 20);
  auto q = Query::prepare(db, sql, w.params());
  if (!q) return std::unexpected("slowest: " + q.error());
  std::vector<SpanEntry> out;
  auto read = q->each_row("slowest", [&] {
    SpanEntry s;
    s.process_key = q->integer(0);
    s.tid = q->integer(1);
    s.span_id = q->integer(2);
    s.parent_span_id = q->integer(3);
    s.name = q->text(4);
    s.group = q->text(5);
    s.trace_id = q->text(6);
    s.start_ns = q->integer(7);
    s.duration_ns = q->integer(8);
    s.status = static_cast<int>(q->integer(9));
    out.push_back(std::move(s));
  });
  if (!read) return std::unexpected(read.error());
  auto pid = Query::prepare(db, "SELECT pid FROM processes WHERE process_key = ?", {});
  if (!pid) return std::unexpected("slowest: " + pid.error());
  for (SpanEntry& s : out) {
    pid->rerun(s.process_key);
    if (auto r = pid->step(); r && *r) s.pid = pid->integer(0);
    auto p = span_path(db, s.process_key, s.span_id);
    if (!p) return std::unexpected(p.error());
    s.path = std::move(*p);
  }
  return out;
}

Result<Drops> drops(sqlite3* db, const Filter& f) {
  Drops d;
  Where pw = where_of(f, {"", "process_key", "", "", "", ""});
  auto q = Query::prepare(db,
                          "SELECT process_key, pid, exe, records_dropped FROM processes WHERE records_dropped > 0" +
                              pw.and_sql() + " ORDER BY records_dropped DESC, process_key",
                          pw.params());
  if (!q) return std::unexpected("drops: " + q.error());
  auto read = q->each_row("drops", [&] {
    ProcessDrops p;
    p.process_key = q->integer(0);
    p.pid = q->integer(1);
    p.exe = q->text(2);
    p.records_dropped = q->integer(3);
    d.total_dropped += p.records_dropped;
    d.processes.push_back(std::move(p));
  });
  if (!read) return std::unexpected(read.error());
  const Where gw = where_of(f, {"g.ts_ns", "g.process_key", "g.tid", "", "", ""});
  auto g = Query::prepare(db,
                          "SELECT g.process_key, p.pid, g.tid, p.exe, count(*), sum(g.dropped), min(g.first_ns), "
                          "max(g.last_ns) FROM gaps g JOIN processes p USING (process_key)" + gw.sql() +
                              " GROUP BY g.process_key, g.tid ORDER BY sum(g.dropped) DESC, g.process_key, g.tid",
                          gw.params());
  if (!g) return std::unexpected("gaps: " + g.error());
  read = g->each_row("gaps", [&] {
    ThreadDrops t;
    t.process_key = g->integer(0);
    t.pid = g->integer(1);
    t.tid = g->integer(2);
    t.exe = g->text(3);
    t.gaps = g->integer(4);
    t.dropped = g->integer(5);
    t.first_ns = g->integer(6);
    t.last_ns = g->integer(7);
    d.threads.push_back(std::move(t));
  });
  if (!read) return std::unexpected(read.error());
  if (d.total_dropped == 0 && d.threads.empty()) {
    d.meaning = "No records were dropped: every span and argument is stored.";
  } else {
    d.meaning = std::to_string(d.total_dropped) +
                " records were dropped. Calls, errors and percentiles (functions) are still exact: they come "
                "from the statistics kept in shared memory. Span detail (slowest spans, span paths, replay) "
                "is missing inside the gap windows listed.";
  }
  return d;
}

Result<std::int64_t> trace_start_ns(sqlite3* db) {
  auto q = Query::prepare(db, "SELECT coalesce(min(start_ns), 0) FROM processes", {});
  if (!q) return std::unexpected("trace start: " + q.error());
  auto row = q->step();
  if (!row) return std::unexpected("trace start: " + row.error());
  return *row ? q->integer(0) : 0;
}

}  // namespace shmtrace::query
