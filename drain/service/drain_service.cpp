#include "service/drain_service.hpp"

#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>
#include <thread>

#include "alerts/alert_evaluator.hpp"
#include "alerts/alert_rules.hpp"
#include "discovery/segment_watcher.hpp"
#include "metrics/http_exporter.hpp"
#include "metrics/registry.hpp"
#include "redact/redactor.hpp"
#include "service/drain_metrics.hpp"
#include "store/query.hpp"
#include "store/segment_consumer.hpp"
#include "store/spill_file.hpp"

namespace shmtrace::drain {
namespace {

using Clock = std::chrono::steady_clock;

std::int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// D5: closed (storing), open (spilling until reopen_at), half-open (the next
// commit is the probe).
// Records one batch takes at most (all segments together): it bounds the
// drain's memory (rows are ~200 bytes each) and a transaction's length.
constexpr std::uint64_t kMaxBatchRecords = 32768;

enum class Circuit { kClosed = 0, kOpen = 1, kHalfOpen = 2 };


}  // namespace

struct Drain::Impl {
  DrainOptions options;
  Log log;
  Store store;
  SpillFile spill;
  Redactor redactor;
  SegmentWatcher watcher;
  metrics::Registry registry;
  DrainMetrics m{registry};
  std::unique_ptr<metrics::HttpExporter> exporter;
  std::optional<alerts::Evaluator> alerts;

  std::map<std::string, SegmentConsumer> live;
  // Not yet initialized, or consumed by another drain: retried, as the owner
  // discovery saw, every 100 ms.
  std::map<std::string, std::uint32_t> waiting;
  std::set<std::string> busy_reported;
  Clock::time_point next_waiting_retry{};
  std::string resume_after;
  std::map<std::string, Clock::time_point> first_attempt;  // segments still being created  // the segment the last cycle's collection ended with
  DrainTotals totals;
  std::size_t per_ring;  // adaptive batch size
  Circuit circuit = Circuit::kClosed;
  int failures = 0;
  Clock::time_point reopen_at{};
  bool spill_full_reported = false;
  Clock::time_point next_retention{}, next_metrics{}, next_identity_check{};
  std::uint64_t rows_at_last_metrics = 0;
  Clock::time_point last_metrics_at = Clock::now();

  Impl(DrainOptions o, Log l, Store s, SpillFile f, Redactor r, SegmentWatcher w)
      : options(std::move(o)),
        log(std::move(l)),
        store(std::move(s)),
        spill(std::move(f)),
        redactor(std::move(r)),
        watcher(std::move(w)),
        per_ring(std::min<std::size_t>(4096, options.max_per_ring)) {}

