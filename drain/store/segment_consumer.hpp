// Moves one segment's records into the store exactly once (SPEC D2, D7):
// each pass reads the error area, then every ring, then the overflow area,
// stores it all in one transaction, and only after the commit hands the
// ring and overflow slots back to the producer. A drain killed between the
// commit and the hand-back stores the same records again on restart, which
// the store's keys turn into no-ops.
#ifndef SHMTRACE_DRAIN_SEGMENT_CONSUMER_HPP
#define SHMTRACE_DRAIN_SEGMENT_CONSUMER_HPP

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "reader/reader.hpp"
#include "store/store.hpp"
#include "symbols/resolver.hpp"

namespace shmtrace::drain {

struct PassStats {
  std::uint64_t records = 0;  // raw records consumed (rings + overflow)
  std::uint64_t errors = 0;
};

class SegmentConsumer {
 public:
  // Registers the segment's process in the store and resumes its error cursor.
  static StoreResult<SegmentConsumer> open(reader::Segment segment, Store& store);

  StoreResult<PassStats> pass(Store& store);

  // The process image is gone for good: exited, crashed, exec'd, or its pid
  // no longer names it (killed, or reused by another process).
  bool image_gone() const;

  // Records the process's fate and removes its segment (after a last pass).
  StoreResult<void> finish(Store& store);

  const std::string& name() const { return segment_.name(); }

  // The stored name of a string id: "@0x<addr>" resolved to the function.
  const std::string& name_of(std::uint32_t id);

 private:
  SegmentConsumer(reader::Segment segment, std::int64_t key, reader::ErrorCursor cursor);

  reader::Segment segment_;
  std::int64_t key_ = 0;
  reader::ErrorCursor cursor_;
  std::map<std::uint32_t, std::uint32_t> ring_tid_;  // ring -> thread that wrote the records read last
  // Names of instrumented functions the runtime could only give by address
  // ("@0x..."), resolved through the segment's module map (P9), per name id.
  std::optional<symbols::Resolver> resolver_;
  std::map<std::uint32_t, std::string> names_;
};

}  // namespace shmtrace::drain

#endif
