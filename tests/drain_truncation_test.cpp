// shmtrace-drain against segments that shrink under it or hide holes
// ("a segment truncated or lying about its size is dropped with one line;
// the drain never dies of SIGBUS"), end to end with the real drain.
//
// Each case runs in a forked child that enters a private mount namespace and
// mounts a small tmpfs (64 MiB) on /dev/shm, so no other drain on the machine
// takes these segments, and a drain faulting in holes fills that tmpfs (and
// dies of SIGBUS) instead of the machine's. The child makes its assertions
// with GoogleTest and exits non-zero when any failed; the parent checks that.
//
// - truncated: a running producer's segment is cut to 8 KiB by ftruncate
//   while the drain consumes it. The drain survives the SIGBUS, drops the
//   segment with exactly one line, stores a good producer beside it exactly
//   and exits 0 on SIGTERM.
// - too many rings: a segment declaring 2,000,000 rings (8 GiB, sparse, only
//   its first pages written) is refused with one line, and /dev/shm does not
//   fill.
// - sparse: a valid segment of 4096 rings of which three were written is
//   stored exactly, without a page of its holes allocated.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "support/drain_harness.hpp"
#include "support/segment_builder.hpp"
#include "support/test_database.hpp"
#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

namespace h = harness;
using namespace std::chrono_literals;

constexpr long kGoodPerThread = 3000;
// Linux pids are below pid_max, at most 2^22: this one never exists.
constexpr std::uint32_t kFakePid = (1u << 22) + 700;

// Runs `body` in a child with its own /dev/shm (64 MiB tmpfs); true when the
// child ran it to the end without a failed assertion.
void run_isolated(const std::function<void()>& body) {
  ASSERT_EQ(::geteuid(), 0u) << "this test mounts a tmpfs in a private mount namespace: run it as root";
  std::fflush(nullptr);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int code = 0;
    if (const std::string why = h::isolate_shm("size=64m,mode=1777"); !why.empty()) {
      std::fprintf(stderr, "cannot isolate /dev/shm: %s\n", why.c_str());
      code = 2;
    } else {
      try {
        body();
        code = ::testing::Test::HasFailure() ? 1 : 0;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "exception: %s\n", e.what());
        code = 3;
      }
    }
    std::fflush(nullptr);
    ::_exit(code);
  }
  const h::Exit e = h::wait_exit(child, 300s);
  EXPECT_TRUE(e.exited && e.code == 0) << "the isolated case failed (its failures are printed above): exit "
                                       << e.code << ", signal " << e.signal;
}

