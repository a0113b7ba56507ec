// The stored form of a call-site latency histogram (SPEC P13, D3): the
// histogram column of call_stats and call_sites, read back by the SQL
// functions (store/stats_sql.hpp) and by anyone with the layout below.
//
// Layout, little-endian, no padding:
//   u8   version            1
//   f64  ns_per_tick        the producer's clock: duration_ns = ticks * this
//   then per non-empty bucket, indices strictly ascending:
//   u16  bucket             abi::stats_bucket_of() of the durations in ticks
//   u64  count              calls that ended in that bucket
// A bucket b holds durations [stats_bucket_lower(b), stats_bucket_upper(b)]
// ticks (abi.hpp): exact below 64 ticks, then 32 buckets per power of two.
//
// Header-only and free of the drain's other parts: the SQLite extension
// (libshmtrace_sqlite.so) builds from it alone.
#ifndef SHMTRACE_DRAIN_HISTOGRAM_BLOB_HPP
#define SHMTRACE_DRAIN_HISTOGRAM_BLOB_HPP

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shmtrace/abi.hpp"

namespace shmtrace::drain::histogram {

inline constexpr std::uint8_t kVersion = 1;
inline constexpr std::size_t kHeaderBytes = 9;
inline constexpr std::size_t kEntryBytes = 10;

struct Bucket {
  std::uint32_t index = 0;
  std::uint64_t count = 0;
  bool operator==(const Bucket&) const = default;
};

struct Histogram {
  double ns_per_tick = 1;
  std::vector<Bucket> buckets;  // non-empty, ascending

  std::uint64_t total() const {
    std::uint64_t n = 0;
    for (const Bucket& b : buckets) n += b.count;
    return n;
  }
};

inline std::string encode(const Histogram& h) {
  std::string out(kHeaderBytes + kEntryBytes * h.buckets.size(), '\0');
  auto put = [&out](std::size_t at, std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out[at + i] = static_cast<char>(v >> (8 * i));
  };
  put(0, kVersion, 1);
  put(1, std::bit_cast<std::uint64_t>(h.ns_per_tick), 8);
  std::size_t at = kHeaderBytes;
  for (const Bucket& b : h.buckets) {
    put(at, b.index, 2);
    put(at + 2, b.count, 8);
    at += kEntryBytes;
  }
  return out;
}

// Nothing when the blob is not a histogram of this layout: wrong version or
// length, a bucket out of range or out of order, a clock that is not a
// positive finite number.
inline std::optional<Histogram> decode(const void* data, std::size_t size) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  if (size < kHeaderBytes || (size - kHeaderBytes) % kEntryBytes != 0 || p[0] != kVersion) return std::nullopt;
  auto get = [p](std::size_t at, int bytes) {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= static_cast<std::uint64_t>(p[at + i]) << (8 * i);
    return v;
  };
  Histogram h;
  h.ns_per_tick = std::bit_cast<double>(get(1, 8));
  if (!(h.ns_per_tick > 0) || !std::isfinite(h.ns_per_tick)) return std::nullopt;
  h.buckets.reserve((size - kHeaderBytes) / kEntryBytes);
  for (std::size_t at = kHeaderBytes; at < size; at += kEntryBytes) {
    const Bucket b{static_cast<std::uint32_t>(get(at, 2)), get(at + 2, 8)};
    if (b.index >= abi::kStatsBuckets || (!h.buckets.empty() && b.index <= h.buckets.back().index)) {
      return std::nullopt;
    }
    h.buckets.push_back(b);
  }
  return h;
}
inline std::optional<Histogram> decode(std::string_view blob) { return decode(blob.data(), blob.size()); }

// later - earlier, bucket by bucket (counters only grow; a bucket that would
// go negative counts 0). The clock is later's.
inline Histogram difference(const Histogram& later, const Histogram& earlier) {
  Histogram out;
  out.ns_per_tick = later.ns_per_tick;
  std::size_t j = 0;
  for (const Bucket& b : later.buckets) {
    while (j < earlier.buckets.size() && earlier.buckets[j].index < b.index) ++j;
    const std::uint64_t before =
        j < earlier.buckets.size() && earlier.buckets[j].index == b.index ? earlier.buckets[j].count : 0;
    if (b.count > before) out.buckets.push_back({b.index, b.count - before});
  }
  return out;
}

// A bucket's range in nanoseconds under the histogram's clock. The last
// bucket is open (over 4.3e12 ticks): its range is given as its lower bound.
inline double lower_ns(const Histogram& h, std::uint32_t bucket) {
  return static_cast<double>(abi::stats_bucket_lower(bucket)) * h.ns_per_tick;
}
inline double upper_ns(const Histogram& h, std::uint32_t bucket) {
  const std::uint64_t upper =
      bucket >= abi::kStatsBuckets - 1 ? abi::stats_bucket_lower(bucket) : abi::stats_bucket_upper(bucket);
  return static_cast<double>(upper) * h.ns_per_tick;
}

}  // namespace shmtrace::drain::histogram

#endif
