// SegmentWatcher: finds new shmtrace segments in the shm directory (SPEC D1).
//
// Two sources, one answer:
//   * inotify on the directory (IN_CREATE, IN_MOVED_TO, IN_ATTRIB) reports a
//     segment the moment the runtime's shm_open() creates it. The header is
//     not initialized yet at that point; the drain's attach retries "not yet
//     initialized", so reporting at creation is early, never wrong.
//   * a full rescan every `rescan_interval` is the safety net: it catches what
//     inotify cannot report (a queue overflow triggers one at once; a missing
//     inotify makes it the only source) and forgets names no longer present.
//
// Only names of the segment form count, and only those of the watcher's
// session: "shmtrace.<session>.<pid>.<16 hex digits>" for a watcher given a
// session, "shmtrace.<pid>.<16 hex digits>" (no session) for one given none,
// so runs on one machine never see each other's segments. Error chunks,
// spill files, other sessions' segments and everything else in the
// directory are ignored (never reported, not even as refused). A name is
// looked at with fstatat(AT_SYMLINK_NOFOLLOW): symlinks,
// directories, FIFOs and other non-regular files are never reported. A
// regular file whose owner is not a permitted uid is *refused*: reported
// once, separately, so the drain can log and count it, and never attached.
//
// Each name is reported once while it exists (found or refused); a name
// removed and created again is new. A refused segment whose owner later
// becomes permitted (IN_ATTRIB or a rescan) is then found. forget(name)
// makes a found name eligible to be reported again.
//
// Not thread-safe: one thread owns the watcher and calls wait().
#ifndef SHMTRACE_DRAIN_DISCOVERY_SEGMENT_WATCHER_HPP
#define SHMTRACE_DRAIN_DISCOVERY_SEGMENT_WATCHER_HPP

#include <chrono>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace shmtrace::drain {

struct SegmentWatcherOptions {
  std::string directory = "/dev/shm";
  std::chrono::milliseconds rescan_interval{1000};
  // Owners whose segments may be attached. Empty: only the drain's own
  // effective uid.
  std::vector<std::uint32_t> permitted_uids;
  // False: never use inotify (tests of the rescan-only path).
  bool use_inotify = true;
  // The session whose segments are reported ("" = segments of no session);
  // open() refuses an id abi::session_id_valid rejects.
  std::string session;
};

struct SegmentCandidate {
  std::string name;             // the object's name in the directory
  std::uint32_t pid = 0;        // from the name; the reader checks the header agrees
  std::uint32_t owner_uid = 0;  // at the time it was seen
};

struct WatchBatch {
  std::vector<SegmentCandidate> found;    // new segments of permitted owners, by name
  std::vector<SegmentCandidate> refused;  // new segments of other owners, by name
  bool empty() const { return found.empty() && refused.empty(); }
};

// The pid of a segment object name, of any session or none; nullopt for
// anything else (error chunks, spill files, names out of the standard form).
std::optional<std::uint32_t> segment_name_pid(std::string_view name);
// The pid of a segment object name of exactly `session` ("" = of no
// session); nullopt for another session's segment and for anything else.
std::optional<std::uint32_t> segment_name_pid(std::string_view name, std::string_view session);

class SegmentWatcher {
 public:
  template <class T>
  using Result = std::expected<T, std::string>;

  // Opens the directory and, unless disabled, its inotify watch. Fails only
  // when the directory itself cannot be opened; an unavailable inotify
  // leaves the watcher on rescans alone (inotify_active() false).
  static Result<SegmentWatcher> open(SegmentWatcherOptions options = {});

  SegmentWatcher(SegmentWatcher&& other) noexcept;
  SegmentWatcher& operator=(SegmentWatcher&& other) noexcept;
  SegmentWatcher(const SegmentWatcher&) = delete;
  SegmentWatcher& operator=(const SegmentWatcher&) = delete;
  ~SegmentWatcher();

  // Returns the segments not reported before. The first call reports all
  // present. Blocks at most `timeout` (0: never) and returns as soon as
  // something new is found; an interrupting signal returns early too.
  Result<WatchBatch> wait(std::chrono::milliseconds timeout);

  // The drain is done with `name` (or wants it again): a later event or
  // rescan reports it anew if it is still there.
  void forget(std::string_view name);

  // True while inotify is the prompt source; false on rescans alone.
  bool inotify_active() const { return inotify_fd_ >= 0; }
  // Why inotify is not active (one line); empty when active or disabled.
  const std::string& inotify_error() const { return inotify_error_; }
  // The inotify fd, readable when wait() has something to look at; -1 when
  // inactive. For a caller's own poll set; wait() does the reading.
  int poll_fd() const { return inotify_fd_; }

  std::uint64_t rescans() const { return rescans_; }
  std::uint64_t overflows() const { return overflows_; }  // IN_Q_OVERFLOW seen
  const std::string& directory() const { return options_.directory; }
  const std::string& session() const { return options_.session; }

 private:
  explicit SegmentWatcher(SegmentWatcherOptions options);
  void close_fds() noexcept;
  void stop_inotify(std::string why) noexcept;
  Result<void> rescan(WatchBatch& batch);
  Result<void> read_events(WatchBatch& batch);
  // Looks at one name of the segment form and reports it if new.
  void consider(std::string_view name, std::uint32_t pid, WatchBatch& batch);
  bool permitted(std::uint32_t uid) const;

  SegmentWatcherOptions options_;
  int dir_fd_ = -1;
  int inotify_fd_ = -1;
  std::string inotify_error_;
  bool scanned_ = false;           // the first wait() rescans
  bool rescan_pending_ = false;    // overflow: rescan at once
  std::chrono::steady_clock::time_point next_rescan_{};
  std::unordered_set<std::string> found_;    // reported as found
  std::unordered_set<std::string> refused_;  // reported as refused
  std::uint64_t rescans_ = 0;
  std::uint64_t overflows_ = 0;
};

}  // namespace shmtrace::drain

#endif  // SHMTRACE_DRAIN_DISCOVERY_SEGMENT_WATCHER_HPP
