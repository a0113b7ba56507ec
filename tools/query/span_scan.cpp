#include "span_scan.hpp"

#include <sqlite3.h>

#include <cstdio>
#include <variant>

namespace shmtrace::query {

using Bound = std::variant<std::int64_t, std::string>;

// A prepared statement with the values its WHERE clause binds, re-run from
// the start by reset().
class Statement {
 public:
  static std::expected<std::unique_ptr<Statement>, std::string> prepare(sqlite3* db, const std::string& sql,
                                                                         std::vector<Bound> binds) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
      std::string why = sqlite3_errmsg(db);
      sqlite3_finalize(s);
      return std::unexpected("not a shmtrace database (" + why + ")");
    }
    auto st = std::unique_ptr<Statement>(new Statement(db, s, std::move(binds)));
    st->bind_filter();
    return st;
  }
  ~Statement() { sqlite3_finalize(s_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // true: a row; false: done; error otherwise.
  std::expected<bool, std::string> step() {
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return std::unexpected(std::string("reading the database: ") + sqlite3_errmsg(db_));
  }
  // For the per-span lookups: the filter's binds, then these.
  void rebind(std::int64_t a, std::int64_t b, std::int64_t c = 0, std::int64_t d = 0) {
    sqlite3_reset(s_);
    const int base = static_cast<int>(binds_.size());
    sqlite3_bind_int64(s_, base + 1, a);
    sqlite3_bind_int64(s_, base + 2, b);
    if (sqlite3_bind_parameter_count(s_) >= base + 3) sqlite3_bind_int64(s_, base + 3, c);
    if (sqlite3_bind_parameter_count(s_) >= base + 4) sqlite3_bind_int64(s_, base + 4, d);
  }
  std::int64_t i64(int col) const { return sqlite3_column_int64(s_, col); }
  std::uint64_t u64(int col) const { return static_cast<std::uint64_t>(sqlite3_column_int64(s_, col)); }
  bool null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
  std::optional<std::int64_t> opt(int col) const {
    if (null(col)) return std::nullopt;
    return i64(col);
  }
  std::string text(int col) const {
    const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
    if (t == nullptr) return {};
    return std::string(t, static_cast<std::size_t>(sqlite3_column_bytes(s_, col)));
  }

 private:
  Statement(sqlite3* db, sqlite3_stmt* s, std::vector<Bound> binds) : db_(db), s_(s), binds_(std::move(binds)) {}
  void bind_filter() {
    for (std::size_t i = 0; i < binds_.size(); ++i) {
      const int at = static_cast<int>(i) + 1;
      if (const auto* n = std::get_if<std::int64_t>(&binds_[i])) {
        sqlite3_bind_int64(s_, at, *n);
      } else {
        const std::string& t = std::get<std::string>(binds_[i]);
        sqlite3_bind_text(s_, at, t.data(), static_cast<int>(t.size()), SQLITE_STATIC);
      }
    }
  }
  sqlite3* db_;
  sqlite3_stmt* s_;
  std::vector<Bound> binds_;  // kept alive: text is bound without a copy
};

namespace {

// The filter as a WHERE clause over one table: which of its columns carry
// the time, thread, name, group and trace (empty: the table has none).
struct Columns {
  std::string time;
  std::string tid = "tid";
  std::string name;
  std::string group;
  std::string trace;
};

struct Where {
  std::string sql;
  std::vector<Bound> binds;
  void add(const std::string& condition) { sql += (sql.empty() ? " WHERE " : " AND ") + condition; }
  template <class T>
  void add_in(const std::string& column, const std::vector<T>& values) {
    if (values.empty()) return;
    std::string list;
    for (const T& v : values) {
      list += list.empty() ? "?" : ",?";
      binds.emplace_back(v);
    }
    add(column + " IN (" + list + ")");
  }
};

Where where_of(const Filter& f, const Columns& c) {
  Where w;
  if (f.since_ns != 0 && !c.time.empty()) {
    w.add(c.time + " >= ?");
    w.binds.emplace_back(f.since_ns);
  }
  if (f.until_ns != 0 && !c.time.empty()) {
    w.add(c.time + " < ?");
    w.binds.emplace_back(f.until_ns);
  }
  if (!f.pids.empty()) {
    std::string list;
    for (std::int64_t pid : f.pids) {
      list += list.empty() ? "?" : ",?";
      w.binds.emplace_back(pid);
    }
    w.add("process_key IN (SELECT process_key FROM processes WHERE pid IN (" + list + "))");
  }
  if (!c.tid.empty()) w.add_in(c.tid, f.tids);
  if (!c.name.empty()) w.add_in(c.name, f.names);
  if (!c.group.empty()) w.add_in(c.group, f.groups);
  if (!f.trace_id.empty()) {
    if (!c.trace.empty()) {
      w.add(c.trace + " = ?");
    } else {
      // Rows that carry no trace (gaps, counters): those of the processes
      // that took part in it.
      w.add("process_key IN (SELECT process_key FROM processes WHERE trace_id = ?)");
    }
    w.binds.emplace_back(f.trace_id);
  }
  return w;
}

// Columns of schema version 4 read as '' from a database of version 3.
bool has_column(sqlite3* db, const char* table, const char* column) {
  sqlite3_stmt* s = nullptr;
  bool found = false;
  const std::string sql = std::string("SELECT 1 FROM pragma_table_info('") + table + "') WHERE name = ?";
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK) {
    sqlite3_bind_text(s, 1, column, -1, SQLITE_STATIC);
    found = sqlite3_step(s) == SQLITE_ROW;
  }
  sqlite3_finalize(s);
  return found;
}

bool has_index(sqlite3* db, const char* name) {
  sqlite3_stmt* s = nullptr;
  bool found = false;
  if (sqlite3_prepare_v2(db, "SELECT 1 FROM main.sqlite_master WHERE type = 'index' AND name = ?", -1, &s, nullptr) ==
      SQLITE_OK) {
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    found = sqlite3_step(s) == SQLITE_ROW;
  }
  sqlite3_finalize(s);
  return found;
}

// One arm per attached partition (p<id>, as QueryDatabase attaches them),
// each on its span_data_by_span index; the view when there is none.
std::string span_data_lookup(sqlite3* db) {
  constexpr const char* kColumns = "SELECT kind, name, value, value_type, ts_ns FROM ";
  constexpr const char* kWhere = " WHERE process_key = ?1 AND span_id = ?2 AND kind != 'counter'";
  std::string arms;
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT name FROM pragma_database_list WHERE name GLOB 'p[0-9]*' ORDER BY seq", -1, &s, nullptr) ==
      SQLITE_OK) {
    while (sqlite3_step(s) == SQLITE_ROW) {
      const std::string schema = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
      if (schema.find_first_not_of("0123456789", 1) != std::string::npos) continue;
      arms += (arms.empty() ? "" : " UNION ALL ") + std::string(kColumns) + schema +
              ".span_data INDEXED BY span_data_by_span" + kWhere;
    }
  }
  sqlite3_finalize(s);
  if (arms.empty()) arms = std::string(kColumns) + "span_data" + kWhere;
  // No ORDER BY (a sort per span): each arm yields the index's order, which
  // ends in the primary key (ring, position), the order the thread wrote
  // them; the arms are in the partitions' time order (the order they are
  // attached in).
  return arms;
}

