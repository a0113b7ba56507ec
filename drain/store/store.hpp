// The drain's SQLite store (SPEC D2-D5): schema versioned with
// PRAGMA user_version and migrated forward, WAL, synchronous=NORMAL,
// prepared statements, one transaction per batch.
//
// Two kinds of file (README "Database"):
//   <db>              processes, errors, gaps, process events, metrics,
//                     alerts, the partition catalog: small, kept in one file.
//   <db>.parts/p*.db  time partitions holding the bulk: spans and span data.
//                     Each is attached to the drain's connection; expiring
//                     one is a DETACH and an unlink (or a move into the
//                     archive directory), never a long DELETE, so retention
//                     does not stall ingestion (D4).
// Readers open the database through open_query_database() (query.hpp), which
// attaches the partitions and unites them in the views spans and span_data.
//
// Every insert is idempotent: each row is keyed by where its record came
// from (process, ring, position) or by an id the producer made unique (span
// id, error sequence), and a row goes to the partition its own timestamp
// picks, so a batch stored twice, after a drain was killed between the commit
// and handing the ring slots back, leaves the database as if stored once.
#ifndef SHMTRACE_DRAIN_STORE_HPP
#define SHMTRACE_DRAIN_STORE_HPP

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <map>
#include <vector>

#include "store/batch.hpp"

struct sqlite3;

namespace shmtrace::drain {

struct StoreError {
  std::string message;
};
template <class T>
using StoreResult = std::expected<T, StoreError>;

inline constexpr int kSchemaVersion = 4;  // schema::main_migrations() has one per version

// Process-wide SQLite settings of a drain, to call before any other SQLite
// use: no memory statistics (they take a global mutex at every allocation;
// nothing here reads them). False when SQLite was already in use.
bool configure_sqlite_process();

struct StoreOptions {
  std::chrono::seconds retention{6 * 3600};
  // Width of a time partition; 0 = retention / 6. Widened when the
  // partitions retention needs would exceed SQLite's attach limit.
  std::chrono::seconds partition{0};
  std::string archive_dir;  // expired partitions are moved here; "" = removed
  // One line for each thing the store found and left alone (files it does
  // not own, partitions gone missing); none when unset.
  std::function<void(const std::string&)> log;
};

struct WriteStats {
  std::uint64_t rows = 0;
  std::uint64_t partitions_created = 0;
};

struct ExpiryStats {
  std::uint64_t partitions_removed = 0;
  std::uint64_t partitions_archived = 0;
  std::uint64_t rows_deleted = 0;  // from the main file's tables
};

struct MetricSample {
  std::string name;
  std::string labels;  // Prometheus form: a="1",b="x"
  double value = 0;
};

class Store {
 public:
  // Opens (creating, migrating) the database. Refuses a database another
  // drain holds (an exclusive lock on <path>.lock).
  static StoreResult<Store> open(const std::string& path, const StoreOptions& options = {});
  Store(Store&&) noexcept;
  Store& operator=(Store&&) noexcept;
  ~Store();

  // Stores a batch in one transaction; nothing of it when it fails.
  StoreResult<WriteStats> write(const Batch& batch);

  // Error-area progress of a segment stored earlier (absent: from the start).
  StoreResult<std::optional<ErrorCursorRow>> error_cursor(const std::string& segment);
  // Per ring, the thread of the last thread_start stored from it: whose
  // records a restarted drain finds first in the ring (a later owner's come
  // after its own thread_start).
  StoreResult<std::map<std::uint32_t, std::uint32_t>> ring_threads(const std::string& segment);

  // Removes what is older than the retention: whole partitions, and rows of
  // the main file in bounded steps (call again while rows_deleted > 0).
  StoreResult<ExpiryStats> expire(std::int64_t now_ns);
  // Gives free pages back to the filesystem, a bounded amount per call.
  StoreResult<std::uint64_t> vacuum_step();
  StoreResult<void> write_metrics(std::int64_t ts_ns, const std::vector<MetricSample>& samples);

  // The database is still the one opened: its main file and partitions
  // directory are where they were, with the same inodes. A database deleted
  // or replaced under a running drain keeps taking writes into unlinked
  // files, so a drain asks before it hands any slot back.
  StoreResult<void> check_identity() const;

  std::uint64_t database_bytes() const;  // main file and partitions, WAL included
  std::size_t partition_count() const;
  const std::string& path() const;
  sqlite3* handle() const;

 private:
  struct Impl;
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace shmtrace::drain

#endif
