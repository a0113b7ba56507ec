// Fuzz target: the spill-file reader. The input is a whole spill file (the
// drain's own batches, but a disk or an older drain may have left anything):
// opened, its torn tail cut, every frame replayed, whole frames it cannot
// read set aside. And the batch decoder alone over the input as one frame's
// payload. Each batch that decodes encodes back to the same bytes.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "store/spill_file.hpp"

using namespace shmtrace;

namespace {

const std::string& spill_path() {
  // tmpfs: the spill file syncs what it cuts, which on a disk costs most of
  // each execution.
  static const std::string path = "/dev/shm/fuzz-spill-" + std::to_string(::getpid());
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Every payload format a drain reads: the current one round-trips; an
  // older one read back is stored in the current format.
  for (std::uint32_t version = 1; version <= drain::kSpillFormatVersion; ++version) {
    if (auto batch = drain::deserialize(data, size, version)) {
      const std::vector<std::uint8_t> again = drain::serialize(*batch);
      auto back = drain::deserialize(again.data(), again.size());
      SHMTRACE_FUZZ_CHECK(back.has_value());
      SHMTRACE_FUZZ_CHECK(drain::serialize(*back) == again);
    }
  }
  const std::string& path = spill_path();
  ::unlink((path + ".rejected").c_str());
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) fuzz::broken("cannot write the spill file");
  if (size > 0 && ::write(fd, data, size) != static_cast<ssize_t>(size)) fuzz::broken("short write");
  ::close(fd);
  auto spill = drain::SpillFile::open(path, std::uint64_t{1} << 30);
  if (!spill) return 0;
  SHMTRACE_FUZZ_CHECK(spill->bytes() <= size);
  std::uint64_t stored = 0;
  auto replayed = spill->replay([&](const drain::Batch&) -> std::expected<void, std::string> {
    ++stored;
    return {};
  });
  if (replayed) SHMTRACE_FUZZ_CHECK(*replayed == stored);
  return 0;
}
