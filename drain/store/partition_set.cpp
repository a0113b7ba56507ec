#include "store/partition_set.hpp"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "store/schema.hpp"

namespace shmtrace::drain {
namespace {

std::int64_t align_down(std::int64_t t, std::int64_t w) { return t >= 0 ? t - t % w : t - (w + t % w) % w; }

std::expected<void, std::string> create_file(const std::string& file) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
    std::string e = "cannot create " + file + ": " + sqlite3_errmsg(db);
    sqlite3_close(db);
    return std::unexpected(e);
  }
  auto ok = sql::exec(db, std::string("PRAGMA journal_mode=WAL;") + schema::kPartitionTables);
  sqlite3_close(db);
  if (!ok) return std::unexpected(file + ": " + ok.error());
  return {};
}

// A partition's file name, from its id: p<id>.db.
std::string file_name(std::int64_t id) { return "p" + std::to_string(id) + ".db"; }

bool parse_file_name(const std::string& name, std::int64_t& id) {
  if (name.size() < 5 || name[0] != 'p' || !name.ends_with(".db")) return false;
  const std::string digits = name.substr(1, name.size() - 4);
  if (digits.empty() || digits.size() > 18) return false;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
  }
  id = std::stoll(digits);
  return true;
}

// A partition being made, before its catalog row (create()).
constexpr const char kNewSuffix[] = ".new";

constexpr const char* kSqliteSuffixes[] = {"", "-wal", "-shm", "-journal"};

// Removes a partition file and what SQLite keeps beside it.
void remove_files(const std::string& file) {
  for (const char* suffix : kSqliteSuffixes) ::unlink((file + suffix).c_str());
}

// Renames them to <file>.expired<suffix>, for the background remover (and,
// if the drain dies first, for the next start's orphan sweep).
std::string set_aside(const std::string& file) {
  const std::string aside = file + ".expired";
  for (const char* suffix : kSqliteSuffixes) ::rename((file + suffix).c_str(), (aside + suffix).c_str());
  return aside;
}

std::expected<void, std::string> move_files(const std::string& file, const std::string& archive_dir) {
  const std::string base = file.substr(file.rfind('/') + 1);
  ::mkdir(archive_dir.c_str(), 0700);
  const std::string target = archive_dir + "/" + base;
  if (::rename(file.c_str(), target.c_str()) != 0) {
    return std::unexpected("cannot move " + file + " to " + target + ": " + std::strerror(errno));
  }
  remove_files(file);  // a detached WAL database leaves no -wal behind; make sure
  return {};
}

}  // namespace

PartitionSet::PartitionSet(sqlite3* db, std::string directory, std::int64_t width_ns, std::int64_t retention_ns)
    : db_(db), directory_(std::move(directory)), width_ns_(width_ns), retention_ns_(retention_ns) {
  max_attached_ = static_cast<std::size_t>(std::max(1, sqlite3_limit(db_, SQLITE_LIMIT_ATTACHED, -1)));
}

std::expected<void, std::string> PartitionSet::attach(Partition& p) {
  p.schema = "p" + std::to_string(p.id);
  auto st = sql::Statement::prepare(db_, "ATTACH DATABASE ? AS " + p.schema);
  if (!st) return std::unexpected(st.error());
  sql::Binder{st->get()}(p.file);
  if (!sql::step_done(st->get())) return std::unexpected("cannot attach " + p.file + ": " + sqlite3_errmsg(db_));
  // A WAL trimmed back after each checkpoint (store/checkpointer.hpp). (A
  // page cache above SQLite's default 2 MiB measured no faster.)
  if (auto ok = sql::exec(db_, "PRAGMA " + p.schema + ".synchronous=NORMAL;PRAGMA " + p.schema +
                                   ".journal_size_limit=" + std::to_string(schema::kWalLimitBytes));
      !ok) {
    return std::unexpected(ok.error());
  }
  const std::string columns =
      " (process_key, span_id, trace_id, parent_span_id, tid, grp, name, start_ns, duration_ns, status, "
      "error_sequence, code) ";
  auto complete = sql::Statement::prepare(
      db_, "INSERT INTO " + p.schema + ".spans" + columns +
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (process_key, span_id) DO UPDATE SET "
               "duration_ns = excluded.duration_ns, status = excluded.status, "
               "error_sequence = excluded.error_sequence");
  // A begin never overwrites what its end already stored.
  auto open = sql::Statement::prepare(
      db_, "INSERT OR IGNORE INTO " + p.schema + ".spans" + columns + "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, 0, ?)");
  auto data = sql::Statement::prepare(
      db_, "INSERT OR IGNORE INTO " + p.schema +
               ".span_data (process_key, ring, position, span_id, kind, ts_ns, tid, name, value, value_type, flags) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  if (!complete || !open || !data) {
    return std::unexpected(!complete ? complete.error() : !open ? open.error() : data.error());
  }
  p.span_complete = std::move(*complete);
  p.span_open = std::move(*open);
  p.span_data = std::move(*data);
  return {};
}

