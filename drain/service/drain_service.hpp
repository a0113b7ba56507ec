// The drain's main loop (SPEC §4), as a class so the tool, the tests and the
// benchmarks run the same code. Each cycle:
//   1. discovery: new segments from inotify (and the periodic rescan), each
//      attached as the consumer, or refused once with one line and a metric;
//   2. collection: every consumer appends its errors, rings and overflow to
//      one batch (at most max_per_ring records a ring: adaptive, doubled
//      while rings come back full, halved while they come back light);
//   3. commit: the batch goes to the store in one transaction, or to the
//      spill file while the circuit is open (D5); only then are the slots
//      handed back; a failed commit hands nothing back, so the records are
//      read again next cycle;
//   4. finishing: processes that were gone before their last empty
//      collection get their fate stored and their segments removed (D7);
//   5. housekeeping, on their own clocks: retention (D4), incremental vacuum
//      when idle, metrics into the metrics table (D6), alert rules (D8).
#ifndef SHMTRACE_DRAIN_SERVICE_HPP
#define SHMTRACE_DRAIN_SERVICE_HPP

#include <atomic>
#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "store/store.hpp"

namespace shmtrace::drain {

struct DrainOptions {
  std::string database;
  StoreOptions store;
  std::vector<std::uint32_t> uids;         // owners whose segments are drained; empty: our own
  std::string shm_directory = "/dev/shm";  // where segments live (the reader's)
  // The session whose segments this drain takes, and only those ("" = only
  // segments of no session): runs on one machine never take each other's.
  std::string session;
  bool once = false;                       // drain what is there, finish the gone, exit
  std::chrono::milliseconds idle_wait{2};  // longest wait for new work when a cycle moved nothing
  std::chrono::milliseconds rescan{1000};  // safety-net rescan of the shm directory
  std::size_t max_per_ring = 65536;        // the adaptive batch's ceiling per ring
  std::string spill_path;                  // "" = <database>.spill
  std::uint64_t spill_max_bytes = 256ull << 20;
  int circuit_failures = 5;                // consecutive failed commits that open the circuit
  std::chrono::milliseconds circuit_open{30'000};
  std::chrono::milliseconds retention_check{60'000};
  std::chrono::milliseconds metrics_interval{5'000};  // into the metrics table
  std::chrono::milliseconds stats_interval{1'000};    // call-site statistics snapshots (P13)
  std::string metrics_address = "127.0.0.1";
  int metrics_port = -1;                   // -1: no HTTP endpoint; 0: any free port
  std::string alerts_file;                 // "" = the default rule only
  bool default_alerts = true;
  std::vector<std::string> sensitive_names;  // beside the built-in ones
};

struct DrainTotals {
  std::uint64_t records = 0;       // committed (store or spill)
  std::uint64_t rows = 0;
  std::uint64_t errors = 0;
  std::uint64_t commits = 0;
  std::uint64_t failed_commits = 0;
  std::uint64_t spilled_batches = 0;
  std::uint64_t replayed_batches = 0;
  std::uint64_t segments_finished = 0;
  std::uint64_t segments_refused = 0;
};

class Drain {
 public:
  using Log = std::function<void(const std::string&)>;
  // Opens the store (schema, lock), the spill file, the metrics endpoint and
  // the alert rules. Any failure is one line.
  static std::expected<std::unique_ptr<Drain>, std::string> create(const DrainOptions& options, Log log);
  ~Drain();

  // Runs cycles until stop becomes true (then one last cycle flushes what is
  // pending) or, with options.once, until nothing is left to do.
  std::expected<void, std::string> run(const std::atomic<bool>& stop);
  // One cycle; true when it moved anything.
  std::expected<bool, std::string> cycle();

  const DrainTotals& totals() const;
  int metrics_port() const;
  bool circuit_open() const;

 private:
  struct Impl;
  explicit Drain(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace shmtrace::drain

#endif
