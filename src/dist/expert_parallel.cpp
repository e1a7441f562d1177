#include "dist/expert_parallel.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "core/error.h"
#include "dist/world.h"
#include "runtime/expert_cache.h"
#include "runtime/ram_budget.h"

#ifdef DSV4_HAVE_MPI
#include <mpi.h>
#endif

namespace dsv4::dist {

namespace {

enum Tag { kJobs = 11, kReply = 12 };
enum Cmd : int32_t { kStop = 0, kRun = 1 };

// A jobs message: Head, int32 expert[jobs], int32 count[jobs], int32 row[pairs], f32 scale[pairs],
// then rows × dim values (BF16 or F32). A reply: Reply, then pairs × dim values, or the error text.
struct Head {
  int32_t cmd, layer, jobs, rows, pairs, dim, bf16, pad;
};
struct Reply {
  int32_t status, bf16;  // status 0: outputs follow; else the error text
  int64_t pairs;
  double compute_s;      // the worker's time in the experts
};

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

bool all_bf16(const float* v, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint32_t b;
    std::memcpy(&b, v + i, 4);
    if (b & 0xffffu) return false;
  }
  return true;
}
void put_values(std::vector<char>& buf, const float* v, size_t n, bool bf16) {
  const size_t at = buf.size();
  if (!bf16) {
    buf.resize(at + n * 4);
    std::memcpy(buf.data() + at, v, n * 4);
    return;
  }
  buf.resize(at + n * 2);
  char* o = buf.data() + at;
  for (size_t i = 0; i < n; ++i) {
    uint32_t b;
    std::memcpy(&b, v + i, 4);
    const uint16_t h = uint16_t(b >> 16);
    std::memcpy(o + 2 * i, &h, 2);
  }
}
void get_values(const char* in, size_t n, bool bf16, float* v) {
  if (!bf16) {
    std::memcpy(v, in, n * 4);
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, in + 2 * i, 2);
    const uint32_t b = uint32_t(h) << 16;
    std::memcpy(v + i, &b, 4);
  }
}
template <class T>
void put(std::vector<char>& buf, const T* v, size_t n) {
  const size_t at = buf.size();
  buf.resize(at + n * sizeof(T));
  std::memcpy(buf.data() + at, v, n * sizeof(T));
}

