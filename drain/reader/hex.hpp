// Bytes as lowercase hex digits: build ids, trace ids. Header-only, so the
// libc-only module walk (symbols/process_modules) can use it too.
#ifndef SHMTRACE_READER_HEX_HPP
#define SHMTRACE_READER_HEX_HPP

#include <cstddef>
#include <cstdint>
#include <string>

namespace shmtrace::reader {

inline std::string to_hex(const std::uint8_t* bytes, std::size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (std::size_t i = 0; i < size; ++i) {
    out += kDigits[bytes[i] >> 4];
    out += kDigits[bytes[i] & 0xf];
  }
  return out;
}

}  // namespace shmtrace::reader

#endif
