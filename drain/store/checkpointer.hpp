// WAL checkpoints off the drain's commit path (SPEC §7: ingestion never
// stalls). SQLite's own automatic checkpoint runs inside the commit that
// crosses its threshold: with a threshold large enough to be cheap per row
// (schema::kWalCheckpointPages) that commit stalls for hundreds of
// milliseconds, long enough for a producer's ring to fill. Here the writer's
// WAL hook only asks a background thread, with a connection of its own, to
// copy the WAL into the database (a PASSIVE checkpoint, which never blocks
// the writer); once it is done, the writer's next commit checkpoints the few
// frames written meanwhile itself, so the WAL is restarted from its start
// and stays bounded. Should the background fall far behind, the writer
// checkpoints inline at kInlinePages.
#ifndef SHMTRACE_DRAIN_CHECKPOINTER_HPP
#define SHMTRACE_DRAIN_CHECKPOINTER_HPP

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

struct sqlite3;

namespace shmtrace::drain {

class Checkpointer {
 public:
  // Checkpoints of a schema's WAL start in the background at start_pages,
  // and run inline in the commit at inline_pages.
  static constexpr int kStartPages = 4096;     // 16 MiB of 4 KiB pages
  static constexpr int kInlinePages = 65536;   // 256 MiB: the background is stuck

  // Installs itself as the WAL hook of `writer` (replacing SQLite's
  // automatic checkpoint). file_of names the file of an attached schema
  // ("main", "p3"), "" when it has none; called on the writer's thread.
  Checkpointer(sqlite3* writer, std::function<std::string(const std::string& schema)> file_of);
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // The file is about to be detached and moved aside: drops its pending
  // request. With `wait`, also waits while a checkpoint of it runs (before an
  // archive folds its WAL in). Without, a running checkpoint of it is
  // interrupted (copying a file about to be deleted is wasted disk time) and
  // ends on its own descriptors, which a rename does not disturb: expiry
  // never waits.
  void forget(const std::string& file, bool wait);

  std::uint64_t background_checkpoints() const;
  std::uint64_t inline_checkpoints() const;

 private:
  struct Schema {
    bool queued = false;
    bool done = false;  // a background checkpoint finished: the writer completes it
  };
  static int on_commit(void* self, sqlite3* db, const char* schema, int pages);
  int commit_hook(const char* schema, int pages);
  void run();

  sqlite3* writer_;
  std::function<std::string(const std::string&)> file_of_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable finished_;
  std::map<std::string, Schema> schemas_;
  std::deque<std::pair<std::string, std::string>> queue_;  // schema, file
  std::string running_;       // the file being checkpointed, "" when idle
  sqlite3* running_db_ = nullptr;  // its connection, while checkpointing
  std::uint64_t background_ = 0;
  std::uint64_t inline_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace shmtrace::drain

#endif
