// Careful opening and mapping of files another user may have planted, and the
// small helpers every reader file shares.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "reader/segment_impl.hpp"

// ---------------------------------------------------------------------------
// The fault registry and the SIGBUS handler (install_fault_handler in
// reader.hpp). The handler runs on the faulting thread, in the middle of any
// read of shared memory: it takes no lock, allocates nothing and makes only
// the mmap and sigaction system calls.
// ---------------------------------------------------------------------------
namespace shmtrace::reader::detail {
namespace {

// A mapping per segment and per error chunk mapped: a drain serving
// hundreds of processes with a few chunks each stays far below.
constexpr int kGuardSlots = 16384;

enum : std::uint32_t { kSlotFree = 0, kSlotBusy = 1, kSlotLive = 2 };

struct GuardSlot {
  // kSlotLive (release, by guard_mapping after the fields below) is what the
  // handler loads (acquire) before it trusts them.
  std::atomic<std::uint32_t> state{kSlotFree};
  std::atomic<std::uint32_t> faulted{0};
  std::atomic<std::uintptr_t> begin{0};
  std::atomic<std::uintptr_t> end{0};  // page-rounded, as the kernel maps it
  std::atomic<int> prot{0};
};

constinit GuardSlot g_slots[kGuardSlots];
constinit std::atomic<int> g_next_slot{0};  // where the search for a free slot starts
constinit std::atomic<std::uintptr_t> g_page_size{0};
constinit struct sigaction g_previous = {};  // written once, before our handler goes in
constinit std::atomic<int> g_installed{0};   // 0 not yet, 1 installing, 2 done, 3 failed

// A SIGBUS not ours: as if we had never been there. The handler before us
// gets it; with none, the default action, by returning into the fault again
// (or, for a SIGBUS sent by kill(), by raising it again).
void hand_on(int sig, siginfo_t* info, void* context) noexcept {
  if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
    g_previous.sa_sigaction(sig, info, context);
    return;
  }
  if ((g_previous.sa_flags & SA_SIGINFO) == 0 && g_previous.sa_handler != SIG_DFL &&
      g_previous.sa_handler != SIG_IGN) {
    g_previous.sa_handler(sig);
    return;
  }
  struct sigaction fallback {};
  fallback.sa_handler = SIG_DFL;
  sigemptyset(&fallback.sa_mask);
  ::sigaction(sig, &fallback, nullptr);
  if (info == nullptr || info->si_code <= 0) ::raise(sig);  // delivered once we return
}

void on_sigbus(int sig, siginfo_t* info, void* context) noexcept {
  const int saved_errno = errno;
  // si_code > 0: raised by the kernel for a fault, not sent by someone.
  if (info != nullptr && info->si_code > 0) {
    const auto address = reinterpret_cast<std::uintptr_t>(info->si_addr);
    for (GuardSlot& slot : g_slots) {
      // Acquire: pairs with guard_mapping's release of kSlotLive.
      if (slot.state.load(std::memory_order_acquire) != kSlotLive) continue;
      // Relaxed: ordered by the acquire above.
      const std::uintptr_t begin = slot.begin.load(std::memory_order_relaxed);
      const std::uintptr_t end = slot.end.load(std::memory_order_relaxed);
      if (address < begin || address >= end) continue;
      // The file ends before this page: so does everything after it, and a
      // file grown again would only offer holes there. Zero pages over the
      // rest of the mapping, private, so no read or write reaches the file
      // again; the faulting instruction then runs on them.
      const std::uintptr_t page = address & ~(g_page_size.load(std::memory_order_relaxed) - 1);
      const long mapped = ::syscall(SYS_mmap, page, end - page, slot.prot.load(std::memory_order_relaxed),
                                    MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0L);
      if (mapped != static_cast<long>(page)) break;  // cannot: die as we would have
      // Release: pairs with mapping_faulted()'s acquire (another thread may ask).
      slot.faulted.store(1, std::memory_order_release);
      errno = saved_errno;
      return;
    }
  }
  hand_on(sig, info, context);
  errno = saved_errno;
}

}  // namespace

int guard_mapping(const void* base, std::uint64_t size, bool writable) noexcept {
  if (!install_fault_handler()) return -1;
  const std::uintptr_t page = g_page_size.load(std::memory_order_relaxed);
  const auto begin = reinterpret_cast<std::uintptr_t>(base);
  const std::uintptr_t end = begin + ((size + page - 1) & ~(page - 1));
  const int start = g_next_slot.load(std::memory_order_relaxed);
  for (int i = 0; i < kGuardSlots; ++i) {
    const int index = (start + i) % kGuardSlots;
    GuardSlot& slot = g_slots[index];
    std::uint32_t expected = kSlotFree;
    // Relaxed: the slot's fields are published by the release below.
    if (!slot.state.compare_exchange_strong(expected, kSlotBusy, std::memory_order_relaxed)) continue;
    slot.begin.store(begin, std::memory_order_relaxed);
    slot.end.store(end, std::memory_order_relaxed);
    slot.prot.store(writable ? PROT_READ | PROT_WRITE : PROT_READ, std::memory_order_relaxed);
    slot.faulted.store(0, std::memory_order_relaxed);
    // Release: the handler's acquire load of state sees the fields above.
    slot.state.store(kSlotLive, std::memory_order_release);
    g_next_slot.store((index + 1) % kGuardSlots, std::memory_order_relaxed);
    return index;
  }
  return -1;
}

