#include "call_tree.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <unordered_map>

#include "where.hpp"

namespace shmtrace::query {
namespace {

std::string call_text(const TreeSpan& s) {
  std::string out = s.name + "(";
  for (std::size_t i = 0; i < s.args.size(); ++i) {
    out += (i > 0 ? ", " : "") + s.args[i].first + "=" + s.args[i].second;
  }
  return out + ")";
}

std::string results_text(const TreeSpan& s) {
  if (s.results.empty()) return {};
  if (s.results.size() == 1) return " = " + s.results[0].second;
  std::string out = " = {";
  for (std::size_t i = 0; i < s.results.size(); ++i) {
    out += (i > 0 ? ", " : "") + s.results[i].first + "=" + s.results[i].second;
  }
  return out + "}";
}

std::string notes_text(const TreeSpan& s) {
  std::string out;
  if (!s.error.empty()) out += " /* error: " + s.error + " */";
  else if (s.status != 0) out += " /* ERR */";
  if (!s.duration_ns) out += " /* unfinished */";
  return out;
}

}  // namespace

std::string replay_duration(std::int64_t ns) {
  const char* units[] = {"ns", "us", "ms", " s"};
  double v = static_cast<double>(ns);
  // uftrace shows microseconds below one: "0.250 us".
  int u = 1;
  v /= 1000.0;
  while (v >= 1000.0 && u < 3) {
    v /= 1000.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%7.3f %s", v, units[u]);
  return buf;
}

Result<std::vector<ThreadTree>> call_tree(sqlite3* db, const Filter& f) {
  Where w;
  if (f.since_ns != 0) w.add("s.start_ns >= ?", {f.since_ns});
  if (f.until_ns != 0) w.add("s.start_ns < ?", {f.until_ns});
  add_pid_filter(w, "s.process_key", f.pids);
  w.in("s.tid", f.tids);
  if (!f.trace_id.empty()) w.add("s.trace_id = ?", {f.trace_id});
  auto q = Query::prepare(db,
                          "SELECT s.process_key, p.pid, s.tid, p.exe, s.span_id, s.parent_span_id, s.name, s.start_ns, "
                          "s.duration_ns, s.status FROM spans s JOIN processes p USING (process_key)" + w.sql() +
                              " ORDER BY p.start_ns, s.process_key, s.tid, s.start_ns, s.span_id",
                          w.params());
  if (!q) return std::unexpected("call tree: " + q.error());
  std::vector<ThreadTree> out;
  std::map<std::pair<std::int64_t, std::int64_t>, std::size_t> thread_at;  // (process, tid) -> out index
  auto read = q->each_row("call tree", [&] {
    const std::int64_t key = q->integer(0), tid = q->integer(2);
    auto [it, fresh] = thread_at.try_emplace({key, tid}, out.size());
    if (fresh) {
      ThreadTree t;
      t.process_key = key;
      t.pid = q->integer(1);
      t.tid = tid;
      t.exe = q->text(3);
      out.push_back(std::move(t));
    }
    TreeSpan s;
    s.span_id = q->integer(4);
    s.parent_span_id = q->integer(5);
    s.name = q->text(6);
    s.start_ns = q->integer(7);
    if (!q->is_null(8)) s.duration_ns = q->integer(8);
    s.status = static_cast<int>(q->integer(9));
    out[it->second].spans.push_back(std::move(s));
  });
  if (!read) return std::unexpected(read.error());
  // Arguments, results and errors of the chosen spans, and the gaps, per process.
  std::map<std::int64_t, std::vector<std::size_t>> threads_of;
  for (std::size_t i = 0; i < out.size(); ++i) threads_of[out[i].process_key].push_back(i);
  auto data = Query::prepare(db,
                             "SELECT span_id, kind, name, value FROM span_data WHERE process_key = ? "
                             "AND kind IN ('arg', 'result') ORDER BY ring, position",
                             {});
  auto errs = Query::prepare(db, "SELECT span_id, type, message FROM errors WHERE process_key = ? ORDER BY sequence", {});
  auto gaps = Query::prepare(db, "SELECT tid, ts_ns, dropped FROM gaps WHERE process_key = ? ORDER BY ts_ns", {});
  if (!data || !errs || !gaps) {
    return std::unexpected("call tree: " + (!data ? data.error() : !errs ? errs.error() : gaps.error()));
  }
  for (const auto& [key, indexes] : threads_of) {
    std::unordered_map<std::int64_t, TreeSpan*> by_id;
    std::map<std::int64_t, std::size_t> by_tid;
    for (std::size_t i : indexes) {
      by_tid[out[i].tid] = i;
      for (TreeSpan& s : out[i].spans) by_id[s.span_id] = &s;
    }
    data->rerun(key);
    read = data->each_row("call tree", [&] {
      auto s = by_id.find(data->integer(0));
      if (s == by_id.end()) return;
      auto& list = data->text(1) == "result" ? s->second->results : s->second->args;
      list.emplace_back(data->text(2), data->text(3));
    });
    if (!read) return std::unexpected(read.error());
    errs->rerun(key);
    read = errs->each_row("call tree", [&] {
      auto s = by_id.find(errs->integer(0));
      if (s == by_id.end() || !s->second->error.empty()) return;
      const std::string type = errs->text(1), message = errs->text(2);
      s->second->error = message.empty() ? type : type + ": " + message;
    });
    if (!read) return std::unexpected(read.error());
    gaps->rerun(key);
    read = gaps->each_row("call tree", [&] {
      const std::int64_t tid = gaps->integer(0), ts = gaps->integer(1);
      if ((f.since_ns != 0 && ts < f.since_ns) || (f.until_ns != 0 && ts >= f.until_ns)) return;
      if (!f.tids.empty() && std::find(f.tids.begin(), f.tids.end(), tid) == f.tids.end()) return;
      auto t = by_tid.find(tid);
      if (t == by_tid.end()) {
        // Drops of a thread with no stored span, or of no known thread (tid
        // 0: drops no marker placed, counted at the process's end): a tree
        // of their own.
        ThreadTree lone;
        lone.process_key = key;
        lone.pid = out[indexes.front()].pid;
        lone.tid = tid;
        lone.exe = out[indexes.front()].exe;
        t = by_tid.emplace(tid, out.size()).first;
        out.push_back(std::move(lone));
      }
      out[t->second].gaps.push_back(TreeGap{ts, gaps->integer(2)});
    });
    if (!read) return std::unexpected(read.error());
  }
  // Each process's trees together, threads by tid.
  std::map<std::int64_t, std::size_t> process_order;
  for (const ThreadTree& t : out) process_order.emplace(t.process_key, process_order.size());
  std::stable_sort(out.begin(), out.end(), [&](const ThreadTree& a, const ThreadTree& b) {
    const std::size_t pa = process_order[a.process_key], pb = process_order[b.process_key];
    return pa != pb ? pa < pb : a.tid < b.tid;
  });
  return out;
}

std::string render_replay(const std::vector<ThreadTree>& threads, const ReplayOptions& options) {
  std::string out = "# DURATION     TID     FUNCTION\n";
  constexpr std::int64_t kOpen = INT64_MAX;
  for (const ThreadTree& t : threads) {
    char tid[32];
    std::snprintf(tid, sizeof tid, " [%6lld] | ", static_cast<long long>(t.tid));
    const std::string blank(11, ' ');
    // The open calls: index into t.spans, end time, whether shown.
    struct Open {
      std::size_t span;
      std::int64_t end;
      bool shown;
      bool has_children;
    };
    std::vector<Open> stack;
    // Children shown of each open call decide between "f() {" and "f();":
    // a call is printed when its first shown child (or its end) comes.
    std::vector<std::size_t> pending;  // stack indexes whose opening line is not printed yet
    auto indent = [](std::size_t depth) { return std::string(2 * depth, ' '); };
    auto shown_depth = [&] {
      std::size_t d = 0;
      for (const Open& o : stack) d += o.shown ? 1 : 0;
      return d;
    };
    auto flush_opening = [&] {
      // Prints "f() {" for every shown open call not printed yet.
      std::size_t d = 0;
      for (std::size_t k = 0; k < stack.size(); ++k) {
        if (!stack[k].shown) continue;
        if (std::find(pending.begin(), pending.end(), k) != pending.end()) {
          const TreeSpan& s = t.spans[stack[k].span];
          out += blank + tid + indent(d) + call_text(s) + " {\n";
          stack[k].has_children = true;
        }
        ++d;
      }
      pending.clear();
    };
    auto close_top = [&] {
      const Open o = stack.back();
      stack.pop_back();
      if (!o.shown) return;
      const TreeSpan& s = t.spans[o.span];
      const std::size_t d = shown_depth();
      const std::string dur = s.duration_ns ? " " + replay_duration(*s.duration_ns) : blank;
      auto p = std::find(pending.begin(), pending.end(), stack.size());
      if (p != pending.end()) {
        pending.erase(p);
        out += dur + tid + indent(d) + call_text(s) + results_text(s) + ";" + notes_text(s) + "\n";
      } else {
        out += dur + tid + indent(d) + "} /* " + s.name + " */" + results_text(s) + notes_text(s) + "\n";
      }
    };
    auto close_until = [&](std::int64_t time) {
      while (!stack.empty() && stack.back().end <= time) close_top();
    };
    std::size_t gap = 0;
    for (std::size_t i = 0; i <= t.spans.size(); ++i) {
      const std::int64_t at = i < t.spans.size() ? t.spans[i].start_ns : kOpen;
      // Gap markers that come before this call.
      while (gap < t.gaps.size() && t.gaps[gap].ts_ns <= at) {
        close_until(t.gaps[gap].ts_ns);
        flush_opening();
        out += blank + tid + indent(shown_depth()) + "/* " + std::to_string(t.gaps[gap].dropped) +
               (t.tid == 0 ? " records of process " + std::to_string(t.pid) + " dropped (thread unknown) */\n"
                           : std::string(" records dropped here */\n"));
        ++gap;
      }
      if (i == t.spans.size()) break;
      const TreeSpan& s = t.spans[i];
      // Nesting by parent link when the parent is open; otherwise (a parent
      // dropped) by time.
      auto parent = std::find_if(stack.begin(), stack.end(),
                                 [&](const Open& o) { return t.spans[o.span].span_id == s.parent_span_id; });
      if (s.parent_span_id != 0 && parent != stack.end()) {
        while (stack.size() > static_cast<std::size_t>(parent - stack.begin()) + 1) close_top();
      } else {
        close_until(s.start_ns);
      }
      const std::size_t depth = stack.size() + 1;
      bool shown = options.max_depth <= 0 || depth <= static_cast<std::size_t>(options.max_depth);
      if (s.duration_ns && *s.duration_ns < options.min_duration_ns) shown = false;
      if (!stack.empty() && !stack.back().shown) shown = false;  // under a hidden call
      if (shown) flush_opening();
      const std::int64_t end = s.duration_ns ? s.start_ns + *s.duration_ns : kOpen;
      stack.push_back(Open{i, end, shown, false});
      if (shown) pending.push_back(stack.size() - 1);
    }
    while (!stack.empty()) close_top();
  }
  return out;
}

}  // namespace shmtrace::query
