#include "store/checkpointer.hpp"

#include <sqlite3.h>

#include <algorithm>

namespace shmtrace::drain {

Checkpointer::Checkpointer(sqlite3* writer, std::function<std::string(const std::string&)> file_of)
    : writer_(writer), file_of_(std::move(file_of)) {
  sqlite3_wal_hook(writer_, &Checkpointer::on_commit, this);
  thread_ = std::thread([this] { run(); });
}

Checkpointer::~Checkpointer() {
  sqlite3_wal_hook(writer_, nullptr, nullptr);
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

int Checkpointer::on_commit(void* self, sqlite3*, const char* schema, int pages) {
  return static_cast<Checkpointer*>(self)->commit_hook(schema, pages);
}

// On the writer's thread, after each commit; `pages` are in the schema's WAL.
int Checkpointer::commit_hook(const char* schema, int pages) {
  bool finish = false;
  {
    std::lock_guard lock(mutex_);
    Schema& s = schemas_[schema];
    if (s.done || pages >= kInlinePages) {
      // What the background left (the frames of the commits made while it
      // ran), or everything when it is stuck: then the next write restarts
      // the WAL.
      s.done = false;
      finish = true;
    } else if (pages >= kStartPages && !s.queued) {
      const std::string file = file_of_(schema);
      if (!file.empty()) {
        s.queued = true;
        queue_.emplace_back(schema, file);
        wake_.notify_one();
      }
    }
  }
  if (finish) {
    // PASSIVE: returns at once (SQLITE_BUSY) should the background be
    // running again; the next commit tries again.
    if (sqlite3_wal_checkpoint_v2(writer_, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr) == SQLITE_OK) {
      std::lock_guard lock(mutex_);
      ++inline_;
    }
  }
  return SQLITE_OK;
}

void Checkpointer::run() {
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    auto [schema, file] = queue_.front();
    queue_.pop_front();
    running_ = file;
    lock.unlock();
    // A connection of our own, for this checkpoint only: it holds no file
    // that expiry may want to move, and it never checkpoints on close.
    sqlite3* db = nullptr;
    bool copied = false;
    if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK) {
      sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
      {
        std::lock_guard hold(mutex_);
        running_db_ = db;
      }
      // A read opens the file and finds its WAL (a fresh connection knows
      // neither, and its checkpoint would do nothing).
      int log = 0, done = 0;
      copied = sqlite3_exec(db, "PRAGMA schema_version", nullptr, nullptr, nullptr) == SQLITE_OK &&
               sqlite3_wal_checkpoint_v2(db, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done) == SQLITE_OK &&
               done > 0;
      std::lock_guard hold(mutex_);
      running_db_ = nullptr;  // before the close: forget() interrupts only a live connection
    }
    sqlite3_close(db);
    lock.lock();
    running_.clear();
    Schema& s = schemas_[schema];
    s.queued = false;
    s.done = copied;
    background_ += copied ? 1 : 0;
    finished_.notify_all();
  }
}

void Checkpointer::forget(const std::string& file, bool wait) {
  std::unique_lock lock(mutex_);
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (it->second == file) {
      schemas_[it->first].queued = false;
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  if (wait) {
    finished_.wait(lock, [&] { return running_ != file; });
  } else if (running_ == file && running_db_ != nullptr) {
    sqlite3_interrupt(running_db_);
  }
}

std::uint64_t Checkpointer::background_checkpoints() const {
  std::lock_guard lock(mutex_);
  return background_;
}

std::uint64_t Checkpointer::inline_checkpoints() const {
  std::lock_guard lock(mutex_);
  return inline_;
}

}  // namespace shmtrace::drain
