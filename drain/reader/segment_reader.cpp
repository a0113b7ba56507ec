// Segment: attaching, the validated header, live fields, interned strings,
// the consumer heartbeat and removal. Rings and overflow are in
// ring_reader.cpp and overflow_reader.cpp, errors in error_reader.cpp.
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
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

// Shared by attach() and from_memory(): impl has base, mapped_size, access.
Result<void> load_header(detail::SegmentState& impl) {
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
  auto file = detail::open_checked(path, writable, impl->allowed_uid, abi::kHeaderSize);
  if (!file) return std::unexpected(Error{"segment " + file.error().error.message});
  auto mapping = detail::map_file(*file, writable, path);
  if (!mapping) return std::unexpected(Error{"segment " + mapping.error().message});
  impl->mapping = std::move(*mapping);
  impl->base = impl->mapping.base();
  impl->mapped_size = impl->mapping.size();
  if (auto ok = load_header(*impl); !ok) return std::unexpected(ok.error());
  // A name in the standard form must agree with the header it names, or the
  // error chunks found by that name would belong to someone else.
  if (auto parsed = detail::parse_segment_name(name)) {
    if (parsed->pid != impl->header.pid || parsed->nonce != impl->header.nonce) {
      return std::unexpected(Error{impl->where() + "header pid " +
                                   std::to_string(impl->header.pid) +
                                   " / nonce do not match the name"});
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
  impl->name = detail::segment_name(impl->header.pid, impl->header.nonce);
  return Segment(std::move(impl));
}

const std::string& Segment::name() const { return impl_->name; }
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

bool Segment::claim_consumer(std::uint64_t stale_after_ns) {
  if (impl_->access != Access::kConsume) return false;
  auto* live = impl_->live_header();
  const auto me = static_cast<std::uint32_t>(::getpid());
  // Acquire: pairs with the other consumer's release of its heartbeat.
  std::uint32_t holder = abi::atomic_load(live->drain_pid, std::memory_order_acquire);
  // A holder we may not signal (another user's drain) is alive too.
  if (holder != 0 && holder != me && (::kill(static_cast<pid_t>(holder), 0) == 0 || errno == EPERM)) {
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    const std::uint64_t ns = static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000u +
                             static_cast<std::uint64_t>(now.tv_nsec);
    const std::uint64_t beat = abi::atomic_load(live->drain_heartbeat_ns, std::memory_order_acquire);
    if (beat + stale_after_ns > ns) return false;  // alive and working
  }
  // The heartbeat goes first, the claim after it: whoever then sees our pid
  // (acquire) sees a fresh heartbeat, so a second claimer cannot take our
  // claim for a stale one in the moment between the two. (A claimer that
  // loses the race below only refreshed the winner's heartbeat.)
  publish_heartbeat();
  if (!std::atomic_ref<std::uint32_t>(live->drain_pid)
           .compare_exchange_strong(holder, me, std::memory_order_acq_rel, std::memory_order_acquire)) {
    return holder == me;
  }
  return true;
}

void Segment::publish_heartbeat() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const std::uint64_t ns = static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000u +
                           static_cast<std::uint64_t>(now.tv_nsec);
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
    auto removed = remove_shm(name + abi::kErrorChunkInfix + std::to_string(index));
    if (!removed) return std::unexpected(removed.error());
    missing_run = *removed ? 0 : missing_run + 1;
    if (missing_run != 0 && (index >= count || missing_run >= kMaxMissingRun)) break;
  }
  const std::string spill_dir(impl_->header.spill_dir);  // validated NUL-terminated
  if (!spill_dir.empty()) {
    const std::string path = spill_dir + "/" + name + abi::kSpillSuffix;
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return std::unexpected(Error{"cannot remove " + path + ": " + std::strerror(errno)});
    }
  }
  return {};
}

}  // namespace shmtrace::reader
