#include "store/segment_consumer.hpp"

#include <signal.h>
#include <time.h>

#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>

#include "reader/hex.hpp"
#include "store/histogram_blob.hpp"
#include "redact/redactor.hpp"

namespace shmtrace::drain {
namespace {

using abi::RecordKind;

// An id as hex, "" when it is all zero (no trace).
std::string hex(const std::uint8_t* bytes, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (bytes[i] != 0) return reader::to_hex(bytes, n);
  }
  return {};
}

std::string text_of(const reader::Segment& s, std::uint32_t id) {
  auto t = s.string(id);
  return t ? std::string(*t) : std::string();
}

const char* error_kind(abi::ErrorKind k) {
  switch (k) {
    case abi::ErrorKind::kExplicit:
      return "explicit";
    case abi::ErrorKind::kException:
      return "exception";
    case abi::ErrorKind::kCrash:
      return "crash";
    case abi::ErrorKind::kSpanError:
      return "span_error";
  }
  return "unknown";
}

const char* value_type(std::uint8_t flags) {
  switch (static_cast<abi::ValueType>(flags & abi::kValueTypeMask)) {
    case abi::ValueType::kInt:
      return "int";
    case abi::ValueType::kUint:
      return "uint";
    case abi::ValueType::kDouble:
      return "double";
    case abi::ValueType::kBool:
      return "bool";
    case abi::ValueType::kString:
      return "string";
    case abi::ValueType::kBytes:
      return "bytes";
    case abi::ValueType::kRepr:
      return "repr";
  }
  return "unknown";
}

// A scalar value (in aux) as exact text.
std::string scalar(std::uint8_t type, std::uint64_t bits) {
  switch (static_cast<abi::ValueType>(type & abi::kValueTypeMask)) {
    case abi::ValueType::kInt:
      return std::to_string(static_cast<std::int64_t>(bits));
    case abi::ValueType::kUint:
      return std::to_string(bits);
    case abi::ValueType::kBool:
      return bits != 0 ? "true" : "false";
    case abi::ValueType::kDouble: {
      double d = 0;
      std::memcpy(&d, &bits, sizeof d);
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", d);
      return buf;
    }
    default:
      return {};
  }
}

bool is_scalar(std::uint8_t flags) {
  const auto t = static_cast<abi::ValueType>(flags & abi::kValueTypeMask);
  return t == abi::ValueType::kInt || t == abi::ValueType::kUint || t == abi::ValueType::kDouble ||
         t == abi::ValueType::kBool;
}

// Turns decoded records of one segment into rows; begin and end of a span
// meet in one row when both are in the same batch.
class Converter {
 public:
  Converter(SegmentConsumer& consumer, SegmentRows& rows, const Redactor* redactor, CollectStats& stats)
      : c_(consumer), s_(consumer.segment()), rows_(rows), redactor_(redactor), stats_(stats) {}

  // Refused records are counted, the first reason kept for the log line.
  void refuse(const std::string& why, std::uint64_t count = 1) {
    if (stats_.refused == 0) first_refusal_ = why;
    stats_.refused += count;
  }
  const std::string& first_refusal() const { return first_refusal_; }

