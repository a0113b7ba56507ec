#include "metrics/registry.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>
#include <thread>
#include <variant>

namespace shmtrace::drain::metrics {

namespace {

const char* type_name(Type type) {
  switch (type) {
    case Type::kCounter: return "counter";
    case Type::kGauge: return "gauge";
    case Type::kHistogram: return "histogram";
  }
  return "?";
}

bool is_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool is_label_name(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

[[noreturn]] void fail(const std::string& message) { throw std::logic_error("metrics: " + message); }

void append_escaped(std::string& out, std::string_view text, bool escape_quote) {
  for (const char c : text) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '"':
        out += escape_quote ? "\\\"" : "\"";
        break;
      default: out += c;
    }
  }
}

// The sample names a family exposes, for the collision check.
std::vector<std::string> exposed_names(const std::string& name, Type type) {
  if (type != Type::kHistogram) return {name};
  return {name + "_bucket", name + "_sum", name + "_count"};
}

}  // namespace

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buffer[32];
  // Shortest representation that reads back as the same double.
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, v);
  if (ec != std::errc{}) return "NaN";  // cannot happen: 32 bytes hold any double
  return std::string(buffer, end);
}

// --- Counter, Gauge -------------------------------------------------------

void Counter::add(double v) noexcept {
  if (!(v >= 0)) return;
  value_.fetch_add(v, std::memory_order_relaxed);  // pairs with nothing (see value_)
}

void Counter::set_total(double v) noexcept {
  double current = value_.load(std::memory_order_relaxed);
  // Raise only: a CAS loop so a concurrent add() is never overwritten by a
  // smaller total.
  while (v > current &&
         !value_.compare_exchange_weak(current, v, std::memory_order_relaxed, std::memory_order_relaxed)) {
  }
}

double Counter::value() const noexcept { return value_.load(std::memory_order_relaxed); }

void Gauge::set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
void Gauge::add(double v) noexcept { value_.fetch_add(v, std::memory_order_relaxed); }
double Gauge::value() const noexcept { return value_.load(std::memory_order_relaxed); }

// --- Histogram ------------------------------------------------------------

Histogram::Half::Half(std::size_t bucket_count) : buckets(new std::atomic<std::uint64_t>[bucket_count]) {
  for (std::size_t i = 0; i < bucket_count; ++i) buckets[i].store(0, std::memory_order_relaxed);
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)),
      halves_{Half(upper_bounds_.size() + 1), Half(upper_bounds_.size() + 1)} {}

void Histogram::observe(double v) noexcept {
  // Acquire pairs with the acq_rel flip in read(): the reader cleared this
  // half before it made it hot again, and our adds must land after that.
  const std::uint64_t started = started_and_hot_.fetch_add(1, std::memory_order_acquire);
  Half& hot = halves_[started >> 63];
  // le semantics: the first bound >= v; NaN and values above every bound go
  // to +Inf only.
  std::size_t bucket = upper_bounds_.size();
  if (!std::isnan(v)) {
    bucket = static_cast<std::size_t>(
        std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), v) - upper_bounds_.begin());
  }
  hot.buckets[bucket].fetch_add(1, std::memory_order_relaxed);  // published by count below
  hot.sum.fetch_add(v, std::memory_order_relaxed);              // published by count below
  // Release pairs with the acquire load in read()'s cooldown wait: once the
  // reader sees this observation counted, it sees its bucket and sum too.
  hot.count.fetch_add(1, std::memory_order_release);
}

Histogram::Data Histogram::read() const {
  std::lock_guard lock(read_mutex_);
  // Flip the hot half. acq_rel: release pairs with observe()'s acquire (our
  // clearing of the old cold half is visible to writers that now use it);
  // acquire orders everything below after the flip.
  const std::uint64_t now = started_and_hot_.fetch_add(kHotBit, std::memory_order_acq_rel) + kHotBit;
  const std::uint64_t started = now & (kHotBit - 1);
  Half& hot = halves_[now >> 63];
  Half& cold = halves_[(now >> 63) ^ 1];
  // Wait until every observation that started on the cold half has finished
  // there (the cold half holds every observation ever, once cool).
  // Acquire pairs with observe()'s release increment of count.
  while (cold.count.load(std::memory_order_acquire) != started) std::this_thread::yield();

  Data data;
  const std::size_t buckets = upper_bounds_.size() + 1;
  data.cumulative.resize(buckets);
  std::uint64_t running = 0;
  for (std::size_t i = 0; i < buckets; ++i) {
    // Relaxed: ordered by the cooldown wait above; no writer touches cold.
    const std::uint64_t n = cold.buckets[i].load(std::memory_order_relaxed);
    running += n;
    data.cumulative[i] = running;
    // Fold into the hot half and clear, so the next flip finds full totals.
    // Relaxed: the next reader runs after us (read_mutex_), and writers see
    // the clearing through the next flip (release above).
    hot.buckets[i].fetch_add(n, std::memory_order_relaxed);
    cold.buckets[i].store(0, std::memory_order_relaxed);
  }
  data.sum = cold.sum.load(std::memory_order_relaxed);
  data.count = started;
  hot.sum.fetch_add(data.sum, std::memory_order_relaxed);
  cold.sum.store(0, std::memory_order_relaxed);
  // Relaxed: count is read with acquire by the next reader only, which runs
  // after us under read_mutex_.
  hot.count.fetch_add(started, std::memory_order_relaxed);
  cold.count.store(0, std::memory_order_relaxed);
  return data;
}