std::string error_columns(sqlite3* db) {
  return std::string("process_key, sequence, ts_ns, kind, tid, span_id, trace_id, grp, span_name, type, message, "
                     "signal, fault_address, frames, ") +
         (has_column(db, "errors", "symbols") ? "symbols" : "''");
}

void read_error(const Statement& s, ErrorRow& e) {
  e.process_key = s.i64(0);
  e.sequence = s.i64(1);
  e.ts_ns = s.i64(2);
  e.kind = s.text(3);
  e.tid = s.i64(4);
  e.span_id = s.u64(5);
  e.trace_id = s.text(6);
  e.group = s.text(7);
  e.span_name = s.text(8);
  e.type = s.text(9);
  e.message = s.text(10);
  e.signal = s.i64(11);
  e.fault_address = s.u64(12);
  e.frames = s.text(13);
  e.symbols = s.text(14);
}

}  // namespace

std::string ProcessInfo::program() const {
  const auto slash = exe.rfind('/');
  return slash == std::string::npos ? exe : exe.substr(slash + 1);
}

std::string span_hex(std::uint64_t id) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(id));
  return text;
}

SpanScan::SpanScan() = default;
SpanScan::SpanScan(SpanScan&&) noexcept = default;
SpanScan& SpanScan::operator=(SpanScan&&) noexcept = default;
SpanScan::~SpanScan() = default;