  void add(const reader::DecodedRecord& d, std::uint32_t ring, std::uint64_t position, std::uint32_t tid) {
    const reader::ClockConverter& clock = s_.clock();
    if (!plausible(d, ring)) return;
    switch (d.kind) {
      case RecordKind::kSpanBegin: {
        SpanRow r;
        r.span_id = d.span_id;
        r.trace_id = trace_hex(d.span.trace_id);
        r.parent_span_id = d.aux;
        r.tid = tid;
        r.group = group_of(d.span.group_id);
        r.name = c_.name_of(d.name_id);
        r.start_ns = clock.to_wall_ns(d.timestamp);
        r.code = d.span.parent_span_id;  // SpanBegin: the code address
        open_[d.span_id] = rows_.spans.size();
        rows_.spans.push_back(std::move(r));
        return;
      }
      case RecordKind::kSpanEnd: {
        const std::int64_t duration = d.timestamp >= d.aux ? clock.duration_ns(d.aux, d.timestamp) : 0;
        const int status = (d.flags & abi::kStatusErr) != 0 ? 1 : 0;
        if (auto begun = open_.find(d.span_id); begun != open_.end()) {
          SpanRow& r = rows_.spans[begun->second];
          r.duration_ns = duration;
          r.status = status;
          r.error_sequence = d.span.error_ref;
          open_.erase(begun);
          return;
        }
        SpanRow r;
        r.span_id = d.span_id;
        r.trace_id = trace_hex(d.span.trace_id);
        r.parent_span_id = d.span.parent_span_id;
        r.tid = tid;
        r.group = group_of(d.span.group_id);
        r.name = c_.name_of(d.name_id);
        r.start_ns = clock.to_wall_ns(d.aux);
        r.duration_ns = duration;
        r.status = status;
        r.error_sequence = d.span.error_ref;
        rows_.spans.push_back(std::move(r));
        return;
      }
      case RecordKind::kEvent:
      case RecordKind::kCounter:
      case RecordKind::kArg:
        rows_.span_data.push_back(span_data(d, ring, position, tid));
        return;
      case RecordKind::kDropMarker: {
        GapRow g;
        g.ring = ring;
        g.position = position;
        g.tid = tid;
        g.ts_ns = clock.to_wall_ns(d.timestamp);
        g.dropped = d.aux;
        g.first_ns = clock.to_wall_ns(d.drop.first_drop_timestamp);
        g.last_ns = clock.to_wall_ns(d.drop.last_drop_timestamp);
        rows_.gaps.push_back(g);
        return;
      }
      default:
        rows_.events.push_back(event(d, ring, position, tid));
        return;
    }
  }

 private:
  // What a record claims, checked against the segment: its name is one of
  // the segment's strings, its times lie within the process's life (a clock
  // cannot run before the process started, nor past now), a drop marker
  // counts no more than its ring has dropped in all.
  bool plausible(const reader::DecodedRecord& d, std::uint32_t ring) {
    const reader::ClockConverter& clock = s_.clock();
    if (d.name_id != 0 && d.kind != RecordKind::kThreadStart && d.kind != RecordKind::kThreadEnd &&
        !c_.string_known(d.name_id)) {
      refuse("a " + std::string(abi::record_kind_name(d.kind)) + " record names string id " +
             std::to_string(d.name_id) + ", which the segment does not hold");
      return false;
    }
    const auto in_life = [&](std::uint64_t ticks) {
      const std::int64_t t = clock.to_wall_ns(ticks);
      return t >= earliest_ns_ && t <= latest_ns_;
    };
    const bool times_ok = in_life(d.timestamp) && (d.kind != RecordKind::kSpanEnd || in_life(d.aux)) &&
                          (d.kind != RecordKind::kDropMarker ||
                           (in_life(d.drop.first_drop_timestamp) && in_life(d.drop.last_drop_timestamp)));
    if (!times_ok) {
      refuse("a " + std::string(abi::record_kind_name(d.kind)) + " record's time lies outside the process's life");
      return false;
    }
    if (d.kind == RecordKind::kDropMarker) {
      const std::uint64_t most = c_.dropped_bound(ring);
      if (d.aux > most) {
        refuse("a drop marker counts " + std::to_string(d.aux) + " dropped records where at most " +
               std::to_string(most) + " were");
        return false;
      }
    }
    return true;
  }

  // Spans of one trace come in runs: the last id's text is kept.
  const std::string& trace_hex(const std::uint8_t (&id)[16]) {
    if (!have_trace_ || std::memcmp(id, last_trace_, sizeof last_trace_) != 0) {
      std::memcpy(last_trace_, id, sizeof last_trace_);
      last_trace_hex_ = hex(id, sizeof last_trace_);
      have_trace_ = true;
    }
    return last_trace_hex_;
  }

  const std::string& group_of(std::uint32_t id) { return c_.text_of(id); }