std::uint64_t shm_used_bytes() {
  struct statvfs st {};
  if (::statvfs("/dev/shm", &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.f_blocks - st.f_bfree) * st.f_frsize;
}

std::int64_t allocated_bytes(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<std::int64_t>(st.st_blocks) * 512;
}

// Field 22 of /proc/self/stat: what the drain compares to tell pid reuse.
std::uint64_t own_start_ticks() {
  const std::string text = h::read_file("/proc/self/stat");
  const auto close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream in(text.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && in >> field; ++i) {
    if (i == 22) return std::stoull(field);
  }
  return 0;
}

// The real drain, its stderr in a file, started and announced.
class DrainRun {
 public:
  explicit DrainRun(const std::string& label) : db_(label), err_(db_.path + ".stderr") {
    std::filesystem::remove(err_);
    pid_ = h::spawn({SHMTRACE_DRAIN_PATH, "--db", db_.path, "--rescan", "200ms", "--metrics-port", "0",
                     "--metrics-interval", "100ms"},
                    err_);
    const bool up = h::wait_until([&] { return !h::lines_with(log(), "metrics on http").empty() || !alive(); }, 30s);
    EXPECT_TRUE(up && alive()) << "the drain did not start: " << log();
  }
  ~DrainRun() {
    if (pid_ > 0 && !stopped_) {
      ::kill(pid_, SIGKILL);
      h::wait_exit(pid_, 10s);
    }
    std::filesystem::remove(err_);
  }
  std::string log() const { return h::read_file(err_); }
  bool alive() const {
    siginfo_t info{};
    return ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == 0;
  }
  // SIGTERM: stores what is pending and exits 0.
  h::Exit stop() {
    ::kill(pid_, SIGTERM);
    stopped_ = true;
    return h::wait_exit(pid_, 60s);
  }
  const TempDb& db() const { return db_; }
  pid_t pid() const { return pid_; }

 private:
  TempDb db_;
  std::string err_;
  pid_t pid_ = -1;
  bool stopped_ = false;
};

// A good producer beside the bad segment: run to completion, then drained
// and its segment removed by the drain.
pid_t run_good_producer(const DrainRun& drain) {
  const RunResult r = run({program_path("st_producer"), "sequence", "2", std::to_string(kGoodPerThread)});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const bool drained = h::wait_until([&] { return find_segment(r.pid, 0).empty(); }, 60s);
  EXPECT_TRUE(drained) << "the good producer's segment was not drained within 60 s; drain log:\n" << drain.log();
  return r.pid;
}

void expect_good_stored(const Database& d, pid_t pid) {
  EXPECT_EQ(d.number("SELECT count(*)" + h::counters_of(pid)), 2 * kGoodPerThread);
  EXPECT_EQ(h::threads_with_exact_counters(d, pid, kGoodPerThread), 2);
  EXPECT_EQ(d.text("SELECT state FROM processes WHERE pid = " + std::to_string(pid)), "exited");
}

// SIGTERM, the exit checked (0), and the drain's whole log.
std::string stop_cleanly(DrainRun& drain) {
  const h::Exit stopped = drain.stop();
  std::string log = drain.log();
  EXPECT_TRUE(stopped.exited && stopped.code == 0) << "exit " << stopped.code << " signal " << stopped.signal << "\n"
                                                   << log;
  return log;
}

// Writes bytes [offset, offset + size) of image at the same offset.
bool write_at(int fd, const std::byte* image, std::uint64_t offset, std::uint64_t size) {
  return ::pwrite(fd, image + offset, size, static_cast<off_t>(offset)) == static_cast<ssize_t>(size);
}

TEST(DrainTruncation, ASegmentTruncatedWhileBeingReadIsDroppedWithOneLineAndTheDrainLivesOn) {
  run_isolated([] {
    DrainRun drain("truncated");
    ASSERT_TRUE(drain.alive());
    // Long enough to be running when its segment is cut.
    const std::string producer_err = drain.db().path + ".producer";
    const pid_t producer = h::spawn({program_path("st_producer"), "sequence", "2", "50000000"}, producer_err);
    ASSERT_GT(producer, 0);
    const std::string name = find_segment(producer, 10000);
    ASSERT_NE(name, "");
    // Consumed by the drain: its records are being read, cycle after cycle.
    const bool consumed = h::wait_until(
        [&] {
          auto s = reader::Segment::attach(name, reader::Access::kReadOnly);
          return s && s->consumer_pid() == static_cast<std::uint32_t>(drain.pid());
        },
        10s);
    ASSERT_TRUE(consumed) << drain.log();
    std::this_thread::sleep_for(200ms);
    const int fd = ::open(("/dev/shm/" + name).c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    ASSERT_EQ(::ftruncate(fd, 8192), 0) << std::strerror(errno);
    ::close(fd);

    const bool reported = h::wait_until([&] { return !h::lines_with(drain.log(), name).empty() || !drain.alive(); }, 10s);
    EXPECT_TRUE(reported) << drain.log();
    ASSERT_TRUE(drain.alive()) << "the drain died (of SIGBUS?); its log:\n" << drain.log();
    ::kill(producer, SIGKILL);  // it faults on its own segment too, if still writing
    h::wait_exit(producer, 10s);

    const pid_t good = run_good_producer(drain);
    ASSERT_TRUE(drain.alive()) << drain.log();
    const std::string log = stop_cleanly(drain);
    const std::vector<std::string> lines = h::lines_with(log, name);
    ASSERT_EQ(lines.size(), 1u) << "exactly one line about the truncated segment:\n" << log;
    EXPECT_NE(lines[0].find("truncated while being read (SIGBUS): dropped"), std::string::npos) << lines[0];

    Database d(drain.db().path);
    ASSERT_EQ(d.error, "");
    expect_good_stored(d, good);
    // What was stored of the truncated producer before the cut is real
    // records: no counter twice, none out of range (zeros read after the cut
    // are never stored).
    const std::string of_cut = h::counters_of(producer);
    EXPECT_EQ(d.number("SELECT count(*)" + of_cut), d.number("SELECT count(*) FROM (SELECT DISTINCT tid, value" +
                                                             of_cut + ")"));
    EXPECT_EQ(d.number("SELECT count(*)" + of_cut + " AND CAST(r.value AS INTEGER) NOT BETWEEN 0 AND 49999999"), 0);
    std::filesystem::remove(producer_err);
  });
}

TEST(DrainTruncation, ASparseSegmentDeclaringMillionsOfRingsIsRefusedAndShmDoesNotFill) {
  run_isolated([] {
    DrainRun drain("rings");
    ASSERT_TRUE(drain.alive());
    // A valid little segment's first pages, then a header claiming 2,000,000
    // rings of one page each: 8 GiB the file never holds.
    Geometry g;
    g.ring_capacity = 16;  // a slot of 256 + 16 x 64 bytes: one page
    g.max_rings = 1;
    SegmentBuilder b(g);
    abi::SegmentHeader& hh = b.header();
    ASSERT_EQ(hh.ring_stride, abi::kPageSize);
    hh.pid = kFakePid;
    hh.max_rings = 2'000'000;
    hh.total_size = hh.rings_offset + std::uint64_t{hh.max_rings} * hh.ring_stride;
    const std::string name = make_segment_name(hh.pid, hh.nonce);
    const std::string path = "/dev/shm/" + name;

    const std::uint64_t used_before = shm_used_bytes();
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    ASSERT_TRUE(write_at(fd, b.base(), 0, hh.rings_offset)) << std::strerror(errno);
    ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(hh.total_size)), 0) << std::strerror(errno);
    ::close(fd);
    const std::int64_t allocated = allocated_bytes(path);

    const bool reported = h::wait_until([&] { return !h::lines_with(drain.log(), name).empty() || !drain.alive(); }, 10s);
    EXPECT_TRUE(reported) << drain.log();
    ASSERT_TRUE(drain.alive()) << "the drain died; its log:\n" << drain.log();
    const pid_t good = run_good_producer(drain);  // its segment is removed once drained
    EXPECT_EQ(allocated_bytes(path), allocated) << "no page of the holes was allocated";
    EXPECT_LE(shm_used_bytes(), used_before + hh.rings_offset + (1u << 20)) << "/dev/shm did not fill";

    const std::string log = stop_cleanly(drain);
    const std::vector<std::string> lines = h::lines_with(log, name);
    ASSERT_EQ(lines.size(), 1u) << "exactly one line about the refused segment:\n" << log;
    EXPECT_NE(lines[0].find("max_rings 2000000 exceeds the bound 4096"), std::string::npos) << lines[0];
    Database d(drain.db().path);
    ASSERT_EQ(d.error, "");
    expect_good_stored(d, good);
    EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE pid = " + std::to_string(kFakePid)), 0);
    ::unlink(path.c_str());
  });
}