std::expected<SpanScan, std::string> SpanScan::open(sqlite3* db, const Filter& filter, ScanOptions options) {
  SpanScan scan;
  scan.options_ = options;
  {
    Filter by_pid;  // processes are narrowed by --pid only: the others select rows within them
    by_pid.pids = filter.pids;
    Where w = where_of(by_pid, Columns{"", "", "", "", ""});
    auto s = Statement::prepare(db,
                                "SELECT process_key, pid, ppid, exe, cmdline, start_ns, end_ns, state, exit_status, "
                                "trace_id, parent_span_id, " +
                                    std::string(has_column(db, "processes", "session") ? "session" : "''") +
                                    " FROM processes" + w.sql,
                                std::move(w.binds));
    if (!s) return std::unexpected(s.error());
    while (true) {
      auto more = (*s)->step();
      if (!more) return std::unexpected(more.error());
      if (!*more) break;
      const Statement& r = **s;
      ProcessInfo p;
      p.process_key = r.i64(0);
      p.pid = r.i64(1);
      p.ppid = r.i64(2);
      p.exe = r.text(3);
      p.cmdline = r.text(4);
      p.start_ns = r.i64(5);
      p.end_ns = r.opt(6);
      p.state = r.text(7);
      p.exit_status = r.opt(8);
      p.trace_id = r.text(9);
      p.parent_span_id = r.u64(10);
      p.session = r.text(11);
      scan.processes_.emplace(p.process_key, std::move(p));
    }
  }
  {
    // A thread may name itself after it started: its end record holds the
    // later name, so the last non-empty one wins.
    auto s = Statement::prepare(db,
                                "SELECT process_key, tid, name FROM process_events WHERE kind IN "
                                "('thread_start', 'thread_end') AND name != '' ORDER BY ts_ns",
                                {});
    if (!s) return std::unexpected(s.error());
    while (true) {
      auto more = (*s)->step();
      if (!more) return std::unexpected(more.error());
      if (!*more) break;
      scan.thread_names_[{(*s)->i64(0), (*s)->i64(1)}] = (*s)->text(2);
    }
  }
  const auto prepare = [&](std::unique_ptr<Statement>& into, const std::string& sql, std::vector<Bound> binds)
      -> std::expected<void, std::string> {
    auto s = Statement::prepare(db, sql, std::move(binds));
    if (!s) return std::unexpected(s.error());
    into = std::move(*s);
    return {};
  };
  Where spans = where_of(filter, Columns{"start_ns", "tid", "name", "grp", "trace_id"});
  if (auto r = prepare(scan.spans_,
                       "SELECT process_key, span_id, trace_id, parent_span_id, tid, grp, name, start_ns, "
                       "duration_ns, status, error_sequence, code FROM spans" + spans.sql +
                           // A merge of the partitions' spans_by_start indexes: no
                           // sort, rows stream. Ties come in span id order, which
                           // is a thread's begin order (ids count up per thread),
                           // so a parent precedes a child begun in the same ns.
                           " ORDER BY start_ns",
                       std::move(spans.binds));
      !r) {
    return std::unexpected(r.error());
  }
  // A span's own rows, through each partition's span_data_by_span index,
  // named: without statistics SQLite picks the primary key's process_key
  // prefix instead and reads every row of the process for each span.
  if (auto r = prepare(scan.data_, span_data_lookup(db), {}); !r) return std::unexpected(r.error());
  // Errors raised inside a span fall within its interval: a range on
  // errors_by_process (process_key, ts_ns) when the database has it; only
  // for processes that have errors at all.
  {
    auto s = Statement::prepare(db, "SELECT DISTINCT process_key FROM errors", {});
    if (!s) return std::unexpected(s.error());
    while (true) {
      auto more = (*s)->step();
      if (!more) return std::unexpected(more.error());
      if (!*more) break;
      scan.with_errors_.insert((*s)->i64(0));
    }
  }
  const bool indexed = has_index(db, "errors_by_process");
  if (auto r = prepare(scan.span_errors_,
                       "SELECT " + error_columns(db) + " FROM errors" +
                           (indexed ? " INDEXED BY errors_by_process" : "") +
                           " WHERE process_key = ? AND span_id = ? AND ts_ns >= ? AND ts_ns <= ? ORDER BY ts_ns",
                       {});
      !r) {
    return std::unexpected(r.error());
  }
  Where errors = where_of(filter, Columns{"ts_ns", "tid", "span_name", "grp", "trace_id"});
  if (auto r = prepare(scan.errors_,
                       "SELECT " + error_columns(db) + " FROM errors" + errors.sql + " ORDER BY ts_ns",
                       std::move(errors.binds));
      !r) {
    return std::unexpected(r.error());
  }
  Where gaps = where_of(filter, Columns{"ts_ns", "tid", "", "", ""});
  if (auto r = prepare(scan.gaps_,
                       "SELECT process_key, ring, tid, ts_ns, dropped, first_ns, last_ns FROM gaps" + gaps.sql +
                           " ORDER BY ts_ns",
                       std::move(gaps.binds));
      !r) {
    return std::unexpected(r.error());
  }
  Where counters = where_of(filter, Columns{"ts_ns", "tid", "", "", ""});
  counters.add("kind = 'counter'");
  if (auto r = prepare(scan.counters_,
                       // In stored order: span_data has no time index, and no
                       // format needs counters sorted (the viewers sort).
                       "SELECT process_key, tid, ts_ns, name, value, value_type FROM span_data" + counters.sql,
                       std::move(counters.binds));
      !r) {
    return std::unexpected(r.error());
  }
  return scan;
}

