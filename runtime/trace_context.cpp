#include "trace_context.hpp"

#include <cstring>

namespace shmtrace::runtime {
namespace {

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // W3C requires lowercase
}

bool parse_hex(std::string_view text, std::uint8_t* out, std::size_t bytes) noexcept {
  if (text.size() != bytes * 2) return false;
  for (std::size_t i = 0; i < bytes; ++i) {
    const int hi = hex_value(text[2 * i]);
    const int lo = hex_value(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return true;
}

void write_hex(const std::uint8_t* in, std::size_t bytes, char* out) noexcept {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (std::size_t i = 0; i < bytes; ++i) {
    out[2 * i] = kDigits[in[i] >> 4];
    out[2 * i + 1] = kDigits[in[i] & 15];
  }
}

}  // namespace

bool TraceId::empty() const noexcept {
  for (std::uint8_t b : bytes) {
    if (b != 0) return false;
  }
  return true;
}

TraceId make_uuid_v7(std::uint64_t unix_ms, std::uint64_t random_a, std::uint64_t random_b) noexcept {
  TraceId id;
  for (int i = 0; i < 6; ++i) id.bytes[i] = static_cast<std::uint8_t>(unix_ms >> (40 - 8 * i));
  id.bytes[6] = static_cast<std::uint8_t>(0x70 | (random_a & 0x0f));
  id.bytes[7] = static_cast<std::uint8_t>(random_a >> 8);
  id.bytes[8] = static_cast<std::uint8_t>(0x80 | (random_b & 0x3f));
  for (int i = 9; i < 16; ++i) id.bytes[i] = static_cast<std::uint8_t>(random_b >> (8 * (i - 8)));
  return id;
}

std::optional<TraceParent> parse_traceparent(std::string_view text) noexcept {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!text.empty() && space(text.front())) text.remove_prefix(1);
  while (!text.empty() && space(text.back())) text.remove_suffix(1);
  if (text.size() != 55 || text[2] != '-' || text[35] != '-' || text[52] != '-') return std::nullopt;
  std::uint8_t version = 0;
  if (!parse_hex(text.substr(0, 2), &version, 1) || version != 0) return std::nullopt;
  TraceParent out;
  std::uint8_t span[8];
  if (!parse_hex(text.substr(3, 32), out.trace.bytes, 16) || !parse_hex(text.substr(36, 16), span, 8) ||
      !parse_hex(text.substr(53, 2), &out.flags, 1)) {
    return std::nullopt;
  }
  for (std::uint8_t b : span) out.span_id = out.span_id << 8 | b;
  if (out.trace.empty() || out.span_id == 0) return std::nullopt;
  return out;
}

bool format_traceparent(const TraceParent& context, char* out, std::size_t size) noexcept {
  if (out == nullptr || size < 56) return false;
  std::uint8_t span[8];
  for (int i = 0; i < 8; ++i) span[i] = static_cast<std::uint8_t>(context.span_id >> (56 - 8 * i));
  std::memcpy(out, "00-", 3);
  write_hex(context.trace.bytes, 16, out + 3);
  out[35] = '-';
  write_hex(span, 8, out + 36);
  out[52] = '-';
  write_hex(&context.flags, 1, out + 53);
  out[55] = '\0';
  return true;
}

}  // namespace shmtrace::runtime
