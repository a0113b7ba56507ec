// A protobuf wire-format encoder, just what the Perfetto writer needs
// (no libprotobuf): varint, fixed64 and length-delimited fields, and nested
// messages written in place. A nested message reserves 4 bytes for its
// length and fills them in when it ends: a message under 16 KiB then moves
// its content back to a 1- or 2-byte length (minimal encoding), a longer one
// keeps a 4-byte varint with redundant continuation bits (which every
// protobuf parser accepts; Perfetto's protozero writes them too). Messages
// nest up to 256 MiB.
#ifndef SHMTRACE_TOOLS_EXPORT_PROTOBUF_HPP
#define SHMTRACE_TOOLS_EXPORT_PROTOBUF_HPP

#include <cstdint>
#include <string>
#include <string_view>

namespace shmtrace::cli::exporting {

class ProtoWriter {
 public:
  void varint(std::uint32_t field, std::uint64_t value) {
    tag(field, 0);
    raw_varint(value);
  }
  // int64 and int32 fields: two's complement, as varints.
  void int64(std::uint32_t field, std::int64_t value) { varint(field, static_cast<std::uint64_t>(value)); }
  void fixed_double(std::uint32_t field, double value);
  void bytes(std::uint32_t field, std::string_view value) {
    tag(field, 2);
    raw_varint(value.size());
    buffer_.append(value);
  }
  // Bytes already encoded as fields of the message being written.
  void raw(std::string_view encoded) { buffer_.append(encoded); }
  // begin() returns where the message's length goes; end() fills it in.
  std::size_t begin(std::uint32_t field) {
    tag(field, 2);
    const std::size_t at = buffer_.size();
    buffer_.append(4, '\0');
    return at;
  }
  void end(std::size_t at);

  const std::string& data() const { return buffer_; }
  std::size_t size() const { return buffer_.size(); }
  void clear() { buffer_.clear(); }

 private:
  void tag(std::uint32_t field, std::uint32_t wire_type) { raw_varint((std::uint64_t{field} << 3) | wire_type); }
  void raw_varint(std::uint64_t value) {
    while (value >= 0x80) {
      buffer_ += static_cast<char>((value & 0x7F) | 0x80);
      value >>= 7;
    }
    buffer_ += static_cast<char>(value);
  }
  std::string buffer_;
};

}  // namespace shmtrace::cli::exporting

#endif
