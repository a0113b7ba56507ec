// Files another user planted where the drain and the runtime look (hostile local users):
// the error spill file <spill_dir>/<segment>.errors and the error chunks
// /dev/shm/<segment>.err.<N>. A FIFO, a regular file, a symlink or a hard
// link planted there by uid 65534 (nobody) must neither hang the drain nor
// make it refuse the victim's segment: the segment is stored exactly, the
// planted file is reported once and left where it is. The runtime never
// writes its errors into such a file, and its default spill directory is
// /tmp/shmtrace-<euid>, created 0700 on the first spill and refused when
// another user squatted it.
//
// Each case runs in a forked child with a private mount namespace and fresh
// tmpfs mounts on /dev/shm and /tmp (as drain_faults_test does), so no other
// drain on the machine takes these segments and the squatted
// /tmp/shmtrace-<euid> is this case's own. The child runs the case's
// assertions itself; its exit code says whether any failed (gtest prints them
// as they happen).
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "support/drain_harness.hpp"
#include "support/test_database.hpp"
#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

namespace h = harness;
using namespace std::chrono_literals;

constexpr uid_t kNobody = 65534;
constexpr char kSpillDir[] = "/tmp/spill";  // world-writable (1777), like /tmp
constexpr int kRoots = 200;                 // st_producer sampling: 3 spans and 1 error each
constexpr int kErrors = 1000;               // st_producer errors: more than one 64 KiB chunk holds

// Runs `body` in a forked child in its own mount namespace, with fresh tmpfs
// mounts on /dev/shm and /tmp; fails the test when the child reports a
// failure, dies, or runs past two minutes (a hang).
void in_private_namespace(const std::function<void()>& body) {
  ASSERT_EQ(::geteuid(), 0u) << "this test needs root (a mount namespace, files chowned to uid 65534)";
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << std::strerror(errno);
  if (pid == 0) {
    if (const std::string why = h::isolate_shm("size=256m,mode=1777", true); !why.empty()) {
      std::fprintf(stderr, "cannot set up the private namespace: %s\n", why.c_str());
      ::_exit(2);
    }
    body();
    std::fflush(stdout);
    std::fflush(stderr);
    ::_exit(::testing::Test::HasFailure() ? 1 : 0);
  }
  const h::Exit e = h::wait_exit(pid, 120s);
  ASSERT_TRUE(e.exited) << "the case did not finish within 120 s (something hung)";
  EXPECT_EQ(e.signal, 0);
  EXPECT_EQ(e.code, 0) << "the case failed in its namespace (its failures are printed above)";
}

void make_spill_dir() {
  ASSERT_EQ(::mkdir(kSpillDir, 0777), 0) << std::strerror(errno);
  ASSERT_EQ(::chmod(kSpillDir, 01777), 0) << std::strerror(errno);
}

std::string spill_path(const std::string& dir, const std::string& segment) { return dir + "/" + segment + ".errors"; }
std::string chunk_path(const std::string& segment, int index) {
  return "/dev/shm/" + segment + ".err." + std::to_string(index);
}

// What nobody plants; each one created by root, then chowned to 65534.
void plant_fifo(const std::string& path) {
  ASSERT_EQ(::mkfifo(path.c_str(), 0666), 0) << path << ": " << std::strerror(errno);
  ASSERT_EQ(::chown(path.c_str(), kNobody, kNobody), 0) << std::strerror(errno);
}
void plant_file(const std::string& path, const std::string& content, mode_t mode, uid_t owner = kNobody) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
  EXPECT_EQ(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  EXPECT_EQ(::fchmod(fd, mode), 0);
  EXPECT_EQ(::fchown(fd, owner, owner), 0);
  ::close(fd);
}
void plant_symlink(const std::string& target, const std::string& path) {
  ASSERT_EQ(::symlink(target.c_str(), path.c_str()), 0) << path << ": " << std::strerror(errno);
  ASSERT_EQ(::lchown(path.c_str(), kNobody, kNobody), 0) << std::strerror(errno);
}