  SpanDataRow span_data(const reader::DecodedRecord& d, std::uint32_t ring, std::uint64_t position,
                        std::uint32_t tid) {
    SpanDataRow r;
    r.ring = ring;
    r.position = position;
    r.ts_ns = s_.clock().to_wall_ns(d.timestamp);
    r.tid = tid;
    r.span_id = d.span_id;
    r.name = c_.text_of(d.name_id);
    r.flags = d.flags;
    // A value the runtime cut at its limit may end in the first bytes of a
    // secret no pattern recognizes any more.
    const bool cut = (d.flags & abi::kArgTruncated) != 0;
    switch (d.kind) {
      case RecordKind::kEvent:
        r.kind = "event";
        r.value = d.value;
        r.value_type = "string";
        if (redactor_ != nullptr) {
          stats_.redactions += (cut ? redactor_->redact_cut(r.value) : redactor_->redact(r.value)).replaced;
        }
        break;
      case RecordKind::kCounter:
        r.kind = "counter";
        r.value = scalar(d.flags, d.aux);
        r.value_type = value_type(d.flags);
        break;
      default:
        r.kind = (d.flags & abi::kArgResult) != 0 ? "result" : "arg";
        r.value_type = value_type(d.flags);
        if (is_scalar(d.flags)) {
          r.value = scalar(d.flags, d.aux);
        } else {
          r.value = d.value;
          if (redactor_ != nullptr) {
            stats_.redactions +=
                (cut ? redactor_->redact_named_cut(r.name, r.value) : redactor_->redact_named(r.name, r.value)).replaced;
          }
        }
        break;
    }
    return r;
  }

  ProcessEventRow event(const reader::DecodedRecord& d, std::uint32_t ring, std::uint64_t position,
                        std::uint32_t tid) {
    ProcessEventRow r;
    r.ring = ring;
    r.position = position;
    r.ts_ns = s_.clock().to_wall_ns(d.timestamp);
    r.tid = tid;
    r.span_id = d.span_id;
    r.flags = d.flags;
    r.value = static_cast<std::int64_t>(d.aux);
    if (d.kind == RecordKind::kThreadStart || d.kind == RecordKind::kThreadEnd) {
      r.kind = d.kind == RecordKind::kThreadStart ? "thread_start" : "thread_end";
      r.name = std::string(d.thread.name, ::strnlen(d.thread.name, sizeof d.thread.name));
    } else if (d.kind == RecordKind::kFork) {
      // How the child was started; a spawned or vfork'ed child's program.
      r.kind = (d.flags & abi::kForkViaSpawn) != 0   ? "spawn"
               : (d.flags & abi::kForkViaVfork) != 0 ? "vfork"
               : (d.flags & abi::kForkViaClone) != 0 ? "clone"
                                                      : "fork";
      r.name = c_.text_of(d.name_id);
    } else if (d.kind == RecordKind::kExec) {
      // Exec records are failed execs, or the exec of a vfork or spawn
      // child told by its parent (value: the pid that exec'd).
      r.kind = (d.flags & abi::kStatusErr) != 0 ? "exec_failed" : "exec";
      r.name = c_.text_of(d.name_id);
    } else {
      r.kind = abi::record_kind_name(d.kind);
      r.name = c_.text_of(d.name_id);
    }
    return r;
  }

