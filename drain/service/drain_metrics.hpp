// The drain's metrics (SPEC D6), declared in one place: the families, their
// help text, and the few helpers that update the per-process series.
// Per-process series carry the labels pid and segment; they are removed
// when the segment is finished, after a last update.
#ifndef SHMTRACE_DRAIN_METRICS_HPP
#define SHMTRACE_DRAIN_METRICS_HPP

#include "metrics/registry.hpp"
#include "store/segment_consumer.hpp"

namespace shmtrace::drain {

class DrainMetrics {
 public:
  explicit DrainMetrics(metrics::Registry& registry);

  metrics::Counter& records;          // committed (store or spill)
  metrics::Counter& rows;             // rows stored in the database
  metrics::Counter& failed_commits;
  metrics::Counter& records_refused;
  metrics::Counter& spilled_batches;
  metrics::Counter& replayed_batches;
  metrics::Counter& spill_refusals;   // batches the full spill file could not take
  metrics::Counter& spill_rejected;   // whole spilled batches this drain cannot read, kept aside
  metrics::Counter& segments_attached;
  metrics::Counter& retention_partitions;
  metrics::Counter& retention_rows;
  metrics::Counter& retention_seconds;
  metrics::Gauge& rows_per_second;
  metrics::Gauge& circuit_state;      // 0 closed, 1 open, 2 half-open
  metrics::Gauge& database_bytes;
  metrics::Gauge& spill_bytes;
  metrics::Gauge& segments_live;
  metrics::Gauge& partitions;
  metrics::Gauge& lag_seconds;
  metrics::Histogram& commit_seconds;

  metrics::Counter& segments_refused(const std::string& reason);
  // After a collection: drained and recovered records, errors, decode
  // problems, redactions, and the lag behind the oldest record read.
  void note_collect(const SegmentConsumer& c, const CollectStats& stats, bool process_gone);
  // The producer's own counters and ring fill, read from shared memory.
  void note_producer(const SegmentConsumer& c);
  // Last update, then the process's series go.
  void finish(const SegmentConsumer& c);

 private:
  metrics::Labels labels(const SegmentConsumer& c) const;
  metrics::Registry& r_;
};

}  // namespace shmtrace::drain

#endif
