// The drain's metrics (SPEC D6): a registry of counters, gauges and
// histograms, rendered as Prometheus text exposition format 0.0.4 (served by
// http_exporter.hpp) and flattened into samples (copied into the metrics
// table by the store).
//
// ## Model
//
//   family   a name, a help text, a type (and for a histogram its bucket
//            upper bounds), declared once with declare_*();
//   series   one label set of a family, created on first lookup and returned
//            by stable reference.
//
//   Registry registry;
//   registry.declare_counter("shmtrace_records_drained_total", "Records drained.");
//   registry.declare_histogram("shmtrace_batch_commit_seconds", "Batch commit time.",
//                              {0.001, 0.01, 0.1, 1});
//   Counter& drained = registry.counter("shmtrace_records_drained_total",
//                                       {{"pid", "4242"}});   // look up once...
//   drained.add(batch_size);                                   // ...update often
//   registry.remove("pid", "4242");   // the process is gone: drop its series
//
// ## Threads
//
//   - Counter, Gauge and Histogram updates are lock-free, allocation-free and
//     noexcept (atomics only); any number of threads may update at once.
//   - Lookups (counter(), gauge(), histogram()), declarations, remove(),
//     render() and snapshot() take the registry's mutex: look a series up
//     once and keep the reference on the update path.
//   - render() and snapshot() may run on any thread beside the updaters. Each
//     series is read consistently: a histogram's buckets, _sum and _count
//     come from the same set of whole observations (the +Inf bucket always
//     equals _count), never from half of one.
//   - A reference stays valid until remove() drops its series or the
//     registry is destroyed. Using it after that is undefined: the owner of a
//     series (the code handling one process) drops its references before it
//     calls remove().
//
// ## Rules, checked where they are broken (std::logic_error: these are
// ## programming errors, not runtime conditions)
//
//   - Metric names match [a-zA-Z_:][a-zA-Z0-9_:]*; label names match
//     [a-zA-Z_][a-zA-Z0-9_]* and do not start with "__".
//   - A counter's name ends in "_total"; a gauge's or histogram's does not
//     (this is what `promtool check metrics` expects of format 0.0.4). Help
//     text is not empty.
//   - No two families expose the same sample name (a histogram "x" also owns
//     x_bucket, x_sum and x_count).
//   - Declaring a family again is allowed only with the same type, help and
//     bounds; anything else throws. Looking up an undeclared family, or a
//     family through the wrong type, throws.
//   - Every series of a family carries the same label names in the same
//     order (fixed by its first series); a label name appears once per set;
//     a histogram's series may not use "le".
//   - Histogram bounds are finite and strictly increasing; the +Inf bucket is
//     always added (a trailing +Inf in the bounds is accepted and dropped).
//
// ## Output
//
// Families are rendered sorted by name, each family's lines together: # HELP,
// # TYPE, then its series sorted by label values. A family with no series is
// left out. Values are written in the shortest form that reads back exactly,
// and +Inf, -Inf, NaN as Prometheus spells them. Help text escapes \ and
// newline; label values escape \, " and newline.
#ifndef SHMTRACE_DRAIN_METRICS_REGISTRY_HPP
#define SHMTRACE_DRAIN_METRICS_REGISTRY_HPP

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace shmtrace::drain::metrics {

// Label name -> value, in the order given (the order they are rendered in).
using Labels = std::vector<std::pair<std::string, std::string>>;

enum class Type { kCounter, kGauge, kHistogram };

// A monotonic total.
class Counter {
 public:
  // Adds v; v < 0 and NaN are ignored (a counter never goes down).
  void add(double v = 1) noexcept;
  // For totals mirrored from elsewhere (a segment's shared counters): sets
  // the value to v if v is larger, otherwise leaves it, so a stale read can
  // never make the counter go backwards.
  void set_total(double v) noexcept;
  double value() const noexcept;

 private:
  // Pairs with nothing: the value is the only thing published, so every
  // access is relaxed.
  std::atomic<double> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  void set(double v) noexcept;
  void add(double v) noexcept;
  double value() const noexcept;

 private:
  std::atomic<double> value_{0};  // relaxed, as Counter::value_
};

// Observations counted into buckets by upper bound (le), with their sum.
//
// Updates never wait, and a reader still sees whole observations: the
// counts live in two halves, "hot" (written by observe()) and "cold". A
// reader flips which half is hot, waits for the observations that started on
// the old half to finish, reads it, then folds it into the new hot half and
// clears it, so the next flip finds the full totals again. (The scheme of
// the Prometheus Go client's histogram.)
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void observe(double v) noexcept;

  struct Data {
    std::vector<std::uint64_t> cumulative;  // one per bound, then +Inf (== count)
    double sum = 0;
    std::uint64_t count = 0;
  };
  // A consistent reading; waits (yielding) for in-flight observations.
  Data read() const;
  const std::vector<double>& upper_bounds() const noexcept { return upper_bounds_; }

 private:
  struct Half {
    explicit Half(std::size_t bucket_count);
    std::unique_ptr<std::atomic<std::uint64_t>[]> buckets;  // not cumulative
    std::atomic<double> sum{0};
    std::atomic<std::uint64_t> count{0};  // observations finished in this half
  };
  static constexpr std::uint64_t kHotBit = std::uint64_t{1} << 63;

  std::vector<double> upper_bounds_;
  // Bit 63: index of the hot half. Bits 0-62: observations started, ever.
  mutable std::atomic<std::uint64_t> started_and_hot_{0};
  mutable Half halves_[2];
  mutable std::mutex read_mutex_;  // one reader flips at a time
};

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  void declare_counter(std::string name, std::string help);
  void declare_gauge(std::string name, std::string help);
  void declare_histogram(std::string name, std::string help, std::vector<double> upper_bounds);

  // The series of `labels` in `family`, created (zero) on first use.
  Counter& counter(std::string_view family, const Labels& labels = {});
  Gauge& gauge(std::string_view family, const Labels& labels = {});
  Histogram& histogram(std::string_view family, const Labels& labels = {});

  // Drops every series, in every family, whose labels include
  // label=value (a finished process's series). Returns how many.
  std::size_t remove(std::string_view label, std::string_view value);

  // The text exposition, format 0.0.4.
  std::string render() const;

  // One per sample line of render(), in the same order: histograms give
  // name_bucket (labels + le), name_sum and name_count.
  struct Sample {
    std::string name;
    Labels labels;
    double value = 0;
    friend bool operator==(const Sample&, const Sample&) = default;
  };
  std::vector<Sample> snapshot() const;

 private:
  struct Family;
  struct Series;

  Family& declare(std::string name, std::string help, Type type, std::vector<double> upper_bounds);
  Series& series(std::string_view family, Type type, const Labels& labels);
  // Reads every series under mutex_, calling on_family once per non-empty
  // family and then on_sample for each of its samples.
  void collect(const std::function<void(const Family&)>& on_family,
               const std::function<void(Sample&&)>& on_sample) const;

  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<Family>, std::less<>> families_;
  std::map<std::string, std::string, std::less<>> sample_names_;  // exposed name -> family
};

// Formats a sample value as the exposition writes it ("1", "0.25", "1e+06",
// "+Inf", "-Inf", "NaN").
std::string format_value(double v);

}  // namespace shmtrace::drain::metrics

#endif  // SHMTRACE_DRAIN_METRICS_REGISTRY_HPP
