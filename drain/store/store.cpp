#include "store/store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <string_view>
#include <utility>

#include "reader/segment_impl.hpp"  // parse_segment_name
#include "store/checkpointer.hpp"
#include "store/histogram_blob.hpp"
#include "store/partition_set.hpp"
#include "store/schema.hpp"
#include "store/sqlite_util.hpp"
#include "store/stats_sql.hpp"

namespace shmtrace::drain {
namespace {

enum Statement {
  kBegin,
  kCommit,
  kRollback,
  kProcessInsert,
  kProcessKey,
  kProcessFate,
  kEvent,
  kGap,
  kError,
  kCursorGet,
  kCursorSet,
  kMetric,
  kSiteGet,
  kSiteInsert,
  kSiteUpdate,
  kCallStats,
  kDroppedAdd,
  kDroppedReported,
  kStatementCount,
};

constexpr std::array<const char*, kStatementCount> kStatements = {
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
    "INSERT OR IGNORE INTO processes (segment, pid, ppid, exe, cmdline, start_ns, trace_id, parent_span_id, session) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "SELECT process_key FROM processes WHERE segment = ?",
    "UPDATE processes SET state = ?, exit_status = ?, end_ns = ?, exec_target = ? WHERE process_key = ?",
    "INSERT OR IGNORE INTO process_events (process_key, ring, position, kind, ts_ns, tid, span_id, name, value, flags) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "INSERT OR IGNORE INTO gaps (process_key, ring, position, tid, ts_ns, dropped, first_ns, last_ns) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "INSERT OR IGNORE INTO errors (process_key, sequence, ts_ns, kind, tid, span_id, trace_id, grp, span_name, "
    "type, message, preview, signal, fault_address, frames, symbols) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "SELECT c.chunk, c.offset, c.spill_offset FROM error_cursors c JOIN processes p USING (process_key) "
    "WHERE p.segment = ?",
    "INSERT INTO error_cursors (process_key, chunk, offset, spill_offset) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (process_key) DO UPDATE SET chunk = excluded.chunk, offset = excluded.offset, "
    "spill_offset = excluded.spill_offset",
    "INSERT INTO metrics (ts_ns, name, labels, value) VALUES (?, ?, ?, ?)",
    "SELECT site_key, last_ns, calls, errors, unfinished, completed, total_ticks, min_ticks, max_ticks, histogram, "
    "self_ticks "
    "FROM call_sites WHERE process_key = ? AND ring = ? AND slot = ?",
    "INSERT INTO call_sites (process_key, ring, slot, kind, name, code, last_ns, calls, errors, unfinished, "
    "completed, total_ticks, min_ticks, max_ticks, histogram) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, 0, 0, 0, ?) "
    "RETURNING site_key",
    "UPDATE call_sites SET last_ns = ?, calls = ?, errors = ?, unfinished = ?, completed = ?, total_ticks = ?, "
    "min_ticks = ?, max_ticks = ?, histogram = ?, self_ticks = ? WHERE site_key = ?",
    "INSERT OR IGNORE INTO call_stats (site_key, end_ns, start_ns, process_key, tid, name, calls, errors, "
    "unfinished, completed, total_ns, min_ns, max_ns, histogram, self_ns) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "UPDATE processes SET records_dropped = records_dropped + ? WHERE process_key = ?",
    "SELECT records_dropped FROM processes WHERE process_key = ?",
};

// Rows of the main file older than the retention, removed in steps this
// large so each expiry transaction stays short.
constexpr int kExpiryStepRows = 5000;

std::int64_t file_bytes(const std::string& path) {
  struct stat st {};
  std::int64_t total = 0;
  for (const char* suffix : {"", "-wal"}) {
    if (::stat((path + suffix).c_str(), &st) == 0) total += st.st_size;
  }
  return total;
}

}  // namespace

struct Store::Impl {
  sqlite3* db = nullptr;
  int lock_fd = -1;
  std::string path;
  StoreOptions options;
  std::array<sql::Statement, kStatementCount> statements;
  std::unique_ptr<PartitionSet> partitions;
  std::unique_ptr<Checkpointer> checkpointer;  // after partitions: gone before them
  std::map<std::string, std::int64_t, std::less<>> keys;  // segment -> process_key, committed
  // The main file and the partitions directory as opened (check_identity).
  struct stat main_file {}, parts_dir {};