std::string PartitionSet::file_for(std::int64_t id) const { return directory_ + "/" + file_name(id); }

std::expected<void, std::string> PartitionSet::load() {
  auto listed = sql::Statement::prepare(db_, "SELECT partition_id, start_ns, end_ns FROM partitions ORDER BY start_ns");
  if (!listed) return std::unexpected(listed.error());
  std::vector<std::unique_ptr<Partition>> rows;
  while (sqlite3_step(listed->get()) == SQLITE_ROW) {
    auto p = std::make_unique<Partition>();
    p->id = sqlite3_column_int64(listed->get(), 0);
    p->start_ns = sqlite3_column_int64(listed->get(), 1);
    p->end_ns = sqlite3_column_int64(listed->get(), 2);
    p->file = file_for(p->id);
    rows.push_back(std::move(p));
  }
  listed->reset();
  struct stat dir {};
  if (::lstat(directory_.c_str(), &dir) != 0) {
    if (errno != ENOENT) return std::unexpected("cannot examine " + directory_ + ": " + std::strerror(errno));
    // The catalog names files that should be there: the database was moved
    // without its partitions. Starting would forget them all.
    if (!rows.empty()) {
      return std::unexpected("its catalog lists " + std::to_string(rows.size()) + " partitions but " + directory_ +
                             " does not exist (move it back beside the database)");
    }
    if (::mkdir(directory_.c_str(), 0700) != 0 && errno != EEXIST) {
      return std::unexpected("cannot create " + directory_ + ": " + std::strerror(errno));
    }
  } else if (!S_ISDIR(dir.st_mode)) {
    return std::unexpected(directory_ + " is not a directory");
  }
  // Names are always p<id>.db beside the database: catalogs written by an
  // older drain kept the path as it was typed (relative to its working
  // directory), which read from anywhere else named nothing.
  (void)sql::exec(db_, "UPDATE partitions SET file = 'p' || partition_id || '.db' WHERE file <> 'p' || partition_id || '.db'");
  std::set<std::int64_t> listed_ids;
  for (auto& p : rows) {
    listed_ids.insert(p->id);
    next_id_ = std::max(next_id_, p->id + 1);
    // Made whole and listed, not yet renamed: a drain killed in create().
    if (::access(p->file.c_str(), F_OK) != 0 && ::access((p->file + kNewSuffix).c_str(), F_OK) == 0) {
      (void)::rename((p->file + kNewSuffix).c_str(), p->file.c_str());
    }
    if (struct stat st {}; ::stat(p->file.c_str(), &st) == 0) {
      // Empty: created and never given its tables (a drain older than the
      // .new naming killed in between). It holds nothing: give it them.
      if (st.st_size == 0) {
        if (auto ok = create_file(p->file); !ok) return ok;
      }
      parts_.push_back(std::move(p));
      continue;
    }
    // Gone: set aside by an expiry that was interrupted before it could drop
    // the row (the file is ours, renamed by us), or removed by hand.
    if (::access((p->file + ".expired").c_str(), F_OK) != 0) {
      note("partition " + p->file + " is listed but missing: the spans it held are gone");
    }
    (void)sql::exec(db_, "DELETE FROM partitions WHERE partition_id = " + std::to_string(p->id));
  }
  for (auto& p : parts_) {
    if (auto ok = attach(*p); !ok) return ok;
  }
  // Only files this store renamed for deletion are removed; a p<id>.db no
  // catalog row names is left where it is (it may be another database's,
  // copied in by hand) and a new partition never takes its id.
  if (DIR* d = ::opendir(directory_.c_str())) {
    std::vector<std::string> expired;
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      std::int64_t id = 0;
      if (name.ends_with(".expired") && parse_file_name(name.substr(0, name.size() - 8), id)) {
        expired.push_back(directory_ + "/" + name);
      } else if (name.ends_with(kNewSuffix) && parse_file_name(name.substr(0, name.size() - 4), id) &&
                 !listed_ids.contains(id)) {
        expired.push_back(directory_ + "/" + name);  // a create() that never listed it
      } else if (parse_file_name(name, id)) {
        next_id_ = std::max(next_id_, id + 1);
        if (!listed_ids.contains(id)) note("leaving " + directory_ + "/" + name + " alone: no catalog row names it");
      }
    }
    ::closedir(d);
    for (const std::string& f : expired) remove_files(f);
  }
  return {};
}