// --- Registry -------------------------------------------------------------

struct Registry::Series {
  template <class T, class... Args>
  Series(Labels l, std::in_place_type_t<T> kind, Args&&... args)
      : labels(std::move(l)), metric(kind, std::forward<Args>(args)...) {}
  Labels labels;
  std::variant<Counter, Gauge, Histogram> metric;
};

struct Registry::Family {
  std::string name;
  std::string help;
  Type type;
  std::vector<double> upper_bounds;
  bool label_names_fixed = false;
  std::vector<std::string> label_names;  // fixed by the first series
  std::map<Labels, std::unique_ptr<Series>, std::less<>> series;
};

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::Family& Registry::declare(std::string name, std::string help, Type type,
                                    std::vector<double> upper_bounds) {
  if (!is_metric_name(name)) {
    fail("invalid metric name \"" + name + "\": must match [a-zA-Z_:][a-zA-Z0-9_:]*");
  }
  if (help.empty()) fail("metric " + name + " has no help text");
  const bool total = name.ends_with("_total");
  if (type == Type::kCounter && !total) fail("counter " + name + " must end in _total");
  if (type != Type::kCounter && total) {
    fail(std::string(type_name(type)) + " " + name + " must not end in _total (only counters do)");
  }
  if (type == Type::kHistogram) {
    if (!upper_bounds.empty() && upper_bounds.back() == INFINITY) upper_bounds.pop_back();
    for (std::size_t i = 0; i < upper_bounds.size(); ++i) {
      if (!std::isfinite(upper_bounds[i])) fail("histogram " + name + ": bucket bounds must be finite");
      if (i > 0 && !(upper_bounds[i - 1] < upper_bounds[i])) {
        fail("histogram " + name + ": bucket bounds must be strictly increasing");
      }
    }
  }

  std::lock_guard lock(mutex_);
  if (const auto it = families_.find(name); it != families_.end()) {
    Family& existing = *it->second;
    if (existing.type != type) {
      fail("metric " + name + " declared as " + type_name(type) + ", but it is already a " +
           type_name(existing.type));
    }
    if (existing.help != help || existing.upper_bounds != upper_bounds) {
      fail("metric " + name + " declared twice with different help text or bucket bounds");
    }
    return existing;
  }
  const std::vector<std::string> exposed = exposed_names(name, type);
  for (const std::string& sample_name : exposed) {
    if (const auto it = sample_names_.find(sample_name); it != sample_names_.end()) {
      fail("metric " + name + " would expose " + sample_name + ", already exposed by " + it->second);
    }
  }
  for (const std::string& sample_name : exposed) sample_names_.emplace(sample_name, name);
  auto family = std::make_unique<Family>();
  family->name = name;
  family->help = std::move(help);
  family->type = type;
  family->upper_bounds = std::move(upper_bounds);
  Family& result = *family;
  families_.emplace(std::move(name), std::move(family));
  return result;
}

void Registry::declare_counter(std::string name, std::string help) {
  declare(std::move(name), std::move(help), Type::kCounter, {});
}

void Registry::declare_gauge(std::string name, std::string help) {
  declare(std::move(name), std::move(help), Type::kGauge, {});
}

void Registry::declare_histogram(std::string name, std::string help, std::vector<double> upper_bounds) {
  declare(std::move(name), std::move(help), Type::kHistogram, std::move(upper_bounds));
}