  ~Impl() {
    checkpointer.reset();
    // Every attached file whole in itself at a clean stop (the connection
    // does not checkpoint on close, for the sake of expired partitions): a
    // copy of the .db files alone then holds everything.
    if (db != nullptr) (void)sql::exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    partitions.reset();
    for (auto& s : statements) s.reset();
    if (db != nullptr) sqlite3_close(db);
    if (lock_fd >= 0) ::close(lock_fd);
  }

  StoreError fail(const std::string& what) const {
    return StoreError{what + ": " + (db != nullptr ? sqlite3_errmsg(db) : "no database")};
  }
  sqlite3_stmt* get(Statement s) const { return statements[s].get(); }
  StoreResult<void> step(sqlite3_stmt* s, const char* what) {
    if (!sql::step_done(s)) return std::unexpected(fail(what));
    return {};
  }

  StoreResult<std::int64_t> key_of(const ProcessRow& r, std::map<std::string, std::int64_t>& fresh);
  StoreResult<void> write_segment(const SegmentRows& rows, std::map<std::string, std::int64_t>& fresh);
  StoreResult<void> write_gap(std::int64_t process_key, const GapRow& r);
  StoreResult<void> write_call_stats(std::int64_t process_key, std::int64_t process_start_ns,
                                     const CallStatsSnapshot& snapshot);
  // Deletes one slice (kExpiryStepRows) of table's rows older than cutoff;
  // key names a row: rowid, or a WITHOUT ROWID table's primary key columns.
  StoreResult<std::uint64_t> delete_expired(const char* table, const char* key, const char* time_column,
                                            std::int64_t cutoff);
};

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::Store(Store&&) noexcept = default;
Store& Store::operator=(Store&&) noexcept = default;
Store::~Store() = default;
sqlite3* Store::handle() const { return impl_->db; }
const std::string& Store::path() const { return impl_->path; }
std::size_t Store::partition_count() const { return impl_->partitions->size(); }

bool configure_sqlite_process() { return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK; }

StoreResult<Store> Store::open(const std::string& path, const StoreOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->options = options;
  const std::string lock_path = path + ".lock";
  impl->lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
  if (impl->lock_fd < 0) {
    return std::unexpected(StoreError{"cannot open the lock file " + lock_path + ": " + std::strerror(errno)});
  }
  if (::flock(impl->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return std::unexpected(StoreError{"another shmtrace-drain is using " + path + " (lock " + lock_path + ")"});
    }
    return std::unexpected(StoreError{"cannot lock " + lock_path + ": " + std::strerror(errno)});
  }
  // NOMUTEX: the connection is the drain thread's alone (the checkpointer
  // has its own), so SQLite's per-call connection mutex is pure cost.
  if (sqlite3_open_v2(path.c_str(), &impl->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    return std::unexpected(impl->fail("cannot open " + path));
  }
  sqlite3_busy_timeout(impl->db, 5000);
  if (register_stats_functions(impl->db) != SQLITE_OK) return std::unexpected(impl->fail("SQL functions"));
  // Detaching an expired partition must not checkpoint it first: its file
  // is about to go. (The WAL of what stays is checkpointed as it grows.)
  sqlite3_db_config(impl->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  // auto_vacuum takes effect only on a database without tables: new files
  // give pages back incrementally (vacuum_step), older ones keep what they had.
  for (const char* pragma : {"PRAGMA auto_vacuum=INCREMENTAL", "PRAGMA journal_mode=WAL",
                             "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=OFF"}) {
    if (auto ok = sql::exec(impl->db, pragma); !ok) return std::unexpected(StoreError{path + ": " + ok.error()});
  }
  (void)sql::exec(impl->db, "PRAGMA journal_size_limit=" + std::to_string(schema::kWalLimitBytes));
  sqlite3_stmt* version = nullptr;
  sqlite3_prepare_v2(impl->db, "PRAGMA user_version", -1, &version, nullptr);
  int at = 0;
  if (version != nullptr && sqlite3_step(version) == SQLITE_ROW) at = sqlite3_column_int(version, 0);
  sqlite3_finalize(version);
  if (at > kSchemaVersion) {
    return std::unexpected(StoreError{path + " has schema version " + std::to_string(at) +
                                      ", newer than this drain's " + std::to_string(kSchemaVersion)});
  }
  const auto migrations = schema::main_migrations();
  for (int v = at; v < kSchemaVersion; ++v) {
    const std::string text = "BEGIN;" + migrations[static_cast<std::size_t>(v)] +
                             "PRAGMA user_version=" + std::to_string(v + 1) + ";COMMIT;";
    if (auto ok = sql::exec(impl->db, text); !ok) {
      (void)sql::exec(impl->db, "ROLLBACK");
      return std::unexpected(StoreError{path + ": migration to version " + std::to_string(v + 1) + " failed: " +
                                        ok.error()});
    }
  }
  for (std::size_t i = 0; i < kStatementCount; ++i) {
    auto s = sql::Statement::prepare(impl->db, kStatements[i]);
    if (!s) return std::unexpected(StoreError{path + ": " + s.error()});
    impl->statements[i] = std::move(*s);
  }
  const std::int64_t retention_ns = options.retention.count() * 1'000'000'000LL;
  std::int64_t width_ns = (options.partition.count() > 0 ? options.partition.count() : options.retention.count() / 6) *
                          1'000'000'000LL;
  width_ns = std::max<std::int64_t>(width_ns, 1'000'000'000LL);
  // Partitions alive at once: those inside the retention, the current one and
  // one in expiry; keep them within SQLite's attach limit.
  const std::int64_t max_attached = std::max(4, sqlite3_limit(impl->db, SQLITE_LIMIT_ATTACHED, -1));
  width_ns = std::max(width_ns, retention_ns / (max_attached - 3) + 1);
  impl->partitions = std::make_unique<PartitionSet>(impl->db, path + ".parts", width_ns, retention_ns);
  if (options.log) impl->partitions->set_note_sink([log = options.log, path](const std::string& line) { log(path + ": " + line); });
  if (auto ok = impl->partitions->load(); !ok) return std::unexpected(StoreError{path + ": " + ok.error()});
  if (::stat(path.c_str(), &impl->main_file) != 0 || ::stat((path + ".parts").c_str(), &impl->parts_dir) != 0) {
    return std::unexpected(StoreError{"cannot examine " + path + " after opening it: " + std::strerror(errno)});
  }
  Impl* raw = impl.get();
  impl->checkpointer = std::make_unique<Checkpointer>(impl->db, [raw](const std::string& schema) {
    return schema == "main" ? raw->path : raw->partitions->file_of(schema);
  });
  impl->partitions->set_release_hook(
      [raw](const std::string& file, bool archiving) { raw->checkpointer->forget(file, archiving); });
  return Store(std::move(impl));
}

StoreResult<std::int64_t> Store::Impl::key_of(const ProcessRow& r, std::map<std::string, std::int64_t>& fresh) {
  if (auto k = keys.find(r.segment); k != keys.end()) return k->second;
  if (auto k = fresh.find(r.segment); k != fresh.end()) return k->second;
  // The session is read from the segment name (the reader refused a name and
  // header that disagree), so a spilled batch needs no field of its own.
  // Bound SQLITE_STATIC: it must outlive the step below.
  const auto named = reader::detail::parse_segment_name(r.segment);
  const std::string session = named ? named->session : std::string();
  sql::Binder{get(kProcessInsert)}(r.segment)(r.pid)(r.ppid)(r.exe)(r.cmdline)(r.start_ns)(r.trace_id)(
      r.parent_span_id)(session);
  if (auto ok = step(get(kProcessInsert), "insert process"); !ok) return std::unexpected(ok.error());
  sqlite3_stmt* s = get(kProcessKey);
  sql::Binder{s}(r.segment);
  const int rc = sqlite3_step(s);
  const std::int64_t key = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
  sqlite3_reset(s);
  if (rc != SQLITE_ROW) return std::unexpected(fail("process key of " + r.segment));
  fresh.emplace(r.segment, key);
  return key;
}

StoreResult<void> Store::Impl::write_segment(const SegmentRows& rows, std::map<std::string, std::int64_t>& fresh) {
  auto key = key_of(rows.process, fresh);
  if (!key) return std::unexpected(key.error());
  const std::int64_t k = *key;
  for (const ErrorRow& r : rows.errors) {
    sql::Binder{get(kError)}(k)(r.sequence)(r.ts_ns)(r.kind)(r.tid)(r.span_id)(r.trace_id)(r.group)(r.span_name)(
        r.type)(r.message)(r.preview)(r.signal)(r.fault_address)(r.frames)(r.symbols);
    if (auto ok = step(get(kError), "insert error"); !ok) return ok;
  }
  if (rows.cursor) {
    sql::Binder{get(kCursorSet)}(k)(rows.cursor->chunk)(rows.cursor->offset)(rows.cursor->spill_offset);
    if (auto ok = step(get(kCursorSet), "store error cursor"); !ok) return ok;
  }
  for (const SpanRow& r : rows.spans) {
    Partition& p = partitions->route(r.start_ns);
    if (r.duration_ns) {
      sql::Binder{p.span_complete.get()}(k)(r.span_id)(r.trace_id)(r.parent_span_id)(r.tid)(r.group)(r.name)(
          r.start_ns)(*r.duration_ns)(r.status)(r.error_sequence)(r.code);
      if (auto ok = step(p.span_complete.get(), "insert span"); !ok) return ok;
    } else {
      sql::Binder{p.span_open.get()}(k)(r.span_id)(r.trace_id)(r.parent_span_id)(r.tid)(r.group)(r.name)(r.start_ns)(
          r.code);
      if (auto ok = step(p.span_open.get(), "insert open span"); !ok) return ok;
    }
  }
  for (const SpanDataRow& r : rows.span_data) {
    Partition& p = partitions->route(r.ts_ns);
    sql::Binder{p.span_data.get()}(k)(r.ring)(r.position)(r.span_id)(r.kind)(r.ts_ns)(r.tid)(r.name)(r.value)(
        r.value_type)(r.flags);
    if (auto ok = step(p.span_data.get(), "insert span data"); !ok) return ok;
  }
  for (const CallStatsSnapshot& r : rows.call_stats) {
    if (auto ok = write_call_stats(k, rows.process.start_ns, r); !ok) return ok;
  }
  for (const ProcessEventRow& r : rows.events) {
    sql::Binder{get(kEvent)}(k)(r.ring)(r.position)(r.kind)(r.ts_ns)(r.tid)(r.span_id)(r.name)(r.value)(r.flags);
    if (auto ok = step(get(kEvent), "insert process event"); !ok) return ok;
  }
  for (const GapRow& r : rows.gaps) {
    if (auto ok = write_gap(k, r); !ok) return ok;
  }
  if (rows.fate) {
    const ProcessFate& f = *rows.fate;
    sql::Binder{get(kProcessFate)}(f.state)(f.exit_status)(f.end_ns)(f.exec_target)(k);
    if (auto ok = step(get(kProcessFate), "update process"); !ok) return ok;
    // Drops no marker reported (pending when a thread or the process ended):
    // one gap, so that stored + dropped = produced for every process.
    sqlite3_stmt* s = get(kDroppedReported);
    sql::Binder{s}(k);
    const int rc = sqlite3_step(s);
    const auto reported = static_cast<std::uint64_t>(rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW) return std::unexpected(fail("dropped records of the process"));
    if (f.dropped_total > reported) {
      const GapRow unreported{kUnreportedDropsRing, 0, 0, f.end_ns, f.dropped_total - reported, f.end_ns, f.end_ns};
      if (auto ok = write_gap(k, unreported); !ok) return ok;
    }
  }
  return {};
}

// A gap row, and its drops added to the process's total once (a gap stored
// again changes nothing).
StoreResult<void> Store::Impl::write_gap(std::int64_t process_key, const GapRow& r) {
  sql::Binder{get(kGap)}(process_key)(r.ring)(r.position)(r.tid)(r.ts_ns)(r.dropped)(r.first_ns)(r.last_ns);
  if (auto ok = step(get(kGap), "insert gap"); !ok) return ok;
  if (sqlite3_changes(db) == 0) return {};
  sql::Binder{get(kDroppedAdd)}(r.dropped)(process_key);
  return step(get(kDroppedAdd), "count dropped records");
}

// One interval of a call site: this snapshot minus the slot's figures as of
// its last stored interval (none yet: zero, from the process's start). A
// snapshot not newer than what is stored (the same batch again after a
// restart or a replay) adds nothing.
StoreResult<void> Store::Impl::write_call_stats(std::int64_t process_key, std::int64_t process_start_ns,
                                                const CallStatsSnapshot& r) {
  auto now = histogram::decode(r.histogram);
  if (!now) return std::unexpected(StoreError{"call statistics of ring " + std::to_string(r.ring) + " slot " +
                                              std::to_string(r.slot) + ": malformed histogram"});
  sqlite3_stmt* get_site = get(kSiteGet);
  sql::Binder{get_site}(process_key)(r.ring)(r.slot);
  std::int64_t site = 0;
  std::int64_t last_ns = process_start_ns;
  CallStatsSnapshot base;
  histogram::Histogram base_histogram;
  int rc = sqlite3_step(get_site);
  if (rc == SQLITE_ROW) {
    auto column = [get_site](int i) { return static_cast<std::uint64_t>(sqlite3_column_int64(get_site, i)); };
    site = sqlite3_column_int64(get_site, 0);
    last_ns = sqlite3_column_int64(get_site, 1);
    base.calls = column(2);
    base.errors = column(3);
    base.unfinished = column(4);
    base.completed = column(5);
    base.total_ticks = column(6);
    base.min_ticks = column(7);
    base.max_ticks = column(8);
    auto stored = histogram::decode(sqlite3_column_blob(get_site, 9),
                                    static_cast<std::size_t>(sqlite3_column_bytes(get_site, 9)));
    if (stored) base_histogram = std::move(*stored);
    base.self_ticks = column(10);
    rc = sqlite3_step(get_site);
  }
  sqlite3_reset(get_site);
  if (rc != SQLITE_DONE) return std::unexpected(fail("call site"));
  if (r.calls < base.calls || r.errors < base.errors || r.unfinished < base.unfinished ||
      r.completed < base.completed || r.total_ticks < base.total_ticks ||
      (r.calls == base.calls && r.errors == base.errors && r.unfinished == base.unfinished &&
       r.completed == base.completed)) {
    return {};  // not newer than what is stored
  }
  if (site == 0) {
    sqlite3_stmt* insert = get(kSiteInsert);
    const std::string empty = histogram::encode(histogram::Histogram{now->ns_per_tick, {}});
    sql::Binder{insert}(process_key)(r.ring)(r.slot)(r.kind)(r.name)(r.code)(last_ns).blob(empty);
    rc = sqlite3_step(insert);
    if (rc == SQLITE_ROW) site = sqlite3_column_int64(insert, 0);
    while (rc == SQLITE_ROW) rc = sqlite3_step(insert);
    sqlite3_reset(insert);
    if (rc != SQLITE_DONE || site == 0) return std::unexpected(fail("insert call site"));
  }
  const histogram::Histogram delta = histogram::difference(*now, base_histogram);
  const double ns_per_tick = now->ns_per_tick;
  const std::int64_t end_ns = std::max(r.ts_ns, last_ns + 1);
  sqlite3_stmt* insert = get(kCallStats);
  sql::Binder row{insert};
  row(site)(end_ns)(last_ns)(process_key)(r.tid)(r.name)(r.calls - base.calls)(r.errors - base.errors)(
      r.unfinished - base.unfinished)(r.completed - base.completed)(
      static_cast<double>(r.total_ticks - base.total_ticks) * ns_per_tick);
  if (delta.buckets.empty()) {
    row.null().null();
  } else {
    // The interval's extremes: exact when they are the slot's new running
    // extremes, else bounded by the interval's lowest and highest buckets.
    const bool new_min = base.completed == 0 || r.min_ticks < base.min_ticks;
    const bool new_max = base.completed == 0 || r.max_ticks > base.max_ticks;
    const double lowest = histogram::lower_ns(delta, delta.buckets.front().index);
    const double highest = histogram::upper_ns(delta, delta.buckets.back().index);
    const double min_ns = static_cast<double>(r.min_ticks) * ns_per_tick;
    const double max_ns = static_cast<double>(r.max_ticks) * ns_per_tick;
    row(new_min ? min_ns : std::max(lowest, min_ns))(new_max ? max_ns : std::min(highest, max_ns));
  }
  const std::string delta_blob = histogram::encode(delta);
  row.blob(delta_blob);
  // Self time only grows too; a snapshot from before self time was kept
  // (an older spilled batch: 0) adds nothing rather than going negative.
  row(static_cast<double>(r.self_ticks > base.self_ticks ? r.self_ticks - base.self_ticks : 0) * ns_per_tick);
  if (auto ok = step(insert, "insert call statistics"); !ok) return ok;
  sqlite3_stmt* update = get(kSiteUpdate);
  sql::Binder{update}(end_ns)(r.calls)(r.errors)(r.unfinished)(r.completed)(r.total_ticks)(r.min_ticks)(
      r.max_ticks)
      .blob(r.histogram)(std::max(r.self_ticks, base.self_ticks))(site);
  return step(update, "update call site");
}

StoreResult<WriteStats> Store::write(const Batch& batch) {
  WriteStats stats;
  std::vector<std::int64_t> times;
  for (const SegmentRows& s : batch.segments) {
    for (const SpanRow& r : s.spans) times.push_back(r.start_ns);
    for (const SpanDataRow& r : s.span_data) times.push_back(r.ts_ns);
  }
  if (!times.empty()) {
    const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
    auto planned = impl_->partitions->plan(times, now);
    if (!planned) return std::unexpected(StoreError{"partitions: " + planned.error()});
    stats.partitions_created = *planned;
  }
  std::map<std::string, std::int64_t> fresh;
  if (auto ok = impl_->step(impl_->get(kBegin), "begin"); !ok) return std::unexpected(ok.error());
  for (const SegmentRows& s : batch.segments) {
    if (auto ok = impl_->write_segment(s, fresh); !ok) {
      (void)sql::step_done(impl_->get(kRollback));
      return std::unexpected(ok.error());
    }
    stats.rows += s.row_count();
  }
  if (auto ok = impl_->step(impl_->get(kCommit), "commit"); !ok) {
    (void)sql::step_done(impl_->get(kRollback));
    return std::unexpected(ok.error());
  }
  impl_->keys.merge(fresh);
  return stats;
}

StoreResult<void> Store::check_identity() const {
  const auto same = [](const std::string& path, const struct stat& then, const char* what) -> StoreResult<void> {
    struct stat now {};
    if (::stat(path.c_str(), &now) != 0) {
      return std::unexpected(StoreError{"the " + std::string(what) + " " + path + " is gone (" + std::strerror(errno) +
                                        "): it was deleted or moved while the drain ran"});
    }
    if (now.st_dev != then.st_dev || now.st_ino != then.st_ino) {
      return std::unexpected(StoreError{"the " + std::string(what) + " " + path + " was replaced while the drain ran (inode " +
                                        std::to_string(then.st_ino) + ", now " + std::to_string(now.st_ino) + ")"});
    }
    return {};
  };
  if (auto ok = same(impl_->path, impl_->main_file, "database"); !ok) return ok;
  return same(impl_->path + ".parts", impl_->parts_dir, "partitions directory");
}

StoreResult<std::optional<ErrorCursorRow>> Store::error_cursor(const std::string& segment) {
  sqlite3_stmt* s = impl_->get(kCursorGet);
  sql::Binder{s}(segment);
  std::optional<ErrorCursorRow> out;
  const int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) {
    out = ErrorCursorRow{static_cast<std::uint32_t>(sqlite3_column_int64(s, 0)),
                         static_cast<std::uint32_t>(sqlite3_column_int64(s, 1)),
                         static_cast<std::uint64_t>(sqlite3_column_int64(s, 2))};
  }
  sqlite3_reset(s);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return std::unexpected(impl_->fail("error cursor of " + segment));
  return out;
}

StoreResult<std::map<std::uint32_t, std::uint32_t>> Store::ring_threads(const std::string& segment) {
  auto s = sql::Statement::prepare(impl_->db,
                                   "SELECT e.ring, e.value FROM process_events e JOIN processes p USING (process_key) "
                                   "WHERE p.segment = ? AND e.kind = 'thread_start' AND e.ring <> " +
                                       std::to_string(kOverflowRing) + " ORDER BY e.ring, e.position");
  if (!s) return std::unexpected(StoreError{s.error()});
  sql::Binder{s->get()}(segment);
  std::map<std::uint32_t, std::uint32_t> out;
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(s->get())) == SQLITE_ROW) {
    out[static_cast<std::uint32_t>(sqlite3_column_int64(s->get(), 0))] =
        static_cast<std::uint32_t>(sqlite3_column_int64(s->get(), 1));
  }
  if (rc != SQLITE_DONE) return std::unexpected(impl_->fail("ring threads of " + segment));
  return out;
}

StoreResult<std::uint64_t> Store::Impl::delete_expired(const char* table, const char* key, const char* time_column,
                                                      std::int64_t cutoff) {
  const std::string text = std::string("DELETE FROM ") + table + " WHERE (" + key + ") IN (SELECT " + key + " FROM " +
                           table + " WHERE " + time_column + " < " + std::to_string(cutoff) + " LIMIT " +
                           std::to_string(kExpiryStepRows) + ")";
  if (auto ok = sql::exec(db, text); !ok) return std::unexpected(StoreError{std::string(table) + ": " + ok.error()});
  return static_cast<std::uint64_t>(sqlite3_changes(db));
}

StoreResult<ExpiryStats> Store::expire(std::int64_t now_ns) {
  ExpiryStats out;
  auto parts = impl_->partitions->expire(now_ns, impl_->options.archive_dir);
  if (!parts) return std::unexpected(StoreError{parts.error()});
  out.partitions_removed = parts->removed;
  out.partitions_archived = parts->archived;
  const std::int64_t cutoff = now_ns - impl_->options.retention.count() * 1'000'000'000LL;
  // A process goes once it ended before every partition that could hold its
  // spans; its error cursor with it.
  const std::int64_t process_cutoff =
      impl_->partitions->size() > 0 ? std::min(cutoff, impl_->partitions->oldest_start_ns()) : cutoff;
  for (const char* per_process : {"error_cursors", "call_sites"}) {
    if (auto ok = sql::exec(impl_->db, std::string("DELETE FROM ") + per_process +
                                           " WHERE process_key IN (SELECT process_key FROM processes WHERE end_ns < " +
                                           std::to_string(process_cutoff) + ")");
        !ok) {
      return std::unexpected(StoreError{std::string(per_process) + ": " + ok.error()});
    }
  }
  constexpr const char* kPosition = "process_key, ring, position";
  struct Expiring {
    const char* table;
    const char* key;
    const char* time_column;
    std::int64_t cutoff;
  };
  for (const Expiring& e : {Expiring{"errors", "rowid", "ts_ns", cutoff}, Expiring{"metrics", "rowid", "ts_ns", cutoff},
                            Expiring{"alerts", "rowid", "fired_ns", cutoff},
                            Expiring{"process_events", kPosition, "ts_ns", cutoff},
                            Expiring{"gaps", kPosition, "ts_ns", cutoff},
                            Expiring{"call_stats", "site_key, end_ns", "end_ns", cutoff},
                            Expiring{"processes", "rowid", "end_ns", process_cutoff}}) {
    auto n = impl_->delete_expired(e.table, e.key, e.time_column, e.cutoff);
    if (!n) return std::unexpected(n.error());
    out.rows_deleted += *n;
  }
  return out;
}

StoreResult<std::uint64_t> Store::vacuum_step() {
  sqlite3_stmt* s = nullptr;
  std::uint64_t freelist = 0;
  if (sqlite3_prepare_v2(impl_->db, "PRAGMA freelist_count", -1, &s, nullptr) == SQLITE_OK &&
      sqlite3_step(s) == SQLITE_ROW) {
    freelist = static_cast<std::uint64_t>(sqlite3_column_int64(s, 0));
  }
  sqlite3_finalize(s);
  if (freelist == 0) return 0;
  if (auto ok = sql::exec(impl_->db, "PRAGMA incremental_vacuum(256)"); !ok) {
    return std::unexpected(StoreError{"incremental vacuum: " + ok.error()});
  }
  return std::min<std::uint64_t>(freelist, 256);
}

StoreResult<void> Store::write_metrics(std::int64_t ts_ns, const std::vector<MetricSample>& samples) {
  if (auto ok = impl_->step(impl_->get(kBegin), "begin"); !ok) return ok;
  for (const MetricSample& m : samples) {
    sql::Binder{impl_->get(kMetric)}(ts_ns)(m.name)(m.labels)(m.value);
    if (auto ok = impl_->step(impl_->get(kMetric), "insert metric"); !ok) {
      (void)sql::step_done(impl_->get(kRollback));
      return ok;
    }
  }
  if (auto ok = impl_->step(impl_->get(kCommit), "commit"); !ok) {
    (void)sql::step_done(impl_->get(kRollback));
    return ok;
  }
  return {};
}

std::uint64_t Store::database_bytes() const {
  std::int64_t total = file_bytes(impl_->path);
  if (DIR* dir = ::opendir(impl_->partitions->directory().c_str())) {
    while (const dirent* e = ::readdir(dir)) {
      if (std::string_view(e->d_name).ends_with(".db")) {
        total += file_bytes(impl_->partitions->directory() + "/" + e->d_name);
      }
    }
    ::closedir(dir);
  }
  return static_cast<std::uint64_t>(total);
}

}  // namespace shmtrace::drain
