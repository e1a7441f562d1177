// Tokenizer throughput on several MB of deterministic text (single thread; MB/s = bytes_per_second).
//   english: the English fixtures (long_english_20k, long_mixed, README, PROVENANCE, english
//            vectors) repeated to 8 MiB — word repeats hit the BPE cache, as in real prose.
//   mixed:   every golden text (code, CJK, emoji, digits, whitespace...) repeated to 8 MiB.
//   unique:  4 MiB of pseudo-random lowercase words, so almost every word misses the cache.
#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace {

std::string data_path(const std::string& name) { return std::string(DSV4_TEST_DATA) + "/tokenizer/" + name; }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const dsv4::Tokenizer& tokenizer() {
  static const dsv4::Tokenizer t = dsv4::Tokenizer::load(data_path("tokenizer.json"));
  return t;
}

std::string repeat_to(const std::string& unit, size_t bytes) {
  std::string out;
  out.reserve(bytes + unit.size());
  while (out.size() < bytes) out += unit;
  return out;
}

// Golden texts whose category passes `keep`, joined by newlines.
template <typename Keep>
std::string golden_texts(Keep keep) {
  std::ifstream in(data_path("golden-encode.jsonl"));
  std::string all;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    if (!keep(j["category"].get<std::string>(), j.value("name", std::string()))) continue;
    all += j["text"].get<std::string>();
    all += '\n';
  }
  return all;
}

const std::string& english_text() {
  static const std::string s = [] {
    std::string unit = golden_texts([](const std::string& cat, const std::string& name) {
      return cat == "english" || name == "long_english_20k" || name == "long_mixed";
    });
    unit += read_file(data_path("README.md"));
    unit += read_file(data_path("PROVENANCE.md"));
    return repeat_to(unit, 8u << 20);
  }();
  return s;
}

const std::string& mixed_text() {
  static const std::string s = repeat_to(golden_texts([](const std::string&, const std::string&) { return true; }), 8u << 20);
  return s;
}

const std::string& unique_text() {
  static const std::string s = [] {
    std::string out;
    uint64_t x = 0x2545F4914F6CDD1Dull;
    const auto next = [&] {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      return x;
    };
    while (out.size() < (4u << 20)) {
      const int len = 2 + static_cast<int>(next() % 9);
      for (int i = 0; i < len; ++i) out.push_back(static_cast<char>('a' + next() % 26));
      out += (next() % 12 == 0) ? ". " : " ";
    }
    return out;
  }();
  return s;
}

void encode_bench(benchmark::State& state, const std::string& text) {
  const dsv4::Tokenizer& t = tokenizer();
  size_t n = 0;
  for (auto _ : state) {
    auto ids = t.encode(text);
    n = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(text.size()));
  state.counters["tokens"] = static_cast<double>(n);
}

void BM_EncodeEnglish(benchmark::State& state) { encode_bench(state, english_text()); }
void BM_EncodeMixed(benchmark::State& state) { encode_bench(state, mixed_text()); }
void BM_EncodeUniqueWords(benchmark::State& state) { encode_bench(state, unique_text()); }

void BM_Decode(benchmark::State& state) {
  const dsv4::Tokenizer& t = tokenizer();
  const auto ids = t.encode(english_text());
  for (auto _ : state) {
    auto s = t.decode(ids);
    benchmark::DoNotOptimize(s.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(english_text().size()));
}

void BM_StreamDecode(benchmark::State& state) {
  const dsv4::Tokenizer& t = tokenizer();
  const auto ids = t.encode(mixed_text());
  for (auto _ : state) {
    dsv4::StreamDecoder dec(t);
    size_t total = 0;
    for (int32_t id : ids) total += dec.push(id).size();
    total += dec.flush().size();
    benchmark::DoNotOptimize(total);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(mixed_text().size()));
}

void BM_Load(benchmark::State& state) {
  for (auto _ : state) {
    auto t = dsv4::Tokenizer::load(data_path("tokenizer.json"));
    benchmark::DoNotOptimize(t.vocab_size());
  }
}

BENCHMARK(BM_EncodeEnglish)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeMixed)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeUniqueWords)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Decode)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_StreamDecode)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Load)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace
