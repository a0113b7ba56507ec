// The drain's redactor (drain/redact), beside a copy of the same string.
//
// The drain makes a std::string of every text value it stores; the redactor
// then works on that string in place. So each figure is "copy + redact" over
// "copy": how many copies' worth the stored form costs. Both halves run in
// the same iteration (a batch of copies, then a batch of copy + redact, each
// timed with the steady clock), so the ratio counter compares them under the
// same conditions on a shared machine; the reported time is the second half.
//   BM_Copy_<case>               baseline: the copy alone
//   BM_Redact_<case>             copy + Redactor::redact; counter ratio
//   BM_RedactUnfiltered_<case>   the same without the prefilter (information:
//                                what the prefilter saves)
//   BM_SensitiveName             Redactor::sensitive_name on a typical name
// Cases: short (30 bytes, no secret, the common value), kib (1 KiB of log
// text, no secret), secrets (a 150-byte value with five secrets).
#include <chrono>
#include <cstdio>
#include <string>

#include "bench_support.hpp"
#include "redact/redactor.hpp"

namespace {

using shmtrace::bench::Figure;
using shmtrace::drain::Redactor;

constexpr std::string_view kShort = "GET /api/v1/users/12345 200 OK";
static_assert(kShort.size() == 30);

std::string make_kib() {
  const std::string sentence =
      "processed batch 42 of 97 in 12.5 ms; queue depth 3, retries 0, cache hit ratio 0.93 for shard eu-west/7. ";
  std::string out;
  while (out.size() < 1024) out += sentence;
  out.resize(1024);
  return out;
}

const std::string kSecrets =
    "login ok for jane.doe@example.com password=hunter2 via ghp_16C7e42F292c6912E7710c838347Ae178B4a "
    "from +44 20 7946 0958 Authorization: Bearer abc123def456";

std::optional<Redactor> g_redactor;

struct Case {
  const char* name;
  std::string value;
};
std::vector<Case> g_cases;

constexpr int kBatch = 64;

double now_ns() {
  return static_cast<double>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

void BM_Copy(benchmark::State& state, const std::string* value) {
  for (auto _ : state) {
    std::string copy = *value;
    benchmark::DoNotOptimize(copy.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}

// Each iteration: kBatch copies, then kBatch copies each redacted; the
// manual time is the second half, the ratio counter is second / first.
void BM_Redact(benchmark::State& state, const std::string* value, bool prefilter) {
  const Redactor& redactor = *g_redactor;
  double copy_ns = 0;
  double redact_ns = 0;
  std::size_t replaced = 0;
  for (auto _ : state) {
    const double t0 = now_ns();
    for (int i = 0; i < kBatch; ++i) {
      std::string copy = *value;
      benchmark::DoNotOptimize(copy.data());
      benchmark::ClobberMemory();
    }
    const double t1 = now_ns();
    for (int i = 0; i < kBatch; ++i) {
      std::string copy = *value;
      replaced += prefilter ? redactor.redact(copy).replaced : redactor.redact_unfiltered(copy).replaced;
      benchmark::DoNotOptimize(copy.data());
      benchmark::ClobberMemory();
    }
    const double t2 = now_ns();
    copy_ns += t1 - t0;
    redact_ns += t2 - t1;
    state.SetIterationTime((t2 - t1) / kBatch / 1e9);  // per value
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["ratio"] = copy_ns > 0 ? redact_ns / copy_ns : 0;
  state.counters["copy_ns"] = copy_ns / static_cast<double>(state.iterations() * kBatch);
  state.counters["replaced"] = static_cast<double>(replaced) / static_cast<double>(state.iterations() * kBatch);
}

void BM_SensitiveName(benchmark::State& state) {
  const Redactor& redactor = *g_redactor;
  const std::string_view names[] = {"http.request.method", "db.statement", "user_id", "X-Api-Key"};
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(redactor.sensitive_name(names[i++ & 3]));
  }
  state.SetItemsProcessed(state.iterations());
}

}  // namespace

int main(int argc, char** argv) {
  std::atexit(shmtrace::bench::unlink_own_segment);
  std::vector<std::string> args(argv + 1, argv + argc);
  auto full = shmtrace::bench::with_defaults(argv[0], args, "0.2");
  int bench_argc = full.argc();
  benchmark::Initialize(&bench_argc, full.argv.data());
  if (benchmark::ReportUnrecognizedArguments(bench_argc, full.argv.data())) return 1;

  auto created = Redactor::create();
  if (!created) {
    std::fprintf(stderr, "redact_bench: %s\n", created.error().c_str());
    return 1;
  }
  g_redactor.emplace(std::move(*created));
  g_cases = {{"short", std::string(kShort)}, {"kib", make_kib()}, {"secrets", kSecrets}};
  // The fixtures must be what they claim: no secret in the first two.
  for (const Case& c : g_cases) {
    std::string v = c.value;
    const bool has_secret = g_redactor->redact(v).replaced != 0;
    if (has_secret != (std::string_view(c.name) == "secrets")) {
      std::fprintf(stderr, "redact_bench: fixture '%s' %s a secret\n", c.name, has_secret ? "has" : "lacks");
      return 1;
    }
  }

  for (const Case& c : g_cases) {
    const std::string* value = &c.value;
    benchmark::RegisterBenchmark((std::string("BM_Copy_") + c.name).c_str(), BM_Copy, value);
    benchmark::RegisterBenchmark((std::string("BM_Redact_") + c.name).c_str(), BM_Redact, value, true)
        ->UseManualTime();
    benchmark::RegisterBenchmark((std::string("BM_RedactUnfiltered_") + c.name).c_str(), BM_Redact, value, false)
        ->UseManualTime();
  }
  benchmark::RegisterBenchmark("BM_SensitiveName", BM_SensitiveName);

  shmtrace::bench::CollectingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  const Figure* any = reporter.find("BM_Redact_short");
  std::printf("\n==== redact_bench summary: ns per value, %s of %ld repetition(s) ====\n",
              any != nullptr ? any->aggregate.c_str() : "median", any != nullptr ? any->repetitions : 0L);
  std::printf("%-10s %8s %12s %14s %8s %18s\n", "case", "bytes", "copy ns", "copy+redact ns", "ratio",
              "unfiltered ratio");
  for (const Case& c : g_cases) {
    const Figure* copy = reporter.find(std::string("BM_Copy_") + c.name);
    const Figure* redact = reporter.find(std::string("BM_Redact_") + c.name);
    const Figure* unfiltered = reporter.find(std::string("BM_RedactUnfiltered_") + c.name);
    if (copy == nullptr || redact == nullptr || unfiltered == nullptr) {
      std::printf("%-10s n/a\n", c.name);
      continue;
    }
    const auto counter = [](const Figure* f, const char* key) {
      const auto it = f->counters.find(key);
      return it == f->counters.end() ? 0.0 : it->second;
    };
    std::printf("%-10s %8zu %12.1f %14.1f %8.2f %18.2f\n", c.name, c.value.size(), copy->ns, redact->ns,
                counter(redact, "ratio"), counter(unfiltered, "ratio"));
  }
  std::printf("ratio: copy+redact over a copy of the same string, both timed in the same iterations\n");
  if (const Figure* f = reporter.find("BM_SensitiveName")) {
    std::printf("sensitive_name: %.1f ns per name\n", f->ns);
  }
  std::fflush(stdout);
  shmtrace::bench::unlink_own_segment();
  return reporter.errors().empty() ? 0 : 1;
}