  void discover(std::chrono::milliseconds wait);
  void attach(const std::string& name, std::uint32_t owner);
  std::expected<bool, std::string> commit(Batch& batch);
  void housekeeping(bool idle);
  std::unexpected<std::string> identity_lost(const std::string& why);
  void publish_metrics();
  std::expected<void, std::string> write(const Batch& batch);
};

Drain::Drain(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Drain::~Drain() = default;
const DrainTotals& Drain::totals() const { return impl_->totals; }
int Drain::metrics_port() const { return impl_->exporter ? impl_->exporter->port() : -1; }
bool Drain::circuit_open() const { return impl_->circuit != Circuit::kClosed; }

std::expected<std::unique_ptr<Drain>, std::string> Drain::create(const DrainOptions& options, Log log) {
  StoreOptions store_options = options.store;
  if (!store_options.log) store_options.log = log;
  auto store = Store::open(options.database, store_options);
  if (!store) return std::unexpected(store.error().message);
  auto spill = SpillFile::open(options.spill_path.empty() ? options.database + ".spill" : options.spill_path,
                               options.spill_max_bytes);
  if (!spill) return std::unexpected(spill.error());
  auto redactor = Redactor::create(options.sensitive_names);
  if (!redactor) return std::unexpected(redactor.error());
  SegmentWatcherOptions watch;
  watch.directory = options.shm_directory;
  watch.rescan_interval = options.rescan;
  watch.permitted_uids = options.uids;
  watch.session = options.session;  // the watcher refuses an invalid id
  if (watch.permitted_uids.empty()) watch.permitted_uids.push_back(static_cast<std::uint32_t>(::getuid()));
  auto watcher = SegmentWatcher::open(watch);
  if (!watcher) return std::unexpected(watcher.error());
  if (!watcher->inotify_active()) log("inotify unavailable (" + watcher->inotify_error() + "): rescanning only");

  auto impl = std::make_unique<Impl>(options, std::move(log), std::move(*store), std::move(*spill),
                                     std::move(*redactor), std::move(*watcher));
  // Which segments this drain takes, for whoever scrapes several drains.
  impl->registry.declare_gauge("shmtrace_drain_info",
                               "Always 1; the label session names the session drained (\"\": segments of no session).");
  impl->registry.gauge("shmtrace_drain_info", {{"session", options.session}}).set(1);
  if (options.metrics_port >= 0) {
    auto exporter = metrics::HttpExporter::start(impl->registry, options.metrics_address, options.metrics_port);
    if (!exporter) return std::unexpected(exporter.error());
    impl->exporter = std::move(*exporter);
  }
  auto rules = options.alerts_file.empty()
                   ? std::expected<std::vector<alerts::Rule>, std::string>(
                         options.default_alerts ? alerts::default_rules() : std::vector<alerts::Rule>{})
                   : alerts::load_rules(options.alerts_file);
  if (!rules) return std::unexpected(rules.error());
  if (!rules->empty()) {
    // Rules read through a query connection of their own (partitions,
    // views, SQL functions), on their own thread: never on the writer's.
    alerts::EvaluatorOptions alert_options;
    alert_options.open_queries = [](const std::string& path) -> std::expected<alerts::QueryConnection, std::string> {
      auto q = QueryDatabase::open(path);
      if (!q) return std::unexpected(q.error());
      auto owner = std::make_shared<QueryDatabase>(std::move(*q));
      sqlite3* handle = owner->handle();
      return alerts::QueryConnection(handle, [owner](sqlite3*) mutable { owner.reset(); });
    };
    auto evaluator =
        alerts::Evaluator::create(options.database, std::move(*rules), impl->log, std::move(alert_options));
    if (!evaluator) return std::unexpected(evaluator.error());
    impl->alerts.emplace(std::move(*evaluator));
    impl->alerts->start();
  }
  if (impl->spill.batches() > 0) {
    impl->log("replaying " + std::to_string(impl->spill.batches()) + " spilled batches from " + impl->spill.path());
  }
  return std::unique_ptr<Drain>(new Drain(std::move(impl)));
}

void Drain::Impl::attach(const std::string& name, std::uint32_t owner) {
  // The watcher reported only names of this drain's session; the reader
  // refuses a segment whose header names another session than its name.
  auto segment = reader::Segment::attach(name, reader::Access::kConsume, owner);
  if (!segment) {
    // A segment still being created (empty, or its header not yet written)
    // is retried for a while before it counts as untrusted.
    const std::string& why = segment.error().message;
    const bool young = why.find("not yet initialized") != std::string::npos ||
                       why.find("smaller than the minimum") != std::string::npos;
    const auto first_seen = first_attempt.try_emplace(name, Clock::now()).first->second;
    if (young && Clock::now() - first_seen < std::chrono::seconds(2)) {
      waiting[name] = owner;
      return;
    }
    first_attempt.erase(name);
    waiting.erase(name);
    busy_reported.erase(name);
    if (segment.error().message.find("No such file") != std::string::npos) return;  // gone meanwhile
    log("skipping " + name + ": " + segment.error().message);
    m.segments_refused("untrusted").add();
    ++totals.segments_refused;
    return;
  }
  if (!segment->claim_consumer()) {
    // Another drain (on another database) is consuming it: leave it to that
    // one, and take over once its process is gone.
    waiting[name] = owner;
    if (busy_reported.insert(name).second) {
      log("leaving " + name + " to the other drain already consuming it");
    }
    return;
  }
  waiting.erase(name);
  busy_reported.erase(name);
  first_attempt.erase(name);
  std::optional<ErrorCursorRow> resume;
  if (auto cursor = store.error_cursor(name)) resume = *cursor;  // the database may be down: from the start
  // A resumed segment's rings may still start with records of a thread that
  // has ended since (their ThreadStart already stored): credit them to it.
  std::map<std::uint32_t, std::uint32_t> ring_threads;
  if (auto known = store.ring_threads(name)) ring_threads = std::move(*known);
  live.emplace(name, SegmentConsumer(std::move(*segment), resume, &redactor, options.stats_interval,
                                     std::move(ring_threads)));
  m.segments_attached.add();
}

void Drain::Impl::discover(std::chrono::milliseconds wait) {
  auto found = watcher.wait(wait);
  if (!found) {
    log(found.error());
    return;
  }
  for (const SegmentCandidate& c : found->refused) {
    log("skipping " + c.name + ": owned by uid " + std::to_string(c.owner_uid) + ", not a permitted user");
    m.segments_refused("owner").add();
    ++totals.segments_refused;
  }
  for (const SegmentCandidate& c : found->found) {
    if (!live.contains(c.name)) attach(c.name, c.owner_uid);
  }
  // Waiting segments are retried every 100 ms, not every cycle.
  if (waiting.empty() || Clock::now() < next_waiting_retry) return;
  next_waiting_retry = Clock::now() + std::chrono::milliseconds(100);
  for (const auto& [name, owner] : std::map(waiting)) {
    if (!live.contains(name)) attach(name, owner);
  }
}

std::expected<void, std::string> Drain::Impl::write(const Batch& batch) {
  const auto started = Clock::now();
  auto stored = store.write(batch);
  m.commit_seconds.observe(std::chrono::duration<double>(Clock::now() - started).count());
  if (!stored) return std::unexpected(stored.error().message);
  totals.rows += stored->rows;
  m.rows.add(static_cast<double>(stored->rows));
  return {};
}

// Stores the batch (or spills it); true when its records may be handed back.
std::expected<bool, std::string> Drain::Impl::commit(Batch& batch) {
  const auto now = Clock::now();
  if (circuit == Circuit::kOpen && now >= reopen_at) circuit = Circuit::kHalfOpen;
  if (circuit != Circuit::kOpen) {
    // Spilled batches go first, so the database sees them in order.
    std::expected<void, std::string> stored;
    if (spill.batches() > 0) {
      auto replayed = spill.replay([&](const Batch& b) { return write(b); },
                                   [&](const std::string& why) {
                                     log(why);
                                     m.spill_rejected.add();
                                   });
      if (replayed) {
        totals.replayed_batches += *replayed;
        m.replayed_batches.add(static_cast<double>(*replayed));
        log("replayed " + std::to_string(*replayed) + " spilled batches into the database");
      } else {
        stored = std::unexpected(replayed.error());
      }
    }
    if (stored) stored = write(batch);
    if (stored) {
      if (circuit == Circuit::kHalfOpen) log("database writable again: circuit closed");
      circuit = Circuit::kClosed;
      failures = 0;
      spill_full_reported = false;
      ++totals.commits;
      return true;
    }
    ++totals.failed_commits;
    m.failed_commits.add();
    if (circuit == Circuit::kHalfOpen || ++failures >= options.circuit_failures) {
      log("commit failed (" + stored.error() + "): circuit open for " +
          std::to_string(options.circuit_open.count()) + " ms, spilling to " + spill.path());
      circuit = Circuit::kOpen;
      reopen_at = now + options.circuit_open;
    } else {
      log("commit failed (" + stored.error() + "), attempt " + std::to_string(failures) + " of " +
          std::to_string(options.circuit_failures));
      return false;
    }
  }
  if (batch.empty()) return false;  // an idle probe (housekeeping) has nothing to keep
  // Open: the spill file keeps the batch durably, so the slots can go back.
  if (auto spilled = spill.append(batch); !spilled) {
    if (!spill_full_reported) {
      log(spilled.error() + ": records stay in shared memory (producers under block wait, others drop and count once their rings are full)");
      spill_full_reported = true;
    }
    m.spill_refusals.add();
    return false;
  }
  ++totals.spilled_batches;
  m.spilled_batches.add();
  return true;
}

std::expected<bool, std::string> Drain::cycle() {
  Impl& d = *impl_;
  // Storage down and the spill full: nothing can be kept before the circuit
  // half-opens, so nothing is read meanwhile (reading a full batch each cycle
  // only to refuse it burned a core). The heartbeats go on: producers under
  // block keep waiting for a drain that is alive and will store their records.
  if (d.circuit == Circuit::kOpen && d.spill_full_reported && Clock::now() < d.reopen_at) {
    for (auto& [name, c] : d.live) c.keep_alive();
    d.housekeeping(true);
    const auto left = d.reopen_at - Clock::now();
    std::this_thread::sleep_for(std::min<Clock::duration>(left, std::chrono::milliseconds(100)));
    return false;
  }
  d.discover(std::chrono::milliseconds(0));
  Batch batch;
  std::vector<std::string> finishing;
  std::size_t full_rings = 0;
  // Segments in turn from where the last cycle stopped, until the batch is
  // full: bounded memory, and no segment starves behind busy ones.
  std::vector<std::string> order;
  order.reserve(d.live.size());
  for (auto at = d.live.upper_bound(d.resume_after); at != d.live.end(); ++at) order.push_back(at->first);
  for (auto at = d.live.begin(); at != d.live.end() && at->first <= d.resume_after; ++at) order.push_back(at->first);
  for (const std::string& name : order) {
    if (batch.records >= kMaxBatchRecords) {
      // Not read this cycle, but the drain is alive and working through the
      // others: producers under block keep waiting for it rather than give
      // up after their timeout (with many busy segments a turn can take
      // longer than that).
      if (auto it = d.live.find(name); it != d.live.end()) it->second.keep_alive();
      continue;
    }
    auto it = d.live.find(name);
    d.resume_after = name;
    SegmentConsumer& c = it->second;
    const bool gone = c.image_gone();  // decided before reading: nothing is written after
    const std::size_t room = kMaxBatchRecords - batch.records;
    auto collected = c.collect(batch, std::min<std::size_t>(d.per_ring, room), room);
    if (!collected) {
      d.log("skipping " + it->first + ": " + collected.error().message);
      d.m.segments_refused("unreadable").add();
      ++d.totals.segments_refused;
      // Nothing of an untrusted segment is stored, not even what it gave
      // before the part that failed.
      std::erase_if(batch.segments, [&](const SegmentRows& s) { return s.process.segment == it->first; });
      c.abandon();
      d.live.erase(it);
      continue;
    }
    d.totals.errors += collected->errors;
    if (collected->abandoned_errors > 0) {
      d.log(it->first + ": passed over " + std::to_string(collected->abandoned_errors) +
            " error entries its process left half-written when it died");
    }
    if (!collected->warning.empty()) d.log(collected->warning);
    if (!collected->refused_note.empty()) d.log(collected->refused_note);
    if (collected->refused > 0) d.m.records_refused.add(static_cast<double>(collected->refused));
    d.m.note_collect(c, *collected, gone);
    if (collected->records >= d.per_ring) ++full_rings;
    if (gone && collected->records + collected->errors == 0) {
      if (auto ok = c.collect_fate(batch); !ok) {
        d.log("skipping the statistics of " + it->first + ": " + ok.error().message);
      }
      finishing.push_back(it->first);
    }
  }
  // Adapt the batch: rings that came back full want bigger batches.
  if (full_rings > 0) {
    d.per_ring = std::min(d.per_ring * 2, d.options.max_per_ring);
  } else if (batch.records < d.per_ring / 4) {
    d.per_ring = std::max<std::size_t>(1024, d.per_ring / 2);
  }
  // Segments that had nothing to say cost no transaction.
  std::erase_if(batch.segments, [](const SegmentRows& s) { return s.row_count() == 0 && !s.cursor; });
  const bool moved = batch.records > 0 || !batch.empty();
  if (moved) {
    auto committed = batch.empty() ? std::expected<bool, std::string>(true) : d.commit(batch);
    if (!committed) return std::unexpected(committed.error());
    if (*committed) {
      if (auto same = d.store.check_identity(); !same) return d.identity_lost(same.error().message);
    }
    for (auto& [name, c] : d.live) {
      if (!*committed) {
        c.abandon();
        continue;
      }
      if (auto ok = c.release(); !ok) d.log(name + ": " + ok.error().message);
    }
    if (*committed) {
      std::int64_t oldest = 0;
      for (const SegmentRows& s : batch.segments) {
        for (const SpanRow& r : s.spans) {
          const std::int64_t end = r.start_ns + r.duration_ns.value_or(0);
          if (oldest == 0 || end < oldest) oldest = end;
        }
      }
      if (oldest != 0) d.m.lag_seconds.set(static_cast<double>(wall_ns() - oldest) / 1e9);
      d.totals.records += batch.records;
      d.m.records.add(static_cast<double>(batch.records));
      for (const std::string& name : finishing) {
        SegmentConsumer& c = d.live.at(name);
        d.m.finish(c);
        if (auto ok = c.unlink(); !ok) d.log(ok.error().message);
        d.watcher.forget(name);
        d.live.erase(name);
        ++d.totals.segments_finished;
      }
    }
  }
  if (!moved && Clock::now() >= d.next_identity_check) {
    // Idle: nothing to hand back, but the user should hear of it now.
    d.next_identity_check = Clock::now() + std::chrono::seconds(1);
    if (auto same = d.store.check_identity(); !same) return d.identity_lost(same.error().message);
  }
  d.housekeeping(!moved);
  return moved;
}

// The database was deleted or replaced under us: what the last commit wrote
// went into unlinked files, so nothing is handed back and the drain stops.
std::unexpected<std::string> Drain::Impl::identity_lost(const std::string& why) {
  for (auto& [name, c] : live) c.abandon();
  return std::unexpected(why + "; stopping without handing back what was read, which stays in shared memory for the "
                               "next drain");
}

void Drain::Impl::housekeeping(bool idle) {
  // D5: the spill is replayed once storage returns even when no new record
  // comes to carry the replay (producers done, or a spill left by the last
  // run): an idle drain probes on its own when the circuit allows a commit.
  if (idle && spill.batches() > 0 && (circuit == Circuit::kClosed || Clock::now() >= reopen_at)) {
    Batch nothing;
    (void)commit(nothing);
  }
  const auto now = Clock::now();
  if (circuit == Circuit::kClosed && now >= next_retention) {
    next_retention = now + options.retention_check;
    const auto started = Clock::now();
    std::uint64_t partitions = 0, rows = 0;
    for (int step = 0; step < 64; ++step) {  // bounded: the rest waits for the next check
      auto expired = store.expire(wall_ns());
      if (!expired) {
        log("retention: " + expired.error().message);
        break;
      }
      partitions += expired->partitions_removed + expired->partitions_archived;
      rows += expired->rows_deleted;
      if (expired->rows_deleted == 0) break;
    }
    m.retention_partitions.add(static_cast<double>(partitions));
    m.retention_rows.add(static_cast<double>(rows));
    m.retention_seconds.add(std::chrono::duration<double>(Clock::now() - started).count());
  }
  if (circuit == Circuit::kClosed && idle) (void)store.vacuum_step();
  if (now >= next_metrics) {
    next_metrics = now + options.metrics_interval;
    publish_metrics();
  }
  // Alert rules run on the evaluator's own thread (started in create).
}

void Drain::Impl::publish_metrics() {
  const auto now = Clock::now();
  const double seconds = std::chrono::duration<double>(now - last_metrics_at).count();
  if (seconds > 0) m.rows_per_second.set(static_cast<double>(totals.rows - rows_at_last_metrics) / seconds);
  rows_at_last_metrics = totals.rows;
  last_metrics_at = now;
  for (auto& [name, c] : live) m.note_producer(c);
  m.circuit_state.set(static_cast<double>(circuit));
  m.database_bytes.set(static_cast<double>(store.database_bytes()));
  m.spill_bytes.set(static_cast<double>(spill.bytes()));
  m.segments_live.set(static_cast<double>(live.size()));
  m.partitions.set(static_cast<double>(store.partition_count()));
  if (circuit != Circuit::kClosed) return;
  std::vector<MetricSample> samples;
  for (const metrics::Registry::Sample& s : registry.snapshot()) {
    std::string labels;
    for (const auto& [k, v] : s.labels) labels += (labels.empty() ? "" : ",") + k + "=\"" + v + "\"";
    samples.push_back({s.name, labels, s.value});
  }
  if (auto ok = store.write_metrics(wall_ns(), samples); !ok) log("metrics table: " + ok.error().message);
}

// How long a stopping drain goes on storing what producers still write.
constexpr std::chrono::seconds kStopFlushLimit{5};

std::expected<void, std::string> Drain::run(const std::atomic<bool>& stop) {
  Impl& d = *impl_;
  while (true) {
    const bool stopping = stop.load(std::memory_order_relaxed);
    auto moved = cycle();
    if (!moved) return std::unexpected(moved.error());
    if (stopping) {
      // Flush: cycles until nothing moves, then stop; bounded, since
      // producers that keep writing would keep it moving for ever.
      const auto limit = Clock::now() + kStopFlushLimit;
      while (true) {
        auto more = cycle();
        if (!more) return std::unexpected(more.error());
        if (!*more) break;
        if (Clock::now() >= limit) {
          d.log("stopping with producers still writing: what they write from now on waits for the next drain");
          break;
        }
      }
      break;
    }
    if (d.options.once && !*moved) {
      // Done once every segment left belongs to a running process (--once
      // leaves those in place); gone ones are finished on the next cycle.
      const bool all_running =
          std::none_of(d.live.begin(), d.live.end(), [](auto& l) { return l.second.image_gone(); });
      // Segments another drain consumes are left to it.
      const bool none_waiting = std::all_of(d.waiting.begin(), d.waiting.end(),
                                            [&](const auto& w) { return d.busy_reported.contains(w.first); });
      if (all_running && none_waiting && (d.spill.batches() == 0 || d.circuit == Circuit::kOpen)) break;
      continue;
    }
    if (!*moved) d.discover(d.options.idle_wait);
  }
  // A rule's query still running is interrupted, not waited for.
  if (d.alerts) d.alerts->stop();
  d.publish_metrics();
  if (d.spill.batches() > 0) {
    d.log(std::to_string(d.spill.batches()) + " batches remain in " + d.spill.path() + ", replayed on the next start");
  }
  return {};
}

}  // namespace shmtrace::drain
