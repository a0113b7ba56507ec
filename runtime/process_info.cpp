#include "process_info.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstring>

#include "clock.hpp"

namespace shmtrace::runtime {
namespace {

std::string read_small_file(const char* path) {
  std::string out;
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() >= 65536) break;
  }
  ::close(fd);
  return out;
}

// Field 22 of /proc/self/stat; the comm field (2) may hold spaces and
// parentheses, so parsing starts after its last ')'.
std::uint64_t parse_start_ticks(const std::string& stat) {
  const std::size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::size_t pos = close + 2;  // at field 3
  for (int field = 3; field < 22 && pos < stat.size(); ++field) {
    pos = stat.find(' ', pos);
    if (pos == std::string::npos) return 0;
    ++pos;
  }
  std::uint64_t v = 0;
  while (pos < stat.size() && stat[pos] >= '0' && stat[pos] <= '9') {
    v = v * 10 + static_cast<std::uint64_t>(stat[pos] - '0');
    ++pos;
  }
  return v;
}

}  // namespace

ProcessInfo read_process_info() {
  ProcessInfo info;
  info.pid = static_cast<std::uint32_t>(::getpid());
  info.ppid = static_cast<std::uint32_t>(::getppid());
  info.uid = static_cast<std::uint32_t>(::geteuid());
  info.start_ticks = parse_start_ticks(read_small_file("/proc/self/stat"));
  char exe[4096];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) info.exe.assign(exe, static_cast<std::size_t>(n));
  info.cmdline = read_small_file("/proc/self/cmdline");
  while (!info.cmdline.empty() && info.cmdline.back() == '\0') info.cmdline.pop_back();
  const std::size_t slash = info.exe.rfind('/');
  info.exe_name = slash == std::string::npos ? info.exe : info.exe.substr(slash + 1);
  if (info.exe_name.empty()) info.exe_name = "process";
  return info;
}

std::uint64_t random_u64() noexcept {
  std::uint64_t v = 0;
  if (::getrandom(&v, sizeof v, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof v)) {
    v = clock_ns(CLOCK_MONOTONIC) ^ (now_ticks() << 17) ^ (static_cast<std::uint64_t>(::getpid()) << 40);
  }
  // splitmix64 finaliser: good bits even from the fallback.
  v += 0x9e3779b97f4a7c15ull;
  v = (v ^ (v >> 30)) * 0xbf58476d1ce4e5b9ull;
  v = (v ^ (v >> 27)) * 0x94d049bb133111ebull;
  return v ^ (v >> 31);
}

}  // namespace shmtrace::runtime
