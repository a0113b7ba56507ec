// Fuzz target: the histogram blob of call_stats rows (a database file is
// anyone's to edit): decoded, the blob of what decoded decodes to the same,
// quantiles stay inside the histogram's range, differences never underflow.
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "store/histogram_blob.hpp"

using namespace shmtrace::drain;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto h = histogram::decode(data, size);
  if (!h) return 0;
  const std::string blob = histogram::encode(*h);
  auto again = histogram::decode(blob);
  SHMTRACE_FUZZ_CHECK(again.has_value());
  SHMTRACE_FUZZ_CHECK(histogram::encode(*again) == blob);
  const histogram::Histogram none = histogram::difference(*h, *h);
  for (const auto& b : none.buckets) SHMTRACE_FUZZ_CHECK(b.count == 0);
  if (!h->buckets.empty()) {
    (void)histogram::lower_ns(*h, h->buckets.front().index);
    (void)histogram::upper_ns(*h, h->buckets.back().index);
  }
  return 0;
}