Registry::Series& Registry::series(std::string_view family_name, Type type, const Labels& labels) {
  std::lock_guard lock(mutex_);
  const auto family_it = families_.find(family_name);
  if (family_it == families_.end()) {
    fail("metric " + std::string(family_name) + " was never declared (declare_" + type_name(type) +
         " it first)");
  }
  Family& family = *family_it->second;
  if (family.type != type) {
    fail("metric " + family.name + " is a " + type_name(family.type) + ", not a " + type_name(type));
  }
  if (const auto it = family.series.find(labels); it != family.series.end()) return *it->second;

  std::vector<std::string> names;
  names.reserve(labels.size());
  for (const auto& [label, value] : labels) {
    if (!is_label_name(label)) {
      fail("metric " + family.name + ": invalid label name \"" + label +
           "\": must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __");
    }
    if (type == Type::kHistogram && label == "le") {
      fail("histogram " + family.name + ": label \"le\" is reserved for its buckets");
    }
    if (std::find(names.begin(), names.end(), label) != names.end()) {
      fail("metric " + family.name + ": label \"" + label + "\" given twice");
    }
    names.push_back(label);
  }
  if (!family.label_names_fixed) {
    family.label_names = names;
    family.label_names_fixed = true;
  } else if (family.label_names != names) {
    std::string expected;
    for (const std::string& name : family.label_names) expected += (expected.empty() ? "" : ",") + name;
    fail("metric " + family.name + ": every series must carry the labels {" + expected +
         "} in that order");
  }

  std::unique_ptr<Series> created;
  switch (type) {
    case Type::kCounter: created = std::make_unique<Series>(labels, std::in_place_type<Counter>); break;
    case Type::kGauge: created = std::make_unique<Series>(labels, std::in_place_type<Gauge>); break;
    case Type::kHistogram:
      created = std::make_unique<Series>(labels, std::in_place_type<Histogram>, family.upper_bounds);
      break;
  }
  Series& result = *created;
  family.series.emplace(labels, std::move(created));
  return result;
}

Counter& Registry::counter(std::string_view family, const Labels& labels) {
  return std::get<Counter>(series(family, Type::kCounter, labels).metric);
}

Gauge& Registry::gauge(std::string_view family, const Labels& labels) {
  return std::get<Gauge>(series(family, Type::kGauge, labels).metric);
}

Histogram& Registry::histogram(std::string_view family, const Labels& labels) {
  return std::get<Histogram>(series(family, Type::kHistogram, labels).metric);
}

std::size_t Registry::remove(std::string_view label, std::string_view value) {
  std::lock_guard lock(mutex_);
  std::size_t removed = 0;
  for (auto& [name, family] : families_) {
    removed += std::erase_if(family->series, [&](const auto& entry) {
      return std::any_of(entry.first.begin(), entry.first.end(),
                         [&](const auto& pair) { return pair.first == label && pair.second == value; });
    });
  }
  return removed;
}

void Registry::collect(const std::function<void(const Family&)>& on_family,
                       const std::function<void(Sample&&)>& on_sample) const {
  std::lock_guard lock(mutex_);
  for (const auto& [name, family] : families_) {
    if (family->series.empty()) continue;
    on_family(*family);
    for (const auto& [labels, series] : family->series) {
      switch (family->type) {
        case Type::kCounter:
          on_sample({family->name, labels, std::get<Counter>(series->metric).value()});
          break;
        case Type::kGauge:
          on_sample({family->name, labels, std::get<Gauge>(series->metric).value()});
          break;
        case Type::kHistogram: {
          const Histogram::Data data = std::get<Histogram>(series->metric).read();
          for (std::size_t i = 0; i < data.cumulative.size(); ++i) {
            Labels with_le = labels;
            with_le.emplace_back("le", i < family->upper_bounds.size()
                                           ? format_value(family->upper_bounds[i])
                                           : std::string("+Inf"));
            on_sample({family->name + "_bucket", std::move(with_le), static_cast<double>(data.cumulative[i])});
          }
          on_sample({family->name + "_sum", labels, data.sum});
          on_sample({family->name + "_count", labels, static_cast<double>(data.count)});
          break;
        }
      }
    }
  }
}

std::string Registry::render() const {
  std::string out;
  collect(
      [&](const Family& family) {
        out += "# HELP ";
        out += family.name;
        out += ' ';
        append_escaped(out, family.help, false);
        out += "\n# TYPE ";
        out += family.name;
        out += ' ';
        out += type_name(family.type);
        out += '\n';
      },
      [&](Sample&& sample) {
        out += sample.name;
        if (!sample.labels.empty()) {
          out += '{';
          for (std::size_t i = 0; i < sample.labels.size(); ++i) {
            if (i > 0) out += ',';
            out += sample.labels[i].first;
            out += "=\"";
            append_escaped(out, sample.labels[i].second, true);
            out += '"';
          }
          out += '}';
        }
        out += ' ';
        out += format_value(sample.value);
        out += '\n';
      });
  return out;
}

std::vector<Registry::Sample> Registry::snapshot() const {
  std::vector<Sample> samples;
  collect([](const Family&) {}, [&](Sample&& sample) { samples.push_back(std::move(sample)); });
  return samples;
}

}  // namespace shmtrace::drain::metrics
