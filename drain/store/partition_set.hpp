// The time partitions of a store (SPEC D4): files <db>.parts/p<id>.db, each
// holding the spans and span data whose timestamp falls in its window
// [start_ns, end_ns), attached to the drain's connection as schema p<id>,
// listed in the main file's partitions table.
//
// The catalog stores a partition's file name relative to the database
// ("p<id>.db" in the directory <db>.parts beside it), so the database is one
// place however its path is spelled, from whatever working directory, and
// after the directory holding it was moved. The store removes only files it
// can prove are its own: a partition it set aside for expiry (renamed
// p<id>.db.expired before its catalog row goes). A p<id>.db no row names is
// left alone and its id never reused.
//
// ATTACH and DETACH cannot run inside a transaction, so a batch is stored in
// two steps: plan() attaches every partition the batch needs (creating new
// ones), then inside the transaction route() only looks them up.
#ifndef SHMTRACE_DRAIN_PARTITION_SET_HPP
#define SHMTRACE_DRAIN_PARTITION_SET_HPP

#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "store/sqlite_util.hpp"

namespace shmtrace::drain {

struct Partition {
  std::int64_t id = 0;
  std::string schema;  // p<id>
  std::string file;    // <directory>/p<id>.db
  std::int64_t start_ns = 0;
  std::int64_t end_ns = 0;
  // Prepared on first use, finalized before DETACH.
  sql::Statement span_complete;  // an end, with or without its begin
  sql::Statement span_open;      // a begin whose end has not come yet
  sql::Statement span_data;
};

class PartitionSet {
 public:
  // width_ns: a new partition's window; retention_ns: age at which one expires.
  PartitionSet(sqlite3* db, std::string directory, std::int64_t width_ns, std::int64_t retention_ns);

  // Attaches the catalog's partitions. A listed file that is missing is
  // dropped from the catalog (said through the note sink unless an
  // interrupted expiry explains it); a catalog that lists partitions when the
  // directory itself is missing is refused (the database was moved without
  // it).
  std::expected<void, std::string> load();
  // Where load() and later calls say what they found and left alone.
  void set_note_sink(std::function<void(const std::string&)> sink) { note_ = std::move(sink); }

  // Makes sure a partition exists for each timestamp (outside a transaction).
  std::expected<std::uint64_t, std::string> plan(const std::vector<std::int64_t>& timestamps, std::int64_t now_ns);
  // The partition a timestamp's row goes to (after plan()).
  Partition& route(std::int64_t ts_ns);

  struct Expired {
    std::uint64_t removed = 0;
    std::uint64_t archived = 0;
  };
  // Detaches and removes (or moves to archive_dir) every partition whose
  // window ended before now - retention (outside a transaction).
  std::expected<Expired, std::string> expire(std::int64_t now_ns, const std::string& archive_dir);

  // Waits for files still being deleted in the background.
  ~PartitionSet();

  std::size_t size() const { return parts_.size(); }
  // The file of an attached partition's schema ("p3"), "" when none.
  std::string file_of(const std::string& schema) const;
  // Called with a partition's file before it is detached and moved aside;
  // `archiving`: its WAL is to be folded into it first.
  void set_release_hook(std::function<void(const std::string& file, bool archiving)> hook) {
    release_hook_ = std::move(hook);
  }
  std::int64_t oldest_start_ns() const { return parts_.empty() ? 0 : parts_.front()->start_ns; }
  const std::string& directory() const { return directory_; }

 private:
  std::expected<void, std::string> attach(Partition& p);
  std::string file_for(std::int64_t id) const;
  void note(const std::string& line) const {
    if (note_) note_(line);
  }
  std::expected<void, std::string> create(std::int64_t start_ns, std::int64_t end_ns);
  std::expected<void, std::string> extend_newest(std::int64_t end_ns);

  sqlite3* db_;
  std::string directory_;
  std::int64_t width_ns_;
  std::int64_t retention_ns_;
  std::size_t max_attached_;
  std::vector<std::unique_ptr<Partition>> parts_;  // by start_ns, windows disjoint
  std::int64_t next_id_ = 1;  // above every id listed or found on disk
  std::function<void(const std::string&)> note_;
  Partition* last_ = nullptr;                      // route()'s cache: rows come in runs
  // Deleting a large file takes the filesystem a while (hundreds of ms for
  // gigabytes): expire() renames the files out of the way and this thread
  // unlinks them, so the drain's loop does not wait.
  std::thread remover_;
  std::function<void(const std::string&, bool)> release_hook_;
};

}  // namespace shmtrace::drain

#endif
