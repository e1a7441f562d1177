// Run under mpirun (-np 2, -np 3): for each checkpoint given, every rank loads it and the routed
// experts are dealt round robin (rank 0 keeps its share, so steps mix local and remote experts).
// Rank 0 runs the same steps twice — with its peers, then alone — and every logit must agree bit for
// bit: a batched chunked prefill, decode steps, and the MTP block when the checkpoint has one.
// Exit status 0 when all agree; rank 0 prints what differs otherwise.
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "dist/expert_parallel.h"
#include "dist/world.h"
#include "model/transformer.h"

using namespace dsv4;

namespace {

dist::Placement round_robin(const Model& m, int ranks) {
  dist::PlacementInput in = dist::placement_input(m, ranks);
  dist::Placement p;
  p.ranks = ranks;
  p.n_experts = in.n_experts;
  p.layers = in.layers;
  p.owner.resize(p.layers.size() * size_t(p.n_experts));
  p.bytes.assign(size_t(ranks), 0);
  p.experts.assign(size_t(ranks), 0);
  for (size_t i = 0; i < p.owner.size(); ++i) p.owner[i] = int16_t((i * 7 + i / size_t(p.n_experts)) % size_t(ranks));
  return p;
}

// Logits of a fixed script of steps over two sequences, concatenated.
std::vector<float> script(const Model& m) {
  const int V = int(m.config().vocab_size);
  std::vector<int32_t> a, b;
  for (int i = 0; i < 11; ++i) a.push_back((i * 37 + 5) % V), b.push_back((i * 53 + 11) % V);
  SequenceState sa = m.new_sequence(), sb = m.new_sequence();
  std::vector<float> all;
  ForwardOptions fo;
  fo.keep_streams = m.has_mtp();
  auto keep = [&](const std::vector<ForwardResult>& r) {
    for (auto& x : r) all.insert(all.end(), x.logits.begin(), x.logits.end());
  };
  // Chunked, batched prefill: 6 + 3 tokens of a alongside 4 + 2 of b.
  keep(m.forward_batch({{&sa, a.data(), 6}, {&sb, b.data(), 4}}, fo));
  auto r = m.forward_batch({{&sa, a.data() + 6, 3}, {&sb, b.data() + 4, 2}}, fo);
  keep(r);
  if (m.has_mtp()) {
    auto l = m.mtp_forward(sa, r[0].final_streams.data(), a.data() + 7, 1);
    all.insert(all.end(), l.begin(), l.end());
  }
  for (int t = 0; t < 2; ++t) keep(m.forward_batch({{&sa, a.data() + 9 + t, 1}, {&sb, b.data() + 6 + t, 1}}, fo));
  return all;
}

bool check(const std::string& dir, const NumericsOptions& opt, const char* what) {
  const int me = dist::rank(), R = dist::size();
  Model m(dir, opt);
  const dist::Placement p = round_robin(m, R);
  if (me != 0) {
    dist::serve_experts(m, p);
    return true;
  }
  auto peers = std::make_shared<dist::MpiExpertPeers>(p, m.config().dim);
  m.set_expert_peers(peers);
  const std::vector<float> spread = script(m);
  const PeerTraffic st = peers->traffic();
  m.set_expert_peers(nullptr);
  peers.reset();  // the workers return from serve_experts
  const std::vector<float> alone = script(m);
  size_t diff = 0;
  for (size_t i = 0; i < alone.size(); ++i) diff += std::memcmp(&alone[i], &spread[i], 4) != 0;
  std::printf("%s %s over %d ranks: %zu logits, %zu differ; %llu messages, %llu B out, %llu B back\n", dir.c_str(),
              what, R, alone.size(), diff, (unsigned long long)st.messages, (unsigned long long)st.bytes_sent,
              (unsigned long long)st.bytes_received);
  return diff == 0 && alone.size() == spread.size() && st.messages > 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    dist::start();
    if (dist::size() < 2) dsv4::fail("run me under mpirun with at least 2 ranks");
    bool ok = true;
    for (int i = 1; i < argc; ++i) {
      ok = check(argv[i], {}, "exact numerics") && ok;
      if (i == 1) ok = check(argv[i], NumericsOptions::no_act_quant(), "fp32 activations") && ok;
    }
    dist::finish();
    return ok ? 0 : 1;
  } catch (const dsv4::Error& e) {
    std::fprintf(stderr, "rank %d: %s\n", dist::rank(), e.what());
    return 2;
  }
}
