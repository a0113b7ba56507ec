#include "thread_state.hpp"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "clock.hpp"

// Itanium C++ ABI: the calling thread's exception globals.
extern "C" void* __cxa_get_globals() noexcept;

namespace shmtrace::runtime {

constinit thread_local ThreadState tls_state __attribute__((tls_model("initial-exec")));

namespace {

constexpr std::uint32_t kInitialStack = 64;
constexpr std::uint64_t kMsCacheTicks = 1'000'000;  // <= 1 ms on any >= 1 GHz counter

void* map_anonymous(std::size_t bytes) noexcept {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

// Thread names hold at most 15 characters plus the NUL (the kernel's limit).
void copy_thread_name(char (&dst)[16], const char* src) noexcept {
  std::memset(dst, 0, sizeof dst);
  if (src != nullptr) std::memcpy(dst, src, ::strnlen(src, sizeof dst - 1));
}

abi::Record thread_record(abi::RecordKind kind, const ThreadState& t, const char* name) noexcept {
  abi::Record r{};
  r.kind = static_cast<std::uint8_t>(kind);
  r.timestamp = now_ticks();
  r.aux = t.tid;
  abi::ThreadPayload p{};
  copy_thread_name(p.name, name);
  p.generation = t.generation;
  p.ring_index = t.ring_index;
  std::memcpy(r.payload, &p, sizeof p);
  return r;
}

// Claims a ring: a released one with room for our first record first (its
// pages are already resident),
// then a never-used one, whose pages we reserve and touch now so the hot path
// never faults.
bool claim_ring(ThreadState& t, Runtime& rt, const char* thread_name) noexcept {
  for (const abi::RingState from : {abi::RingState::kReleased, abi::RingState::kFree}) {
    for (std::uint32_t i = 0; i < rt.header->max_rings; ++i) {
      abi::RingControl* control = rt.ring(i);
      std::uint32_t expected = static_cast<std::uint32_t>(from);
      if (abi::atomic_load(control->state, std::memory_order_relaxed) != expected) continue;
      // Takes ownership; acquire pairs with the previous owner's release of
      // the ring, so its head and counters are visible.
      if (!abi::atomic_cas(control->state, expected, static_cast<std::uint32_t>(abi::RingState::kClaimed),
                           std::memory_order_acquire)) {
        continue;
      }
      if (from == abi::RingState::kReleased) {
        // Our thread-start record must be our first in the ring: it tells the
        // drain that the records after it are ours, not the previous owner's.
        // A ring still full of theirs would send it to the overflow area, so
        // such a ring is left for later. Relaxed head: the previous owner's
        // last value, visible through the CAS above; acquire tail pairs with
        // the consumer's release store after its commit.
        const std::uint64_t head = abi::atomic_load(control->head, std::memory_order_relaxed);
        const std::uint64_t tail = abi::atomic_load(control->tail, std::memory_order_acquire);
        if (head - tail >= rt.header->ring_capacity) {
          // Gives it back; pairs with the next claimer's acquire CAS.
          abi::atomic_store(control->state, static_cast<std::uint32_t>(abi::RingState::kReleased),
                            std::memory_order_release);
          continue;
        }
      }
      if (from == abi::RingState::kFree &&
          !rt.segment.reserve(abi::ring_offset(*rt.header, i), rt.header->ring_stride)) {
        // Shared memory is full: give the slot back, run without a ring.
        abi::atomic_store(control->state, static_cast<std::uint32_t>(abi::RingState::kFree),
                          std::memory_order_release);
        return false;
      }
      // The claim's fields, published by the release store of claimed_ticks
      // last: a reader that acquires claimed_ticks sees the generation, tid
      // and name of the same claim (the CAS above released nothing written
      // after it). Relaxed atomic stores: the drain reads them concurrently.
      t.generation = abi::atomic_load(control->generation, std::memory_order_relaxed) + 1;
      abi::atomic_store(control->generation, t.generation, std::memory_order_relaxed);
      abi::atomic_store(control->tid, t.tid, std::memory_order_relaxed);
      char name[sizeof control->thread_name];
      copy_thread_name(name, thread_name);
      for (std::size_t w = 0; w < sizeof name; w += sizeof(std::uint64_t)) {
        std::uint64_t word = 0;
        std::memcpy(&word, name + w, sizeof word);
        abi::atomic_store(*reinterpret_cast<std::uint64_t*>(control->thread_name + w), word, std::memory_order_relaxed);
      }
      // Pairs with the reader's acquire load of claimed_ticks (ring_info).
      abi::atomic_store(control->claimed_ticks, now_ticks(), std::memory_order_release);
      t.ring_index = i;
      t.control = control;
      t.slots = rt.ring_records(i);
      t.mask = rt.header->ring_capacity - 1;
      t.head = abi::atomic_load(control->head, std::memory_order_relaxed);  // we are its only writer now
      // Pairs with the consumer's release store of tail.
      t.limit = abi::atomic_load(control->tail, std::memory_order_acquire) + rt.header->ring_capacity;
      attach_ring_stats(t, rt, i);
      return true;
    }
  }
  return false;
}

void add_dropped(ThreadState& t, Runtime& rt, std::uint32_t count) noexcept {
  const std::uint64_t now = now_ticks();
  if (t.pending_drops == 0) t.first_drop_ticks = now;
  t.last_drop_ticks = now;
  t.pending_drops += count;
  if (t.control != nullptr) {
    abi::counter_add(t.control->dropped, count);
  } else {
    abi::atomic_fetch_add(rt.header->no_ring_dropped, std::uint64_t{count}, std::memory_order_relaxed);
  }
  t.limit = 0;  // the next write goes through the slow path to report the drop
}

void add_overflowed(ThreadState& t, Runtime& rt, std::uint32_t count) noexcept {
  if (t.control != nullptr) {
    abi::counter_add(t.control->overflowed, count);
  } else {
    abi::atomic_fetch_add(rt.header->no_ring_overflowed, std::uint64_t{count}, std::memory_order_relaxed);
  }
}

// The marker carries the timestamp of the record it precedes: every drop it
// reports happened before that record was made.
abi::Record drop_marker(const ThreadState& t, std::uint64_t next_timestamp) noexcept {
  abi::Record r{};
  r.kind = static_cast<std::uint8_t>(abi::RecordKind::kDropMarker);
  r.timestamp = next_timestamp;
  r.aux = t.pending_drops;
  abi::DropPayload p{};
  p.first_drop_timestamp = t.first_drop_ticks;
  p.last_drop_timestamp = t.last_drop_ticks;
  p.dropped_total = t.control != nullptr ? t.control->dropped : 0;
  std::memcpy(r.payload, &p, sizeof p);
  return r;
}

// Tries the thread's own ring: reloads the consumer's tail and writes the
// pending drop marker (if any) and the records in one publication.
bool try_ring(ThreadState& t, Runtime& rt, const abi::Record* records, std::uint32_t count) noexcept {
  if (t.control == nullptr) return false;
  const std::uint32_t capacity = rt.header->ring_capacity;
  const std::uint32_t need = count + (t.pending_drops > 0 ? 1 : 0);
  // Pairs with the consumer's release store of tail after its commit.
  const std::uint64_t tail = abi::atomic_load(t.control->tail, std::memory_order_acquire);
  if (t.head + need > tail + capacity) return false;
  if (t.pending_drops > 0) {
    t.slots[t.head & t.mask] = drop_marker(t, records[0].timestamp);
    ++t.head;
    t.pending_drops = 0;
  }
  for (std::uint32_t i = 0; i < count; ++i) t.slots[(t.head + i) & t.mask] = records[i];
  t.head += count;
  // Publishes; pairs with the consumer's acquire load of head.
  abi::atomic_store(t.control->head, t.head, std::memory_order_release);
  t.limit = tail + capacity;
  return true;
}

bool try_overflow(ThreadState& t, Runtime& rt, const abi::Record* records, std::uint32_t count) noexcept {
  const OverflowOrigin origin{t.ring_index, t.generation, t.tid};
  if (t.pending_drops > 0) {
    const abi::Record marker = drop_marker(t, records[0].timestamp);
    if (!rt.overflow.try_write(&marker, 1, origin)) return false;
    add_overflowed(t, rt, 1);
    t.pending_drops = 0;
  }
  if (!rt.overflow.try_write(records, count, origin)) return false;
  add_overflowed(t, rt, count);
  return true;
}

// Block policy (P4): wait while a drain attached to the segment keeps making
// progress (its heartbeat moves); give up once it has made none for
// block_timeout_ms, and from then on drop without waiting until the
// heartbeat moves again. A segment no drain has attached to yet gets one
// such wait too, so a run started just before its drain is still lossless.
bool wait_for_room(ThreadState& t, Runtime& rt, const abi::Record* records, std::uint32_t count) noexcept {
  if (rt.config.policy != abi::FullPolicy::kBlock) return false;
  // Pairs with the drain's release store of its heartbeat.
  std::uint64_t heartbeat = abi::atomic_load(rt.header->drain_heartbeat_ns, std::memory_order_acquire);
  if (t.block_gave_up && heartbeat == t.block_gave_up_heartbeat) return false;
  const std::uint64_t start = clock_ns(CLOCK_MONOTONIC);
  const std::uint64_t timeout = static_cast<std::uint64_t>(rt.config.block_timeout_ms) * 1'000'000ull;
  bool stored = false;
  // The sleep doubles from 20 us to 500 us: many threads waiting at once
  // (a hundred, say) must not take from the drain the CPU it needs to make
  // room for them, and the drain frees a ring's worth at a time anyway.
  long pause_ns = 20'000;
  for (std::uint32_t round = 0;; ++round) {
    if (try_ring(t, rt, records, count) || try_overflow(t, rt, records, count)) {
      stored = true;
      break;
    }
    if (round < 64) {
      cpu_relax();
      continue;
    }
    const timespec pause{0, pause_ns};
    ::nanosleep(&pause, nullptr);
    pause_ns = std::min(pause_ns * 2, 500'000L);
    heartbeat = abi::atomic_load(rt.header->drain_heartbeat_ns, std::memory_order_acquire);
    const std::uint64_t now = clock_ns(CLOCK_MONOTONIC);
    const std::uint64_t last_progress = std::max(heartbeat, start);
    if (now > last_progress && now - last_progress > timeout) {
      t.block_gave_up = true;
      t.block_gave_up_heartbeat = heartbeat;
      break;
    }
  }
  if (stored) t.block_gave_up = false;
  if (t.control != nullptr) abi::counter_add(t.control->blocked_ns, clock_ns(CLOCK_MONOTONIC) - start);
  return stored;
}

}  // namespace

bool grow_stack(ThreadState& t) noexcept {
  const std::uint32_t capacity = t.stack_capacity == 0 ? kInitialStack : t.stack_capacity * 2;
  auto* fresh = static_cast<StackEntry*>(map_anonymous(capacity * sizeof(StackEntry)));
  if (fresh == nullptr) return false;
  if (t.stack != nullptr) {
    std::memcpy(fresh, t.stack, t.depth * sizeof(StackEntry));
    ::munmap(t.stack, t.stack_capacity * sizeof(StackEntry));
  }
  t.stack = fresh;
  t.stack_capacity = capacity;
  return true;
}

bool ensure_thread(ThreadState& t, Runtime& rt) noexcept {
  if (t.status == ThreadStatus::kReady) return true;
  if (t.status == ThreadStatus::kExited) return false;  // after our TLS destructor ran
  t.tid = static_cast<std::uint32_t>(::gettid());
  t.rng = random_u64() | 1;
  if (t.next_span_id == 0) t.next_span_id = random_u64() | 1;
  if (t.stack == nullptr && !grow_stack(t)) return false;
  if (!prepare_thread_stats(t, rt)) return false;
  if (t.scratch == nullptr) {
    t.scratch = static_cast<abi::Record*>(map_anonymous(rt.max_value_records * sizeof(abi::Record)));
    if (t.scratch == nullptr) return false;
  }
  char name[17] = {};
  ::prctl(PR_GET_NAME, name, 0, 0, 0);
  struct EhGlobals {
    void* caught;
    unsigned uncaught;
  };
  if (auto* globals = static_cast<EhGlobals*>(__cxa_get_globals())) t.uncaught_exceptions = &globals->uncaught;
  t.ring_index = abi::kNoRing;
  t.control = nullptr;
  t.slots = nullptr;
  t.head = 0;
  t.limit = 0;
  if (!claim_ring(t, rt, name)) {
    abi::atomic_fetch_add(rt.header->no_ring_threads, std::uint64_t{1}, std::memory_order_relaxed);
  }
  t.status = ThreadStatus::kReady;
  // Registers the TLS destructor that releases the ring at thread exit.
  ::pthread_setspecific(g_thread_key, &t);
  const abi::Record start = thread_record(abi::RecordKind::kThreadStart, t, name);
  emit_one(t, rt, start);
  return true;
}

void emit_slow(ThreadState& t, Runtime& rt, const abi::Record* records, std::uint32_t count) noexcept {
  if (t.status != ThreadStatus::kReady && !ensure_thread(t, rt)) return;
  if (try_ring(t, rt, records, count)) return;
  if (try_overflow(t, rt, records, count)) return;
  if (wait_for_room(t, rt, records, count)) return;
  add_dropped(t, rt, count);
}

bool start_root(ThreadState& t, Runtime& rt, std::uint32_t group_id, std::uint64_t& ticks) noexcept {
  const TraceParent* parent = t.has_explicit ? &t.explicit_parent : rt.has_inherited ? &rt.inherited : nullptr;
  if (parent != nullptr) {
    // The upstream process decided for the whole trace (W3C sampled flag).
    if ((parent->flags & 1) == 0) return false;
    t.trace = parent->trace;
    t.root_parent = parent->span_id;
    t.root_remote = true;
    ticks = now_ticks();
    return true;
  }
  const std::uint64_t threshold = rt.threshold_for(group_id);
  if (threshold != kKeepAll && next_random(t.rng) >= threshold) return false;
  ticks = now_ticks();
  if (t.ms_cache_value == 0 || ticks - t.ms_cache_ticks > kMsCacheTicks) {
    t.ms_cache_value = clock_ns(CLOCK_REALTIME) / 1'000'000ull;
    t.ms_cache_ticks = ticks;
  }
  t.trace = make_uuid_v7(t.ms_cache_value, next_random(t.rng), next_random(t.rng));
  t.root_parent = 0;
  t.root_remote = false;
  return true;
}

void end_thread(ThreadState& t, Runtime& rt) noexcept {
  if (t.status != ThreadStatus::kReady) return;
  const abi::Record end = thread_record(abi::RecordKind::kThreadEnd, t, nullptr);
  emit_one(t, rt, end);
  if (t.control != nullptr) {
    // Hands the ring to the next thread; pairs with its acquire CAS.
    abi::atomic_store(t.control->state, static_cast<std::uint32_t>(abi::RingState::kReleased),
                      std::memory_order_release);
  }
  detach_thread_stats(t);
  t.control = nullptr;
  t.slots = nullptr;
  t.limit = 0;
  t.status = ThreadStatus::kExited;
}

void reset_thread_after_fork(ThreadState& t) noexcept {
  // The parent's ring and stack spans belong to the parent's segment. The
  // child's first root span continues the parent's current span.
  if (t.depth > 0 && shmtrace_unsampled_depth_ == 0) {
    t.explicit_parent.trace = t.trace;
    t.explicit_parent.span_id = t.stack[t.depth - 1].span_id;
    t.explicit_parent.flags = 1;
    t.has_explicit = true;
  }
  t.depth = 0;
  shmtrace_unsampled_depth_ = 0;
  t.stats_table = nullptr;  // the parent's; ensure_thread clears the cache
  t.stats_pending = nullptr;  // a bucket of the parent's segment: the parent bumps it
  t.control = nullptr;
  t.slots = nullptr;
  t.head = 0;
  t.limit = 0;
  t.pending_drops = 0;
  t.ring_index = abi::kNoRing;
  t.next_span_id = 0;  // a fresh random start: the parent continues its own sequence
  t.status = ThreadStatus::kNew;
}

}  // namespace shmtrace::runtime
