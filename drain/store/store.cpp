#include "store/store.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <array>
#include <utility>

namespace shmtrace::drain {
namespace {

// Migrations, applied in order from the database's user_version; each one
// moves the schema one version forward (SPEC D3).
constexpr std::array<const char*, kSchemaVersion> kMigrations = {
    R"sql(
    CREATE TABLE processes (
      process_key INTEGER PRIMARY KEY,
      segment TEXT NOT NULL UNIQUE,
      pid INTEGER NOT NULL, ppid INTEGER NOT NULL,
      exe TEXT NOT NULL, cmdline TEXT NOT NULL,
      start_ns INTEGER NOT NULL, end_ns INTEGER,
      state TEXT NOT NULL DEFAULT 'running', exit_status INTEGER, exec_target TEXT,
      trace_id TEXT NOT NULL, parent_span_id INTEGER NOT NULL);
    CREATE INDEX processes_by_ppid ON processes (ppid);
    CREATE TABLE spans (
      process_key INTEGER NOT NULL, span_id INTEGER NOT NULL,
      trace_id TEXT NOT NULL, parent_span_id INTEGER NOT NULL, tid INTEGER NOT NULL,
      grp TEXT NOT NULL, name TEXT NOT NULL,
      start_ns INTEGER NOT NULL, duration_ns INTEGER,
      status INTEGER NOT NULL, error_sequence INTEGER NOT NULL, code INTEGER NOT NULL,
      PRIMARY KEY (process_key, span_id));
    CREATE INDEX spans_by_start ON spans (start_ns);
    CREATE TABLE records (
      process_key INTEGER NOT NULL, ring INTEGER NOT NULL, position INTEGER NOT NULL,
      kind TEXT NOT NULL, ts_ns INTEGER NOT NULL, tid INTEGER NOT NULL, span_id INTEGER NOT NULL,
      name TEXT NOT NULL, value TEXT NOT NULL, value_type TEXT NOT NULL,
      aux INTEGER NOT NULL, flags INTEGER NOT NULL,
      PRIMARY KEY (process_key, ring, position));
    CREATE TABLE errors (
      process_key INTEGER NOT NULL, sequence INTEGER NOT NULL,
      ts_ns INTEGER NOT NULL, kind TEXT NOT NULL, tid INTEGER NOT NULL, span_id INTEGER NOT NULL,
      trace_id TEXT NOT NULL, grp TEXT NOT NULL, span_name TEXT NOT NULL,
      type TEXT NOT NULL, message TEXT NOT NULL, preview TEXT NOT NULL,
      signal INTEGER NOT NULL, fault_address INTEGER NOT NULL, frames TEXT NOT NULL,
      PRIMARY KEY (process_key, sequence));
    CREATE TABLE error_cursors (
      process_key INTEGER PRIMARY KEY, chunk INTEGER NOT NULL, offset INTEGER NOT NULL,
      spill_offset INTEGER NOT NULL);
    )sql",
};

enum Statement {
  kBegin,
  kCommit,
  kRollback,
  kProcessInsert,
  kProcessKey,
  kProcessFate,
  kSpanBegin,
  kSpanEnd,
  kRecord,
  kError,
  kCursorGet,
  kCursorSet,
  kStatementCount,
};

constexpr std::array<const char*, kStatementCount> kStatements = {
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
    "INSERT OR IGNORE INTO processes (segment, pid, ppid, exe, cmdline, start_ns, trace_id, parent_span_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "SELECT process_key FROM processes WHERE segment = ?",
    "UPDATE processes SET state = ?, exit_status = ?, end_ns = ?, exec_target = ? WHERE process_key = ?",
    // A begin never overwrites what an end already stored.
    "INSERT OR IGNORE INTO spans (process_key, span_id, trace_id, parent_span_id, tid, grp, name, start_ns, "
    "duration_ns, status, error_sequence, code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, 0, ?)",
    // An end completes its begin's row, or stands alone if the begin was lost.
    "INSERT INTO spans (process_key, span_id, trace_id, parent_span_id, tid, grp, name, start_ns, duration_ns, "
    "status, error_sequence, code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (process_key, span_id) DO UPDATE SET duration_ns = excluded.duration_ns, "
    "status = excluded.status, error_sequence = excluded.error_sequence",
    "INSERT OR IGNORE INTO records (process_key, ring, position, kind, ts_ns, tid, span_id, name, value, "
    "value_type, aux, flags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "INSERT OR IGNORE INTO errors (process_key, sequence, ts_ns, kind, tid, span_id, trace_id, grp, span_name, "
    "type, message, preview, signal, fault_address, frames) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "SELECT chunk, offset, spill_offset FROM error_cursors WHERE process_key = ?",
    "INSERT INTO error_cursors (process_key, chunk, offset, spill_offset) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (process_key) DO UPDATE SET chunk = excluded.chunk, offset = excluded.offset, "
    "spill_offset = excluded.spill_offset",
};

// Binds values in order; SQLite copies text (SQLITE_TRANSIENT).
class Binder {
 public:
  explicit Binder(sqlite3_stmt* s) : s_(s) {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  Binder& operator()(std::int64_t v) {
    sqlite3_bind_int64(s_, ++i_, v);
    return *this;
  }
  Binder& operator()(const std::string& v) {
    sqlite3_bind_text(s_, ++i_, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Binder& null() {
    sqlite3_bind_null(s_, ++i_);
    return *this;
  }

 private:
  sqlite3_stmt* s_;
  int i_ = 0;
};

std::int64_t as_int(std::uint64_t v) { return static_cast<std::int64_t>(v); }

}  // namespace

struct Store::Impl {
  sqlite3* db = nullptr;
  int lock_fd = -1;
  std::array<sqlite3_stmt*, kStatementCount> statements{};

  ~Impl() {
    for (sqlite3_stmt* s : statements) sqlite3_finalize(s);
    if (db != nullptr) sqlite3_close(db);
    if (lock_fd >= 0) ::close(lock_fd);
  }

  StoreError fail(const std::string& what) const {
    return StoreError{what + ": " + (db != nullptr ? sqlite3_errmsg(db) : "no database")};
  }

  StoreResult<void> exec(const char* sql) {
    char* message = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &message) != SQLITE_OK) {
      StoreError e{std::string(message != nullptr ? message : "error")};
      sqlite3_free(message);
      return std::unexpected(e);
    }
    return {};
  }

  // Runs a statement to completion (no rows expected).
  StoreResult<void> step(Statement which, const char* what) {
    sqlite3_stmt* s = statements[which];
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return std::unexpected(fail(what));
    return {};
  }
};

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::Store(Store&&) noexcept = default;
Store& Store::operator=(Store&&) noexcept = default;
Store::~Store() = default;
sqlite3* Store::handle() const { return impl_->db; }

StoreResult<Store> Store::open(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  const std::string lock_path = path + ".lock";
  impl->lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (impl->lock_fd < 0) return std::unexpected(StoreError{"cannot open " + lock_path});
  if (::flock(impl->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    return std::unexpected(StoreError{"another shmtrace-drain is using " + path + " (lock " + lock_path + ")"});
  }
  if (sqlite3_open_v2(path.c_str(), &impl->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
    return std::unexpected(impl->fail("cannot open " + path));
  }
  sqlite3_busy_timeout(impl->db, 5000);
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=OFF"}) {
    if (auto ok = impl->exec(pragma); !ok) return std::unexpected(StoreError{path + ": " + ok.error().message});
  }
  // Migrate forward from the version the file is at.
  sqlite3_stmt* version = nullptr;
  sqlite3_prepare_v2(impl->db, "PRAGMA user_version", -1, &version, nullptr);
  int at = 0;
  if (version != nullptr && sqlite3_step(version) == SQLITE_ROW) at = sqlite3_column_int(version, 0);
  sqlite3_finalize(version);
  if (at > kSchemaVersion) {
    return std::unexpected(StoreError{path + " has schema version " + std::to_string(at) +
                                      ", newer than this drain's " + std::to_string(kSchemaVersion)});
  }
  for (int v = at; v < kSchemaVersion; ++v) {
    const std::string sql = std::string("BEGIN;") + kMigrations[static_cast<std::size_t>(v)] +
                            "PRAGMA user_version=" + std::to_string(v + 1) + ";COMMIT;";
    if (auto ok = impl->exec(sql.c_str()); !ok) {
      (void)impl->exec("ROLLBACK");
      return std::unexpected(StoreError{path + ": migration to version " + std::to_string(v + 1) + " failed: " +
                                        ok.error().message});
    }
  }
  for (std::size_t i = 0; i < kStatementCount; ++i) {
    if (sqlite3_prepare_v3(impl->db, kStatements[i], -1, SQLITE_PREPARE_PERSISTENT, &impl->statements[i], nullptr) !=
        SQLITE_OK) {
      return std::unexpected(impl->fail("cannot prepare statement " + std::to_string(i)));
    }
  }
  return Store(std::move(impl));
}

StoreResult<void> Store::begin() { return impl_->step(kBegin, "begin"); }
StoreResult<void> Store::commit() { return impl_->step(kCommit, "commit"); }
void Store::rollback() noexcept { (void)impl_->step(kRollback, "rollback"); }

StoreResult<std::int64_t> Store::process(const ProcessRow& r) {
  Binder(impl_->statements[kProcessInsert])(r.segment)(r.pid)(r.ppid)(r.exe)(r.cmdline)(r.start_ns)(r.trace_id)(
      as_int(r.parent_span_id));
  if (auto ok = impl_->step(kProcessInsert, "insert process"); !ok) return std::unexpected(ok.error());
  sqlite3_stmt* s = impl_->statements[kProcessKey];
  Binder key_of(s);
  key_of(r.segment);
  const int rc = sqlite3_step(s);
  const std::int64_t key = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
  sqlite3_reset(s);
  if (rc != SQLITE_ROW) return std::unexpected(impl_->fail("process key of " + r.segment));
  return key;
}

StoreResult<void> Store::process_fate(std::int64_t process, const ProcessFate& f) {
  Binder(impl_->statements[kProcessFate])(f.state)(f.exit_status)(f.end_ns)(f.exec_target)(process);
  return impl_->step(kProcessFate, "update process");
}

StoreResult<void> Store::span_begin(std::int64_t process, const SpanRow& r) {
  Binder(impl_->statements[kSpanBegin])(process)(as_int(r.span_id))(r.trace_id)(as_int(r.parent_span_id))(r.tid)(
      r.group)(r.name)(r.start_ns)(as_int(r.code));
  return impl_->step(kSpanBegin, "insert span begin");
}

StoreResult<void> Store::span_end(std::int64_t process, const SpanRow& r) {
  Binder b(impl_->statements[kSpanEnd]);
  b(process)(as_int(r.span_id))(r.trace_id)(as_int(r.parent_span_id))(r.tid)(r.group)(r.name)(r.start_ns);
  if (r.duration_ns) {
    b(*r.duration_ns);
  } else {
    b.null();
  }
  b(r.status)(as_int(r.error_sequence))(as_int(r.code));
  return impl_->step(kSpanEnd, "insert span end");
}

StoreResult<void> Store::record(std::int64_t process, const RecordRow& r) {
  Binder(impl_->statements[kRecord])(process)(static_cast<std::int64_t>(r.ring))(as_int(r.position))(r.kind)(r.ts_ns)(
      r.tid)(as_int(r.span_id))(r.name)(r.value)(r.value_type)(r.aux)(r.flags);
  return impl_->step(kRecord, "insert record");
}

StoreResult<void> Store::error(std::int64_t process, const ErrorRow& r) {
  Binder(impl_->statements[kError])(process)(as_int(r.sequence))(r.ts_ns)(r.kind)(r.tid)(as_int(r.span_id))(
      r.trace_id)(r.group)(r.span_name)(r.type)(r.message)(r.preview)(r.signal)(as_int(r.fault_address))(r.frames);
  return impl_->step(kError, "insert error");
}

StoreResult<std::vector<std::uint64_t>> Store::error_cursor(std::int64_t process) {
  sqlite3_stmt* s = impl_->statements[kCursorGet];
  Binder cursor_of(s);
  cursor_of(process);
  std::vector<std::uint64_t> out;
  if (sqlite3_step(s) == SQLITE_ROW) {
    for (int i = 0; i < 3; ++i) out.push_back(static_cast<std::uint64_t>(sqlite3_column_int64(s, i)));
  }
  sqlite3_reset(s);
  return out;
}

StoreResult<void> Store::set_error_cursor(std::int64_t process, std::uint32_t chunk, std::uint32_t offset,
                                          std::uint64_t spill_offset) {
  Binder(impl_->statements[kCursorSet])(process)(chunk)(offset)(as_int(spill_offset));
  return impl_->step(kCursorSet, "store error cursor");
}

}  // namespace shmtrace::drain
