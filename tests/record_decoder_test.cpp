// decode(): each record kind, values over continuations, unknown kinds and
// broken continuation chains.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "reader/reader.hpp"

namespace shmtrace {
namespace {

using abi::Record;
using abi::RecordKind;
using reader::DecodedRecord;
using reader::DecodeStats;

Record head(RecordKind kind, std::uint64_t timestamp, std::uint8_t flags = 0) {
  Record r{};
  r.kind = static_cast<std::uint8_t>(kind);
  r.flags = flags;
  r.name_id = 64;
  r.timestamp = timestamp;
  r.span_id = 7;
  return r;
}

Record continuation(std::uint32_t index, std::string_view bytes) {
  abi::ContinuationRecord c{};
  c.kind = static_cast<std::uint8_t>(RecordKind::kContinuation);
  c.index = index;
  c.size = static_cast<std::uint16_t>(bytes.size());
  std::memcpy(c.bytes, bytes.data(), bytes.size());
  Record r{};
  std::memcpy(&r, &c, sizeof r);
  return r;
}

// A value record exactly as a producer splits it: up to 32 inline bytes,
// then 56 per continuation.
std::vector<Record> value_records(RecordKind kind, std::uint8_t flags, const std::string& value,
                                  std::uint64_t timestamp = 1) {
  std::vector<Record> out;
  Record h = head(kind, timestamp, flags);
  h.aux = value.size();
  const std::size_t inline_bytes = std::min<std::size_t>(value.size(), abi::kInlinePayload);
  h.size = static_cast<std::uint16_t>(inline_bytes);
  std::memcpy(h.payload, value.data(), inline_bytes);
  out.push_back(h);
  std::uint32_t index = 1;
  for (std::size_t at = inline_bytes; at < value.size(); at += abi::kContinuationPayload) {
    const std::size_t n = std::min<std::size_t>(value.size() - at, abi::kContinuationPayload);
    out.push_back(continuation(index++, std::string_view(value).substr(at, n)));
  }
  return out;
}

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7) % 26);
  return s;
}

constexpr std::uint8_t kString = static_cast<std::uint8_t>(abi::ValueType::kString);

TEST(RecordDecoder, SpanBeginAndEnd) {
  abi::SpanPayload span{};
  for (int i = 0; i < 16; ++i) span.trace_id[i] = static_cast<std::uint8_t>(0xa0 + i);
  span.parent_span_id = 0x1122;
  span.group_id = 68;
  span.error_ref = 5;
  Record begin = head(RecordKind::kSpanBegin, 100);
  begin.aux = 3;
  std::memcpy(begin.payload, &span, sizeof span);
  Record end = head(RecordKind::kSpanEnd, 250, abi::kStatusErr);
  end.aux = 100;
  std::memcpy(end.payload, &span, sizeof span);
  DecodeStats stats;
  const std::vector<Record> records{begin, end};
  auto out = reader::decode(records, stats);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].kind, RecordKind::kSpanBegin);
  EXPECT_EQ(out[0].name_id, 64u);
  EXPECT_EQ(out[0].timestamp, 100u);
  EXPECT_EQ(out[0].span_id, 7u);
  EXPECT_EQ(out[0].aux, 3u);
  EXPECT_EQ(out[0].span.trace_id[15], 0xaf);
  EXPECT_EQ(out[0].span.parent_span_id, 0x1122u);
  EXPECT_EQ(out[0].span.group_id, 68u);
  EXPECT_EQ(out[1].kind, RecordKind::kSpanEnd);
  EXPECT_EQ(out[1].flags, abi::kStatusErr);
  EXPECT_EQ(out[1].aux, 100u);
  EXPECT_EQ(out[1].span.error_ref, 5u);
  EXPECT_EQ(out[1].record_count, 1u);
  EXPECT_EQ(stats.unknown_kinds, 0u);
  EXPECT_EQ(stats.broken_continuations, 0u);
}

