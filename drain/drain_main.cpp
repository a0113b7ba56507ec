// shmtrace-drain: moves every segment on the machine into SQLite, exactly
// once (SPEC §4). Each cycle it lists the segments in /dev/shm (owned by the
// permitted user, symlinks refused), attaches to new ones, moves their
// records into the database, and finishes the ones whose process is gone:
// records their fate and removes their segments. SIGTERM and SIGINT finish
// the current cycle, store everything pending and exit 0.
//
// Exit status: 0 on a clean stop, 1 when the database cannot be used, 2 for
// a bad command line.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <thread>

#include "store/segment_consumer.hpp"

namespace {

volatile sig_atomic_t g_stop = 0;
void on_stop(int) { g_stop = 1; }

void say(const std::string& line) { std::fprintf(stderr, "shmtrace-drain: %s\n", line.c_str()); }

}  // namespace

int main(int argc, char** argv) {
  using namespace shmtrace;
  CLI::App app{"shmtrace-drain: moves traced processes' shared-memory records into SQLite, exactly once"};
  std::string database;
  bool once = false;
  int interval_ms = 2;
  std::optional<std::uint32_t> uid;
  app.add_option("-d,--db", database, "SQLite database file (created, or migrated to the current schema)")->required();
  app.add_flag("--once", once, "drain what is there now, finish every process that is gone, then exit");
  app.add_option("--interval-ms", interval_ms, "pause between cycles that found nothing, in ms")->check(CLI::Range(0, 10000));
  app.add_option("--uid", uid, "drain segments owned by this user (default: our own)");
  CLI11_PARSE(app, argc, argv);

  auto store = drain::Store::open(database);
  if (!store) {
    say(store.error().message);
    return 1;
  }
  struct sigaction stop {};
  stop.sa_handler = on_stop;
  sigemptyset(&stop.sa_mask);
  sigaction(SIGTERM, &stop, nullptr);
  sigaction(SIGINT, &stop, nullptr);

  std::map<std::string, drain::SegmentConsumer> live;
  std::set<std::string> refused;  // reported once each
  while (true) {
    const bool stopping = g_stop != 0;
    bool moved = false;
    if (auto listed = reader::list_segments()) {
      for (const reader::SegmentListing& l : *listed) {
        if (live.contains(l.name) || refused.contains(l.name)) continue;
        auto segment = reader::Segment::attach(l.name, reader::Access::kConsume, uid);
        if (!segment) {
          // A header still being written is retried; anything else is untrusted.
          if (segment.error().message.find("not yet initialized") == std::string::npos) {
            say("skipping " + l.name + ": " + segment.error().message);
            refused.insert(l.name);
          }
          continue;
        }
        auto consumer = drain::SegmentConsumer::open(std::move(*segment), *store);
        if (!consumer) {
          say(consumer.error().message);
          return 1;
        }
        live.emplace(l.name, std::move(*consumer));
      }
    }
    for (auto it = live.begin(); it != live.end();) {
      drain::SegmentConsumer& c = it->second;
      const bool gone = c.image_gone();  // decided before the pass: nothing is written after it
      auto pass = c.pass(*store);
      if (!pass) {
        say(c.name() + ": " + pass.error().message);
        refused.insert(it->first);
        it = live.erase(it);
        continue;
      }
      moved |= pass->records + pass->errors > 0;
      if (gone && pass->records + pass->errors == 0) {
        if (auto ok = c.finish(*store); !ok) say(c.name() + ": " + ok.error().message);
        it = live.erase(it);
        continue;
      }
      ++it;
    }
    if (stopping) break;
    if (once && !moved) {
      // Done once every segment left belongs to a running process (--once
      // leaves those in place); gone ones are finished on the next cycle.
      const bool all_running = std::none_of(live.begin(), live.end(), [](auto& l) { return l.second.image_gone(); });
      if (all_running) break;
      continue;
    }
    if (!moved) std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
  }
  return 0;
}
