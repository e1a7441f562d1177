#include "runtime/speculative.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace dsv4 {

SpecMode parse_spec_mode(const std::string& s) {
  if (s == "off") return SpecMode::Off;
  if (s == "mtp") return SpecMode::Mtp;
  if (s == "dspark") return SpecMode::DSpark;
  fail("--spec must be off, mtp or dspark (got '{}')", s);
}

namespace {
// The draft both drafters take from a logits row: the first maximum among the ids allowed.
int32_t allowed_argmax(const float* logits, size_t V, const std::vector<int32_t>& banned, std::vector<float>& work) {
  work.assign(logits, logits + V);
  for (int32_t v : banned) work[size_t(v)] = -INFINITY;
  return int32_t(std::max_element(work.begin(), work.end()) - work.begin());
}

// A draw from (id, p) pairs, skipping `skip` and renormalising; no randomness is used when one
// candidate is left (greedy stays free of the sampler's stream).
int32_t draw(Sampler& s, const std::vector<std::pair<int32_t, double>>& dist, int32_t skip) {
  double total = 0;
  int32_t only = -1, n = 0;
  for (auto& [id, p] : dist)
    if (id != skip && p > 0) total += p, only = id, ++n;
  if (n == 0) fail("sampling: no token left after removing the rejected draft");
  if (n == 1) return only;
  double u = s.next_uniform() * total;
  for (auto& [id, p] : dist) {
    if (id == skip || p <= 0) continue;
    if (u < p) return id;
    u -= p;
  }
  return only;  // rounding at the very end of the walk
}
}  // namespace

Verdict verify_draft(Sampler& s, std::span<const float> logits, std::span<const int32_t> history, int32_t draft) {
  if (draft < 0) return {s.sample(logits, history), false};
  const auto dist = s.distribution(logits, history);
  double pd = 0;
  for (auto& [id, p] : dist)
    if (id == draft) pd = p;
  const bool accept = pd >= 1.0 || (pd > 0 && s.next_uniform() < pd);
  if (accept) return {draft, true};
  return {draw(s, dist, draft), false};
}

MtpDrafter::MtpDrafter(const Model& m, std::vector<int32_t> banned) : m_(m), banned_(std::move(banned)) {
  if (!m.has_mtp()) fail("--spec mtp: this checkpoint has no MTP block (mtp.0.*)");
}

void MtpDrafter::advance(std::vector<DraftInput*>& in) {
  const size_t nD = size_t(m_.config().hc_mult) * size_t(m_.config().dim), V = size_t(m_.config().vocab_size);
  std::vector<float> work;
  auto argmax = [&](const std::vector<float>& l) { return allowed_argmax(l.data(), V, banned_, work); };
  // Committed pairs (main streams at t, token t+1) for t in [mtp_pos, pos0 + committed).
  std::vector<Model::MtpInput> feed;
  std::vector<DraftInput*> fed;
  std::vector<std::vector<float>> chain(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    DraftInput& d = *in[i];
    d.draft.clear();
    SequenceState& st = *d.st;
    const int64_t end = d.pos0 + d.committed;
    if (st.mtp_pos < d.pos0 || st.mtp_pos > d.pos0 + d.rows)
      fail("MTP drafter: its state is at position {}, outside the forward's rows {}..{}", st.mtp_pos, d.pos0,
           d.pos0 + d.rows);
    if (st.mtp_pos >= end) continue;
    const int64_t off = st.mtp_pos - d.pos0;
    DSV4_CHECK(d.fwd->final_streams.size() >= size_t(d.rows) * nD, "MTP drafter: the forward kept no streams");
    feed.push_back({&st, d.fwd->final_streams.data() + size_t(off) * nD, d.tokens + off, end - st.mtp_pos,
                    d.max_draft > 0 ? &chain[fed.size()] : nullptr});
    fed.push_back(&d);
  }
  if (feed.empty()) return;
  std::vector<std::vector<float>> logits = m_.mtp_forward_batch(feed);
  // The chain: the block's own output streams with each drafted token, on a copy of its state.
  std::vector<Model::MtpInput> step;
  std::vector<std::pair<std::vector<BlockState>, int64_t>> saved;
  std::vector<size_t> who;
  for (size_t i = 0; i < fed.size(); ++i) {
    if (fed[i]->max_draft <= 0) continue;
    fed[i]->draft.push_back(argmax(logits[i]));
    if (fed[i]->max_draft > 1) {
      saved.emplace_back(fed[i]->st->mtp, fed[i]->st->mtp_pos);
      who.push_back(i);
    }
  }
  while (!who.empty()) {
    step.clear();
    for (size_t i : who)
      step.push_back({fed[i]->st, chain[i].data(), &fed[i]->draft.back(), 1, &chain[i]});
    logits = m_.mtp_forward_batch(step);
    std::vector<size_t> next;
    for (size_t k = 0; k < who.size(); ++k) {
      DraftInput& d = *fed[who[k]];
      d.draft.push_back(argmax(logits[k]));
      if (int(d.draft.size()) < d.max_draft) next.push_back(who[k]);
    }
    who.swap(next);
  }
  size_t k = 0;
  for (size_t i = 0; i < fed.size(); ++i)
    if (fed[i]->max_draft > 1) {
      fed[i]->st->mtp = std::move(saved[k].first);
      fed[i]->st->mtp_pos = saved[k].second;
      ++k;
    }
}