#ifdef DSV4_HAVE_MPI
void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  fail("{}: {}", what, std::string(msg, size_t(len)));
}
// Receives the next message from `src` with `tag` into buf (resized to it).
void recv_any_size(int src, int tag, std::vector<char>& buf) {
  MPI_Status st;
  check(MPI_Probe(src, tag, MPI_COMM_WORLD, &st), "MPI_Probe");
  int n = 0;
  MPI_Get_count(&st, MPI_BYTE, &n);
  buf.resize(size_t(n));
  check(MPI_Recv(buf.data(), n, MPI_BYTE, src, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
}
#endif

}  // namespace

MpiExpertPeers::MpiExpertPeers(Placement plan, int dim)
    : plan_(std::move(plan)), dim_(dim), out_(size_t(plan_.ranks)), requests_(size_t(plan_.ranks), nullptr) {
#ifdef DSV4_HAVE_MPI
  for (auto& r : requests_) r = new MPI_Request(MPI_REQUEST_NULL);
#endif
}

MpiExpertPeers::~MpiExpertPeers() {
#ifdef DSV4_HAVE_MPI
  if (!aborting()) {
    const Head h{kStop, 0, 0, 0, 0, 0, 0, 0};
    for (int r = 1; r < plan_.ranks; ++r) MPI_Send(&h, sizeof h, MPI_BYTE, r, kJobs, MPI_COMM_WORLD);
  }
  for (void* r : requests_) delete static_cast<MPI_Request*>(r);
#endif
}

bool MpiExpertPeers::local(int layer, int32_t expert) const { return plan_.owner_of(layer, expert) <= 0; }

void MpiExpertPeers::post(int layer, const float* x, int64_t S, std::span<const RemoteJob> jobs) {
#ifdef DSV4_HAVE_MPI
  const size_t D = size_t(dim_);
  row_of_.assign(size_t(S), -1);
  ++stats_.layers;
  for (int r = 1; r < plan_.ranks; ++r) {
    Outbox& ob = out_[size_t(r)];
    ob.jobs.clear();
    for (const RemoteJob& j : jobs)
      if (plan_.owner_of(layer, j.expert) == r) ob.jobs.push_back(j);
    if (ob.jobs.empty()) continue;
    std::vector<int32_t> experts, counts, rows;
    std::vector<float> scales;
    std::vector<int64_t> distinct;
    for (const RemoteJob& j : ob.jobs) {
      experts.push_back(j.expert);
      counts.push_back(int32_t(j.n));
      for (int64_t i = 0; i < j.n; ++i) {
        int32_t& at = row_of_[size_t(j.rows[i])];
        if (at < 0) at = int32_t(distinct.size()), distinct.push_back(j.rows[i]);
        rows.push_back(at);
        scales.push_back(j.scale[i]);
      }
    }
    bool bf16 = true;
    for (int64_t t : distinct) bf16 = bf16 && all_bf16(x + size_t(t) * D, D);
    const Head h{kRun, layer, int32_t(experts.size()), int32_t(distinct.size()), int32_t(rows.size()), dim_, bf16, 0};
    ob.buf.clear();
    put(ob.buf, &h, 1);
    put(ob.buf, experts.data(), experts.size());
    put(ob.buf, counts.data(), counts.size());
    put(ob.buf, rows.data(), rows.size());
    put(ob.buf, scales.data(), scales.size());
    for (int64_t t : distinct) put_values(ob.buf, x + size_t(t) * D, D, bf16);
    for (int64_t t : distinct) row_of_[size_t(t)] = -1;
    check(MPI_Isend(ob.buf.data(), int(ob.buf.size()), MPI_BYTE, r, kJobs, MPI_COMM_WORLD,
                    static_cast<MPI_Request*>(requests_[size_t(r)])),
          "MPI_Isend");
    ob.pending = true;
    ob.posted = now_s();
    ++stats_.messages;
    stats_.bytes_sent += ob.buf.size();
  }
#else
  (void)layer, (void)x, (void)S, (void)jobs;
  fail("expert parallel needs MPI");
#endif
}

void MpiExpertPeers::wait() {
#ifdef DSV4_HAVE_MPI
  const auto t0 = std::chrono::steady_clock::now();
  const size_t D = size_t(dim_);
  size_t left = 0;
  for (auto& ob : out_) left += ob.pending;
  double slowest_compute = 0, slowest_wire = 0;
  // Polled rather than blocked in MPI_Recv: when mpirun tears the job down (a rank died), rank 0
  // notices the abort here and fails the step instead of hanging.
  int idle = 0, rounds = 0;
  while (left) {
    bool progressed = false;
    for (int r = 1; r < plan_.ranks; ++r) {
      Outbox& ob = out_[size_t(r)];
      if (!ob.pending) continue;
      int flag = 0;
      MPI_Status st;
      check(MPI_Iprobe(r, kReply, MPI_COMM_WORLD, &flag, &st), "MPI_Iprobe");
      if (!flag) continue;
      int n = 0;
      MPI_Get_count(&st, MPI_BYTE, &n);
      reply_.resize(size_t(n));
      check(MPI_Recv(reply_.data(), n, MPI_BYTE, r, kReply, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
      check(MPI_Wait(static_cast<MPI_Request*>(requests_[size_t(r)]), MPI_STATUS_IGNORE), "MPI_Wait");
      ob.pending = false;
      --left;
      progressed = true;
      ++stats_.messages;
      stats_.bytes_received += reply_.size();
      Reply rp;
      if (reply_.size() < sizeof rp) fail("rank {} sent a truncated reply", r);
      std::memcpy(&rp, reply_.data(), sizeof rp);
      if (rp.status) fail("rank {}: {}", r, std::string(reply_.data() + sizeof rp, reply_.size() - sizeof rp));
      slowest_compute = std::max(slowest_compute, rp.compute_s);
      // A reply found at the first look arrived while this rank computed its own experts: its wire
      // time was hidden. Otherwise the round trip less the peer's compute is what the wire added.
      if (idle > 0 || rounds > 0) slowest_wire = std::max(slowest_wire, now_s() - ob.posted - rp.compute_s);
      int64_t pairs = 0;
      for (const RemoteJob& j : ob.jobs) pairs += j.n;
      if (rp.pairs != pairs || reply_.size() != sizeof rp + size_t(pairs) * D * (rp.bf16 ? 2 : 4))
        fail("rank {} answered {} expert outputs for {} asked", r, rp.pairs, pairs);
      const char* v = reply_.data() + sizeof rp;
      for (const RemoteJob& j : ob.jobs) {
        get_values(v, size_t(j.n) * D, rp.bf16, j.out);
        v += size_t(j.n) * D * (rp.bf16 ? 2 : 4);
      }
    }
    ++rounds;
    if (progressed) {
      idle = 0;
      continue;
    }
    if (aborting()) throw Unavailable(fmt::format("expert parallel: {}", abort_reason()));
    // Spin briefly (a decode step's reply is tens of microseconds away), then back off.
    if (++idle > 2000) std::this_thread::sleep_for(std::chrono::microseconds(std::min(idle - 2000, 200)));
  }
  stats_.wait_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stats_.remote_compute_s += slowest_compute;
  stats_.wire_s += slowest_wire;
#endif
}

void serve_experts(const Model& m, const Placement& plan) {
#ifdef DSV4_HAVE_MPI
  const ModelConfig& c = m.config();
  const size_t D = size_t(c.dim);
  const int E = c.n_routed_experts;
  std::vector<char> in, out;
  std::vector<float> x, xs, ys, scale;
  std::vector<int64_t> count(static_cast<size_t>(E)), start;
  for (;;) {
    recv_any_size(0, kJobs, in);
    Head h;
    if (in.size() < sizeof h) fail("rank {}: a truncated message from rank 0", rank());
    std::memcpy(&h, in.data(), sizeof h);
    if (h.cmd == kStop) return;
    out.clear();
    try {
      if (h.dim != int32_t(D)) fail("rank 0 sent rows of {} values, this model has dim {}", h.dim, D);
      const size_t need = sizeof h + size_t(h.jobs) * 8 + size_t(h.pairs) * 8 + size_t(h.rows) * D * (h.bf16 ? 2 : 4);
      if (in.size() != need) fail("a jobs message of {} bytes, {} expected", in.size(), need);
      const char* p = in.data() + sizeof h;
      std::vector<int32_t> experts(size_t(h.jobs)), counts(size_t(h.jobs)), rows(size_t(h.pairs));
      std::memcpy(experts.data(), p, experts.size() * 4), p += experts.size() * 4;
      std::memcpy(counts.data(), p, counts.size() * 4), p += counts.size() * 4;
      std::memcpy(rows.data(), p, rows.size() * 4), p += rows.size() * 4;
      scale.resize(size_t(h.pairs));
      std::memcpy(scale.data(), p, scale.size() * 4), p += scale.size() * 4;
      x.resize(size_t(h.rows) * D);
      get_values(p, x.size(), h.bf16, x.data());
      xs.resize(size_t(h.pairs) * D);
      ys.assign(size_t(h.pairs) * D, 0.0f);
      start.assign(size_t(h.jobs), 0);
      std::fill(count.begin(), count.end(), 0);
      int64_t at = 0, n_max = 0;
      for (int32_t j = 0; j < h.jobs; ++j) {
        const int32_t e = experts[size_t(j)];
        if (e < 0 || e >= E || plan.owner_of(h.layer, e) != rank())
          fail("rank 0 asked for expert {} of layer {}, which this rank does not own", e, h.layer);
        start[size_t(j)] = at;
        count[size_t(e)] = counts[size_t(j)];
        at += counts[size_t(j)];
        n_max = std::max<int64_t>(n_max, counts[size_t(j)]);
      }
      if (at != h.pairs) fail("a jobs message whose counts add to {} for {} pairs", at, h.pairs);
      for (int32_t i = 0; i < h.pairs; ++i) {
        if (rows[size_t(i)] < 0 || rows[size_t(i)] >= h.rows) fail("a pair points at row {} of {}", rows[size_t(i)], h.rows);
        std::memcpy(xs.data() + size_t(i) * D, x.data() + size_t(rows[size_t(i)]) * D, D * 4);
      }
      const double t0 = now_s();
      m.run_experts(h.layer, {experts.data(), start.data(), count.data(), size_t(h.jobs), xs.data(), scale.data(), ys.data()},
                    std::max<int64_t>(h.rows, n_max));
      const bool bf16 = all_bf16(ys.data(), ys.size());
      const Reply rp{0, bf16, h.pairs, now_s() - t0};
      put(out, &rp, 1);
      put_values(out, ys.data(), ys.size(), bf16);
    } catch (const Error& e) {
      const std::string msg = e.what();
      const Reply rp{1, 0, 0, 0};
      out.clear();
      put(out, &rp, 1);
      put(out, msg.data(), msg.size());
    }
    check(MPI_Send(out.data(), int(out.size()), MPI_BYTE, 0, kReply, MPI_COMM_WORLD), "MPI_Send");
  }
#else
  (void)m, (void)plan;
  fail("expert parallel needs MPI");
#endif
}

PlacementInput placement_input(const Checkpoint& ck, const ModelWeights& w, const ModelConfig& c, int ranks) {
  PlacementInput in;
  in.ranks = ranks;
  in.n_experts = c.n_routed_experts;
  in.n_activated = c.n_activated_experts;
  in.dim = c.dim;
  const WeightPlan wp = plan_weights(ck, w, c);
  in.dense_bytes = wp.total - wp.experts;
  in.expert_bytes = wp.expert_unit;
  for (int l = 0; const MoeWeights* mw = moe_of(w, l); ++l)
    if (!mw->experts.empty()) in.layers.push_back(l);
  const std::string counts = routing_counts_path(ck);
  if (!counts.empty()) {
    std::vector<float> v = ExpertCache::read_counts(counts, in.layers.size() * size_t(in.n_experts));
    if (!v.empty()) in.load = std::move(v);
  }
  return in;
}

Placement agree_placement(const Model* m, const std::string& error, uint64_t budget, PlacementInput* used) {
#ifdef DSV4_HAVE_MPI
  const int R = size(), me = rank();
  // Status: loaded (1) or not, the model's identity, the budget; then the error texts.
  uint64_t mine[3] = {m ? 1u : 0u, m ? model_identity(*m) : 0, budget};
  std::vector<uint64_t> all(static_cast<size_t>(3 * R));
  check(MPI_Gather(mine, 3, MPI_UINT64_T, all.data(), 3, MPI_UINT64_T, 0, MPI_COMM_WORLD), "MPI_Gather");
  const std::string text = m ? "" : fmt::format("{} (host {})", error, host());
  int len = int(text.size());
  std::vector<int> lens(static_cast<size_t>(R)), offs(static_cast<size_t>(R));
  check(MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, MPI_COMM_WORLD), "MPI_Gather");
  std::string texts;
  if (me == 0) {
    int off = 0;
    for (int r = 0; r < R; ++r) offs[size_t(r)] = off, off += lens[size_t(r)];
    texts.resize(size_t(off));
  }
  check(MPI_Gatherv(text.data(), len, MPI_CHAR, texts.data(), lens.data(), offs.data(), MPI_CHAR, 0, MPI_COMM_WORLD),
        "MPI_Gatherv");
  // Rank 0 decides: the placement, or what went wrong, then tells everyone.
  std::string verdict;
  std::vector<int16_t> owner;
  Placement p;
  if (me == 0) {
    for (int r = 0; r < R; ++r) {
      if (!all[size_t(3 * r)])
        verdict += fmt::format("{}rank {} could not load the model: {}", verdict.empty() ? "" : "; ", r,
                               texts.substr(size_t(offs[size_t(r)]), size_t(lens[size_t(r)])));
      else if (all[size_t(3 * r + 1)] != all[1] && all[0])
        verdict += fmt::format("{}rank {} loaded another model than rank 0 (its config and tensors differ)",
                               verdict.empty() ? "" : "; ", r);
    }
    if (verdict.empty()) {
      try {
        PlacementInput in = placement_input(*m, R);
        for (int r = 0; r < R; ++r) in.budget.push_back(all[size_t(3 * r + 2)]);
        p = place_experts(in);
        if (used) *used = std::move(in);
      } catch (const Error& e) {
        verdict = e.what();
      }
    }
  }
  int vlen = int(verdict.size());
  check(MPI_Bcast(&vlen, 1, MPI_INT, 0, MPI_COMM_WORLD), "MPI_Bcast");
  verdict.resize(size_t(vlen));
  check(MPI_Bcast(verdict.data(), vlen, MPI_CHAR, 0, MPI_COMM_WORLD), "MPI_Bcast");
  if (!verdict.empty()) fail("{}", verdict);
  int64_t shape[2] = {int64_t(p.layers.size()), p.n_experts};
  check(MPI_Bcast(shape, 2, MPI_INT64_T, 0, MPI_COMM_WORLD), "MPI_Bcast");
  p.ranks = R;
  p.n_experts = int(shape[1]);
  p.layers.resize(size_t(shape[0]));
  p.owner.resize(size_t(shape[0] * shape[1]));
  p.bytes.resize(size_t(R));
  p.experts.resize(size_t(R));
  check(MPI_Bcast(p.layers.data(), int(p.layers.size()), MPI_INT, 0, MPI_COMM_WORLD), "MPI_Bcast");
  check(MPI_Bcast(p.owner.data(), int(p.owner.size()), MPI_INT16_T, 0, MPI_COMM_WORLD), "MPI_Bcast");
  check(MPI_Bcast(p.bytes.data(), R, MPI_UINT64_T, 0, MPI_COMM_WORLD), "MPI_Bcast");
  check(MPI_Bcast(p.experts.data(), R, MPI_UINT64_T, 0, MPI_COMM_WORLD), "MPI_Bcast");
  return p;
#else
  (void)m, (void)error, (void)budget, (void)used;
  fail("expert parallel needs MPI");
#endif
}

}  // namespace dsv4::dist