TEST(RecordDecoder, DropMarkerThreadAndCounter) {
  Record drop = head(RecordKind::kDropMarker, 10);
  drop.aux = 17;
  abi::DropPayload dp{5, 9, 40, 0};
  std::memcpy(drop.payload, &dp, sizeof dp);
  Record start = head(RecordKind::kThreadStart, 11);
  start.aux = 4321;
  abi::ThreadPayload tp{};
  std::memcpy(tp.name, "io-thread", 9);
  tp.generation = 2;
  tp.ring_index = abi::kNoRing;
  std::memcpy(start.payload, &tp, sizeof tp);
  Record end = start;
  end.kind = static_cast<std::uint8_t>(RecordKind::kThreadEnd);
  Record counter = head(RecordKind::kCounter, 12, static_cast<std::uint8_t>(abi::ValueType::kInt));
  counter.aux = static_cast<std::uint64_t>(-5);
  DecodeStats stats;
  const std::vector<Record> records{drop, start, end, counter};
  auto out = reader::decode(records, stats);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].kind, RecordKind::kDropMarker);
  EXPECT_EQ(out[0].aux, 17u);
  EXPECT_EQ(out[0].drop.first_drop_timestamp, 5u);
  EXPECT_EQ(out[0].drop.last_drop_timestamp, 9u);
  EXPECT_EQ(out[0].drop.dropped_total, 40u);
  EXPECT_EQ(out[1].kind, RecordKind::kThreadStart);
  EXPECT_STREQ(out[1].thread.name, "io-thread");
  EXPECT_EQ(out[1].thread.generation, 2u);
  EXPECT_EQ(out[1].thread.ring_index, abi::kNoRing);
  EXPECT_EQ(out[2].kind, RecordKind::kThreadEnd);
  EXPECT_EQ(out[2].aux, 4321u);
  EXPECT_EQ(out[3].kind, RecordKind::kCounter);
  EXPECT_EQ(static_cast<std::int64_t>(out[3].aux), -5);
  EXPECT_TRUE(out[3].value.empty());
}

TEST(RecordDecoder, NumericArgsCarryTheValueInAux) {
  const std::uint8_t types[] = {1, 2, 3, 4};
  std::vector<Record> records;
  for (std::uint8_t t : types) {
    Record r = head(RecordKind::kArg, t, static_cast<std::uint8_t>(t | abi::kArgResult));
    r.aux = 1000 + t;
    r.size = 0;
    records.push_back(r);
  }
  DecodeStats stats;
  auto out = reader::decode(records, stats);
  ASSERT_EQ(out.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(out[i].kind, RecordKind::kArg);
    EXPECT_EQ(out[i].aux, 1001u + i);
    EXPECT_EQ(out[i].flags & abi::kValueTypeMask, types[i]);
    EXPECT_TRUE(out[i].flags & abi::kArgResult);
    EXPECT_EQ(out[i].record_count, 1u);
  }
  EXPECT_EQ(stats.broken_continuations, 0u);
}

TEST(RecordDecoder, InlineEventMessage) {
  DecodeStats stats;
  auto records = value_records(RecordKind::kEvent, abi::kStatusErr, "cache miss");
  auto out = reader::decode(records, stats);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, RecordKind::kEvent);
  EXPECT_EQ(out[0].value, "cache miss");
  EXPECT_EQ(out[0].aux, 10u);
  EXPECT_EQ(out[0].record_count, 1u);
  EXPECT_EQ(out[0].flags, abi::kStatusErr);
}

class RecordDecoderLengths : public ::testing::TestWithParam<std::size_t> {};

TEST_P(RecordDecoderLengths, ContinuedValuesReassembledExactly) {
  const std::size_t length = GetParam();
  const std::string value = pattern(length);
  for (std::uint8_t type : {std::uint8_t{5}, std::uint8_t{6}, std::uint8_t{7}}) {
    auto records = value_records(RecordKind::kArg, type, value);
    // Followed by an ordinary record, which must still decode.
    records.push_back(head(RecordKind::kCounter, 99));
    DecodeStats stats;
    auto out = reader::decode(records, stats);
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0].value, value);
    EXPECT_EQ(out[0].aux, length);
    const std::size_t expected_records =
        1 + (length > 32 ? (length - 32 + 55) / 56 : 0);
    EXPECT_EQ(out[0].record_count, expected_records);
    EXPECT_EQ(out[1].kind, RecordKind::kCounter);
    EXPECT_EQ(stats.broken_continuations, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Lengths, RecordDecoderLengths,
                         ::testing::Values(0, 1, 32, 33, 88, 89, 500, 999, 1000));

TEST(RecordDecoder, ThousandByteValueUsesEighteenContinuations) {
  const std::string value = pattern(1000);
  auto records = value_records(RecordKind::kArg, kString, value);
  ASSERT_EQ(records.size(), 19u);  // 32 + 17 * 56 = 984, + 16 in the 18th
  DecodeStats stats;
  auto out = reader::decode(records, stats);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].value.size(), 1000u);
  EXPECT_EQ(out[0].value, value);
  EXPECT_EQ(out[0].record_count, 19u);
}