std::expected<void, std::string> PartitionSet::create(std::int64_t start_ns, std::int64_t end_ns) {
  auto p = std::make_unique<Partition>();
  p->id = next_id_;
  p->start_ns = start_ns;
  p->end_ns = end_ns;
  p->file = file_for(p->id);
  // Never a name that is already taken: a file there is not ours to write.
  struct stat existing {};
  while (::lstat(p->file.c_str(), &existing) == 0 || ::lstat((p->file + kNewSuffix).c_str(), &existing) == 0) {
    p->id = ++next_id_;
    p->file = file_for(p->id);
  }
  ++next_id_;
  // The file is made whole under a name of its own first, then listed, then
  // renamed into place: a drain killed at any step leaves either a .new file
  // no row names (ours: removed at the next start), or a row whose file is
  // still .new (renamed into place at the next start), never a listed file
  // without its tables.
  const std::string fresh = p->file + kNewSuffix;
  if (auto ok = create_file(fresh); !ok) {
    remove_files(fresh);
    return ok;
  }
  auto insert = sql::Statement::prepare(
      db_, "INSERT INTO partitions (partition_id, file, start_ns, end_ns) VALUES (?, ?, ?, ?)");
  if (!insert) {
    remove_files(fresh);
    return std::unexpected(insert.error());
  }
  const std::string name = file_name(p->id);  // bound without a copy: must outlive the step
  sql::Binder{insert->get()}(p->id)(name)(start_ns)(end_ns);
  if (!sql::step_done(insert->get())) {
    remove_files(fresh);
    return std::unexpected(std::string("cannot add a partition: ") + sqlite3_errmsg(db_));
  }
  if (::rename(fresh.c_str(), p->file.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    (void)sql::exec(db_, "DELETE FROM partitions WHERE partition_id = " + std::to_string(p->id));
    remove_files(fresh);
    return std::unexpected("cannot name " + p->file + ": " + why);
  }
  if (auto ok = attach(*p); !ok) return ok;
  const auto at = std::upper_bound(parts_.begin(), parts_.end(), start_ns,
                                   [](std::int64_t t, const auto& q) { return t < q->start_ns; });
  parts_.insert(at, std::move(p));
  return {};
}

std::expected<void, std::string> PartitionSet::extend_newest(std::int64_t end_ns) {
  Partition& p = *parts_.back();
  if (auto ok = sql::exec(db_, "UPDATE partitions SET end_ns = " + std::to_string(end_ns) +
                                   " WHERE partition_id = " + std::to_string(p.id));
      !ok) {
    return ok;
  }
  p.end_ns = end_ns;
  return {};
}

std::expected<std::uint64_t, std::string> PartitionSet::plan(const std::vector<std::int64_t>& timestamps,
                                                             std::int64_t now_ns) {
  std::uint64_t created = 0;
  for (std::int64_t t : timestamps) {
    if (!parts_.empty() && t < parts_.front()->start_ns) continue;  // goes to the oldest
    const auto after = std::upper_bound(parts_.begin(), parts_.end(), t,
                                        [](std::int64_t v, const auto& q) { return v < q->start_ns; });
    if (after != parts_.begin() && t < (*std::prev(after))->end_ns) continue;  // inside one
    // Expired on arrival: kept in the oldest partition rather than a new one
    // the next expiry would remove at once.
    if (!parts_.empty() && t < now_ns - retention_ns_) continue;
    std::int64_t start = align_down(t, width_ns_);
    std::int64_t end = start + width_ns_;
    if (after != parts_.begin()) start = std::max(start, (*std::prev(after))->end_ns);
    if (after != parts_.end()) end = std::min(end, (*after)->start_ns);
    if (parts_.size() + 1 >= max_attached_) {
      // SQLite attaches only so many files: widen the newest instead.
      if (after != parts_.end()) continue;  // a hole between partitions: the one before takes it
      if (auto ok = extend_newest(end); !ok) return std::unexpected(ok.error());
      continue;
    }
    if (auto ok = create(start, end); !ok) return std::unexpected(ok.error());
    ++created;
  }
  last_ = nullptr;
  return created;
}

Partition& PartitionSet::route(std::int64_t t) {
  if (last_ != nullptr && t >= last_->start_ns && t < last_->end_ns) return *last_;
  auto after = std::upper_bound(parts_.begin(), parts_.end(), t,
                                [](std::int64_t v, const auto& q) { return v < q->start_ns; });
  // Before the oldest: the oldest; in a hole or past the newest: the one before.
  Partition* p = after == parts_.begin() ? parts_.front().get() : std::prev(after)->get();
  last_ = p;
  return *p;
}

std::string PartitionSet::file_of(const std::string& schema) const {
  for (const auto& p : parts_) {
    if (p->schema == schema) return p->file;
  }
  return {};
}

PartitionSet::~PartitionSet() {
  if (remover_.joinable()) remover_.join();
}

std::expected<PartitionSet::Expired, std::string> PartitionSet::expire(std::int64_t now_ns,
                                                                       const std::string& archive_dir) {
  Expired out;
  std::vector<std::string> doomed;
  while (!parts_.empty() && parts_.front()->end_ns <= now_ns - retention_ns_) {
    Partition& p = *parts_.front();
    p.span_complete.reset();
    p.span_open.reset();
    p.span_data.reset();
    if (release_hook_) release_hook_(p.file, !archive_dir.empty());
    // An archived partition must be whole in its own file: fold its WAL in
    // first (the connection does not checkpoint what it detaches).
    if (!archive_dir.empty()) (void)sql::exec(db_, "PRAGMA " + p.schema + ".wal_checkpoint(TRUNCATE)");
    if (auto ok = sql::exec(db_, "DETACH DATABASE " + p.schema); !ok) {
      return std::unexpected("cannot detach " + p.file + ": " + ok.error());
    }
    // The file leaves its name before its row goes: a drain killed between
    // the two finds the row, the file under its .expired name, and finishes
    // the expiry; it never finds a p<id>.db no row names.
    const std::string file = p.file;
    if (!archive_dir.empty()) {
      if (auto ok = move_files(file, archive_dir); !ok) {
        (void)attach(p);
        return std::unexpected(ok.error());
      }
      ++out.archived;
    } else {
      doomed.push_back(set_aside(file));
      ++out.removed;
    }
    if (auto ok = sql::exec(db_, "DELETE FROM partitions WHERE partition_id = " + std::to_string(p.id)); !ok) {
      return std::unexpected(ok.error());  // the next start drops the row of the file set aside
    }
    parts_.erase(parts_.begin());
    last_ = nullptr;
  }
  if (!doomed.empty()) {
    if (remover_.joinable()) remover_.join();  // the previous expiry's files, long gone by now
    remover_ = std::thread([doomed = std::move(doomed)] {
      for (const std::string& f : doomed) remove_files(f);
    });
  }
  return out;
}

}  // namespace shmtrace::drain