void unguard_mapping(int slot) noexcept {
  // Release: the fields may be reused by the next guard_mapping after this;
  // called before the munmap, so no fault of ours can be missed meanwhile.
  if (slot >= 0 && slot < kGuardSlots) g_slots[slot].state.store(kSlotFree, std::memory_order_release);
}

bool mapping_faulted(int slot) noexcept {
  // Acquire: pairs with the handler's release store.
  return slot >= 0 && slot < kGuardSlots && g_slots[slot].faulted.load(std::memory_order_acquire) != 0;
}

bool file_written(int fd, std::uint64_t offset, std::uint64_t size) noexcept {
  if (size == 0) return true;
  if (offset > static_cast<std::uint64_t>(INT64_MAX) || size > static_cast<std::uint64_t>(INT64_MAX) - offset) {
    return false;
  }
  // The first hole at or after offset (the end of the file counts as one);
  // the file offset this moves is never used: all reads go through mappings.
  const off_t hole = ::lseek(fd, static_cast<off_t>(offset), SEEK_HOLE);
  return hole >= 0 && static_cast<std::uint64_t>(hole) >= offset + size;
}

Mapping::Mapping(void* base, std::uint64_t size, bool writable)
    : base_(static_cast<std::byte*>(base)), size_(size), guard_(guard_mapping(base, size, writable)) {}

bool Mapping::faulted() const { return mapping_faulted(guard_); }

Mapping::Mapping(Mapping&& other) noexcept : base_(other.base_), size_(other.size_), guard_(other.guard_) {
  other.base_ = nullptr;
  other.size_ = 0;
  other.guard_ = -1;
}

Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    unguard_mapping(guard_);
    if (base_ != nullptr) ::munmap(base_, size_);
    base_ = other.base_;
    size_ = other.size_;
    guard_ = other.guard_;
    other.base_ = nullptr;
    other.size_ = 0;
    other.guard_ = -1;
  }
  return *this;
}

Mapping::~Mapping() {
  unguard_mapping(guard_);
  if (base_ != nullptr) ::munmap(base_, size_);
}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

std::expected<OpenedFile, OpenError> open_checked(const std::string& path, bool writable,
                                                  std::uint32_t allowed_uid, std::uint64_t min_size,
                                                  std::uint64_t max_size) {
  // O_NONBLOCK: a FIFO planted under the name would otherwise block open()
  // until someone opens its other end; fstat below refuses it. O_NOCTTY: a
  // terminal cannot become ours either.
  const int flags = (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) {
    const int err = errno;
    OpenError failure;
    failure.missing = err == ENOENT;
    if (err == ELOOP) {
      failure.error.message = path + ": is a symbolic link, refused";
    } else {
      failure.error.message = path + ": cannot open: " + std::strerror(err);
    }
    return std::unexpected(std::move(failure));
  }
  OpenedFile file;
  file.fd = UniqueFd(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return std::unexpected(OpenError{{path + ": cannot stat: " + std::strerror(errno)}, false});
  }
  if (!S_ISREG(st.st_mode)) {
    return std::unexpected(OpenError{{path + ": not a regular file, refused"}, false});
  }
  if (st.st_uid != allowed_uid) {
    return std::unexpected(OpenError{{path + ": owned by uid " + std::to_string(st.st_uid) +
                                      ", only uid " + std::to_string(allowed_uid) +
                                      " is permitted, refused"},
                                     false});
  }
  if (st.st_nlink == 0) {
    // Unlinked between our open and fstat: as good as absent.
    return std::unexpected(OpenError{{path + ": removed while being opened"}, true});
  }
  if (st.st_nlink != 1) {
    // A second name means someone linked it here (or from here): the file
    // is not the one the producer created under this name alone.
    return std::unexpected(OpenError{{path + ": has " + std::to_string(st.st_nlink) +
                                      " hard links, only 1 is permitted, refused"},
                                     false});
  }
  if (st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) < min_size) {
    return std::unexpected(OpenError{{path + ": file size " + std::to_string(st.st_size) +
                                      " is smaller than the minimum " + std::to_string(min_size)},
                                     false});
  }
  if (static_cast<std::uint64_t>(st.st_size) > max_size) {
    return std::unexpected(OpenError{{path + ": file size " + std::to_string(st.st_size) +
                                      " exceeds the maximum " + std::to_string(max_size) + ", refused"},
                                     false});
  }
  file.size = static_cast<std::uint64_t>(st.st_size);
  return file;
}

