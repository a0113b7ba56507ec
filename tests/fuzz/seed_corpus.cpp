// Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/) from
// real segments: it runs the test producers (st_producer) under the real
// runtime, reads what they left in /dev/shm with the reader library and the
// drain's consumer, and saves each parser's input as the drain would meet
// it: ring records, a compact segment image holding a real ring and string
// table, real error chunks, spill files of real batches, histogram blobs of
// real call-site statistics, real values for the redactor. Run by
// `scripts/fuzz.sh --seed`; the corpus is kept in the tree.
//
//   fuzz_seed_corpus OUT_DIR
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "reader/reader.hpp"
#include "store/segment_consumer.hpp"
#include "store/spill_file.hpp"
#include "support/segment_builder.hpp"
#include "support/test_support.hpp"

using namespace shmtrace;
namespace fs = std::filesystem;

namespace {

fs::path out_root;

void save(const std::string& target, const std::string& name, const void* data, std::size_t size) {
  const fs::path dir = out_root / target;
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary).write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
}
void save(const std::string& target, const std::string& name, const std::string& text) {
  save(target, name, text.data(), text.size());
}

std::vector<std::byte> read_bytes(const std::string& path, std::size_t most) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::byte> out(most);
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(most));
  out.resize(static_cast<std::size_t>(in.gcount()));
  return out;
}

// A compact image of a real segment: its string table as it is (record
// name ids are offsets into it), ring 0 holding up to 64 of its records.
void save_segment_image(const std::string& label, const reader::Segment& real,
                        const std::vector<abi::Record>& records) {
  const abi::SegmentHeader& h = real.header();
  test::Geometry g;
  g.ring_capacity = 64;
  g.max_rings = 2;
  g.string_table_bytes = 16384;
  test::SegmentBuilder image(g);
  image.header().pid = h.pid;
  image.header().nonce = h.nonce;
  image.header().clock_kind = h.clock_kind;
  image.header().ticks_per_second = h.ticks_per_second;
  std::memcpy(image.header().exe, h.exe, sizeof h.exe);
  // Interned strings: copied entry by entry so their ids stay the same.
  for (const abi::Record& r : records) {
    auto text = real.string(r.name_id);
    if (!text || r.name_id == 0 || r.name_id + sizeof(abi::StringEntry) + text->size() > g.string_table_bytes) continue;
    auto& table = *image.at<abi::StringTableHeader>(image.header().strings_offset);
    std::byte* entry = image.base() + image.header().strings_offset + r.name_id;
    auto* e = reinterpret_cast<abi::StringEntry*>(entry);
    e->length = static_cast<std::uint16_t>(text->size());
    std::memcpy(entry + sizeof(abi::StringEntry), text->data(), text->size());
    e->ready = 1;
    const std::uint64_t end = test::round_up(r.name_id + sizeof(abi::StringEntry) + text->size(), 4);
    if (table.used < end) table.used = static_cast<std::uint32_t>(end);
  }
  image.ring(0).state = static_cast<std::uint32_t>(abi::RingState::kClaimed);
  image.ring(0).tid = h.pid;
  const std::size_t n = std::min<std::size_t>(records.size(), g.ring_capacity);
  image.push_all(0, std::span<const abi::Record>(records.data(), n));
  const std::vector<std::byte> bytes = image.image();
  save("segment", label, bytes.data(), bytes.size());
}