TEST(DrainTruncation, ASparseValidSegmentIsStoredExactlyWithoutAllocatingItsHoles) {
  run_isolated([] {
    DrainRun drain("sparse");
    ASSERT_TRUE(drain.alive());
    // 4096 rings of 68 KiB (272 MiB, over the 64 MiB tmpfs), three written,
    // as the runtime leaves a segment: the fixed part and the slots of the
    // rings its threads claimed. Ours is the process: alive while it runs.
    Geometry g;
    g.ring_capacity = 1024;
    g.max_rings = 4096;
    SegmentBuilder b(g);
    b.header().process_start_ticks = own_start_ticks();
    const std::uint32_t seq = b.intern("seq");
    constexpr long kPerRing = 500;
    const std::uint32_t used[] = {0, 7, 4095};
    for (std::uint32_t ring : used) {
      abi::RingControl& c = b.ring(ring);
      c.state = static_cast<std::uint32_t>(abi::RingState::kReleased);
      c.generation = 1;
      c.tid = 10'000 + ring;
      for (long i = 0; i < kPerRing; ++i) {
        abi::Record r = make_record(abi::RecordKind::kCounter, 1'000'000 + static_cast<std::uint64_t>(i), seq, 0,
                                    static_cast<std::uint64_t>(i));
        r.flags = static_cast<std::uint8_t>(abi::ValueType::kInt);
        b.push(ring, r);
      }
    }
    const abi::SegmentHeader& hh = b.header();
    const std::string path = "/dev/shm/" + b.name();
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(b.size())), 0) << std::strerror(errno);
    const std::uint64_t used_before = shm_used_bytes();
    // The header last, as the runtime publishes it.
    ASSERT_TRUE(write_at(fd, b.base(), abi::kHeaderSize, hh.rings_offset - abi::kHeaderSize));
    for (std::uint32_t ring : used) ASSERT_TRUE(write_at(fd, b.base(), abi::ring_offset(hh, ring), hh.ring_stride));
    ASSERT_TRUE(write_at(fd, b.base(), 0, abi::kHeaderSize));
    const std::int64_t allocated = allocated_bytes(path);
    ASSERT_LT(allocated, static_cast<std::int64_t>(hh.rings_offset + 4 * hh.ring_stride));

    // Stored and handed back: every tail reached its head.
    const bool drained = h::wait_until(
        [&] {
          for (std::uint32_t ring : used) {
            std::uint64_t tail = 0;
            const off_t at = static_cast<off_t>(abi::ring_offset(hh, ring) + offsetof(abi::RingControl, tail));
            if (::pread(fd, &tail, sizeof tail, at) != sizeof tail || tail != kPerRing) return false;
          }
          return true;
        },
        30s);
    EXPECT_TRUE(drained) << drain.log();
    std::this_thread::sleep_for(300ms);  // more cycles over the holes, metrics included
    ASSERT_TRUE(drain.alive()) << drain.log();
    EXPECT_EQ(allocated_bytes(path), allocated) << "the drain allocated holes of the segment";
    EXPECT_LE(shm_used_bytes(), used_before + static_cast<std::uint64_t>(allocated) + (1u << 20));
    const pid_t good = run_good_producer(drain);

    const std::string log = stop_cleanly(drain);
    EXPECT_TRUE(h::lines_with(log, b.name()).empty()) << "a valid segment is not refused:\n" << log;
    Database d(drain.db().path);
    ASSERT_EQ(d.error, "");
    expect_good_stored(d, good);
    const pid_t self = ::getpid();
    EXPECT_EQ(d.number("SELECT count(*)" + h::counters_of(self)), 3 * kPerRing);
    EXPECT_EQ(h::threads_with_exact_counters(d, self, kPerRing), 3);
    EXPECT_EQ(d.number("SELECT count(DISTINCT tid)" + h::counters_of(self) + " AND tid IN (10000, 10007, 14095)"), 3);
    ::close(fd);
    ::unlink(path.c_str());
  });
}

}  // namespace
}  // namespace shmtrace::test

