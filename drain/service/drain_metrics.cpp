#include "service/drain_metrics.hpp"

namespace shmtrace::drain {
namespace {

metrics::Counter& counter(metrics::Registry& r, const char* name, const char* help) {
  r.declare_counter(name, help);
  return r.counter(name);
}
metrics::Gauge& gauge(metrics::Registry& r, const char* name, const char* help) {
  r.declare_gauge(name, help);
  return r.gauge(name);
}

// Per-process families (labels pid, segment), declared once.
void declare_process_families(metrics::Registry& r) {
  r.declare_counter("shmtrace_process_records_drained_total", "Records moved from the process's segment.");
  r.declare_counter("shmtrace_process_records_recovered_total",
                    "Records drained after the process had exited or crashed.");
  r.declare_counter("shmtrace_process_errors_drained_total", "Error entries moved from the process's error area.");
  r.declare_counter("shmtrace_process_records_written_total", "Records the process wrote into its rings.");
  r.declare_counter("shmtrace_process_records_overflowed_total",
                    "Records the process wrote into its overflow area (its ring was full).");
  r.declare_counter("shmtrace_process_records_dropped_total",
                    "Records the process lost (ring and overflow area full).");
  r.declare_counter("shmtrace_process_records_unknown_kind_total", "Records of kinds this drain does not know, skipped.");
  r.declare_counter("shmtrace_process_redactions_total", "Secrets replaced by [REDACTED] before storage.");
  r.declare_gauge("shmtrace_process_error_area_entries", "Error entries written by the process (spilled included).");
  r.declare_gauge("shmtrace_ring_fill_ratio", "Unconsumed records of a ring over its capacity.");
  r.declare_gauge("shmtrace_ring_depth", "Unconsumed records of a ring.");
  r.declare_counter("shmtrace_segments_refused_total", "Segments skipped: untrusted, unreadable or of another owner.");
}

}  // namespace

DrainMetrics::DrainMetrics(metrics::Registry& r)
    : records(counter(r, "shmtrace_drain_records_total", "Records committed (to the database or the spill file).")),
      rows(counter(r, "shmtrace_drain_rows_total", "Rows stored in the database.")),
      failed_commits(counter(r, "shmtrace_drain_commit_failures_total", "Batch commits the database refused.")),
      records_refused(counter(r, "shmtrace_records_refused_total",
                              "Records refused as implausible (unknown string id, time outside the process's life, "
                              "drop count above the ring's, all-zero); nothing of them is stored.")),
      spilled_batches(counter(r, "shmtrace_drain_spilled_batches_total", "Batches written to the spill file.")),
      replayed_batches(counter(r, "shmtrace_drain_replayed_batches_total", "Spilled batches stored on recovery.")),
      spill_refusals(counter(r, "shmtrace_drain_spill_refusals_total",
                             "Batches the full spill file could not take (left in shared memory).")),
      spill_rejected(counter(r, "shmtrace_drain_spill_rejected_batches_total",
                             "Spilled batches this drain cannot read (another version's), kept in <spill>.rejected.")),
      segments_attached(counter(r, "shmtrace_drain_segments_attached_total", "Segments attached for draining.")),
      retention_partitions(counter(r, "shmtrace_retention_partitions_expired_total",
                                   "Time partitions removed or archived by retention.")),
      retention_rows(counter(r, "shmtrace_retention_rows_deleted_total", "Main-file rows deleted by retention.")),
      retention_seconds(counter(r, "shmtrace_retention_seconds_total", "Time spent on retention.")),
      rows_per_second(gauge(r, "shmtrace_drain_rows_per_second", "Rows stored per second, last interval.")),
      circuit_state(gauge(r, "shmtrace_drain_circuit_state", "Storage circuit: 0 closed, 1 open, 2 half-open.")),
      database_bytes(gauge(r, "shmtrace_database_bytes", "Bytes of the database, partitions and WAL included.")),
      spill_bytes(gauge(r, "shmtrace_spill_bytes", "Bytes waiting in the spill file.")),
      segments_live(gauge(r, "shmtrace_drain_segments", "Segments being drained.")),
      partitions(gauge(r, "shmtrace_database_partitions", "Time partitions attached.")),
      lag_seconds(gauge(r, "shmtrace_drain_lag_seconds", "Age of the oldest record in the last batch.")),
      commit_seconds([&]() -> metrics::Histogram& {
        r.declare_histogram("shmtrace_drain_commit_seconds", "Time to commit one batch.",
                            {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5});
        return r.histogram("shmtrace_drain_commit_seconds");
      }()),
      r_(r) {
  declare_process_families(r);
}

metrics::Counter& DrainMetrics::segments_refused(const std::string& reason) {
  return r_.counter("shmtrace_segments_refused_total", {{"reason", reason}});
}

metrics::Labels DrainMetrics::labels(const SegmentConsumer& c) const {
  return {{"pid", std::to_string(c.segment().header().pid)}, {"segment", c.name()}};
}

void DrainMetrics::note_collect(const SegmentConsumer& c, const CollectStats& stats, bool process_gone) {
  if (stats.records + stats.errors + stats.unknown_kinds + stats.redactions == 0) return;
  const metrics::Labels l = labels(c);
  r_.counter("shmtrace_process_records_drained_total", l).add(static_cast<double>(stats.records));
  if (process_gone) r_.counter("shmtrace_process_records_recovered_total", l).add(static_cast<double>(stats.records));
  r_.counter("shmtrace_process_errors_drained_total", l).add(static_cast<double>(stats.errors));
  r_.counter("shmtrace_process_records_unknown_kind_total", l).add(static_cast<double>(stats.unknown_kinds));
  r_.counter("shmtrace_process_redactions_total", l).add(static_cast<double>(stats.redactions));
}

void DrainMetrics::note_producer(const SegmentConsumer& c) {
  const reader::Segment& s = c.segment();
  if (s.faulted()) return;  // zeros since the truncation; the next cycle drops it
  metrics::Labels l = labels(c);
  double written = 0, overflowed = 0, dropped = 0;
  const double capacity = static_cast<double>(s.header().ring_capacity);
  for (std::uint32_t ring = 0; ring < s.ring_count(); ++ring) {
    auto info = s.ring_info(ring);
    if (!info || info->state == abi::RingState::kFree) continue;
    written += static_cast<double>(info->written);
    overflowed += static_cast<double>(info->overflowed);
    dropped += static_cast<double>(info->dropped);
    metrics::Labels rl = l;
    rl.emplace_back("ring", std::to_string(ring));
    const double depth = static_cast<double>(info->head - info->tail);
    r_.gauge("shmtrace_ring_depth", rl).set(depth);
    r_.gauge("shmtrace_ring_fill_ratio", rl).set(capacity > 0 ? depth / capacity : 0);
  }
  r_.counter("shmtrace_process_records_written_total", l).set_total(written);
  r_.counter("shmtrace_process_records_overflowed_total", l).set_total(overflowed);
  r_.counter("shmtrace_process_records_dropped_total", l).set_total(dropped);
  r_.gauge("shmtrace_process_error_area_entries", l).set(static_cast<double>(s.errors_written()));
}

void DrainMetrics::finish(const SegmentConsumer& c) {
  note_producer(c);
  r_.remove("segment", c.name());
}

}  // namespace shmtrace::drain
