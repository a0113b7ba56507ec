#include "export_protobuf.hpp"

#include <bit>
#include <cstring>

namespace shmtrace::cli::exporting {

void ProtoWriter::fixed_double(std::uint32_t field, double value) {
  tag(field, 1);
  // fixed64 is little-endian on the wire.
  std::uint64_t bits = std::bit_cast<std::uint64_t>(value);
  char bytes[8];
  for (char& b : bytes) {
    b = static_cast<char>(bits & 0xFF);
    bits >>= 8;
  }
  buffer_.append(bytes, sizeof bytes);
}

void ProtoWriter::end(std::size_t at) {
  std::size_t length = buffer_.size() - at - 4;
  // Most messages are short: their content moves back over the unused
  // length bytes (a memmove of a few dozen bytes), so a slice costs its
  // minimal encoding. Messages inside this one have ended already, and
  // whatever encloses it has its length computed later.
  if (length < (std::size_t{1} << 14)) {
    const std::size_t width = length < 0x80 ? 1 : 2;
    if (width == 1) {
      buffer_[at] = static_cast<char>(length);
    } else {
      buffer_[at] = static_cast<char>((length & 0x7F) | 0x80);
      buffer_[at + 1] = static_cast<char>(length >> 7);
    }
    buffer_.erase(at + width, 4 - width);
    return;
  }
  for (int i = 0; i < 4; ++i) {
    buffer_[at + static_cast<std::size_t>(i)] = static_cast<char>((length & 0x7F) | (i < 3 ? 0x80 : 0));
    length >>= 7;
  }
}

}  // namespace shmtrace::cli::exporting