void harvest(const std::string& label, const std::vector<std::string>& argv) {
  const test::RunResult r = test::run(argv);
  if (r.exit_code != 0 && r.signal == 0) std::fprintf(stderr, "seed_corpus: %s exited %d\n", label.c_str(), r.exit_code);
  const std::string name = test::find_segment(r.pid, 2000);
  if (name.empty()) {
    std::fprintf(stderr, "seed_corpus: %s left no segment\n", label.c_str());
    return;
  }
  test::SegmentGuard guard(name);
  {
    auto seg = reader::Segment::attach(name, reader::Access::kReadOnly);
    if (!seg) {
      std::fprintf(stderr, "seed_corpus: %s: %s\n", label.c_str(), seg.error().message.c_str());
      return;
    }
    std::vector<abi::Record> all;
    for (std::uint32_t ring = 0; ring < seg->ring_count(); ++ring) {
      auto batch = seg->read_ring(ring, 256);
      if (!batch || batch->records.empty()) continue;
      save("decoder", label + "-ring" + std::to_string(ring), batch->records.data(),
           batch->records.size() * sizeof(abi::Record));
      all.insert(all.end(), batch->records.begin(), batch->records.end());
    }
    if (!all.empty()) save_segment_image(label, *seg, all);
    // The first error chunk's entries, under the error target's header.
    const std::string chunk = "/dev/shm/" + name + abi::kErrorChunkInfix + "0";
    std::vector<std::byte> bytes = read_bytes(chunk, fuzz::kErrorFixtureChunkBytes);
    if (bytes.size() >= abi::kErrorChunkHeaderSize) {
      abi::ErrorChunkHeader ch{};
      std::memcpy(&ch, bytes.data(), sizeof ch);
      if (ch.used > abi::kErrorChunkHeaderSize) {
        ch.segment_nonce = fuzz::kErrorFixtureNonce;
        ch.capacity = fuzz::kErrorFixtureChunkBytes;
        ch.used = std::min<std::uint32_t>(ch.used, fuzz::kErrorFixtureChunkBytes);
        std::memcpy(bytes.data(), &ch, sizeof ch);
        bytes.resize(ch.used);
        save("error_area", label, bytes.data(), bytes.size());
      }
    }
  }
  // What the drain makes of it: a batch, spilled as the drain spills.
  auto seg = reader::Segment::attach(name, reader::Access::kConsume);
  if (!seg) return;
  drain::SegmentConsumer consumer(std::move(*seg), std::nullopt, nullptr, std::chrono::milliseconds(0));
  drain::Batch batch;
  if (!consumer.collect(batch, 4096)) return;
  (void)consumer.collect_fate(batch);
  const std::string spill = (out_root / "spill_file" / label).string();
  fs::create_directories(out_root / "spill_file");
  fs::remove(spill);
  if (auto f = drain::SpillFile::open(spill, std::uint64_t{1} << 30)) (void)f->append(batch);
  int values = 0;
  for (const drain::SegmentRows& s : batch.segments) {
    for (const drain::CallStatsSnapshot& c : s.call_stats) {
      if (!c.histogram.empty()) save("histogram", label + "-" + std::to_string(c.slot), c.histogram);
    }
    for (const drain::SpanDataRow& d : s.span_data) {
      if (d.value_type == "string" && values < 8) save("redactor", label + "-value" + std::to_string(values++), d.value);
    }
    for (const drain::ErrorRow& e : s.errors) {
      if (values < 12) save("redactor", label + "-error" + std::to_string(values++), e.message);
    }
  }
  consumer.abandon();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_seed_corpus OUT_DIR\n");
    return 2;
  }
  out_root = argv[1];
  harvest("args", {test::program_path("st_producer"), "args"});
  harvest("spans", {test::program_path("st_producer"), "spans", "4"});
  harvest("errors", {test::program_path("st_producer"), "errors", "1", "6"});
  harvest("sampling", {test::program_path("st_producer"), "sampling", "3"});
  harvest("sequence", {test::program_path("st_producer"), "sequence", "2", "40"});
  harvest("crash", {test::program_path("st_producer"), "crash", "segv", "20"});
  // Values only a redactor fears, and rules files of every shape.
  save("redactor", "secrets", "password=hunter2 Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig "
                              "AKIAIOSFODNN7EXAMPLE bob@example.com +44 20 7946 0958 ghp_0123456789abcdefABCDEF");
  save("alert_rules", "log", "[[rule]]\nname = \"many-errors\"\nsql = \"SELECT count(*) FROM errors WHERE ts_ns > :since\"\n"
                             "above = 100\ninterval = \"10s\"\ntimeout = \"2s\"\naction = \"log\"\n");
  save("alert_rules", "exec", "default_rules = false\n[[rule]]\nname = \"slow\"\nsql = \"SELECT max(duration_ns) FROM spans "
                              "WHERE start_ns BETWEEN :since AND :now\"\nat_least = 1.5e9\ninterval = \"1m\"\n"
                              "action = \"exec\"\ncommand = [\"/usr/local/bin/page\", \"--team\", \"infra\"]\n");
  return 0;
}
