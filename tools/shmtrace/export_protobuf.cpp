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
  for (int i = 0; i < 4; ++i) {
    buffer_[at + static_cast<std::size_t>(i)] = static_cast<char>((length & 0x7F) | (i < 3 ? 0x80 : 0));
    length >>= 7;
  }
}

}  // namespace shmtrace::cli::exporting
