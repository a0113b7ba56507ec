// Segment: attaching, the validated header, live fields, interned strings,
// the consumer heartbeat and removal. Rings and overflow are in
// ring_reader.cpp and overflow_reader.cpp, errors in error_reader.cpp.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <atomic>

#include "reader/segment_impl.hpp"

namespace shmtrace::reader {
namespace {

bool valid_object_name(const std::string& name) {
  return !name.empty() && name.size() < 240 && name.find('/') == std::string::npos &&
         name != "." && name != "..";
}

// Checks what lives inside the regions but is written once by the creator:
// the string table's and overflow area's own capacity fields.
Result<void> validate_regions(const detail::SegmentState& impl) {
  const abi::SegmentHeader& h = impl.header;
  const auto* table = impl.at<abi::StringTableHeader>(h.strings_offset);
  // Relaxed: written once before magic, which we loaded with acquire.
  const std::uint32_t table_capacity = abi::atomic_load(table->capacity, std::memory_order_relaxed);
  if (table_capacity != h.strings_size) {
    return std::unexpected(Error{impl.where() + "string table capacity " +
                                 std::to_string(table_capacity) + " differs from strings_size " +
                                 std::to_string(h.strings_size)});
  }
  const auto* overflow = impl.at<abi::OverflowControl>(h.overflow_offset);
  // Relaxed: write-once, ordered by the acquire load of magic.
  const std::uint32_t overflow_capacity =
      abi::atomic_load(overflow->capacity, std::memory_order_relaxed);
  if (overflow_capacity != h.overflow_capacity) {
    return std::unexpected(Error{impl.where() + "overflow control capacity " +
                                 std::to_string(overflow_capacity) +
                                 " differs from overflow_capacity " +
                                 std::to_string(h.overflow_capacity)});
  }
  return {};
}

// The regions the creator writes whole before it publishes the header
// (the runtime reserves and touches them): a hole in one is a segment lying
// about what it holds, and reading it would allocate the page (tmpfs).
Result<void> check_regions_written(const detail::SegmentState& impl) {
  const abi::SegmentHeader& h = impl.header;
  const struct {
    const char* name;
    std::uint64_t offset, size;
  } regions[] = {{"strings", h.strings_offset, h.strings_size},
                 {"modules", h.modules_offset, h.modules_size},
                 {"overflow", h.overflow_offset, h.overflow_size}};
  for (const auto& r : regions) {
    if (r.size == 0 || impl.written(r.offset, r.size)) continue;
    return std::unexpected(Error{impl.where() + r.name + " region [" + std::to_string(r.offset) + ", " +
                                 std::to_string(r.offset + r.size) +
                                 ") has pages never written (a sparse segment), refused"});
  }
  return {};
}

// Shared by attach() and from_memory(): impl has base, mapped_size, access.
Result<void> load_header(detail::SegmentState& impl) {
  // A header page not yet allocated was not written either (the creator has
  // not got that far); reading it would allocate it.
  if (!impl.written(0, abi::kHeaderSize)) {
    return std::unexpected(Error{impl.where() + "not yet initialized (magic is 0)"});
  }
  const auto* live = impl.live_header();
  // Acquire: pairs with the creator's release store of magic, published
  // after every write-once field.
  const std::uint64_t magic = abi::atomic_load(live->magic, std::memory_order_acquire);
  if (magic == 0) {
    return std::unexpected(Error{impl.where() + "not yet initialized (magic is 0)"});
  }
  detail::copy_shared(&impl.header, impl.base, sizeof(abi::SegmentHeader));
  impl.header.magic = magic;
  if (auto ok = validate_header(impl.header, impl.mapped_size); !ok) {
    return std::unexpected(Error{impl.where() + ok.error().message});
  }
  if (auto ok = check_regions_written(impl); !ok) return ok;
  if (auto ok = validate_regions(impl); !ok) return ok;
  impl.clock.emplace(impl.header);
  return {};
}

}  // namespace

Segment::Segment(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Segment::Segment(Segment&&) noexcept = default;
Segment& Segment::operator=(Segment&&) noexcept = default;
Segment::~Segment() = default;

Result<Segment> Segment::attach(const std::string& name, Access access,
                                std::optional<std::uint32_t> allowed_uid) {
  if (!valid_object_name(name)) {
    return std::unexpected(Error{"segment name '" + name + "' is not a valid object name"});
  }
  auto impl = std::make_unique<Impl>();
  impl->name = name;
  impl->access = access;
  impl->allowed_uid = allowed_uid.value_or(static_cast<std::uint32_t>(::geteuid()));
  const std::string path = std::string(detail::kShmDir) + "/" + name;
  const bool writable = access == Access::kConsume;
  // Bounded before it is mapped: a segment declaring terabytes takes that
  // much of our address space (shmtrace-drain --max-segment-mb).
  auto file = detail::open_checked(path, writable, impl->allowed_uid, abi::kHeaderSize,
                                   segment_limits().max_segment_bytes);
  if (!file) return std::unexpected(Error{"segment " + file.error().error.message});
  auto mapping = detail::map_file(*file, writable, path);
  if (!mapping) return std::unexpected(Error{"segment " + mapping.error().message});
  impl->mapping = std::move(*mapping);
  impl->base = impl->mapping.base();
  impl->mapped_size = impl->mapping.size();
  impl->fd = std::move(file->fd);  // kept for residency queries (SEEK_DATA, SEEK_HOLE)
  if (auto ok = load_header(*impl); !ok) return std::unexpected(ok.error());
  impl->ring_whole = std::make_unique<std::atomic<std::uint8_t>[]>(impl->header.max_rings);
  // A name in the standard form must agree with the header it names, or the
  // error chunks found by that name would belong to someone else.
  if (auto parsed = detail::parse_segment_name(name)) {
    if (parsed->pid != impl->header.pid || parsed->nonce != impl->header.nonce) {
      return std::unexpected(Error{impl->where() + "header pid " +
                                   std::to_string(impl->header.pid) +
                                   " / nonce do not match the name"});
    }
    // A drain chooses segments by the session in their names: one whose
    // header says otherwise is not what its name claims. (The header's id
    // was validated: printable.)
    if (parsed->session != impl->session()) {
      return std::unexpected(Error{impl->where() + "header session '" + impl->session() +
                                   "' does not match the name"});
    }
  }
  return Segment(std::move(impl));
}

Result<Segment> Segment::from_memory(void* base, std::uint64_t size, Access access) {
  if (base == nullptr || reinterpret_cast<std::uintptr_t>(base) % abi::kCacheLine != 0) {
    return std::unexpected(Error{"segment memory is null or not 64-byte aligned"});
  }
  if (size < abi::kHeaderSize) {
    return std::unexpected(Error{"segment memory of " + std::to_string(size) +
                                 " bytes is smaller than the header"});
  }
  auto impl = std::make_unique<Impl>();
  impl->access = access;
  impl->allowed_uid = static_cast<std::uint32_t>(::geteuid());
  impl->base = static_cast<std::byte*>(base);
  impl->mapped_size = size;
  impl->name = "<memory>";
  if (auto ok = load_header(*impl); !ok) return std::unexpected(ok.error());
  // The object name a producer would have used: finds the error chunks.
  impl->name = detail::segment_name(impl->header.pid, impl->header.nonce, impl->session());
  return Segment(std::move(impl));
}

const std::string& Segment::name() const { return impl_->name; }

std::string Segment::session() const { return impl_->session(); }

bool Segment::faulted() const {
  if (impl_->mapping.faulted()) return true;
  std::lock_guard lock(impl_->mutex);
  for (const auto& chunk : impl_->chunks) {
    if (chunk && chunk->faulted()) return true;
  }
  return false;
}
const abi::SegmentHeader& Segment::header() const { return impl_->header; }
const ClockConverter& Segment::clock() const { return *impl_->clock; }
std::uint32_t Segment::ring_count() const { return impl_->header.max_rings; }

abi::ProcessState Segment::state() const {
  // Acquire: pairs with the runtime's release store of state, so exit_status
  // and end_ticks written before it are visible after.
  const std::uint32_t raw = abi::atomic_load(impl_->live_header()->state, std::memory_order_acquire);
  // Out-of-range values are passed through; callers switch with a default.
  return static_cast<abi::ProcessState>(raw);
}

std::int32_t Segment::exit_status() const {
  // Acquire on state first (pairs with the runtime's release store of state).
  (void)abi::atomic_load(impl_->live_header()->state, std::memory_order_acquire);
  // Relaxed: ordered by the acquire above.
  return abi::atomic_load(impl_->live_header()->exit_status, std::memory_order_relaxed);
}

std::uint32_t Segment::error_chunk_count() const {
  // Acquire: pairs with the runtime's release CAS-max after creating a chunk.
  return abi::atomic_load(impl_->live_header()->error_chunk_count, std::memory_order_acquire);
}

std::uint64_t Segment::errors_written() const {
  // Relaxed: a counter (fetch_add relaxed by producers); staleness tolerated.
  return abi::atomic_load(impl_->live_header()->errors_written, std::memory_order_relaxed);
}

std::uint64_t Segment::errors_spilled() const {
  // Relaxed: a counter; staleness tolerated.
  return abi::atomic_load(impl_->live_header()->errors_spilled, std::memory_order_relaxed);
}

std::uint32_t Segment::consumer_pid() const {
  // Acquire: pairs with the claim's compare-and-swap.
  return abi::atomic_load(impl_->live_header()->drain_pid, std::memory_order_acquire);
}

std::uint64_t Segment::no_ring_dropped() const {
  // Relaxed: a counter; read once the process is gone.
  return abi::atomic_load(impl_->live_header()->no_ring_dropped, std::memory_order_relaxed);
}

std::uint64_t Segment::no_ring_threads() const {
  // Relaxed: a counter; staleness tolerated.
  return abi::atomic_load(impl_->live_header()->no_ring_threads, std::memory_order_relaxed);
}

namespace {

struct StringLookup {
  std::uint8_t flags = 0;
  std::string text;
};

Result<StringLookup> lookup_string(const detail::SegmentState& impl, std::uint32_t id) {
  const abi::SegmentHeader& h = impl.header;
  const std::string what = impl.where() + "string id " + std::to_string(id);
  if (id % 4 != 0 || id < sizeof(abi::StringTableHeader)) {
    return std::unexpected(Error{what + " is misaligned or inside the table header"});
  }
  const auto* table = impl.at<abi::StringTableHeader>(h.strings_offset);
  // Relaxed: the entry's own ready flag (acquire below) orders its contents.
  std::uint64_t used = abi::atomic_load(table->used, std::memory_order_relaxed);
  if (used > h.strings_size) used = h.strings_size;  // refused interns may overshoot
  if (std::uint64_t{id} + sizeof(abi::StringEntry) > used) {
    return std::unexpected(Error{what + " is out of range (table used " + std::to_string(used) +
                                 ")"});
  }
  const std::byte* entry_bytes = impl.base + h.strings_offset + id;
  const auto* entry = reinterpret_cast<const abi::StringEntry*>(entry_bytes);
  // Acquire: pairs with the producer's release store of ready after it wrote
  // length, flags and text.
  if (abi::atomic_load(entry->ready, std::memory_order_acquire) != 1) {
    return std::unexpected(Error{what + " is not ready"});
  }
  const std::uint16_t length = abi::atomic_load(entry->length, std::memory_order_relaxed);
  const std::uint8_t flags = abi::atomic_load(entry->flags, std::memory_order_relaxed);
  if (length > abi::kMaxStringLength ||
      std::uint64_t{id} + sizeof(abi::StringEntry) + length > used) {
    return std::unexpected(Error{what + ": length " + std::to_string(length) +
                                 " runs past the end of the table"});
  }
  StringLookup out;
  out.flags = flags;
  out.text.assign(reinterpret_cast<const char*>(entry_bytes + sizeof(abi::StringEntry)), length);
  return out;
}

}  // namespace

Result<std::string_view> Segment::string(std::uint32_t id) const {
  if (id == 0) return std::string_view{};
  std::lock_guard lock(impl_->mutex);
  if (auto it = impl_->strings.find(id); it != impl_->strings.end()) {
    return std::string_view(it->second);
  }
  auto found = lookup_string(*impl_, id);
  if (!found) return std::unexpected(found.error());
  // A ready entry never changes, so the copy can be served from now on; the
  // node-based map keeps each string where it is.
  auto [it, inserted] = impl_->strings.emplace(id, std::move(found->text));
  return std::string_view(it->second);
}

Result<std::uint8_t> Segment::string_flags(std::uint32_t id) const {
  if (id == 0) return std::uint8_t{0};
  auto found = lookup_string(*impl_, id);
  if (!found) return std::unexpected(found.error());
  return found->flags;
}

namespace {

std::uint64_t clock_ns(clockid_t clock) {
  timespec now{};
  ::clock_gettime(clock, &now);
  return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(now.tv_nsec);
}

// When process `pid` started, in CLOCK_MONOTONIC ns (field 22 of
// /proc/<pid>/stat is in clock ticks of the boot-time clock, which runs on
// through suspend; today's distance between the two clocks is taken off, so
// the answer is never later than the truth). Nullopt when unreadable.
std::optional<std::uint64_t> process_start_monotonic_ns(std::uint32_t pid) {
  char path[32];
  std::snprintf(path, sizeof path, "/proc/%u/stat", pid);
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char text[1024];
  const ssize_t got = ::read(fd, text, sizeof text - 1);
  ::close(fd);
  if (got <= 0) return std::nullopt;
  text[got] = '\0';
  // The command name (field 2) may hold spaces and parentheses: fields
  // count from the last ')'.
  const char* at = std::strrchr(text, ')');
  if (at == nullptr) return std::nullopt;
  int field = 2;
  while (*at != '\0' && field < 22) {
    if (*at++ == ' ') ++field;
  }
  char* end = nullptr;
  const unsigned long long ticks = std::strtoull(at, &end, 10);
  if (end == at) return std::nullopt;
  const long hz = ::sysconf(_SC_CLK_TCK);
  if (hz <= 0) return std::nullopt;
  const std::uint64_t boot_ns = static_cast<std::uint64_t>(ticks) * (1'000'000'000u / static_cast<std::uint64_t>(hz));
  // Monotonic read second: no suspend shows as 0, never as a wrap below it.
  const std::uint64_t boot_now = clock_ns(CLOCK_BOOTTIME);
  const std::uint64_t mono_now = clock_ns(CLOCK_MONOTONIC);
  const std::uint64_t suspended = boot_now > mono_now ? boot_now - mono_now : 0;
  return boot_ns > suspended ? boot_ns - suspended : 0;
}

// How long a pid reused for a process started after the holder's last
// heartbeat must have been running beyond it: the two clocks compared are
// read at different times and /proc rounds to a clock tick.
constexpr std::uint64_t kStartSlackNs = 1'000'000'000;

}  // namespace

bool Segment::holder_gone(std::uint32_t holder) const {
  if (::kill(static_cast<pid_t>(holder), 0) != 0 && errno == ESRCH) return true;
  // Alive (or another user's, EPERM): the holder unless the pid was reused,
  // which shows as a process that started after the holder's last heartbeat.
  // A late heartbeat alone proves nothing: a drain starved of CPU or stopped
  // by a signal still holds records it has read and not handed back.
  // Acquire: pairs with the holder's release of its heartbeat.
  const std::uint64_t beat = abi::atomic_load(impl_->live_header()->drain_heartbeat_ns, std::memory_order_acquire);
  const auto started = process_start_monotonic_ns(holder);
  return started && beat != 0 && *started > beat + kStartSlackNs;
}

bool Segment::claim_consumer() {
  if (impl_->access != Access::kConsume) return false;
  auto* live = impl_->live_header();
  const auto me = static_cast<std::uint32_t>(::getpid());
  // Acquire: pairs with the other consumer's claim.
  std::uint32_t holder = abi::atomic_load(live->drain_pid, std::memory_order_acquire);
  if (holder != 0 && holder != me && !holder_gone(holder)) return false;
  // The heartbeat goes first, the claim after it: whoever then sees our pid
  // (acquire) sees a fresh heartbeat, so a claimer checking for a reused pid
  // never mistakes us for one. (A claimer that loses the race below only
  // refreshed the winner's heartbeat.)
  publish_heartbeat();
  if (!std::atomic_ref<std::uint32_t>(live->drain_pid)
           .compare_exchange_strong(holder, me, std::memory_order_acq_rel, std::memory_order_acquire)) {
    return holder == me;
  }
  return true;
}

void Segment::publish_heartbeat() {
  const std::uint64_t ns = clock_ns(CLOCK_MONOTONIC);
  // Release: pairs with the blocked producer's acquire load of the heartbeat,
  // so it also sees the tails we stored before.
  abi::atomic_store(impl_->live_header()->drain_heartbeat_ns, ns, std::memory_order_release);
}

bool Segment::is_consumer() const {
  if (impl_->access != Access::kConsume) return false;
  // Acquire: pairs with a claim's compare-and-swap.
  return abi::atomic_load(impl_->live_header()->drain_pid, std::memory_order_acquire) ==
         static_cast<std::uint32_t>(::getpid());
}

bool Segment::heartbeat() {
  if (impl_->access != Access::kConsume) return false;
  if (!is_consumer()) {
    // Acquire: pairs with a claim's compare-and-swap.
    std::uint32_t holder = abi::atomic_load(impl_->live_header()->drain_pid, std::memory_order_acquire);
    if (holder != 0) return false;  // another consumer's
    // Unclaimed (a consumer that never called claim_consumer): claim it now,
    // heartbeat first as in claim_consumer.
    publish_heartbeat();
    return std::atomic_ref<std::uint32_t>(impl_->live_header()->drain_pid)
        .compare_exchange_strong(holder, static_cast<std::uint32_t>(::getpid()), std::memory_order_acq_rel,
                                 std::memory_order_acquire);
  }
  publish_heartbeat();
  return true;
}

Result<void> Segment::unlink() const {
  const std::string& name = impl_->name;
  auto remove_shm = [](const std::string& object) -> Result<bool> {
    if (::shm_unlink(("/" + object).c_str()) == 0) return true;
    if (errno == ENOENT) return false;
    return std::unexpected(Error{"cannot remove /dev/shm/" + object + ": " + std::strerror(errno)});
  };
  if (auto removed = remove_shm(name); !removed) return std::unexpected(removed.error());
  const std::uint32_t count = error_chunk_count();
  // Past the count too: a producer may have created one more chunk before
  // raising the count. The count is hostile input, so a long run of missing
  // chunks below it ends the walk as well.
  constexpr std::uint32_t kMaxMissingRun = 4096;
  std::uint32_t missing_run = 0;
  for (std::uint64_t index = 0; index <= UINT32_MAX; ++index) {
    const std::string chunk = name + abi::kErrorChunkInfix + std::to_string(index);
    // Past the count anyone may have created one (a FIFO, a link): not ours
    // to remove, and as good as missing for the walk.
    if (detail::classify_path(std::string(detail::kShmDir) + "/" + chunk, impl_->allowed_uid) !=
        detail::PathKind::kOwners) {
      ++missing_run;
      if (index >= count || missing_run >= kMaxMissingRun) break;
      continue;
    }
    auto removed = remove_shm(chunk);
    if (!removed) return std::unexpected(removed.error());
    missing_run = *removed ? 0 : missing_run + 1;
    if (missing_run != 0 && (index >= count || missing_run >= kMaxMissingRun)) break;
  }
  const std::string spill_dir(impl_->header.spill_dir);  // validated NUL-terminated
  if (!spill_dir.empty()) {
    const std::string path = spill_dir + "/" + name + abi::kSpillSuffix;
    // The spill directory may be world-writable: only the owner's own file
    // is removed (read_errors already reported anything else once).
    if (detail::classify_path(path, impl_->allowed_uid) == detail::PathKind::kOwners &&
        ::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return std::unexpected(Error{"cannot remove " + path + ": " + std::strerror(errno)});
    }
  }
  return {};
}

}  // namespace shmtrace::reader