struct stat lstat_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
  return st;
}
bool present(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::vector<std::string> runtime_lines(const std::string& err) { return h::lines_with(err, "shmtrace: "); }

// st_producer --wait-signal: its segment (and error chunk 0) exist, nothing
// is written until go().
class WaitingProducer {
 public:
  WaitingProducer(const std::vector<std::string>& args, const std::vector<EnvChange>& env)
      : child_(start(args, env)) {
    ready_ = child_.wait_for_output("ready\n", 10000);
    segment_ = find_segment(child_.pid(), 5000);
  }
  bool ready() const { return ready_ && !segment_.empty(); }
  const std::string& segment() const { return segment_; }
  pid_t pid() const { return child_.pid(); }  // 0 once go() reaped it
  RunResult go() {
    ::kill(child_.pid(), SIGUSR1);
    return child_.wait();
  }

 private:
  static Child start(std::vector<std::string> args, const std::vector<EnvChange>& env) {
    args.insert(args.begin(), {program_path("st_producer"), "--wait-signal"});
    return Child::start(args, env);
  }
  Child child_;
  bool ready_ = false;
  std::string segment_;
};

// The environment that makes a producer spill: 64 KiB chunks and no frames
// (so chunk 0 holds a few hundred errors); the FIFO nobody planted at the
// name of chunk 1 (plant_fifo) keeps the chain from growing.
std::vector<EnvChange> spilling_env(const std::string& spill_dir) {
  std::vector<EnvChange> env{{"SHMTRACE_ERROR_CHUNK_BYTES", "65536"}, {"SHMTRACE_MAX_FRAMES", "0"}};
  if (spill_dir.empty()) {
    env.push_back({"SHMTRACE_SPILL_DIR", "", true});
  } else {
    env.push_back({"SHMTRACE_SPILL_DIR", spill_dir});
  }
  return env;
}

// Every error the segment holds, read the way the drain does, and the
// warnings read_errors gave on the way.
struct ReadBack {
  std::vector<reader::ErrorRecord> errors;
  std::vector<std::string> warnings;
  std::string failure;
};
ReadBack read_back(const reader::Segment& segment) {
  ReadBack out;
  reader::ErrorCursor cursor;
  for (int round = 0; round < 1000; ++round) {
    auto batch = segment.read_errors(cursor, 100, true);
    if (!batch) {
      out.failure = batch.error().message;
      break;
    }
    if (!batch->warning.empty()) out.warnings.push_back(batch->warning);
    if (batch->errors.empty()) break;
    for (auto& e : batch->errors) out.errors.push_back(std::move(e));
    cursor = batch->next;
  }
  return out;
}

// One drain case: a producer (sampling kRoots) whose spill path and chunk
// names nobody planted on (`plant`, given the segment name) while it waits,
// then a long-lived drain that must store it exactly, report the refused
// spill file once (`refused` names it, `reason` is in that line), leave what
// was planted in place (`check_left`) and stop on SIGTERM with 0.
struct DrainCase {
  std::function<void(const std::string& segment)> plant;
  std::function<std::string(const std::string& segment)> refused;
  std::string reason;
  std::function<void(const std::string& segment)> check_left;
};

void run_drain_case(const DrainCase& c) {
  make_spill_dir();
  if (::testing::Test::HasFailure()) return;
  const TempDb db("planted");
  const std::string log = "/tmp/drain.stderr";
  WaitingProducer producer({"sampling", std::to_string(kRoots)}, {{"SHMTRACE_SPILL_DIR", kSpillDir}});
  ASSERT_TRUE(producer.ready()) << "st_producer did not start";
  const std::string segment = producer.segment();
  const std::string pid = std::to_string(producer.pid());  // before go(), which reaps it
  c.plant(segment);
  if (::testing::Test::HasFailure()) {
    producer.go();
    return;
  }
  const std::string refused = c.refused(segment);

  const pid_t drain = h::spawn({SHMTRACE_DRAIN_PATH, "--db", db.path, "--rescan", "100ms", "--metrics-port", "0"}, log);
  ASSERT_GT(drain, 0);
  // The drain attaches to the live segment and reads its errors every cycle:
  // the refusal is said at the first, and never again.
  const bool said = h::wait_until([&] { return !h::lines_with(h::read_file(log), refused).empty(); }, 15s);
  EXPECT_TRUE(said) << "no line names " << refused << " within 15 s (is the drain stuck?); stderr:\n"
                    << h::read_file(log);
  std::this_thread::sleep_for(500ms);  // more cycles over the live segment, which must say nothing more

  const RunResult ran = producer.go();
  EXPECT_EQ(ran.exit_code, 0) << ran.err;
  EXPECT_TRUE(runtime_lines(ran.err).empty()) << ran.err;
  // Drained whole and removed once the producer is gone.
  EXPECT_TRUE(h::wait_until([&] { return !present("/dev/shm/" + segment); }, 20s))
      << "the segment was not drained and removed; drain stderr:\n" << h::read_file(log);
  ::kill(drain, SIGTERM);
  const h::Exit stopped = h::wait_exit(drain, 10s);
  EXPECT_TRUE(stopped.exited) << "the drain did not stop within 10 s of SIGTERM";
  EXPECT_EQ(stopped.signal, 0);
  EXPECT_EQ(stopped.code, 0) << h::read_file(log);

  const std::string err = h::read_file(log);
  const std::vector<std::string> lines = h::lines_with(err, refused);
  ASSERT_EQ(lines.size(), 1u) << "exactly one line names the refused file; stderr:\n" << err;
  EXPECT_NE(lines[0].find(c.reason), std::string::npos) << lines[0];
  EXPECT_EQ(h::lines_with(err, "skipping").size(), 0u) << err;

  Database d(db);
  ASSERT_EQ(d.error, "");
  const std::string of_pid = " JOIN processes p USING (process_key) WHERE p.pid = " + pid;
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE pid = " + pid), 1);
  EXPECT_EQ(d.text("SELECT state FROM processes WHERE pid = " + pid), "exited");
  EXPECT_EQ(d.number("SELECT count(*) FROM spans s" + of_pid), 3 * kRoots);
  EXPECT_EQ(d.number("SELECT count(*) FROM spans s" + of_pid + " AND s.name = 'root'"), kRoots);
  EXPECT_EQ(d.number("SELECT count(*) FROM errors e" + of_pid), kRoots);
  EXPECT_EQ(d.number("SELECT count(DISTINCT e.message) FROM errors e" + of_pid + " AND e.type = 'SampledError'"),
            kRoots);
  c.check_left(segment);
}

// (a) FIFOs at the spill path and at the next error chunk's name: opening
// either must not block the drain.
TEST(DrainPlantedFiles, FifoAtTheSpillPathAndAtAChunkNameNeitherHangsTheDrain) {
  in_private_namespace([] {
    run_drain_case({
        [](const std::string& segment) {
          plant_fifo(spill_path(kSpillDir, segment));
          plant_fifo(chunk_path(segment, 1));  // beyond error_chunk_count (1)
        },
        [](const std::string& segment) { return spill_path(kSpillDir, segment); },
        "not a regular file",
        [](const std::string& segment) {
          EXPECT_TRUE(S_ISFIFO(lstat_of(spill_path(kSpillDir, segment)).st_mode)) << "left in place";
          EXPECT_TRUE(S_ISFIFO(lstat_of(chunk_path(segment, 1)).st_mode)) << "not the owner's: left in place";
        },
    });
  });
}

// (b) nobody's regular file at the spill path: ignored, not removed, and the
// victim's segment stored whole.
TEST(DrainPlantedFiles, AnotherUsersFileAtTheSpillPathIsIgnoredAndTheSegmentStored) {
  in_private_namespace([] {
    const std::string junk = "not an error entry, and not the victim's\n";
    run_drain_case({
        [&](const std::string& segment) { plant_file(spill_path(kSpillDir, segment), junk, 0644); },
        [](const std::string& segment) { return spill_path(kSpillDir, segment); },
        "owned by uid 65534",
        [&](const std::string& segment) {
          const std::string path = spill_path(kSpillDir, segment);
          EXPECT_EQ(lstat_of(path).st_uid, kNobody) << "left in place";
          EXPECT_EQ(h::read_file(path), junk);
        },
    });
  });
}

// (c) a symlink (to a file of the victim's) at the spill path: never
// followed, not removed.
TEST(DrainPlantedFiles, SymlinkAtTheSpillPathIsRefusedNotFollowedNotRemoved) {
  in_private_namespace([] {
    const std::string target = "/tmp/victims-file";
    run_drain_case({
        [&](const std::string& segment) {
          plant_file(target, "precious\n", 0600, 0);
          plant_symlink(target, spill_path(kSpillDir, segment));
        },
        [](const std::string& segment) { return spill_path(kSpillDir, segment); },
        "symbolic link",
        [&](const std::string& segment) {
          EXPECT_TRUE(S_ISLNK(lstat_of(spill_path(kSpillDir, segment)).st_mode)) << "left in place";
          EXPECT_EQ(h::read_file(target), "precious\n");
        },
    });
  });
}

// (c) a second name of a file the victim owns (nlink 2) at the spill path:
// refused, and neither name removed.
TEST(DrainPlantedFiles, HardLinkAtTheSpillPathIsRefusedNotRemoved) {
  in_private_namespace([] {
    const std::string original = "/tmp/victims-file";
    run_drain_case({
        [&](const std::string& segment) {
          plant_file(original, "", 0600, 0);
          ASSERT_EQ(::link(original.c_str(), spill_path(kSpillDir, segment).c_str()), 0) << std::strerror(errno);
        },
        [](const std::string& segment) { return spill_path(kSpillDir, segment); },
        "hard links",
        [&](const std::string& segment) {
          EXPECT_EQ(lstat_of(spill_path(kSpillDir, segment)).st_nlink, 2u) << "left in place";
          EXPECT_TRUE(present(original));
        },
    });
  });
}

// (d) The runtime's side: a spill file nobody planted (0666, writable by
// anyone) is never written; the errors that did not fit are counted lost,
// with one stderr line, and the producer exits 0.
TEST(DrainPlantedFiles, ProducerNeverWritesIntoASpillFileAnotherUserPlanted) {
  in_private_namespace([] {
    make_spill_dir();
    WaitingProducer producer({"errors", "1", std::to_string(kErrors)}, spilling_env(kSpillDir));
    ASSERT_TRUE(producer.ready());
    const std::string planted = spill_path(kSpillDir, producer.segment());
    plant_fifo(chunk_path(producer.segment(), 1));
    plant_file(planted, "", 0666);
    const RunResult ran = producer.go();
    EXPECT_EQ(ran.exit_code, 0) << ran.err;
    EXPECT_EQ(lstat_of(planted).st_size, 0) << "nothing written into nobody's file";
    EXPECT_EQ(lstat_of(planted).st_uid, kNobody);
    const std::vector<std::string> lines = runtime_lines(ran.err);
    ASSERT_EQ(lines.size(), 1u) << "one line for the refused spill file:\n" << ran.err;
    EXPECT_NE(lines[0].find(planted), std::string::npos) << lines[0];

    SegmentGuard guard(producer.segment());
    auto segment = reader::Segment::attach(producer.segment(), reader::Access::kReadOnly);
    ASSERT_TRUE(segment) << segment.error().message;
    EXPECT_EQ(segment->error_chunk_count(), 1u);
    EXPECT_EQ(segment->errors_written(), static_cast<std::uint64_t>(kErrors));
    EXPECT_EQ(segment->errors_spilled(), 0u);
    const std::uint64_t lost = segment->header().errors_lost;
    EXPECT_GT(lost, 0u);
    const ReadBack back = read_back(*segment);
    EXPECT_EQ(back.failure, "");
    EXPECT_EQ(back.errors.size() + lost, static_cast<std::uint64_t>(kErrors));
    ASSERT_EQ(back.warnings.size(), 1u) << "the refused spill file is reported once per segment";
    EXPECT_NE(back.warnings[0].find("owned by uid 65534"), std::string::npos) << back.warnings[0];
    EXPECT_TRUE(present(planted)) << "the guard's unlink leaves nobody's file alone";
  });
}

// The same producer with nothing planted at the spill path: the spill file
// works (owned by the euid, 0600, one link) and every error is read back.
TEST(DrainPlantedFiles, ProducerSpillsIntoItsOwnFileWhenNothingIsPlanted) {
  in_private_namespace([] {
    make_spill_dir();
    WaitingProducer producer({"errors", "1", std::to_string(kErrors)}, spilling_env(kSpillDir));
    ASSERT_TRUE(producer.ready());
    plant_fifo(chunk_path(producer.segment(), 1));
    const RunResult ran = producer.go();
    EXPECT_EQ(ran.exit_code, 0) << ran.err;
    EXPECT_TRUE(runtime_lines(ran.err).empty()) << ran.err;
    const std::string path = spill_path(kSpillDir, producer.segment());
    const struct stat st = lstat_of(path);
    EXPECT_TRUE(S_ISREG(st.st_mode));
    EXPECT_EQ(st.st_uid, 0u);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_GT(st.st_size, 0);

    {
      SegmentGuard guard(producer.segment());
      auto segment = reader::Segment::attach(producer.segment(), reader::Access::kReadOnly);
      ASSERT_TRUE(segment) << segment.error().message;
      EXPECT_GT(segment->errors_spilled(), 0u);
      EXPECT_EQ(segment->header().errors_lost, 0u);
      const ReadBack back = read_back(*segment);
      EXPECT_EQ(back.failure, "");
      EXPECT_TRUE(back.warnings.empty());
      ASSERT_EQ(back.errors.size(), static_cast<std::size_t>(kErrors));
      std::set<std::string> messages;
      for (const auto& e : back.errors) messages.insert(e.message);
      EXPECT_EQ(messages.size(), static_cast<std::size_t>(kErrors));
    }
    EXPECT_FALSE(present(path)) << "the owner's own spill file is removed with the segment";
  });
}

// (e) The default spill directory is /tmp/shmtrace-<euid>, named in the
// header, created 0700 only when the first error spills.
TEST(DrainPlantedFiles, DefaultSpillDirIsPrivateAndCreatedOnTheFirstSpill) {
  in_private_namespace([] {
    const std::string dir = "/tmp/shmtrace-" + std::to_string(::geteuid());
    WaitingProducer producer({"errors", "1", std::to_string(kErrors)}, spilling_env(""));
    ASSERT_TRUE(producer.ready());
    SegmentGuard guard(producer.segment());
    {
      auto segment = reader::Segment::attach(producer.segment(), reader::Access::kReadOnly);
      ASSERT_TRUE(segment) << segment.error().message;
      EXPECT_EQ(std::string(segment->header().spill_dir), dir);
    }
    EXPECT_FALSE(present(dir)) << "not created at start-up";
    plant_fifo(chunk_path(producer.segment(), 1));
    const RunResult ran = producer.go();
    EXPECT_EQ(ran.exit_code, 0) << ran.err;
    EXPECT_TRUE(runtime_lines(ran.err).empty()) << ran.err;
    const struct stat st = lstat_of(dir);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_uid, ::geteuid());
    EXPECT_EQ(st.st_mode & 07777, 0700u);
    EXPECT_EQ(lstat_of(spill_path(dir, producer.segment())).st_uid, ::geteuid());

    auto segment = reader::Segment::attach(producer.segment(), reader::Access::kReadOnly);
    ASSERT_TRUE(segment) << segment.error().message;
    EXPECT_GT(segment->errors_spilled(), 0u);
    EXPECT_EQ(segment->header().errors_lost, 0u);
    const ReadBack back = read_back(*segment);
    EXPECT_EQ(back.failure, "");
    EXPECT_EQ(back.errors.size(), static_cast<std::size_t>(kErrors));
  });
}