  SegmentConsumer& c_;
  const reader::Segment& s_;
  SegmentRows& rows_;
  const Redactor* redactor_;
  CollectStats& stats_;
  std::unordered_map<std::uint64_t, std::size_t> open_;  // span id -> row of a begin without its end yet
  std::string first_refusal_;
  // The process's life as far as this batch can know it, on the process's
  // own time line (its wall-clock reference plus the monotonic time since):
  // from a minute before its start to a minute past now. A wall clock
  // stepped since the process started moves neither bound.
  std::int64_t earliest_ns_ = c_.process_start_ns() - kLifeSlackNs;
  std::int64_t latest_ns_ = c_.process_now_ns() + kLifeSlackNs;
  static constexpr std::int64_t kLifeSlackNs = 60'000'000'000LL;
  std::uint8_t last_trace_[16] = {};
  bool have_trace_ = false;
  std::string last_trace_hex_;
};

ErrorRow error_row(const reader::Segment& s, const reader::ErrorRecord& e) {
  ErrorRow r;
  r.sequence = e.sequence;
  r.ts_ns = s.clock().to_wall_ns(e.timestamp);
  r.kind = error_kind(e.kind);
  r.tid = e.tid;
  r.span_id = e.span_id;
  r.trace_id = hex(e.trace_id, 16);
  r.type = e.type;
  r.message = e.message;
  r.preview = e.preview;
  r.signal = e.signal;
  r.fault_address = e.fault_address;
  for (std::uint64_t f : e.frames) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%s0x%llx", r.frames.empty() ? "" : " ", static_cast<unsigned long long>(f));
    r.frames += buf;
  }
  return r;
}

// The segment's file shrank under a read (SIGBUS, survived by the reader):
// what this pass read may be zeros, and nothing of it may be stored.
reader::Error truncated() {
  return reader::Error{"the segment was truncated while being read (SIGBUS): dropped"};
}

ProcessRow process_row(const reader::Segment& segment) {
  const abi::SegmentHeader& h = segment.header();
  ProcessRow row;
  row.segment = segment.name();
  row.pid = h.pid;
  row.ppid = h.ppid;
  row.exe = std::string(h.exe);
  for (std::uint32_t i = 0; i < h.cmdline_size && i < sizeof h.cmdline; ++i) {
    row.cmdline += h.cmdline[i] == '\0' ? ' ' : h.cmdline[i];
  }
  while (!row.cmdline.empty() && row.cmdline.back() == ' ') row.cmdline.pop_back();
  row.start_ns = static_cast<std::int64_t>(h.clock_ref_wall_ns);
  row.trace_id = hex(h.trace_id, 16);
  row.parent_span_id = h.parent_span_id;
  return row;
}

}  // namespace

SegmentConsumer::SegmentConsumer(reader::Segment segment, std::optional<ErrorCursorRow> resume,
                                 const Redactor* redactor, std::chrono::milliseconds stats_interval,
                                 std::map<std::uint32_t, std::uint32_t> ring_threads)
    : segment_(std::move(segment)),
      redactor_(redactor),
      ring_tid_(std::move(ring_threads)),
      stats_interval_(stats_interval) {
  if (resume) cursor_ = reader::ErrorCursor{resume->chunk, resume->offset, resume->spill_offset};
  process_ = process_row(segment_);
  const abi::SegmentHeader& h = segment_.header();
  if (auto watch = ProcessWatch::open(h.pid, h.process_start_ticks)) watch_.emplace(std::move(*watch));
  if (redactor_ != nullptr) redactor_->redact(process_.cmdline);
}

SegmentRows& SegmentConsumer::rows_in(Batch& batch) const {
  for (SegmentRows& s : batch.segments) {
    if (s.process.segment == process_.segment) return s;
  }
  batch.segments.push_back(SegmentRows{});
  batch.segments.back().process = process_;
  return batch.segments.back();
}

// Records one ring read takes at least (when there are that many): far more
// than the continuations of the longest value (max_repr is at most 64 KiB,
// 56 bytes a continuation: 1,171).
constexpr std::size_t kMinRingRead = 2048;

