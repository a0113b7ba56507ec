// The time partitions of a store (SPEC D4): files <db>.parts/p<id>.db, each
// holding the spans and span data whose timestamp falls in its window
// [start_ns, end_ns), attached to the drain's connection as schema p<id>,
// listed in the main file's partitions table.
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
  std::string file;    // absolute path
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

  // Attaches the catalog's partitions; a listed file that is missing is
  // dropped from the catalog, a file the catalog does not list is removed.
  std::expected<void, std::string> load();

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
  std::expected<void, std::string> create(std::int64_t start_ns, std::int64_t end_ns);
  std::expected<void, std::string> extend_newest(std::int64_t end_ns);

  sqlite3* db_;
  std::string directory_;
  std::int64_t width_ns_;
  std::int64_t retention_ns_;
  std::size_t max_attached_;
  std::vector<std::unique_ptr<Partition>> parts_;  // by start_ns, windows disjoint
  Partition* last_ = nullptr;                      // route()'s cache: rows come in runs
  // Deleting a large file takes the filesystem a while (hundreds of ms for
  // gigabytes): expire() renames the files out of the way and this thread
  // unlinks them, so the drain's loop does not wait.
  std::thread remover_;
  std::function<void(const std::string&, bool)> release_hook_;
};

}  // namespace shmtrace::drain

#endif