DSparkDrafter::DSparkDrafter(const Model& m, std::vector<int32_t> banned, float min_confidence)
    : m_(m), banned_(std::move(banned)), min_confidence_(min_confidence) {
  if (!m.has_dspark()) fail("--spec dspark: this checkpoint has no DSpark draft head (a V4-Flash-0731 checkpoint has one)");
}

void DSparkDrafter::advance(std::vector<DraftInput*>& in) {
  const size_t TD = m_.config().dspark_target_layer_ids.size() * size_t(m_.config().dim);
  std::vector<DSparkCommit> commit;
  std::vector<DSparkDraftInput> draft;
  std::vector<DraftInput*> who;
  for (DraftInput* d : in) {
    d->draft.clear();
    SequenceState& st = *d->st;
    const int64_t end = d->pos0 + d->committed;
    if (st.dspark_pos < d->pos0 || st.dspark_pos > end)
      fail("DSpark drafter: its rings hold {} positions, outside the forward's rows {}..{}", st.dspark_pos, d->pos0, end);
    DSV4_CHECK(d->fwd->taps.size() >= size_t(d->rows) * TD, "DSpark drafter: the forward kept no taps");
    if (end > st.dspark_pos)
      commit.push_back({&st, d->fwd->taps.data() + size_t(st.dspark_pos - d->pos0) * TD, end - st.dspark_pos});
    if (d->max_draft > 0) {
      draft.push_back({&st, d->tokens[d->committed - 1]});
      who.push_back(d);
    }
  }
  if (!commit.empty()) m_.dspark_commit_batch(commit);
  if (draft.empty()) return;
  DSparkDraftOptions o;
  std::vector<float> work;
  o.pick = [&](size_t, int, const float* logits) {
    return allowed_argmax(logits, size_t(m_.config().vocab_size), banned_, work);
  };
  const std::vector<DSparkDraft> out = m_.dspark_draft_batch(draft, o);
  for (size_t i = 0; i < who.size(); ++i)
    for (size_t j = 0; j + 1 < out[i].ids.size() && int(j) < who[i]->max_draft; ++j) {
      if (1.0 / (1.0 + std::exp(-double(out[i].confidence[j]))) < min_confidence_) break;
      who[i]->draft.push_back(out[i].ids[j + 1]);
    }
}

std::unique_ptr<Drafter> make_drafter(const Model& m, const SpecOptions& o, std::vector<int32_t> banned) {
  if (o.draft_max < 1 || o.draft_max > 16) fail("--draft-max must be in [1, 16] (got {})", o.draft_max);
  if (!(o.draft_min_confidence >= 0 && o.draft_min_confidence <= 1))
    fail("--draft-min-confidence must be in [0, 1] (got {})", o.draft_min_confidence);
  switch (o.mode) {
    case SpecMode::Off: return nullptr;
    case SpecMode::Mtp: return std::make_unique<MtpDrafter>(m, std::move(banned));
    case SpecMode::DSpark: return std::make_unique<DSparkDrafter>(m, std::move(banned), o.draft_min_confidence);
  }
  return nullptr;
}

}  // namespace dsv4