// (e) /tmp/shmtrace-<euid> squatted by nobody (a 0777 directory of its own,
// or a symlink to a directory that would pass): the spill is off, with one
// line, nothing is written there, and the producer exits 0.
TEST(DrainPlantedFiles, SquattedDefaultSpillDirDisablesTheSpillWithOneLine) {
  for (const bool as_symlink : {false, true}) {
    SCOPED_TRACE(as_symlink ? "symlink" : "directory");
    in_private_namespace([as_symlink] {
      const std::string dir = "/tmp/shmtrace-" + std::to_string(::geteuid());
      const std::string elsewhere = "/tmp/elsewhere";  // root's, 0700: only the link is wrong
      if (as_symlink) {
        ASSERT_EQ(::mkdir(elsewhere.c_str(), 0700), 0);
        plant_symlink(elsewhere, dir);
      } else {
        ASSERT_EQ(::mkdir(dir.c_str(), 0777), 0);
        ASSERT_EQ(::chmod(dir.c_str(), 0777), 0);
        ASSERT_EQ(::chown(dir.c_str(), kNobody, kNobody), 0);
      }
      WaitingProducer producer({"errors", "1", std::to_string(kErrors)}, spilling_env(""));
      ASSERT_TRUE(producer.ready());
      SegmentGuard guard(producer.segment());
      plant_fifo(chunk_path(producer.segment(), 1));
      const RunResult ran = producer.go();
      EXPECT_EQ(ran.exit_code, 0) << ran.err;
      const std::vector<std::string> lines = runtime_lines(ran.err);
      ASSERT_EQ(lines.size(), 1u) << ran.err;
      EXPECT_NE(lines[0].find(dir), std::string::npos) << lines[0];
      EXPECT_FALSE(present(spill_path(dir, producer.segment())));
      EXPECT_FALSE(present(spill_path(elsewhere, producer.segment())));
      auto segment = reader::Segment::attach(producer.segment(), reader::Access::kReadOnly);
      ASSERT_TRUE(segment) << segment.error().message;
      EXPECT_EQ(segment->errors_spilled(), 0u);
      EXPECT_GT(segment->header().errors_lost, 0u);
    });
  }
}

}  // namespace
}  // namespace shmtrace::test
