// Reader throughput of one ring, beside a memcpy of the same bytes.
//
// A producer thread writes counters through the C API (libshmtrace.so) into
// its ring; the benchmark thread is the consumer. Each iteration, with the
// clock stopped, the producer publishes 8192 records (half a ring: it never
// meets a full ring); then the clock runs while the consumer takes them out.
// So the figure is the consumer's own rate on records freshly written by
// another core, whatever the scheduler does to the producer on the shared
// 2-core VM. Figures, records per second (median of 5 repetitions;
// items_per_second is per consumer CPU second):
//   BM_ReaderReadDecodeCommit  read_ring (up to 4096) + decode + commit_ring
//   BM_ReaderReadCommit        read_ring + commit_ring, no decode (information)
//   BM_RingMemcpy              baseline: memcpy of the same ring bytes out of
//                              the live ring (same producer, same cross-core
//                              traffic) into a reused buffer, + commit_ring
//   BM_Memcpy                  the machine's copy ceiling: 4096-record memcpy
//                              from a 1 MiB buffer no other thread writes
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include <atomic>
#include <cinttypes>
#include <thread>

#include "bench_support.hpp"

namespace {

namespace abi = shmtrace::abi;
namespace reader = shmtrace::reader;
using shmtrace::bench::Figure;
using shmtrace::bench::rate;

constexpr std::size_t kBatch = 4096;
constexpr std::uint64_t kProducerChunk = 1024;

std::optional<reader::Segment> g_consumer;
shmtrace::bench::RingWatch g_watch;  // the producer's ring
std::uint32_t g_ring = abi::kNoRing;

// The producer thread: writes counters until it has written g_target in
// all. Each benchmark iteration raises the target by kPerIteration (half a
// ring, so the producer never meets a full ring) with the clock stopped,
// waits until the records are published, then times their consumption.
std::atomic<bool> g_quit{false};
std::atomic<std::uint32_t> g_producer_tid{0};
std::atomic<bool> g_ring_ready{false};  // g_ring and g_watch are set
std::atomic<std::uint64_t> g_target{0};
std::atomic<std::uint64_t> g_active{0};  // > 0 while a benchmark runs: spin instead of sleeping
constexpr std::uint64_t kPerIteration = 8192;

void producer_main() {
  ::prctl(PR_SET_NAME, "bench-producer", 0, 0, 0);
  const shmtrace_name_t name = shmtrace_intern("bench.counter");
  shmtrace_counter_i64(name, 0);  // claims this thread's ring
  g_producer_tid.store(static_cast<std::uint32_t>(::gettid()), std::memory_order_release);
  while (!g_ring_ready.load(std::memory_order_acquire)) {
    if (g_quit.load(std::memory_order_acquire)) return;
    ::usleep(100);
  }
  std::uint64_t produced = 0;
  std::int64_t value = 0;
  while (!g_quit.load(std::memory_order_relaxed)) {
    const std::uint64_t target = g_target.load(std::memory_order_acquire);
    if (produced == target) {
      if (g_active.load(std::memory_order_relaxed) != 0) {
        _mm_pause();
      } else {
        ::usleep(200);
      }
      continue;
    }
    const std::uint64_t n = std::min(target - produced, kProducerChunk);
    for (std::uint64_t i = 0; i < n; ++i) shmtrace_counter_i64(name, ++value);
    produced += n;
  }
}

struct Active {
  Active() { g_active.fetch_add(1, std::memory_order_relaxed); }
  ~Active() { g_active.fetch_sub(1, std::memory_order_relaxed); }
};

// With the clock stopped: asks for kPerIteration more records and waits
// until they are all published (the ring was empty before).
// Untimed fill time, for the summary (includes waiting for a CPU).
std::uint64_t g_fill_ticks = 0;
std::uint64_t g_fills = 0;
void produce_untimed(benchmark::State& state) {
  state.PauseTiming();
  const std::uint64_t tail = abi::atomic_load(*g_watch.tail(), std::memory_order_relaxed);
  const std::uint64_t t0 = __rdtsc();
  g_target.fetch_add(kPerIteration, std::memory_order_release);
  // Sleeps between looks at head: a consumer spinning on head takes its
  // cache line away from the producer on every record, and on a loaded
  // 2-core machine a spinning consumer also takes the producer's CPU.
  const timespec pause{0, 10'000};
  while (abi::atomic_load(*g_watch.head(), std::memory_order_acquire) - tail < kPerIteration) {
    ::nanosleep(&pause, nullptr);
  }
  g_fill_ticks += __rdtsc() - t0;
  ++g_fills;
  state.ResumeTiming();
}

void drain_rest() {
  // Empties the ring between runs, so each run starts from the same state.
  for (int i = 0; i < 100; ++i) {
    auto batch = g_consumer->read_ring(g_ring, 1u << 20);
    if (!batch || batch->records.empty()) return;
    (void)g_consumer->commit_ring(g_ring, batch->end_position);
  }
}

// One iteration consumes exactly kPerIteration records in batches of at most
// kBatch: read_ring, then (with `decode`) decode, then commit_ring.
template <bool kDecode>
void reader_loop(benchmark::State& state) {
  Active active;
  drain_rest();
  std::uint64_t records = 0;
  shmtrace::reader::DecodeStats stats;
  for (auto _ : state) {
    produce_untimed(state);
    std::uint64_t left = kPerIteration;
    while (left > 0) {
      auto batch = g_consumer->read_ring(g_ring, std::min<std::uint64_t>(left, kBatch));
      if (!batch) {
        state.SkipWithError(batch.error().message.c_str());
        return;
      }
      if constexpr (kDecode) {
        auto decoded = shmtrace::reader::decode(batch->records, stats);
        benchmark::DoNotOptimize(decoded.data());
      } else {
        benchmark::DoNotOptimize(batch->records.data());
      }
      if (auto c = g_consumer->commit_ring(g_ring, batch->end_position); !c) {
        state.SkipWithError(c.error().message.c_str());
        return;
      }
      left -= batch->records.size();
      records += batch->records.size();
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(records));
  if constexpr (kDecode) {
    state.counters["bad"] = static_cast<double>(stats.unknown_kinds + stats.broken_continuations);
  }
}

void BM_ReaderReadDecodeCommit(benchmark::State& state) { reader_loop<true>(state); }
void BM_ReaderReadCommit(benchmark::State& state) { reader_loop<false>(state); }

// The baseline: the same records, copied out of the same ring with memcpy
// into a reused buffer, then committed.
void BM_RingMemcpy(benchmark::State& state) {
  Active active;
  drain_rest();
  std::vector<abi::Record> buffer(kBatch);
  const abi::Record* slots = g_watch.records();
  const std::uint64_t capacity = g_watch.capacity();
  std::uint64_t records = 0;
  for (auto _ : state) {
    produce_untimed(state);
    std::uint64_t left = kPerIteration;
    while (left > 0) {
      const std::uint64_t head = abi::atomic_load(*g_watch.head(), std::memory_order_acquire);
      const std::uint64_t tail = abi::atomic_load(*g_watch.tail(), std::memory_order_relaxed);
      const std::uint64_t count = std::min({head - tail, left, static_cast<std::uint64_t>(kBatch)});
      const std::uint64_t first = tail & (capacity - 1);
      const std::uint64_t run = std::min(count, capacity - first);
      std::memcpy(buffer.data(), slots + first, run * sizeof(abi::Record));
      if (count > run) std::memcpy(buffer.data() + run, slots, (count - run) * sizeof(abi::Record));
      benchmark::DoNotOptimize(buffer.data());
      benchmark::ClobberMemory();
      if (auto c = g_consumer->commit_ring(g_ring, tail + count); !c) {
        state.SkipWithError(c.error().message.c_str());
        return;
      }
      left -= count;
      records += count;
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(records));
}

void BM_Memcpy(benchmark::State& state) {
  constexpr std::size_t kSource = 16384;  // 1 MiB, the size of a default ring
  std::vector<abi::Record> source(kSource);
  for (std::size_t i = 0; i < kSource; ++i) source[i].timestamp = i;
  std::vector<abi::Record> buffer(kBatch);
  std::size_t at = 0;
  std::uint64_t records = 0;
  for (auto _ : state) {
    std::memcpy(buffer.data(), source.data() + at, kBatch * sizeof(abi::Record));
    benchmark::DoNotOptimize(buffer.data());
    benchmark::ClobberMemory();
    at = (at + kBatch) % kSource;
    records += kBatch;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(records));
}

}  // namespace

int main(int argc, char** argv) {
  std::atexit(shmtrace::bench::unlink_own_segment);
  if (shmtrace_enabled() == 0) {
    std::fprintf(stderr, "reader_bench: the shmtrace runtime is off in this process; nothing to measure\n");
    return 1;
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  // A short minimum time: each iteration also waits, untimed, for the producer.
  auto full = shmtrace::bench::with_defaults(argv[0], args, "0.05");
  int bench_argc = full.argc();
  benchmark::Initialize(&bench_argc, full.argv.data());
  if (benchmark::ReportUnrecognizedArguments(bench_argc, full.argv.data())) return 1;

  const std::string segment_name = shmtrace_segment_name();
  auto consumer = reader::Segment::attach(segment_name, reader::Access::kConsume);
  if (!consumer) {
    std::fprintf(stderr, "reader_bench: cannot attach to %s: %s\n", segment_name.c_str(),
                 consumer.error().message.c_str());
    return 1;
  }
  g_consumer.emplace(std::move(*consumer));

  std::thread producer(producer_main);
  while (g_producer_tid.load(std::memory_order_acquire) == 0) ::usleep(100);
  const std::uint32_t ring = shmtrace::bench::ring_of_tid(*g_consumer, g_producer_tid.load());
  if (ring == abi::kNoRing || !g_watch.open(segment_name, ring)) {
    std::fprintf(stderr, "reader_bench: the producer thread has no ring in %s\n", segment_name.c_str());
    g_quit.store(true, std::memory_order_release);
    producer.join();
    return 1;
  }
  g_ring = ring;
  g_ring_ready.store(true, std::memory_order_release);  // releases the producer

  benchmark::RegisterBenchmark("BM_Memcpy", BM_Memcpy);
  benchmark::RegisterBenchmark("BM_RingMemcpy", BM_RingMemcpy);
  benchmark::RegisterBenchmark("BM_ReaderReadCommit", BM_ReaderReadCommit);
  benchmark::RegisterBenchmark("BM_ReaderReadDecodeCommit", BM_ReaderReadDecodeCommit);

  shmtrace::bench::CollectingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  g_quit.store(true, std::memory_order_release);
  producer.join();

  const auto info = g_consumer->ring_info(ring);
  const double ticks_per_ns = g_consumer->clock().ticks_per_ns();
  const Figure* any = reporter.find("BM_ReaderReadDecodeCommit");
  std::printf("\n==== reader_bench summary: one ring, records per consumer CPU second, %s of %ld repetition(s) ====\n",
              any != nullptr ? any->aggregate.c_str() : "median", any != nullptr ? any->repetitions : 0L);
  for (const char* name : {"BM_Memcpy", "BM_RingMemcpy", "BM_ReaderReadCommit", "BM_ReaderReadDecodeCommit"}) {
    const Figure* f = reporter.find(name);
    if (f == nullptr) {
      std::printf("%-28s %14s\n", name, "n/a");
      continue;
    }
    std::printf("%-28s %10.2f M records/s  (%.2f ns/record)\n", name, rate(f) / 1e6,
                rate(f) > 0 ? 1e9 / rate(f) : 0.0);
  }
  const auto ratio = [&](const char* label, const char* num, const char* den, const char* note) {
    const double a = rate(reporter.find(num));
    const double b = rate(reporter.find(den));
    if (a <= 0 || b <= 0) {
      std::printf("ratio %-40s n/a\n", label);
      return;
    }
    std::printf("ratio %-40s %6.3f  %s\n", label, a / b, note);
  };
  ratio("ReaderReadDecodeCommit / RingMemcpy", "BM_ReaderReadDecodeCommit", "BM_RingMemcpy",
        "(reader+decode rate over a raw copy of the same live ring)");
  ratio("ReaderReadDecodeCommit / Memcpy", "BM_ReaderReadDecodeCommit", "BM_Memcpy",
        "(over the machine's cache-hot copy rate)");
  ratio("ReaderReadCommit / RingMemcpy", "BM_ReaderReadCommit", "BM_RingMemcpy", "(without decode)");
  if (g_fills > 0 && ticks_per_ns > 0) {
    std::printf("producer (untimed): %.1f ns per counter record on average over %" PRIu64
                " fills of %" PRIu64 " records, waiting for a CPU included\n",
                static_cast<double>(g_fill_ticks) / ticks_per_ns / static_cast<double>(g_fills * kPerIteration), g_fills,
                kPerIteration);
  }
  if (info) {
    std::printf("producer ring: %" PRIu64 " records written, %" PRIu64 " dropped, %" PRIu64 " overflowed (%s)\n",
                info->written, info->dropped, info->overflowed,
                info->dropped == 0 && info->overflowed == 0 ? "figures VALID" : "INVALID: the producer hit a full ring");
  }
  std::fflush(stdout);
  shmtrace::bench::unlink_own_segment();
  return reporter.errors().empty() ? 0 : 1;
}
