// shmtrace dump without an argument: one entry per live segment, from its
// header, ring control blocks and error area, read-only.
#include <signal.h>

#include <cerrno>
#include <cstdio>

#include "commands.hpp"
#include "dump.hpp"
#include "live_format.hpp"

namespace shmtrace::cli::dump {

namespace {

struct RingRow {
  reader::RingInfo info;
  std::uint64_t lag = 0;  // head - tail: records the drain has not taken yet
  double fill = 0;        // lag / capacity
};

struct SegmentRow {
  std::string name, program, session, state;
  std::uint32_t pid = 0;
  reader::LiveFields live;
  std::uint64_t age_ns = 0;
  std::vector<RingRow> rings;  // rings in use (claimed or released)
  std::uint64_t written = 0, overflowed = 0, dropped = 0;
  std::uint64_t error_bytes = 0;
  bool drain_alive = false;
  std::optional<std::uint64_t> heartbeat_age_ns;
  std::vector<std::string> ring_errors;
};

bool process_alive(std::uint32_t pid) {
  if (pid == 0) return false;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

SegmentRow row_of(const reader::Segment& s) {
  const abi::SegmentHeader& h = s.header();
  SegmentRow row;
  row.name = s.name();
  row.pid = h.pid;
  row.program = live::program_of(h);
  row.session = s.session();
  row.live = s.peek_live();
  row.state = live::state_text(row.live);
  const std::uint64_t now = live::monotonic_ns();
  row.age_ns = now > h.clock_ref_mono_ns ? now - h.clock_ref_mono_ns : 0;
  for (std::uint32_t r = 0; r < s.ring_count(); ++r) {
    auto info = s.ring_info(r);
    if (!info) {
      row.ring_errors.push_back(info.error().message);
      continue;
    }
    if (info->state == abi::RingState::kFree && info->head == 0) continue;
    RingRow ring;
    ring.info = *info;
    ring.lag = info->head >= info->tail ? info->head - info->tail : 0;
    ring.fill = static_cast<double>(ring.lag) / h.ring_capacity;
    row.written += info->written;
    row.overflowed += info->overflowed;
    row.dropped += info->dropped;
    row.rings.push_back(std::move(ring));
  }
  row.overflowed += row.live.no_ring_overflowed;
  row.dropped += row.live.no_ring_dropped;
  row.error_bytes = std::uint64_t{row.live.error_chunk_count} * h.error_chunk_bytes;
  row.drain_alive = process_alive(row.live.drain_pid);
  if (row.live.drain_heartbeat_ns != 0 && now >= row.live.drain_heartbeat_ns) {
    row.heartbeat_age_ns = now - row.live.drain_heartbeat_ns;
  }
  return row;
}

std::string json_of(const SegmentRow& row) {
  std::string rings = "[";
  for (const RingRow& r : row.rings) {
    if (rings.size() > 1) rings += ',';
    live::JsonLine j;
    j.num("ring", r.info.index)
        .str("state", r.info.state == abi::RingState::kClaimed ? "claimed" : "released")
        .num("tid", r.info.tid)
        .str("thread", r.info.thread_name)
        .num("generation", r.info.generation)
        .num("head", r.info.head)
        .num("tail", r.info.tail)
        .num("lag", r.lag)
        .real("fill", r.fill)
        .num("written", r.info.written)
        .num("overflowed", r.info.overflowed)
        .num("dropped", r.info.dropped);
    rings += j.text();
  }
  rings += ']';
  live::JsonLine j;
  j.str("segment", row.name).num("pid", row.pid).str("program", row.program).str("session", row.session);
  j.str("state", live::state_word(row.live.state));
  if (row.live.state == abi::ProcessState::kExited) j.num("exit_status", row.live.exit_status);
  if (row.live.state == abi::ProcessState::kCrashed) j.num("signal", row.live.exit_status);
  j.num("age_ns", row.age_ns).raw("rings", rings);
  j.num("written", row.written).num("overflowed", row.overflowed).num("dropped", row.dropped);
  j.num("overflow_pending", row.live.overflow_enqueue - std::min(row.live.overflow_enqueue, row.live.overflow_dequeue));
  j.num("no_ring_threads", row.live.no_ring_threads);
  j.num("error_chunks", row.live.error_chunk_count).num("error_bytes", row.error_bytes);
  j.num("errors_written", row.live.errors_written)
      .num("errors_spilled", row.live.errors_spilled)
      .num("errors_lost", row.live.errors_lost);
  j.num("drain_pid", row.live.drain_pid).boolean("drain_alive", row.drain_alive);
  if (row.heartbeat_age_ns) {
    j.num("heartbeat_age_ns", *row.heartbeat_age_ns);
  } else {
    j.null("heartbeat_age_ns");
  }
  return j.text();
}

std::string seconds(std::uint64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ns) / 1e9);
  return buf;
}

void print_text(const std::vector<SegmentRow>& rows) {
  std::printf("%-8s %-16s %-12s %-11s %8s %5s %10s %10s %10s %-14s %-16s %-22s %s\n", "PID", "PROGRAM", "SESSION",
              "STATE", "AGE", "RINGS", "WRITTEN", "OVERFLOWED", "DROPPED", "ERRORS w/s/l", "ERROR AREA", "DRAIN",
              "SEGMENT");
  for (const SegmentRow& r : rows) {
    const std::string errors = std::to_string(r.live.errors_written) + "/" + std::to_string(r.live.errors_spilled) +
                               "/" + std::to_string(r.live.errors_lost);
    const std::string area = std::to_string(r.live.error_chunk_count) + " chunks " +
                             std::to_string(r.error_bytes / 1024) + " KiB";
    std::string drain = "none";
    if (r.live.drain_pid != 0) {
      drain = std::to_string(r.live.drain_pid) + (r.drain_alive ? " alive" : " gone");
      drain += r.heartbeat_age_ns ? " beat " + seconds(*r.heartbeat_age_ns) + " ago" : " no beat";
    }
    std::printf("%-8u %-16s %-12s %-11s %8s %5zu %10llu %10llu %10llu %-14s %-16s %-22s %s\n", r.pid,
                r.program.c_str(), r.session.empty() ? "-" : r.session.c_str(), r.state.c_str(),
                seconds(r.age_ns).c_str(), r.rings.size(), static_cast<unsigned long long>(r.written),
                static_cast<unsigned long long>(r.overflowed), static_cast<unsigned long long>(r.dropped),
                errors.c_str(), area.c_str(), drain.c_str(), r.name.c_str());
    for (const RingRow& g : r.rings) {
      std::printf("  ring %-4u %-8s tid %-7u %-16s head %llu tail %llu lag %llu fill %.1f%% written %llu overflowed "
                  "%llu dropped %llu\n",
                  g.info.index, g.info.state == abi::RingState::kClaimed ? "claimed" : "released", g.info.tid,
                  g.info.thread_name.empty() ? "-" : g.info.thread_name.c_str(),
                  static_cast<unsigned long long>(g.info.head), static_cast<unsigned long long>(g.info.tail),
                  static_cast<unsigned long long>(g.lag), g.fill * 100,
                  static_cast<unsigned long long>(g.info.written), static_cast<unsigned long long>(g.info.overflowed),
                  static_cast<unsigned long long>(g.info.dropped));
    }
  }
}

}  // namespace

int list(const ListOptions& options) {
  auto attached = live::attach_all(std::nullopt, options.session);
  if (!attached) {
    say("dump", attached.error().message);
    return 1;
  }
  std::vector<SegmentRow> rows;
  int status = 0;
  for (const std::string& bad : attached->bad) {
    say("dump", bad);
    status = 1;
  }
  for (const reader::Segment& s : attached->segments) {
    SegmentRow row = row_of(s);
    for (const std::string& e : row.ring_errors) {
      say("dump", e);
      status = 1;
    }
    if (s.faulted()) {
      say("dump", "segment " + s.name() + ": truncated while read");
      status = 1;
      continue;
    }
    rows.push_back(std::move(row));
  }
  if (options.format == Format::kJsonl) {
    for (const SegmentRow& r : rows) std::printf("%s\n", json_of(r).c_str());
  } else {
    print_text(rows);
  }
  std::fflush(stdout);
  return status;
}

}  // namespace shmtrace::cli::dump
