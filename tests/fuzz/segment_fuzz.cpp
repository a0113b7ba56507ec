// Fuzz target: the header validator and the segment reader over an
// arbitrary segment image (what another process may leave in /dev/shm).
// Everything a consumer reads of a segment is read: header, rings and their
// records decoded, overflow area, strings, module map, call-site statistics.
// Nothing may crash, hang or read out of bounds (ASan), whatever the bytes.
#include <cstdint>

#include "fuzz_support.hpp"
#include "reader/reader.hpp"

using namespace shmtrace;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::AlignedCopy image(data, size);
  auto segment = reader::Segment::from_memory(image.data(), image.size(), reader::Access::kReadOnly);
  if (!segment) return 0;
  reader::DecodeStats stats;
  const std::uint32_t rings = segment->ring_count();
  SHMTRACE_FUZZ_CHECK(rings == segment->header().max_rings);
  for (std::uint32_t r = 0; r < rings && r < 64; ++r) {
    (void)segment->ring_info(r);
    if (auto batch = segment->read_ring(r, 4096)) {
      SHMTRACE_FUZZ_CHECK(batch->records.size() <= segment->header().ring_capacity);
      for (const reader::DecodedRecord& d : reader::decode(batch->records, stats)) {
        (void)segment->string(d.name_id);
        (void)segment->string_flags(d.name_id);
      }
    }
    (void)segment->call_site_stats(r);
  }
  if (auto overflow = segment->read_overflow(4096)) {
    SHMTRACE_FUZZ_CHECK(overflow->entries.size() <= segment->header().overflow_capacity);
  }
  (void)segment->modules();
  (void)segment->state();
  (void)segment->exit_status();
  return 0;
}