reader::Result<CollectStats> SegmentConsumer::collect(Batch& batch, std::size_t max_per_ring, std::size_t max_total) {
  abandon();
  CollectStats stats;
  if (segment_.faulted()) return std::unexpected(truncated());  // since the last pass
  if (!segment_.heartbeat()) {
    return std::unexpected(reader::Error{"taken over by another consumer (pid " +
                                         std::to_string(segment_.consumer_pid()) + ")"});
  }
  SegmentRows& rows = rows_in(batch);
  reader::DecodeStats decode_stats;
  // What a read found wrong may be the zeros a truncation left (read half
  // before the fault, half after): then the truncation is the one line.
  const auto failure = [this](const reader::Error& e) { return segment_.faulted() ? truncated() : e; };

  // Errors first (SPEC D2), then rings, then overflow.
  auto errors = segment_.read_errors(cursor_, 65536, gone_seen_);
  if (!errors) return std::unexpected(failure(errors.error()));
  stats.abandoned_errors = errors->abandoned;
  stats.warning = std::move(errors->warning);
  for (const reader::ErrorRecord& e : errors->errors) {
    rows.errors.push_back(error_row(segment_, e));
    ErrorRow& r = rows.errors.back();
    r.symbols = symbolize_frames(e);
    r.group = text_of(e.group_id);
    r.span_name = text_of(e.span_name_id);
    if (redactor_ != nullptr) {
      // A text at its limit was cut by the runtime (abi.hpp's error entry).
      const auto redact = [this](std::string& text, std::size_t limit) {
        return (text.size() >= limit ? redactor_->redact_cut(text) : redactor_->redact(text)).replaced;
      };
      stats.redactions += redact(r.type, abi::kMaxErrorType) + redact(r.message, abi::kMaxErrorMessage) +
                          redact(r.preview, abi::kMaxErrorPreview);
    }
    ++stats.errors;
  }
  const ErrorCursorRow next{errors->next.chunk, errors->next.offset, errors->next.spill_offset};
  if (!errors->errors.empty() || next.chunk != cursor_.chunk || next.offset != cursor_.offset ||
      next.spill_offset != cursor_.spill_offset) {
    rows.cursor = next;
    pending_cursor_ = next;
  }

  Converter convert(*this, rows, redactor_, stats);
  const std::uint32_t rings = segment_.ring_count();
  const std::uint32_t first_ring = next_ring_ < rings ? next_ring_ : 0;
  for (std::uint32_t k = 0; k < rings; ++k) {
    const std::uint32_t ring = (first_ring + k) % rings;
    if (stats.records >= max_total) {
      next_ring_ = ring;  // the rest next time, from here
      break;
    }
    // Never fewer than a value's longest run of continuations can need, so
    // a cut batch can always leave a whole group for the next one.
    const std::size_t bound =
        std::max(kMinRingRead, std::min(max_per_ring, max_total - static_cast<std::size_t>(stats.records)));
    auto read = segment_.read_ring(ring, bound);
    if (!read) return std::unexpected(failure(read.error()));
    if (read->records.size() >= bound) {
      // A full batch may end inside a value's continuations: leave the last
      // group for the next batch, so it is read whole.
      std::size_t last_head = read->records.size();
      while (last_head > 0 &&
             read->records[last_head - 1].kind == static_cast<std::uint8_t>(RecordKind::kContinuation)) {
        --last_head;
      }
      if (last_head > 1) {
        read->records.resize(last_head - 1);
        read->end_position = read->first_position + (last_head - 1);
      }
    }
    if (read->records.empty()) continue;
    if (!ring_tid_.contains(ring)) {
      if (auto info = segment_.ring_info(ring)) ring_tid_[ring] = info->tid;
    }
    std::uint64_t position = read->first_position;
    for (const reader::DecodedRecord& d : reader::decode(read->records, decode_stats)) {
      if (d.kind == RecordKind::kThreadStart) ring_tid_[ring] = static_cast<std::uint32_t>(d.aux);
      convert.add(d, ring, position, ring_tid_[ring]);
      position += d.record_count;
    }
    stats.records += read->records.size();
    pending_rings_.emplace_back(ring, read->end_position);
  }
  auto overflow = segment_.read_overflow(max_per_ring);
  if (!overflow) return std::unexpected(failure(overflow.error()));
  std::size_t i = 0;
  std::vector<abi::Record> group;
  while (i < overflow->entries.size()) {
    // A group: a head and the continuations that follow it from one thread.
    std::size_t j = i + 1;
    while (j < overflow->entries.size() &&
           overflow->entries[j].record.kind == static_cast<std::uint8_t>(RecordKind::kContinuation) &&
           overflow->entries[j].tid == overflow->entries[i].tid) {
      ++j;
    }
    group.clear();
    for (std::size_t k = i; k < j; ++k) group.push_back(overflow->entries[k].record);
    for (const reader::DecodedRecord& d : reader::decode(group, decode_stats)) {
      convert.add(d, kOverflowRing, overflow->entries[i].position, overflow->entries[i].tid);
    }
    i = j;
  }
  stats.records += overflow->entries.size();
  if (!overflow->entries.empty()) pending_overflow_ = std::move(*overflow);
  if (const auto now = std::chrono::steady_clock::now(); now >= next_stats_) {
    next_stats_ = now + stats_interval_;
    if (auto ok = snapshot_stats(rows); !ok) return std::unexpected(failure(ok.error()));
  }
  stats.unknown_kinds = decode_stats.unknown_kinds;
  stats.broken_values = decode_stats.broken_continuations;
  if (decode_stats.empty_records > 0) {
    // The ABI's all-zero record: never written by a producer.
    convert.refuse("all-zero records, which no producer writes", decode_stats.empty_records);
  }
  stats.redactions += std::exchange(redactions_pending_, 0);
  if (stats.refused > 0 && !refusals_reported_) {
    refusals_reported_ = true;
    stats.refused_note = name() + ": refused " + std::to_string(stats.refused) + " implausible records (first: " +
                         convert.first_refusal() + "); the rest is stored";
  }
  // Checked last: a fault anywhere in this pass taints all of it.
  if (segment_.faulted()) return std::unexpected(truncated());
  batch.records += stats.records;
  return stats;
}