PathKind classify_path(const std::string& path, std::uint32_t owner_uid) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT ? PathKind::kAbsent : PathKind::kForeign;
  if (!S_ISREG(st.st_mode) || st.st_uid != owner_uid || st.st_nlink != 1) return PathKind::kForeign;
  return PathKind::kOwners;
}

Result<Mapping> map_file(const OpenedFile& file, bool writable, const std::string& path) {
  if (file.size > SIZE_MAX) {
    return std::unexpected(Error{path + ": file too large to map"});
  }
  const int prot = writable ? (PROT_READ | PROT_WRITE) : PROT_READ;
  void* base = ::mmap(nullptr, static_cast<std::size_t>(file.size), prot, MAP_SHARED,
                      file.fd.get(), 0);
  if (base == MAP_FAILED) {
    return std::unexpected(Error{path + ": cannot map: " + std::strerror(errno)});
  }
  Mapping mapping(base, file.size, writable);
  if (!mapping.guarded()) {
    // Unguarded, a truncation of the file by its owner would kill us.
    auto installed = install_fault_handler();
    return std::unexpected(Error{path + ": not mapped: " +
                                 (installed ? "the SIGBUS guard is full (" + std::to_string(kGuardSlots) +
                                                  " mappings)"
                                            : installed.error().message)});
  }
  return mapping;
}

void copy_shared(void* dst, const std::byte* src, std::size_t size) {
  auto* out = static_cast<std::byte*>(dst);
  for (std::size_t i = 0; i < size; i += sizeof(std::uint64_t)) {
    // Relaxed: only atomicity is needed; the caller's earlier acquire (magic,
    // state) is what orders the write-once fields before this copy.
    const std::uint64_t word = abi::atomic_load(
        *reinterpret_cast<const std::uint64_t*>(src + i), std::memory_order_relaxed);
    std::memcpy(out + i, &word, sizeof word);
  }
}

std::string segment_name(std::uint32_t pid, std::uint64_t nonce, std::string_view session) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%" PRIu32 ".%016" PRIx64, pid, nonce);
  std::string name = abi::kSegmentNamePrefix;
  if (!session.empty()) name.append(session).append(".");
  return name + buffer;
}

std::optional<ParsedName> parse_segment_name(std::string_view name) {
  const std::string_view prefix = abi::kSegmentNamePrefix;
  if (!name.starts_with(prefix)) return std::nullopt;
  name.remove_prefix(prefix.size());
  ParsedName parsed;
  // shmtrace.<session>.<pid>.<nonce>: a session starts with a letter, a pid
  // never does.
  if (!name.empty() && !(name.front() >= '0' && name.front() <= '9')) {
    const auto end = name.find('.');
    if (end == std::string_view::npos || !abi::session_id_valid(name.data(), end)) return std::nullopt;
    parsed.session = std::string(name.substr(0, end));
    name.remove_prefix(end + 1);
  }
  const auto dot = name.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot > 10) return std::nullopt;
  const std::string_view pid_text = name.substr(0, dot);
  const std::string_view nonce_text = name.substr(dot + 1);
  if (nonce_text.size() != 16) return std::nullopt;
  for (char c : pid_text) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  auto [pid_end, pid_err] =
      std::from_chars(pid_text.data(), pid_text.data() + pid_text.size(), parsed.pid);
  if (pid_err != std::errc{} || pid_end != pid_text.data() + pid_text.size()) return std::nullopt;
  for (char c : nonce_text) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex) return std::nullopt;
  }
  auto [nonce_end, nonce_err] = std::from_chars(
      nonce_text.data(), nonce_text.data() + nonce_text.size(), parsed.nonce, 16);
  if (nonce_err != std::errc{} || nonce_end != nonce_text.data() + nonce_text.size()) {
    return std::nullopt;
  }
  return parsed;
}

}  // namespace shmtrace::reader::detail

namespace shmtrace::reader {

Result<void> install_fault_handler() {
  using namespace detail;
  int state = g_installed.load(std::memory_order_acquire);
  if (state == 0 && g_installed.compare_exchange_strong(state, 1, std::memory_order_acq_rel)) {
    g_page_size.store(static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE)), std::memory_order_relaxed);
    struct sigaction action {};
    action.sa_sigaction = on_sigbus;
    // SA_ONSTACK: a thread with an alternate signal stack keeps using it.
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    // g_previous is written before our handler can run (it reads it).
    const bool ok = ::sigaction(SIGBUS, &action, &g_previous) == 0;
    // Release: pairs with the acquire loads above and below.
    g_installed.store(ok ? 2 : 3, std::memory_order_release);
    state = ok ? 2 : 3;
  }
  while (state == 1) state = g_installed.load(std::memory_order_acquire);  // another thread installs
  if (state == 3) return std::unexpected(Error{"cannot install the SIGBUS handler"});
  return {};
}

}  // namespace shmtrace::reader
