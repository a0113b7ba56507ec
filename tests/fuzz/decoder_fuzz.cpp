// Fuzz target: the record decoder and continuation reassembly over
// arbitrary records (a ring's contents are another process's writing).
// Each decoded value stays within the bound the decoder promises, and the
// records it says it used are records it was given.
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_support.hpp"
#include "reader/reader.hpp"

using namespace shmtrace;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<abi::Record> records(size / sizeof(abi::Record));
  if (!records.empty()) std::memcpy(records.data(), data, records.size() * sizeof(abi::Record));
  reader::DecodeStats stats;
  std::size_t used = 0;
  for (const reader::DecodedRecord& d : reader::decode(records, stats)) {
    SHMTRACE_FUZZ_CHECK(d.record_count >= 1);
    used += d.record_count;
    SHMTRACE_FUZZ_CHECK(d.value.size() <= records.size() * sizeof(abi::Record));
  }
  SHMTRACE_FUZZ_CHECK(used <= records.size());
  return 0;
}