namespace shmtrace::test {
namespace {

// Another process scribbles random bytes over a live producer's rings (its
// records and their control blocks) while the drain reads them: the drain
// lives on, says so in at most two lines (records refused, the segment
// dropped), stores nothing implausible, and a good producer beside it exactly.
TEST(DrainTruncation, ALiveSegmentScribbledOverByAnotherProcessCostsOnlyThatSegment) {
  run_isolated([] {
    DrainRun drain("scribbled");
    ASSERT_TRUE(drain.alive());
    const std::string producer_err = drain.db().path + ".producer";
    const pid_t producer = h::spawn({program_path("st_producer"), "sequence", "2", "50000000"}, producer_err);
    ASSERT_GT(producer, 0);
    const std::string name = find_segment(producer, 10000);
    ASSERT_NE(name, "");
    std::uint64_t rings_offset = 0, rings_size = 0;
    ASSERT_TRUE(h::wait_until(
        [&] {
          auto s = reader::Segment::attach(name, reader::Access::kReadOnly);
          if (!s || s->consumer_pid() != static_cast<std::uint32_t>(drain.pid())) return false;
          rings_offset = s->header().rings_offset;
          rings_size = std::uint64_t{s->header().max_rings} * s->header().ring_stride;
          return true;
        },
        10s))
        << drain.log();
    const pid_t scribbler = ::fork();
    ASSERT_GE(scribbler, 0);
    if (scribbler == 0) {
      const int fd = ::open(("/dev/shm/" + name).c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
      if (fd < 0) ::_exit(1);
      std::mt19937_64 random(42);
      const auto until = std::chrono::steady_clock::now() + 1500ms;
      while (std::chrono::steady_clock::now() < until) {
        std::uint64_t junk[8];
        for (auto& w : junk) w = random();
        // Within the first two rings, where the producer's threads write.
        const std::uint64_t span = std::min<std::uint64_t>(rings_size, 2 * 2'000'000);
        const std::uint64_t at = rings_offset + (random() % (span / 8)) * 8;
        if (::pwrite(fd, junk, 8 * (1 + random() % 8), static_cast<off_t>(at)) < 0) ::_exit(2);
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      ::_exit(0);
    }
    EXPECT_EQ(h::wait_exit(scribbler, 30s).code, 0);
    ::kill(producer, SIGKILL);
    h::wait_exit(producer, 10s);
    ASSERT_TRUE(drain.alive()) << "the drain died; its log:\n" << drain.log();

    const pid_t good = run_good_producer(drain);
    ASSERT_TRUE(drain.alive()) << drain.log();
    const std::string log = stop_cleanly(drain);
    EXPECT_LE(h::lines_with(log, name).size(), 2u) << log;
    Database d(drain.db().path);
    ASSERT_EQ(d.error, "");
    expect_good_stored(d, good);
    // Nothing dated outside the scribbled process's life made it in.
    EXPECT_EQ(d.number("SELECT count(*) FROM spans s JOIN processes p USING (process_key) WHERE p.pid = " +
                       std::to_string(producer) + " AND (s.start_ns < p.start_ns - 60000000000 OR s.start_ns > " +
                       std::to_string(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count() +
                                      60'000'000'000LL) +
                       ")"),
              0);
    std::filesystem::remove(producer_err);
  });
}

}  // namespace
}  // namespace shmtrace::test