reader::Result<void> SegmentConsumer::release() {
  // Truncated after this pass's collect() (the records it read came before
  // the fault, but the file has nowhere to take the tails): nothing handed
  // back; the next collect() reports it, once, and the drain drops it.
  if (segment_.faulted()) {
    abandon();
    return {};
  }
  // Taken over while this batch was being stored (our heartbeat went stale):
  // the new consumer reads these records again (stored twice, kept once);
  // moving its tails would lose records.
  if (!segment_.is_consumer()) {
    abandon();
    return std::unexpected(reader::Error{"taken over by another consumer (pid " +
                                         std::to_string(segment_.consumer_pid()) + "); nothing handed back"});
  }
  if (pending_cursor_) cursor_ = reader::ErrorCursor{pending_cursor_->chunk, pending_cursor_->offset,
                                                     pending_cursor_->spill_offset};
  pending_cursor_.reset();
  // A truncation in the middle of handing back reads zero indices: the same
  // silence as above.
  const auto failed = [&](reader::Result<void> ok) -> reader::Result<void> {
    if (!segment_.faulted()) return ok;
    abandon();
    return {};
  };
  for (auto [ring, end] : pending_rings_) {
    if (auto ok = segment_.commit_ring(ring, end); !ok) return failed(std::move(ok));
  }
  pending_rings_.clear();
  for (const auto& [site, figures] : stats_pending_) stats_committed_[site] = figures;
  stats_pending_.clear();
  if (pending_overflow_) {
    auto ok = segment_.commit_overflow(*pending_overflow_);
    pending_overflow_.reset();
    if (!ok) return failed(std::move(ok));
  }
  return {};
}

void SegmentConsumer::abandon() {
  pending_cursor_.reset();
  stats_pending_.clear();
  pending_rings_.clear();
  pending_overflow_.reset();
}

const std::string& SegmentConsumer::name_of(std::uint32_t id) {
  auto known = names_.find(id);
  if (known != names_.end()) return known->second;
  std::string name = drain::text_of(segment_, id);
  if (name.rfind("@0x", 0) == 0) {
    name = function_at(std::strtoull(name.c_str() + 3, nullptr, 16));  // a symbol: the program's own text
  } else if (redactor_ != nullptr) {
    redactions_pending_ += redactor_->redact(name).replaced;
  }
  return names_.emplace(id, std::move(name)).first->second;
}

const std::string& SegmentConsumer::text_of(std::uint32_t id) {
  auto known = texts_.find(id);
  if (known != texts_.end()) return known->second;
  std::string text = drain::text_of(segment_, id);
  if (redactor_ != nullptr) redactions_pending_ += redactor_->redact(text).replaced;
  return texts_.emplace(id, std::move(text)).first->second;
}

