// Moves one segment's records into batches exactly once (SPEC D2, D7).
// collect() reads the error area, then every ring, then the overflow area,
// and appends the rows to a batch; once that batch is committed (to the
// store, or to the spill file while the store fails) release() hands the
// ring and overflow slots back to the producer. A batch that could not be
// committed is abandon()ed: nothing was handed back, so the next collect()
// reads the same records again. A drain killed between the commit and the
// hand-back stores the same records again on restart, which the store's keys
// turn into no-ops.
#ifndef SHMTRACE_DRAIN_SEGMENT_CONSUMER_HPP
#define SHMTRACE_DRAIN_SEGMENT_CONSUMER_HPP

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "discovery/process_watch.hpp"
#include "reader/reader.hpp"
#include "store/batch.hpp"
#include "symbols/resolver.hpp"

namespace shmtrace::drain {

class Redactor;

struct CollectStats {
  std::uint64_t records = 0;  // raw records read (rings + overflow)
  std::uint64_t errors = 0;
  std::uint64_t unknown_kinds = 0;
  std::uint64_t broken_values = 0;
  std::uint64_t redactions = 0;
  std::uint64_t abandoned_errors = 0;  // half-written entries of a dead process, passed over
  std::string warning;  // one line to log, not fatal (reader::ErrorBatch::warning); empty if none
  // Records refused as implausible, nothing of them stored: a string id the
  // segment does not hold, a time outside the process's life, a drop marker
  // counting more than its ring ever dropped, an all-zero record.
  std::uint64_t refused = 0;
  std::string refused_note;  // one line, the first time a segment has refusals; empty after
};

class SegmentConsumer {
 public:
  // resume: the error cursor stored with the segment's last committed batch.
  // Call-site statistics are snapshot every stats_interval (and once more
  // with the process's fate); 0 = at every collect().
  // ring_threads: Store::ring_threads() of the segment, for a drain that
  // resumes it.
  SegmentConsumer(reader::Segment segment, std::optional<ErrorCursorRow> resume, const Redactor* redactor,
                  std::chrono::milliseconds stats_interval = std::chrono::seconds(1),
                  std::map<std::uint32_t, std::uint32_t> ring_threads = {});

  // Appends what the segment holds now, at most max_per_ring records from
  // each ring and from the overflow area.
  // max_total bounds the records of all its rings together: a segment of
  // many busy threads cannot make one batch (and one transaction) huge and
  // keep the drain from the other segments. The rings are taken in turn from
  // where the last collect() stopped, so none starves behind the others.
  reader::Result<CollectStats> collect(Batch& batch, std::size_t max_per_ring, std::size_t max_total = SIZE_MAX);
  // The batch holding the last collect() is committed: the producer may reuse
  // the slots.
  reader::Result<void> release();
  // The batch was not committed; the next collect() reads the records again.
  void abandon();
  // Tells producers under block that their drain is alive, reading nothing.
  void keep_alive() { (void)segment_.heartbeat(); }

  // The process image is gone for good: exited, crashed, exec'd, or its pid
  // no longer names it (killed, or reused by another process).
  bool image_gone() const;
  // Appends the process's fate and last statistics (after a last collect()
  // found nothing).
  reader::Result<void> collect_fate(Batch& batch);
  // Removes the segment, once its fate is committed.
  reader::Result<void> unlink() const { return segment_.unlink(); }

  const std::string& name() const { return segment_.name(); }
  const reader::Segment& segment() const { return segment_; }
  // Its file was truncated under a read (reader::Segment::faulted()):
  // collect() then fails with the one line that drops it.
  bool faulted() const { return segment_.faulted(); }
  // The stored name of a string id: "@0x<addr>" resolved to the function,
  // an API name redacted (a name is text a program chose, and may hold a
  // secret as well as a value can).
  const std::string& name_of(std::uint32_t id);
  // The stored form of any other interned text (groups, argument and event
  // names): redacted, once per id.
  const std::string& text_of(std::uint32_t id);
  // The id names a string of the segment (0: none, also valid).
  bool string_known(std::uint32_t id);
  // The most records a drop marker from `ring` (kOverflowRing: from any
  // thread) can report: what the segment's counters say was ever dropped.
  std::uint64_t dropped_bound(std::uint32_t ring) const;
  std::int64_t process_start_ns() const { return process_.start_ns; }
  // Now on the process's own time line: its wall-clock reference plus the
  // monotonic time since, whatever the wall clock was stepped to meanwhile.
  std::int64_t process_now_ns() const;
  // An instrumented function's name by address ("@0x<addr>" when unknown).
  const std::string& function_at(std::uint64_t address);
  // An error's frames, one line each (symbols::Resolver::describe_frame):
  // a crash's first frame is the faulting instruction, every other frame a
  // return address.
  std::string symbolize_frames(const reader::ErrorRecord& error);

 private:
  SegmentRows& rows_in(Batch& batch) const;
  // Snapshots of the call sites whose figures moved since the last committed
  // snapshot.
  reader::Result<void> snapshot_stats(SegmentRows& rows);

  reader::Segment segment_;
  ProcessRow process_;
  const Redactor* redactor_;
  reader::ErrorCursor cursor_;  // committed
  std::optional<ErrorCursorRow> pending_cursor_;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> pending_rings_;  // ring, end position
  std::optional<reader::OverflowBatch> pending_overflow_;
  std::optional<ProcessWatch> watch_;  // absent: could not be opened, taken as gone
  mutable bool gone_seen_ = false;     // image_gone() said so: nothing more will be committed
  std::map<std::uint32_t, std::uint32_t> ring_tid_;  // ring -> thread that wrote the records read last
  // Names of instrumented functions the runtime could only give by address
  // ("@0x..."), resolved through the segment's module map (P9), per name id.
  std::optional<symbols::Resolver> resolver_;
  std::size_t resolver_modules_ = 0;  // modules the resolver was made from
  // The resolver of the segment's module map, made again when the process
  // loaded more objects since (dlopen); null when libdwfl cannot start.
  symbols::Resolver* resolver();
  std::map<std::uint32_t, std::string> names_;
  std::map<std::uint32_t, std::string> texts_;       // text_of(), redacted
  std::map<std::uint32_t, bool> strings_known_;       // string_known()
  std::map<std::uint64_t, std::string> functions_;  // by address
  std::uint64_t redactions_pending_ = 0;  // names redacted since the last collect() took the count
  bool refusals_reported_ = false;
  std::uint32_t next_ring_ = 0;  // where the next collect() starts
  // Call-site statistics: when the next snapshot is due, and the calls,
  // errors, unfinished and completed of each (ring, slot) as last committed
  // (pending: in the batch not yet committed).
  using SiteFigures = std::array<std::uint64_t, 4>;
  std::chrono::milliseconds stats_interval_;
  std::chrono::steady_clock::time_point next_stats_{};
  std::map<std::pair<std::uint32_t, std::uint32_t>, SiteFigures> stats_committed_;
  std::vector<std::pair<std::pair<std::uint32_t, std::uint32_t>, SiteFigures>> stats_pending_;
};

}  // namespace shmtrace::drain

#endif
