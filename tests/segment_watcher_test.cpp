// SegmentWatcher: inotify and rescan discovery, name and file-type filters,
// owner checks, queue overflow, and one real object in /dev/shm.
#include "discovery/segment_watcher.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace shmtrace::drain {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr auto kLong = 5000ms;  // generous upper bound for something that should arrive
constexpr auto kHour = std::chrono::milliseconds(std::chrono::hours(1));

std::string segment_name(std::uint32_t pid, std::uint64_t nonce) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "shmtrace.%" PRIu32 ".%016" PRIx64, pid, nonce);
  return buffer;
}

std::string session_segment_name(const std::string& session, std::uint32_t pid, std::uint64_t nonce) {
  return "shmtrace." + session + segment_name(pid, nonce).substr(std::string("shmtrace").size());
}

std::uint64_t random_nonce() {
  std::random_device device;
  return (std::uint64_t{device()} << 32) ^ device() ^
         static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "segment_watcher_test.XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

void create_file(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << path;
  ::close(fd);
}

std::vector<std::string> names(const std::vector<SegmentCandidate>& list) {
  std::vector<std::string> out;
  for (const auto& c : list) out.push_back(c.name);
  return out;
}

SegmentWatcher open_watcher(const TempDir& dir, std::chrono::milliseconds rescan,
                            bool use_inotify = true, std::vector<std::uint32_t> uids = {},
                            std::string session = {}) {
  SegmentWatcherOptions options;
  options.session = std::move(session);
  options.directory = dir.str();
  options.rescan_interval = rescan;
  options.use_inotify = use_inotify;
  options.permitted_uids = std::move(uids);
  auto watcher = SegmentWatcher::open(std::move(options));
  if (!watcher) throw std::runtime_error(watcher.error());
  return std::move(*watcher);
}

WatchBatch wait_ok(SegmentWatcher& watcher, std::chrono::milliseconds timeout) {
  auto batch = watcher.wait(timeout);
  EXPECT_TRUE(batch.has_value()) << (batch ? "" : batch.error());
  return batch ? std::move(*batch) : WatchBatch{};
}

TEST(SegmentNamePid, AcceptsOnlyTheSegmentForm) {
  EXPECT_EQ(segment_name_pid("shmtrace.1234.00000000deadbeef"), 1234u);
  EXPECT_EQ(segment_name_pid(segment_name(7, 0xabcdef0123456789)), 7u);
  EXPECT_FALSE(segment_name_pid("shmtrace.1234.00000000deadbeef.err.0"));
  EXPECT_FALSE(segment_name_pid("shmtrace.1234.00000000deadbeef.errors"));
  EXPECT_FALSE(segment_name_pid("shmtrace.1234.deadbeef"));
  EXPECT_FALSE(segment_name_pid("shmtrace.12x4.00000000deadbeef"));
  EXPECT_FALSE(segment_name_pid("shmtrace..00000000deadbeef"));
  EXPECT_FALSE(segment_name_pid("shmtrace.1234.00000000deadbeeg"));
  EXPECT_FALSE(segment_name_pid("other.1234.00000000deadbeef"));
  EXPECT_FALSE(segment_name_pid(""));
}

TEST(SegmentNamePid, AcceptsOnlyTheGivenSession) {
  const std::string plain = "shmtrace.1234.00000000deadbeef";
  const std::string of_a = "shmtrace.runA.1234.00000000deadbeef";
  const std::string of_b = "shmtrace.run-B_2.99.00000000deadbeef";
  // Any session: both forms.
  EXPECT_EQ(segment_name_pid(of_a), 1234u);
  EXPECT_EQ(segment_name_pid(of_b), 99u);
  // No session: only the plain form.
  EXPECT_EQ(segment_name_pid(plain, ""), 1234u);
  EXPECT_FALSE(segment_name_pid(of_a, ""));
  EXPECT_FALSE(segment_name_pid(of_b, ""));
  // A session: only its own segments, never a plain one or another's.
  EXPECT_EQ(segment_name_pid(of_a, "runA"), 1234u);
  EXPECT_EQ(segment_name_pid(of_b, "run-B_2"), 99u);
  EXPECT_FALSE(segment_name_pid(plain, "runA"));
  EXPECT_FALSE(segment_name_pid(of_b, "runA"));
  EXPECT_FALSE(segment_name_pid(of_a, "runa"));   // ids are case-sensitive
  EXPECT_FALSE(segment_name_pid(of_a, "run"));    // no prefix match
  EXPECT_FALSE(segment_name_pid(of_a, "runAB"));
  // A session's error chunks and spill file are not segments.
  EXPECT_FALSE(segment_name_pid(of_a + ".err.0", "runA"));
  EXPECT_FALSE(segment_name_pid(of_a + ".errors", "runA"));
  EXPECT_FALSE(segment_name_pid(of_a + ".err.0"));
  // Malformed session parts: refused whatever session is asked for.
  for (const std::string bad : {
           "shmtrace.1run.1234.00000000deadbeef",     // digits first: read as a pid, then garbage
           "shmtrace..1234.00000000deadbeef",         // empty session
           "shmtrace.run!A.1234.00000000deadbeef",    // a character outside the id's set
           "shmtrace.runA.runB.1234.00000000deadbeef",  // two sessions
           "shmtrace.runA..00000000deadbeef",         // no pid
           "shmtrace.runA.1234.deadbeef",             // short nonce
           "shmtrace.runA.1234.00000000deadbeefff",   // long nonce
           "shmtrace.runA",                           // nothing after the session
           "shmtrace.runA.",
           "shmtrace.a23456789012345678901234567890123.1.00000000deadbeef",  // 33 characters
       }) {
    EXPECT_FALSE(segment_name_pid(bad)) << bad;
    EXPECT_FALSE(segment_name_pid(bad, "")) << bad;
    EXPECT_FALSE(segment_name_pid(bad, "runA")) << bad;
  }
  // The longest id (32 characters) is a session like any other.
  const std::string longest(32, 'a');
  EXPECT_EQ(segment_name_pid("shmtrace." + longest + ".5.00000000deadbeef", longest), 5u);
}

TEST(SegmentWatcher, OpenRefusesAnInvalidSession) {
  TempDir dir;
  for (const std::string& bad : std::vector<std::string>{"1abc", "a.b", "a b", std::string(33, 'a'), "-x"}) {
    SegmentWatcherOptions options;
    options.directory = dir.str();
    options.session = bad;
    auto watcher = SegmentWatcher::open(options);
    ASSERT_FALSE(watcher.has_value()) << bad;
    EXPECT_NE(watcher.error().find("session id '" + bad + "'"), std::string::npos) << watcher.error();
  }
}

// Three kinds of segments side by side: a watcher sees exactly its session's,
// on the first rescan, through inotify and on later rescans alike.
class SessionFilter : public ::testing::TestWithParam<bool> {};

TEST_P(SessionFilter, EachWatcherReportsOnlyItsSession) {
  const bool use_inotify = GetParam();
  TempDir dir;
  const std::string plain1 = segment_name(10, 0x10);
  const std::string a1 = session_segment_name("runA", 11, 0x11);
  const std::string b1 = session_segment_name("runB", 12, 0x12);
  for (const auto& n : {plain1, a1, b1}) create_file(dir.path() / n);
  // A session's error chunk and spill file beside its segment.
  create_file(dir.path() / (a1 + ".err.0"));
  create_file(dir.path() / (a1 + ".errors"));

  const auto rescan = use_inotify ? kHour : 10ms;
  SegmentWatcher none = open_watcher(dir, rescan, use_inotify);
  SegmentWatcher of_a = open_watcher(dir, rescan, use_inotify, {}, "runA");
  SegmentWatcher of_b = open_watcher(dir, rescan, use_inotify, {}, "runB");
  EXPECT_EQ(of_a.session(), "runA");
  EXPECT_EQ(none.session(), "");
  if (use_inotify) {
    ASSERT_TRUE(none.inotify_active()) << none.inotify_error();
    ASSERT_TRUE(of_a.inotify_active()) << of_a.inotify_error();
    ASSERT_TRUE(of_b.inotify_active()) << of_b.inotify_error();
  }
  EXPECT_EQ(names(wait_ok(none, 0ms).found), std::vector<std::string>{plain1});
  EXPECT_EQ(names(wait_ok(of_a, 0ms).found), std::vector<std::string>{a1});
  EXPECT_EQ(names(wait_ok(of_b, 0ms).found), std::vector<std::string>{b1});

  // New ones of each kind, plus one of a session no watcher has.
  const std::string plain2 = segment_name(20, 0x20);
  const std::string a2 = session_segment_name("runA", 21, 0x21);
  const std::string b2 = session_segment_name("runB", 22, 0x22);
  const std::string c2 = session_segment_name("runC", 23, 0x23);
  for (const auto& n : {c2, b2, a2, plain2}) create_file(dir.path() / n);
  create_file(dir.path() / (b2 + ".err.0"));
  EXPECT_EQ(names(wait_ok(none, kLong).found), std::vector<std::string>{plain2});
  EXPECT_EQ(names(wait_ok(of_a, kLong).found), std::vector<std::string>{a2});
  EXPECT_EQ(names(wait_ok(of_b, kLong).found), std::vector<std::string>{b2});
  // Nothing more, ever: the other sessions' names are not reported late.
  for (SegmentWatcher* w : {&none, &of_a, &of_b}) {
    WatchBatch later = wait_ok(*w, 100ms);
    EXPECT_TRUE(later.empty()) << w->session() << ": " << names(later.found).size();
  }
  if (use_inotify) {
    EXPECT_EQ(of_a.rescans(), 1u);  // inotify alone reported the new ones
  }
}

INSTANTIATE_TEST_SUITE_P(InotifyAndRescan, SessionFilter, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Inotify" : "RescanOnly"; });

TEST(SegmentWatcher, AnotherSessionsSegmentOfAForeignOwnerIsNotEvenRefused) {
  TempDir dir;
  const std::string of_b = session_segment_name("runB", 31, 0x31);
  create_file(dir.path() / of_b);
  // No uid is permitted: a segment of our session would be refused.
  const std::string of_a = session_segment_name("runA", 32, 0x32);
  create_file(dir.path() / of_a);
  SegmentWatcher watcher = open_watcher(dir, kHour, true, {::geteuid() + 1}, "runA");
  WatchBatch batch = wait_ok(watcher, 0ms);
  EXPECT_TRUE(batch.found.empty());
  EXPECT_EQ(names(batch.refused), std::vector<std::string>{of_a});
}

TEST(SegmentWatcher, OpenFailsOnAMissingDirectory) {
  SegmentWatcherOptions options;
  options.directory = "/nonexistent/segment_watcher_test";
  auto watcher = SegmentWatcher::open(options);
  ASSERT_FALSE(watcher.has_value());
  EXPECT_NE(watcher.error().find("/nonexistent/segment_watcher_test"), std::string::npos)
      << watcher.error();
}

TEST(SegmentWatcher, OpenRefusesANonPositiveRescanInterval) {
  TempDir dir;
  SegmentWatcherOptions options;
  options.directory = dir.str();
  options.rescan_interval = 0ms;
  EXPECT_FALSE(SegmentWatcher::open(options).has_value());
}

TEST(SegmentWatcher, FirstWaitReportsEverythingPresentOnce) {
  TempDir dir;
  const std::string a = segment_name(100, 1);
  const std::string b = segment_name(200, 2);
  create_file(dir.path() / b);
  create_file(dir.path() / a);
  SegmentWatcher watcher = open_watcher(dir, 10ms);

  WatchBatch first = wait_ok(watcher, 0ms);
  EXPECT_EQ(names(first.found), (std::vector<std::string>{a, b}));
  EXPECT_TRUE(first.refused.empty());
  ASSERT_EQ(first.found.size(), 2u);
  EXPECT_EQ(first.found[0].pid, 100u);
  EXPECT_EQ(first.found[1].pid, 200u);
  EXPECT_EQ(first.found[0].owner_uid, ::geteuid());

  // Rescans every 10 ms during 100 ms: the same names are not reported again.
  WatchBatch again = wait_ok(watcher, 100ms);
  EXPECT_TRUE(again.empty()) << names(again.found).size();
  EXPECT_GE(watcher.rescans(), 2u);
}

TEST(SegmentWatcher, NewFileIsReportedByInotify) {
  TempDir dir;
  SegmentWatcher watcher = open_watcher(dir, kHour);
  ASSERT_TRUE(watcher.inotify_active()) << watcher.inotify_error();
  EXPECT_GE(watcher.poll_fd(), 0);
  EXPECT_TRUE(wait_ok(watcher, 0ms).empty());
  ASSERT_EQ(watcher.rescans(), 1u);

  const std::string name = segment_name(4242, 0x1234);
  create_file(dir.path() / name);
  WatchBatch batch = wait_ok(watcher, kLong);
  EXPECT_EQ(names(batch.found), std::vector<std::string>{name});
  EXPECT_EQ(batch.found.at(0).pid, 4242u);
  // The next rescan is an hour away: only inotify can have reported it.
  EXPECT_EQ(watcher.rescans(), 1u);
}

TEST(SegmentWatcher, FileRenamedIntoPlaceIsReportedByInotify) {
  TempDir dir;
  SegmentWatcher watcher = open_watcher(dir, kHour);
  ASSERT_TRUE(watcher.inotify_active()) << watcher.inotify_error();
  EXPECT_TRUE(wait_ok(watcher, 0ms).empty());

  create_file(dir.path() / "staging");
  const std::string name = segment_name(77, 0x77);
  fs::rename(dir.path() / "staging", dir.path() / name);
  WatchBatch batch = wait_ok(watcher, kLong);
  EXPECT_EQ(names(batch.found), std::vector<std::string>{name});
  EXPECT_EQ(watcher.rescans(), 1u);
}

TEST(SegmentWatcher, NameRemovedAndCreatedAgainIsReportedAgain) {
  TempDir dir;
  const std::string name = segment_name(55, 0x55);
  create_file(dir.path() / name);
  SegmentWatcher watcher = open_watcher(dir, kHour);
  ASSERT_TRUE(watcher.inotify_active()) << watcher.inotify_error();
  EXPECT_EQ(names(wait_ok(watcher, 0ms).found), std::vector<std::string>{name});

  fs::remove(dir.path() / name);
  create_file(dir.path() / name);
  EXPECT_EQ(names(wait_ok(watcher, kLong).found), std::vector<std::string>{name});
  EXPECT_EQ(watcher.rescans(), 1u);
}

TEST(SegmentWatcher, ForgottenNameIsReportedByTheNextRescan) {
  TempDir dir;
  const std::string name = segment_name(66, 0x66);
  create_file(dir.path() / name);
  SegmentWatcher watcher = open_watcher(dir, 20ms);
  EXPECT_EQ(names(wait_ok(watcher, 0ms).found), std::vector<std::string>{name});
  EXPECT_TRUE(wait_ok(watcher, 60ms).empty());

  watcher.forget(name);
  EXPECT_EQ(names(wait_ok(watcher, kLong).found), std::vector<std::string>{name});
}

TEST(SegmentWatcher, RescanAloneFindsNewFiles) {
  TempDir dir;
  SegmentWatcher watcher = open_watcher(dir, 20ms, /*use_inotify=*/false);
  EXPECT_FALSE(watcher.inotify_active());
  EXPECT_EQ(watcher.poll_fd(), -1);
  EXPECT_TRUE(wait_ok(watcher, 0ms).empty());

  const std::string name = segment_name(31337, 0xfeed);
  create_file(dir.path() / name);
  WatchBatch batch = wait_ok(watcher, kLong);
  EXPECT_EQ(names(batch.found), std::vector<std::string>{name});
  EXPECT_GE(watcher.rescans(), 2u);
}

// Everything in the directory that must never be reported, and one segment
// that must: created before the first scan, after it under inotify, or after
// it with rescans alone.
enum class Discovery { kFirstScan, kInotify, kRescanOnly };

class SegmentWatcherFilter : public ::testing::TestWithParam<Discovery> {};

TEST_P(SegmentWatcherFilter, ReportsOnlyRegularFilesOfTheSegmentForm) {
  TempDir dir;
  TempDir elsewhere;
  const Discovery mode = GetParam();
  const auto rescan = mode == Discovery::kInotify ? kHour : 20ms;
  std::optional<SegmentWatcher> watcher;
  if (mode != Discovery::kFirstScan) {
    watcher.emplace(open_watcher(dir, rescan, mode == Discovery::kInotify));
    ASSERT_EQ(watcher->inotify_active(), mode == Discovery::kInotify) << watcher->inotify_error();
    EXPECT_TRUE(wait_ok(*watcher, 0ms).empty());
  }

  const fs::path d = dir.path();
  create_file(d / "other.txt");
  create_file(d / "shmtrace.1234.deadbeef");                   // nonce too short
  create_file(d / "shmtrace.1234.00000000deadbeeg");           // not hex
  create_file(d / "shmtrace.x.00000000deadbeef");              // pid not a number
  create_file(d / (segment_name(1234, 0xdead) + ".err.0"));    // error chunk
  create_file(d / (segment_name(1234, 0xdead) + ".err.17"));   // error chunk
  create_file(d / (segment_name(1234, 0xdead) + ".errors"));   // spill file
  create_file(elsewhere.path() / "target");
  fs::create_symlink(elsewhere.path() / "target", d / segment_name(1, 0x51));  // symlink
  fs::create_symlink(d / "other.txt", d / segment_name(2, 0x52));              // symlink
  fs::create_directory(d / segment_name(3, 0xd1));                             // directory
  ASSERT_EQ(::mkfifo((d / segment_name(4, 0xf1)).c_str(), 0600), 0);           // FIFO
  const std::string valid = segment_name(1234, 0xdead);
  create_file(d / valid);  // last: once it is reported, every event before it was read

  if (mode == Discovery::kFirstScan) watcher.emplace(open_watcher(dir, 20ms));
  WatchBatch batch = wait_ok(*watcher, kLong);
  EXPECT_EQ(names(batch.found), std::vector<std::string>{valid});
  EXPECT_TRUE(batch.refused.empty()) << batch.refused.size();
  // More rescans (or none pending events) add nothing.
  WatchBatch later = wait_ok(*watcher, 100ms);
  EXPECT_TRUE(later.empty()) << (later.found.empty() ? "" : later.found[0].name);
  if (mode == Discovery::kInotify) {
    EXPECT_EQ(watcher->rescans(), 1u);
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, SegmentWatcherFilter,
                         ::testing::Values(Discovery::kFirstScan, Discovery::kInotify,
                                           Discovery::kRescanOnly),
                         [](const auto& info) {
                           switch (info.param) {
                             case Discovery::kFirstScan:
                               return "FirstScan";
                             case Discovery::kInotify:
                               return "Inotify";
                             case Discovery::kRescanOnly:
                               return "RescanOnly";
                           }
                           return "Unknown";
                         });

constexpr uid_t kForeignUid = 12345;

TEST(SegmentWatcher, ForeignOwnerIsRefusedOnceByRescans) {
  ASSERT_EQ(::geteuid(), 0u) << "this test chowns files: run the suite as root (CI does)";
  TempDir dir;
  const std::string foreign = segment_name(900, 0x900);
  const std::string own = segment_name(901, 0x901);
  create_file(dir.path() / foreign);
  create_file(dir.path() / own);
  ASSERT_EQ(::chown((dir.path() / foreign).c_str(), kForeignUid, kForeignUid), 0);
  SegmentWatcher watcher = open_watcher(dir, 10ms);

  WatchBatch first = wait_ok(watcher, 0ms);
  EXPECT_EQ(names(first.found), std::vector<std::string>{own});
  ASSERT_EQ(names(first.refused), std::vector<std::string>{foreign});
  EXPECT_EQ(first.refused[0].owner_uid, kForeignUid);
  EXPECT_EQ(first.refused[0].pid, 900u);

  WatchBatch later = wait_ok(watcher, 150ms);
  EXPECT_TRUE(later.empty());
  EXPECT_GE(watcher.rescans(), 3u);
}

TEST(SegmentWatcher, ForeignOwnerIsRefusedByInotifyThenFoundAfterChown) {
  ASSERT_EQ(::geteuid(), 0u) << "this test chowns files: run the suite as root (CI does)";
  TempDir dir;
  SegmentWatcher watcher = open_watcher(dir, kHour);
  ASSERT_TRUE(watcher.inotify_active()) << watcher.inotify_error();
  EXPECT_TRUE(wait_ok(watcher, 0ms).empty());

  // Owned by the stranger before it appears under its name.
  fs::create_directory(dir.path() / "staging");
  create_file(dir.path() / "staging" / "x");
  ASSERT_EQ(::chown((dir.path() / "staging" / "x").c_str(), kForeignUid, kForeignUid), 0);
  const std::string name = segment_name(902, 0x902);
  fs::rename(dir.path() / "staging" / "x", dir.path() / name);

  WatchBatch refused = wait_ok(watcher, kLong);
  EXPECT_TRUE(refused.found.empty());
  EXPECT_EQ(names(refused.refused), std::vector<std::string>{name});
  // Touching it again (IN_ATTRIB) does not refuse it twice.
  ASSERT_EQ(::chmod((dir.path() / name).c_str(), 0640), 0);
  EXPECT_TRUE(wait_ok(watcher, 100ms).empty());

  // Handed to us: IN_ATTRIB makes it a candidate.
  ASSERT_EQ(::chown((dir.path() / name).c_str(), ::geteuid(), ::getegid()), 0);
  WatchBatch found = wait_ok(watcher, kLong);
  EXPECT_EQ(names(found.found), std::vector<std::string>{name});
  EXPECT_TRUE(found.refused.empty());
  EXPECT_EQ(watcher.rescans(), 1u);
}

TEST(SegmentWatcher, PermittedUidSetIsHonoured) {
  ASSERT_EQ(::geteuid(), 0u) << "this test chowns files: run the suite as root (CI does)";
  TempDir dir;
  const std::string theirs = segment_name(910, 0x910);
  const std::string ours = segment_name(911, 0x911);
  create_file(dir.path() / theirs);
  create_file(dir.path() / ours);
  ASSERT_EQ(::chown((dir.path() / theirs).c_str(), kForeignUid, kForeignUid), 0);
  SegmentWatcher watcher = open_watcher(dir, kHour, true, {kForeignUid});
  WatchBatch batch = wait_ok(watcher, 0ms);
  EXPECT_EQ(names(batch.found), std::vector<std::string>{theirs});
  EXPECT_EQ(names(batch.refused), std::vector<std::string>{ours});
}

TEST(SegmentWatcher, QueueOverflowTriggersARescan) {
  long max_events = 0;
  std::ifstream("/proc/sys/fs/inotify/max_queued_events") >> max_events;
  ASSERT_TRUE(max_events > 0 && max_events <= 100'000) << "inotify queue of " << max_events << " events: too large to overflow in a test";
  TempDir dir;
  SegmentWatcher watcher = open_watcher(dir, kHour);
  ASSERT_TRUE(watcher.inotify_active()) << watcher.inotify_error();
  EXPECT_TRUE(wait_ok(watcher, 0ms).empty());

  // Fill the queue with events for other names; the segment's own event is
  // then dropped, and only the rescan the overflow triggers can find it.
  for (long i = 0; i < max_events; ++i) {
    create_file(dir.path() / ("junk" + std::to_string(i)));
    if (HasFatalFailure()) return;
  }
  const std::string name = segment_name(999, 0x999);
  create_file(dir.path() / name);

  WatchBatch batch = wait_ok(watcher, kLong);
  EXPECT_EQ(names(batch.found), std::vector<std::string>{name});
  EXPECT_EQ(watcher.overflows(), 1u);
  EXPECT_EQ(watcher.rescans(), 2u);
}

TEST(SegmentWatcher, MovedWatcherKeepsWatching) {
  TempDir dir;
  SegmentWatcher first = open_watcher(dir, kHour);
  ASSERT_TRUE(first.inotify_active()) << first.inotify_error();
  EXPECT_TRUE(wait_ok(first, 0ms).empty());
  SegmentWatcher second = std::move(first);
  EXPECT_EQ(first.poll_fd(), -1);  // NOLINT(bugprone-use-after-move): moved-from state is defined
  const std::string name = segment_name(5, 0x5);
  create_file(dir.path() / name);
  EXPECT_EQ(names(wait_ok(second, kLong).found), std::vector<std::string>{name});
}

// One object in the real shm directory, named like a segment of this process.
class ShmObject {
 public:
  explicit ShmObject(std::string name) : name_(std::move(name)) {
    const int fd = ::shm_open(("/" + name_).c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0) {
      created_ = true;
      ::close(fd);
    }
  }
  ~ShmObject() {
    if (created_) ::shm_unlink(("/" + name_).c_str());
  }
  bool created() const { return created_; }

 private:
  std::string name_;
  bool created_ = false;
};

TEST(SegmentWatcher, FindsARealObjectInDevShm) {
  SegmentWatcherOptions options;  // the default directory: /dev/shm
  options.rescan_interval = kHour;
  auto opened = SegmentWatcher::open(options);
  ASSERT_TRUE(opened.has_value()) << opened.error();
  SegmentWatcher& watcher = *opened;
  EXPECT_EQ(watcher.directory(), "/dev/shm");
  ASSERT_TRUE(watcher.inotify_active()) << watcher.inotify_error();
  ASSERT_TRUE(watcher.wait(0ms).has_value());  // whatever is there already

  const auto pid = static_cast<std::uint32_t>(::getpid());
  const std::string name = segment_name(pid, random_nonce());
  ShmObject object(name);
  ASSERT_TRUE(object.created()) << name;

  // Other tests may create segments meanwhile: look for ours among them.
  bool seen = false;
  const auto deadline = std::chrono::steady_clock::now() + kLong;
  while (!seen && std::chrono::steady_clock::now() < deadline) {
    WatchBatch batch = wait_ok(watcher, 100ms);
    for (const auto& c : batch.found) {
      if (c.name == name) {
        seen = true;
        EXPECT_EQ(c.pid, pid);
        EXPECT_EQ(c.owner_uid, ::geteuid());
      }
    }
  }
  EXPECT_TRUE(seen) << name;
  EXPECT_EQ(watcher.rescans(), 1u);
}

}  // namespace
}  // namespace shmtrace::drain