bool SegmentConsumer::string_known(std::uint32_t id) {
  if (id == 0) return true;
  auto known = strings_known_.find(id);
  if (known != strings_known_.end()) return known->second;
  return strings_known_.emplace(id, segment_.string(id).has_value()).first->second;
}

std::int64_t SegmentConsumer::process_now_ns() const {
  const abi::SegmentHeader& h = segment_.header();
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const std::int64_t mono = static_cast<std::int64_t>(now.tv_sec) * 1'000'000'000LL + now.tv_nsec;
  const auto since = mono - static_cast<std::int64_t>(h.clock_ref_mono_ns);
  return static_cast<std::int64_t>(h.clock_ref_wall_ns) + std::max<std::int64_t>(since, 0);
}

std::uint64_t SegmentConsumer::dropped_bound(std::uint32_t ring) const {
  if (ring != kOverflowRing) {
    auto info = segment_.ring_info(ring);
    return info ? info->dropped : 0;
  }
  std::uint64_t total = segment_.no_ring_dropped();
  for (std::uint32_t r = 0; r < segment_.ring_count(); ++r) {
    if (auto info = segment_.ring_info(r)) total += info->dropped;
  }
  return total;
}

const std::string& SegmentConsumer::function_at(std::uint64_t address) {
  auto known = functions_.find(address);
  if (known != functions_.end()) return known->second;
  // An address the resolver cannot name keeps the runtime's "@0x" form.
  char fallback[24];
  std::snprintf(fallback, sizeof fallback, "@0x%llx", static_cast<unsigned long long>(address));
  std::string name = fallback;
  if (symbols::Resolver* r = resolver()) {
    if (auto symbol = r->resolve(address)) name = symbol->function;
  }
  return functions_.emplace(address, std::move(name)).first->second;
}

symbols::Resolver* SegmentConsumer::resolver() {
  auto listed = segment_.modules();
  const std::size_t count = listed ? listed->size() : 0;
  if (!resolver_ || count > resolver_modules_) {
    std::vector<symbols::Module> modules;
    if (listed) {
      for (const reader::ModuleRecord& m : *listed) modules.push_back({m.path, m.base, m.size, m.build_id_hex});
    }
    resolver_.reset();
    if (auto made = symbols::Resolver::create(std::move(modules))) resolver_.emplace(std::move(*made));
    resolver_modules_ = count;
  }
  return resolver_ ? &*resolver_ : nullptr;
}

std::string SegmentConsumer::symbolize_frames(const reader::ErrorRecord& error) {
  std::string out;
  if (error.frames.empty()) return out;
  symbols::Resolver* r = resolver();
  for (std::size_t i = 0; i < error.frames.size(); ++i) {
    const std::uint64_t address = error.frames[i];
    if (!out.empty()) out += '\n';
    const bool return_address = !(i == 0 && error.kind == abi::ErrorKind::kCrash);
    if (r != nullptr) {
      out += r->describe_frame(address, return_address);
    } else {
      char buffer[80];
      std::snprintf(buffer, sizeof buffer, "0x%llx (no symbol reader: libdwfl did not start)",
                    static_cast<unsigned long long>(address));
      out += buffer;
    }
  }
  return out;
}

