// The drain's SQLite store (SPEC D2, D3): schema versioned with
// PRAGMA user_version and migrated forward, WAL, prepared statements, one
// transaction per batch. Every insert is idempotent: each row is keyed by
// where its record came from (process, ring, position) or by an id the
// producer made unique (span id, error sequence), so a batch stored twice,
// after a drain was killed between the commit and handing the ring slots
// back, leaves the database as if stored once.
#ifndef SHMTRACE_DRAIN_STORE_HPP
#define SHMTRACE_DRAIN_STORE_HPP

#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace shmtrace::drain {

struct StoreError {
  std::string message;
};
template <class T>
using StoreResult = std::expected<T, StoreError>;

inline constexpr int kSchemaVersion = 1;

struct ProcessRow {
  std::string segment;  // unique across pid reuse and exec
  std::uint32_t pid = 0;
  std::uint32_t ppid = 0;
  std::string exe;
  std::string cmdline;  // arguments joined by spaces
  std::int64_t start_ns = 0;
  std::string trace_id;  // 32 hex digits, "" when none was inherited
  std::uint64_t parent_span_id = 0;
};

struct ProcessFate {
  std::string state;  // running, exited, crashed, execed
  std::int32_t exit_status = 0;
  std::int64_t end_ns = 0;
  std::string exec_target;
};

struct SpanRow {
  std::uint64_t span_id = 0;
  std::string trace_id;
  std::uint64_t parent_span_id = 0;
  std::uint32_t tid = 0;
  std::string group;
  std::string name;
  std::int64_t start_ns = 0;
  std::optional<std::int64_t> duration_ns;  // absent: not finished (yet)
  int status = 0;                           // 0 OK, 1 ERR
  std::uint64_t error_sequence = 0;
  std::uint64_t code = 0;                   // function address (-finstrument-functions)
};

// Events, counters, arguments, drop gaps and lifecycle records: one row per
// record, keyed by its position.
struct RecordRow {
  std::uint32_t ring = 0;  // kOverflowRing for the overflow area
  std::uint64_t position = 0;
  std::string kind;        // event, counter, arg, result, gap, process_start, fork, exec, exit, thread_start, thread_end
  std::int64_t ts_ns = 0;
  std::uint32_t tid = 0;
  std::uint64_t span_id = 0;
  std::string name;
  std::string value;       // text, or the number printed exactly
  std::string value_type;  // int, uint, double, bool, string, bytes, repr
  std::int64_t aux = 0;    // counts, pids, exit codes
  int flags = 0;
};
inline constexpr std::uint32_t kOverflowRing = 0xffffffffu;

struct ErrorRow {
  std::uint64_t sequence = 0;
  std::int64_t ts_ns = 0;
  std::string kind;  // explicit, exception, crash, span_error
  std::uint32_t tid = 0;
  std::uint64_t span_id = 0;
  std::string trace_id;
  std::string group;
  std::string span_name;
  std::string type;
  std::string message;
  std::string preview;
  std::uint32_t signal = 0;
  std::uint64_t fault_address = 0;
  std::string frames;  // hex addresses separated by spaces
};

class Store {
 public:
  // Opens (creating, migrating) the database. Refuses a database another
  // drain holds (an exclusive lock on <path>.lock).
  static StoreResult<Store> open(const std::string& path);
  Store(Store&&) noexcept;
  Store& operator=(Store&&) noexcept;
  ~Store();

  StoreResult<void> begin();
  StoreResult<void> commit();
  void rollback() noexcept;

  // The process's key, inserting its row on first sight.
  StoreResult<std::int64_t> process(const ProcessRow& row);
  StoreResult<void> process_fate(std::int64_t process, const ProcessFate& fate);
  StoreResult<void> span_begin(std::int64_t process, const SpanRow& row);
  StoreResult<void> span_end(std::int64_t process, const SpanRow& row);
  StoreResult<void> record(std::int64_t process, const RecordRow& row);
  StoreResult<void> error(std::int64_t process, const ErrorRow& row);

  // Error-area progress per process, stored in the same transaction as the
  // errors it covers (chunk, offset, spill offset).
  StoreResult<std::vector<std::uint64_t>> error_cursor(std::int64_t process);
  StoreResult<void> set_error_cursor(std::int64_t process, std::uint32_t chunk, std::uint32_t offset,
                                     std::uint64_t spill_offset);

  sqlite3* handle() const;

 private:
  struct Impl;
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace shmtrace::drain

#endif
