// decode(): raw 64-byte records to typed events, with values that continue
// over ContinuationRecords reassembled. Unknown kinds are counted and skipped;
// broken continuation chains are counted and the decoder resynchronizes at
// the next record that is not a continuation.
#include <algorithm>
#include <cstring>

#include "reader/reader.hpp"

namespace shmtrace::reader {
namespace {

using abi::RecordKind;

constexpr auto kContinuation = static_cast<std::uint8_t>(RecordKind::kContinuation);
constexpr std::size_t kInitialValueReserve = 4096;

bool is_continuation(const abi::Record& r) { return r.kind == kContinuation; }

// Does this head record carry a byte value (inline bytes + continuations)?
enum class ValueShape { kNone, kBytes, kUnknown };

ValueShape value_shape(const abi::Record& r) {
  const auto kind = static_cast<RecordKind>(r.kind);
  if (kind == RecordKind::kEvent) return ValueShape::kBytes;
  if (kind != RecordKind::kArg) return ValueShape::kNone;
  switch (static_cast<abi::ValueType>(r.flags & abi::kValueTypeMask)) {
    case abi::ValueType::kString:
    case abi::ValueType::kBytes:
    case abi::ValueType::kRepr:
      return ValueShape::kBytes;
    case abi::ValueType::kInt:
    case abi::ValueType::kUint:
    case abi::ValueType::kDouble:
    case abi::ValueType::kBool:
      return ValueShape::kNone;
  }
  return ValueShape::kUnknown;  // a newer minor's value type
}

std::size_t skip_continuations(std::span<const abi::Record> records, std::size_t i) {
  while (i < records.size() && is_continuation(records[i])) ++i;
  return i;
}

// Reassembles the value of the head at records[i]. Returns the index after
// the value's last record, and whether the value came out whole.
struct ValueResult {
  std::size_t next;
  bool complete;
};

ValueResult read_value(std::span<const abi::Record> records, std::size_t i, DecodedRecord& out) {
  const abi::Record& head = records[i];
  const std::uint64_t total = head.aux;
  if (head.size > abi::kInlinePayload || head.size > total) {
    return {skip_continuations(records, i + 1), false};
  }
  out.value.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(total, kInitialValueReserve)));
  out.value.assign(reinterpret_cast<const char*>(head.payload), head.size);
  std::uint32_t expected_index = 1;
  std::size_t j = i + 1;
  while (out.value.size() < total) {
    if (j >= records.size() || !is_continuation(records[j])) return {j, false};  // cut short
    abi::ContinuationRecord cont{};
    std::memcpy(&cont, &records[j], sizeof cont);
    const std::uint64_t remaining = total - out.value.size();
    if (cont.index != expected_index || cont.size == 0 || cont.size > abi::kContinuationPayload ||
        cont.size > remaining) {
      return {skip_continuations(records, j), false};
    }
    out.value.append(reinterpret_cast<const char*>(cont.bytes), cont.size);
    ++expected_index;
    ++j;
  }
  out.record_count = static_cast<std::uint32_t>(j - i);
  return {j, true};
}

}  // namespace

std::vector<DecodedRecord> decode(std::span<const abi::Record> records, DecodeStats& stats) {
  std::vector<DecodedRecord> out;
  out.reserve(records.size());
  std::size_t i = 0;
  while (i < records.size()) {
    const abi::Record& r = records[i];
    if (is_continuation(r)) {  // no head before it
      ++stats.broken_continuations;
      i = skip_continuations(records, i);
      continue;
    }
    if (r.kind == static_cast<std::uint8_t>(RecordKind::kEmpty)) {
      ++stats.empty_records;
      ++i;
      continue;
    }
    if (!abi::record_kind_known(r.kind)) {
      ++stats.unknown_kinds;
      ++i;
      continue;
    }
    DecodedRecord d;
    d.kind = static_cast<RecordKind>(r.kind);
    d.flags = r.flags;
    d.name_id = r.name_id;
    d.timestamp = r.timestamp;
    d.span_id = r.span_id;
    d.aux = r.aux;
    switch (d.kind) {
      case RecordKind::kSpanBegin:
      case RecordKind::kSpanEnd:
        std::memcpy(&d.span, r.payload, sizeof d.span);
        break;
      case RecordKind::kDropMarker:
        std::memcpy(&d.drop, r.payload, sizeof d.drop);
        break;
      case RecordKind::kThreadStart:
      case RecordKind::kThreadEnd:
        std::memcpy(&d.thread, r.payload, sizeof d.thread);
        break;
      default:
        break;
    }
    switch (value_shape(r)) {
      case ValueShape::kNone:
        ++i;
        break;
      case ValueShape::kUnknown:
        // Its continuations, if any, belong to it: keep the record, skip them.
        d.record_count = static_cast<std::uint32_t>(skip_continuations(records, i + 1) - i);
        i += d.record_count;
        break;
      case ValueShape::kBytes: {
        const ValueResult value = read_value(records, i, d);
        i = value.next;
        if (!value.complete) {
          ++stats.broken_continuations;  // reported, not invented
          continue;
        }
        break;
      }
    }
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace shmtrace::reader