reader::Result<void> SegmentConsumer::snapshot_stats(SegmentRows& rows) {
  if (abi::stats_slot_count(segment_.header()) == 0) return {};
  auto sites = segment_.call_site_stats();
  if (!sites) return std::unexpected(sites.error());
  const std::int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  // A later snapshot in the same batch (the fate's) replaces the earlier one.
  rows.call_stats.clear();
  stats_pending_.clear();
  for (const reader::CallSiteStats& s : *sites) {
    const std::pair key{s.ring, s.slot};
    const SiteFigures figures{s.calls, s.errors, s.unfinished, s.completed};
    if (auto last = stats_committed_.find(key); last != stats_committed_.end() && last->second == figures) continue;
    if (figures == SiteFigures{}) continue;
    CallStatsSnapshot row;
    row.ring = s.ring;
    row.slot = s.slot;
    row.tid = s.tid;
    switch (s.kind) {
      case abi::CallSiteKind::kName:
        row.kind = "name";
        row.name = name_of(s.name_id);
        break;
      case abi::CallSiteKind::kCode:
        row.kind = "code";
        row.name = function_at(s.address);
        row.code = s.address;
        break;
      default:
        row.kind = "other";
        row.name = "(other)";
        break;
    }
    row.ts_ns = now_ns;
    row.calls = s.calls;
    row.errors = s.errors;
    row.unfinished = s.unfinished;
    row.completed = s.completed;
    row.total_ticks = s.total_ticks;
    row.self_ticks = s.self_ticks;
    row.min_ticks = s.min_ticks;
    row.max_ticks = s.max_ticks;
    histogram::Histogram h;
    h.ns_per_tick = s.ns_per_tick;
    for (const reader::HistogramBucket& b : s.histogram) h.buckets.push_back({b.index, b.count});
    row.histogram = histogram::encode(h);
    rows.call_stats.push_back(std::move(row));
    stats_pending_.emplace_back(key, figures);
  }
  return {};
}

bool SegmentConsumer::image_gone() const {
  const abi::ProcessState state = segment_.state();
  // An exec'd pid runs another image. Otherwise through a pidfd opened while
  // the process was known to be the segment's (start ticks checked after
  // opening it), so a reused pid cannot pass.
  if (state == abi::ProcessState::kExeced || !watch_ || watch_->gone()) gone_seen_ = true;
  return gone_seen_;
}

reader::Result<void> SegmentConsumer::collect_fate(Batch& batch) {
  SegmentRows& rows = rows_in(batch);
  if (segment_.faulted()) return std::unexpected(truncated());
  if (auto ok = snapshot_stats(rows); !ok) return ok;
  ProcessFate fate;
  switch (segment_.state()) {
    case abi::ProcessState::kRunning:
      fate.state = "vanished";  // killed without a word (SIGKILL) or never said
      break;
    case abi::ProcessState::kExited:
      fate.state = "exited";
      break;
    case abi::ProcessState::kCrashed:
      fate.state = "crashed";
      break;
    case abi::ProcessState::kExeced:
      fate.state = "execed";
      break;
  }
  fate.exit_status = segment_.exit_status();
  fate.dropped_total = segment_.no_ring_dropped();
  for (std::uint32_t ring = 0; ring < segment_.ring_count(); ++ring) {
    if (auto info = segment_.ring_info(ring)) fate.dropped_total += info->dropped;
  }
  fate.end_ns = static_cast<std::int64_t>(segment_.header().clock_ref_wall_ns);
  if (auto live = reader::Segment::attach(segment_.name(), reader::Access::kReadOnly)) {
    fate.exec_target = drain::text_of(*live, live->header().exec_target_id);
    if (redactor_ != nullptr) redactor_->redact(fate.exec_target);
    if (live->header().end_ticks != 0) fate.end_ns = live->clock().to_wall_ns(live->header().end_ticks);
  }
  if (segment_.faulted()) {
    rows.call_stats.clear();  // from this snapshot: may be zeros
    stats_pending_.clear();
    return std::unexpected(truncated());
  }
  if (segment_.state() == abi::ProcessState::kExeced) {
    // The image exec'd itself: the runtime left no record of it (only a
    // failed exec writes one), so its one exec event comes from here.
    // Ring kNoRing, position 0: no record has that key, and storing the
    // fate twice stores the event once.
    ProcessEventRow exec;
    exec.ring = abi::kNoRing;
    exec.position = 0;
    exec.kind = "exec";
    exec.ts_ns = fate.end_ns;
    exec.name = fate.exec_target;
    exec.value = segment_.header().pid;
    rows.events.push_back(std::move(exec));
  }
  rows.fate = std::move(fate);
  return {};
}

}  // namespace shmtrace::drain
