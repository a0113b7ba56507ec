// Fuzz target: the error-area walker over an arbitrary error chunk. The
// input is the chunk's bytes (header included) in a real /dev/shm object
// beside a valid segment, read as the drain reads it: from the start, as if
// the writer were alive and as if it were gone (half-written entries passed
// over). Every returned entry lies inside the chunk and within its limits.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>

#include "fuzz_support.hpp"
#include "reader/reader.hpp"
#include "support/segment_builder.hpp"

using namespace shmtrace;

namespace {

struct Fixture {
  test::SegmentBuilder segment{[] {
    test::Geometry g;
    g.error_chunk_bytes = fuzz::kErrorFixtureChunkBytes;
    return g;
  }()};
  std::unique_ptr<test::ErrorChunkWriter> chunk;
  Fixture() {
    segment.header().pid = static_cast<std::uint32_t>(::getpid());
    segment.header().nonce = fuzz::kErrorFixtureNonce;
    chunk = std::make_unique<test::ErrorChunkWriter>(segment, 0);
  }
};

Fixture& fixture() {
  static Fixture* f = new Fixture;  // the chunk object outlives every input
  return *f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Fixture& f = fixture();
  const std::size_t capacity = f.segment.header().error_chunk_bytes;
  const std::size_t n = size < capacity ? size : capacity;
  std::memset(f.chunk->data(), 0, capacity);
  std::memcpy(f.chunk->data(), data, n);
  for (const bool writer_gone : {false, true}) {
    auto segment = reader::Segment::from_memory(f.segment.base(), f.segment.size(), reader::Access::kReadOnly);
    if (!segment) fuzz::broken("the fixture segment is refused");
    auto batch = segment->read_errors(reader::ErrorCursor{}, 1000, writer_gone);
    if (!batch) continue;
    for (const reader::ErrorRecord& e : batch->errors) {
      SHMTRACE_FUZZ_CHECK(e.type.size() <= abi::kMaxErrorType);
      SHMTRACE_FUZZ_CHECK(e.message.size() <= abi::kMaxErrorMessage);
      SHMTRACE_FUZZ_CHECK(e.preview.size() <= abi::kMaxErrorPreview);
      SHMTRACE_FUZZ_CHECK(e.frames.size() <= abi::kMaxErrorFrames);
    }
    SHMTRACE_FUZZ_CHECK(batch->next.chunk > 0 || batch->next.offset <= capacity);
  }
  return 0;
}
