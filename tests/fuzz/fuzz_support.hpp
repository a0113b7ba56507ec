// Shared by the fuzz targets: a copy of the input in memory aligned as a
// segment mapping is (64 bytes), and the check that stops the fuzzer on a
// broken invariant (an abort the fuzzer reports with the input that did it).
#ifndef SHMTRACE_TESTS_FUZZ_FUZZ_SUPPORT_HPP
#define SHMTRACE_TESTS_FUZZ_FUZZ_SUPPORT_HPP

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace shmtrace::fuzz {

// The error-area target's segment: its nonce and chunk size, which the
// corpus's chunk headers carry (tests/fuzz/seed_corpus.cpp writes them so).
inline constexpr std::uint64_t kErrorFixtureNonce = 0x5eed5eed5eed5eedull;
inline constexpr std::uint32_t kErrorFixtureChunkBytes = 4096;

// Page-aligned private memory holding the input, unmapped at scope exit.
class AlignedCopy {
 public:
  AlignedCopy(const std::uint8_t* data, std::size_t size) : size_(size) {
    const std::size_t mapped = size == 0 ? 1 : size;
    void* base = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) std::abort();
    base_ = static_cast<std::byte*>(base);
    if (size != 0) std::memcpy(base_, data, size);
  }
  AlignedCopy(const AlignedCopy&) = delete;
  AlignedCopy& operator=(const AlignedCopy&) = delete;
  ~AlignedCopy() { ::munmap(base_, size_ == 0 ? 1 : size_); }
  std::byte* data() const { return base_; }
  std::size_t size() const { return size_; }

 private:
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
};

[[noreturn]] inline void broken(const char* what) {
  std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
  std::abort();
}

#define SHMTRACE_FUZZ_CHECK(condition) \
  do {                                 \
    if (!(condition)) ::shmtrace::fuzz::broken(#condition); \
  } while (0)

}  // namespace shmtrace::fuzz

#endif