TEST(RecordDecoder, UnknownKindsCountedAndSkipped) {
  std::vector<Record> records;
  records.push_back(head(RecordKind::kCounter, 1));
  Record future{};
  future.kind = 42;
  records.push_back(future);
  Record empty{};  // kEmpty: never written
  records.push_back(empty);
  records.push_back(head(RecordKind::kCounter, 2));
  DecodeStats stats;
  auto out = reader::decode(records, stats);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].timestamp, 1u);
  EXPECT_EQ(out[1].timestamp, 2u);
  EXPECT_EQ(stats.unknown_kinds, 1u) << "a newer kind: skipped, the reader is older";
  EXPECT_EQ(stats.empty_records, 1u) << "kind 0: never written, counted apart as corruption";
  EXPECT_EQ(stats.broken_continuations, 0u);
}

TEST(RecordDecoder, ContinuationWithoutHeadResyncs) {
  std::vector<Record> records;
  records.push_back(continuation(3, "orphan"));
  records.push_back(continuation(4, "orphan too"));
  records.push_back(head(RecordKind::kCounter, 5));
  DecodeStats stats;
  auto out = reader::decode(records, stats);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].timestamp, 5u);
  EXPECT_EQ(stats.broken_continuations, 1u);
}

TEST(RecordDecoder, WrongIndexCountedAndSkipped) {
  const std::string value = pattern(150);  // head + 3 continuations
  auto records = value_records(RecordKind::kArg, kString, value, 1);
  abi::ContinuationRecord c{};
  std::memcpy(&c, &records[2], sizeof c);
  c.index = 5;
  std::memcpy(&records[2], &c, sizeof c);
  records.push_back(head(RecordKind::kCounter, 2));
  DecodeStats stats;
  auto out = reader::decode(records, stats);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, RecordKind::kCounter);
  EXPECT_EQ(stats.broken_continuations, 1u);
}

TEST(RecordDecoder, ValueCutShortByNextHeadOrEnd) {
  const std::string value = pattern(200);  // head + 4 continuations
  auto cut = value_records(RecordKind::kEvent, 0, value, 1);
  cut.resize(3);  // head + 2 continuations, then a new record
  cut.push_back(head(RecordKind::kCounter, 2));
  auto tail = value_records(RecordKind::kArg, kString, value, 3);
  tail.resize(3);  // cut by the end of the batch (needs 4 continuations)
  cut.insert(cut.end(), tail.begin(), tail.end());
  DecodeStats stats;
  auto out = reader::decode(cut, stats);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, RecordKind::kCounter);
  EXPECT_EQ(out[0].timestamp, 2u);
  EXPECT_EQ(stats.broken_continuations, 2u);
}

TEST(RecordDecoder, OversizedPiecesAreBroken) {
  // Inline size above 32.
  auto bad_inline = value_records(RecordKind::kArg, kString, pattern(100), 1);
  bad_inline[0].size = 40;
  // Continuation claiming more bytes than remain.
  auto too_long = value_records(RecordKind::kArg, kString, pattern(40), 2);
  abi::ContinuationRecord c{};
  std::memcpy(&c, &too_long[1], sizeof c);
  c.size = 56;
  std::memcpy(&too_long[1], &c, sizeof c);
  std::vector<Record> records = bad_inline;
  records.insert(records.end(), too_long.begin(), too_long.end());
  records.push_back(head(RecordKind::kCounter, 3));
  DecodeStats stats;
  auto out = reader::decode(records, stats);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].timestamp, 3u);
  EXPECT_EQ(stats.broken_continuations, 2u);
}

TEST(RecordDecoder, ExtraContinuationAfterCompleteValueIsBroken) {
  auto records = value_records(RecordKind::kArg, kString, "short", 1);
  records.push_back(continuation(1, "extra"));
  records.push_back(head(RecordKind::kCounter, 2));
  DecodeStats stats;
  auto out = reader::decode(records, stats);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].value, "short");
  EXPECT_EQ(out[1].timestamp, 2u);
  EXPECT_EQ(stats.broken_continuations, 1u);
}

TEST(RecordDecoder, UnknownValueTypeKeepsRecordAndSkipsItsContinuations) {
  auto records = value_records(RecordKind::kArg, 0x0c, pattern(100), 1);  // type 12: a newer minor
  records.push_back(head(RecordKind::kCounter, 2));
  DecodeStats stats;
  auto out = reader::decode(records, stats);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].kind, RecordKind::kArg);
  EXPECT_TRUE(out[0].value.empty());
  EXPECT_EQ(out[0].record_count, 3u);
  EXPECT_EQ(out[1].timestamp, 2u);
  EXPECT_EQ(stats.broken_continuations, 0u);
  EXPECT_EQ(stats.unknown_kinds, 0u);
}

}  // namespace
}  // namespace shmtrace
