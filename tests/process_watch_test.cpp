// ProcessWatch: pidfd liveness (and its /proc fallback) against real
// children: alive, killed and reaped, exited but not reaped, a reused or
// missing pid.
#include "discovery/process_watch.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <utility>

namespace shmtrace::drain {
namespace {

// A child that blocks reading a pipe: it exits when release() closes the
// write end, or dies by kill(). Reaped on destruction if still around.
class Child {
 public:
  Child() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(fds[1]);
      char byte;
      while (::read(fds[0], &byte, 1) != 0) {
      }
      ::_exit(0);
    }
    ::close(fds[0]);
    write_fd_ = fds[1];
  }
  ~Child() {
    release();
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  std::uint32_t upid() const { return static_cast<std::uint32_t>(pid_); }
  void release() {
    if (write_fd_ >= 0) ::close(std::exchange(write_fd_, -1));
  }
  // Waits until the child has exited, leaving it a zombie.
  bool wait_exited_not_reaped() {
    siginfo_t info{};
    return ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOWAIT) == 0;
  }
  bool reap() {
    reaped_ = ::waitpid(pid_, nullptr, 0) == pid_;
    return reaped_;
  }

 private:
  pid_t pid_ = -1;
  int write_fd_ = -1;
  bool reaped_ = false;
};

// The pid of a process that existed and was reaped: nothing has it now.
std::uint32_t reaped_pid() {
  Child child;
  child.release();
  child.reap();
  return child.upid();
}

TEST(ProcessStartTicks, OfAnExistingAndAMissingProcess) {
  const auto self = static_cast<std::uint32_t>(::getpid());
  EXPECT_GT(process_start_ticks(self), 0u);
  EXPECT_EQ(process_start_ticks(self), process_start_ticks(self));
  Child child;
  ASSERT_GT(child.pid(), 0);
  // Started after us: a later (or equal, within one tick) start time.
  EXPECT_GE(process_start_ticks(child.upid()), process_start_ticks(self));
  EXPECT_EQ(process_start_ticks(reaped_pid()), 0u);
  EXPECT_EQ(process_start_ticks(0), 0u);
}

TEST(ProcessWatch, RefusesAnImpossiblePid) {
  EXPECT_FALSE(ProcessWatch::open(0, 0).has_value());
  EXPECT_FALSE(ProcessWatch::open(UINT32_MAX, 0).has_value());
}

TEST(ProcessWatch, StatusNames) {
  EXPECT_STREQ(to_string(ProcessStatus::kAlive), "alive");
  EXPECT_STREQ(to_string(ProcessStatus::kExited), "exited");
}

using Backend = ProcessWatch::Backend;

class ProcessWatchBackends : public ::testing::TestWithParam<Backend> {
 protected:
  ProcessWatch open_ok(std::uint32_t pid, std::uint64_t ticks) {
    auto watch = ProcessWatch::open(pid, ticks, GetParam());
    if (!watch) throw std::runtime_error(watch.error());
    return std::move(*watch);
  }
  bool pidfd() const { return GetParam() == Backend::kPidfd; }
};

TEST_P(ProcessWatchBackends, ChildIsAliveThenGoneAfterKillAndReap) {
  Child child;
  ASSERT_GT(child.pid(), 0);
  const std::uint64_t ticks = process_start_ticks(child.upid());
  ASSERT_NE(ticks, 0u);
  ProcessWatch watch = open_ok(child.upid(), ticks);
  EXPECT_EQ(watch.polling(), !pidfd());
  EXPECT_EQ(watch.fd() >= 0, pidfd());
  EXPECT_EQ(watch.status(), ProcessStatus::kAlive);
  EXPECT_FALSE(watch.gone());
  EXPECT_FALSE(watch.gone());  // asking twice changes nothing

  ASSERT_EQ(::kill(child.pid(), SIGKILL), 0);
  ASSERT_TRUE(child.reap());
  EXPECT_TRUE(watch.gone());
  EXPECT_EQ(watch.status(), ProcessStatus::kExited);
}

TEST_P(ProcessWatchBackends, ZombieCountsAsGone) {
  Child child;
  ASSERT_GT(child.pid(), 0);
  ProcessWatch watch = open_ok(child.upid(), process_start_ticks(child.upid()));
  EXPECT_FALSE(watch.gone());

  child.release();
  ASSERT_TRUE(child.wait_exited_not_reaped());
  EXPECT_TRUE(watch.gone());
  EXPECT_EQ(watch.status(), ProcessStatus::kExited);
  ASSERT_TRUE(child.reap());
  EXPECT_TRUE(watch.gone());  // sticky
}

TEST_P(ProcessWatchBackends, OpenOnAZombieIsGone) {
  Child child;
  ASSERT_GT(child.pid(), 0);
  const std::uint64_t ticks = process_start_ticks(child.upid());
  child.release();
  ASSERT_TRUE(child.wait_exited_not_reaped());
  ProcessWatch watch = open_ok(child.upid(), ticks);
  EXPECT_TRUE(watch.gone());
  EXPECT_EQ(watch.status(), ProcessStatus::kExited);
}

TEST_P(ProcessWatchBackends, WrongStartTicksIsAMismatch) {
  Child child;
  ASSERT_GT(child.pid(), 0);
  const std::uint64_t ticks = process_start_ticks(child.upid());
  ASSERT_NE(ticks, 0u);
  ProcessWatch watch = open_ok(child.upid(), ticks + 1);
  EXPECT_TRUE(watch.gone());
  EXPECT_EQ(watch.status(), ProcessStatus::kStartMismatch);
  EXPECT_EQ(watch.fd(), -1);  // nothing held for a stranger
  // The child itself is still running: the verdict is about the pid's owner.
  EXPECT_EQ(::kill(child.pid(), 0), 0);
}

TEST_P(ProcessWatchBackends, MissingPidIsGone) {
  ProcessWatch watch = open_ok(reaped_pid(), 12345);
  EXPECT_TRUE(watch.gone());
  EXPECT_EQ(watch.status(), ProcessStatus::kNoProcess);
}

TEST_P(ProcessWatchBackends, UnknownStartTicksAreNotChecked) {
  const auto self = static_cast<std::uint32_t>(::getpid());
  ProcessWatch watch = open_ok(self, 0);
  EXPECT_FALSE(watch.gone());
  ProcessWatch exact = open_ok(self, process_start_ticks(self));
  EXPECT_FALSE(exact.gone());
}

TEST_P(ProcessWatchBackends, MovedWatchKeepsWatching) {
  Child child;
  ASSERT_GT(child.pid(), 0);
  ProcessWatch first = open_ok(child.upid(), process_start_ticks(child.upid()));
  const int fd = first.fd();
  ProcessWatch second = std::move(first);
  EXPECT_EQ(second.fd(), fd);
  EXPECT_EQ(second.pid(), child.upid());
  EXPECT_FALSE(second.gone());
  ProcessWatch third = open_ok(static_cast<std::uint32_t>(::getpid()), 0);
  third = std::move(second);
  EXPECT_EQ(third.pid(), child.upid());
  child.release();
  ASSERT_TRUE(child.wait_exited_not_reaped());
  EXPECT_TRUE(third.gone());
}

INSTANTIATE_TEST_SUITE_P(Backends, ProcessWatchBackends,
                         ::testing::Values(Backend::kPidfd, Backend::kPolling),
                         [](const auto& info) {
                           return info.param == Backend::kPidfd ? "Pidfd" : "Polling";
                         });

}  // namespace
}  // namespace shmtrace::drain