const ProcessInfo* SpanScan::process(std::int64_t process_key) const {
  const auto it = processes_.find(process_key);
  return it == processes_.end() ? nullptr : &it->second;
}

std::string SpanScan::thread_name(std::int64_t process_key, std::int64_t tid) const {
  const auto it = thread_names_.find({process_key, tid});
  return it == thread_names_.end() ? std::string() : it->second;
}

std::expected<bool, std::string> SpanScan::next_span(SpanRow& row) {
  while (true) {
    auto more = spans_->step();
    if (!more || !*more) return more;
    const Statement& s = *spans_;
    row.process_key = s.i64(0);
    // --pid narrows the spans in SQL; this keeps a span whose process row
    // is missing (a damaged database) from reaching a writer without one.
    if (process(row.process_key) == nullptr) continue;
    row.span_id = s.u64(1);
    row.trace_id = s.text(2);
    row.parent_span_id = s.u64(3);
    row.tid = s.i64(4);
    row.group = s.text(5);
    row.name = s.text(6);
    row.start_ns = s.i64(7);
    row.duration_ns = s.opt(8);
    row.status = static_cast<int>(s.i64(9));
    row.error_sequence = s.i64(10);
    row.code = s.u64(11);
    row.data.clear();
    row.errors.clear();
    if (options_.data) {
      data_->rebind(row.process_key, static_cast<std::int64_t>(row.span_id));
      while (true) {
        auto d = data_->step();
        if (!d) return std::unexpected(d.error());
        if (!*d) break;
        row.data.push_back(SpanDatum{data_->text(0), data_->text(1), data_->text(2), data_->text(3), data_->i64(4)});
      }
    }
    if (options_.errors && with_errors_.contains(row.process_key)) {
      const std::int64_t end = row.duration_ns ? row.start_ns + *row.duration_ns : INT64_MAX;
      span_errors_->rebind(row.process_key, static_cast<std::int64_t>(row.span_id), row.start_ns, end);
      while (true) {
        auto e = span_errors_->step();
        if (!e) return std::unexpected(e.error());
        if (!*e) break;
        read_error(*span_errors_, row.errors.emplace_back());
      }
    }
    return true;
  }
}

std::expected<bool, std::string> SpanScan::next_error(ErrorRow& row) {
  auto more = errors_->step();
  if (more && *more) read_error(*errors_, row);
  return more;
}

std::expected<bool, std::string> SpanScan::next_gap(GapRow& row) {
  auto more = gaps_->step();
  if (more && *more) {
    const Statement& s = *gaps_;
    row = GapRow{s.i64(0), s.i64(1), s.i64(2), s.i64(3), s.i64(4), s.i64(5), s.i64(6)};
  }
  return more;
}

std::expected<bool, std::string> SpanScan::next_counter(CounterRow& row) {
  auto more = counters_->step();
  if (more && *more) {
    const Statement& s = *counters_;
    row = CounterRow{s.i64(0), s.i64(1), s.i64(2), s.text(3), s.text(4), s.text(5)};
  }
  return more;
}

}  // namespace shmtrace::query
