#include "runtime/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "core/error.h"

namespace dsv4 {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::ToolCalls: return "tool_calls";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Error: return "error";
  }
  return "error";
}

struct Scheduler::Active {
  uint64_t id = 0;
  GenerationRequest req;
  Callback cb;
  SequenceState st;
  int64_t fed = 0;  // prompt tokens consumed
  int64_t cached = 0;
  std::vector<int32_t> generated;
  // Committed tokens the model has not consumed yet (the last one just sampled; after a rejected
  // draft also the accepted ones, re-fed with the next draft) and the draft that follows them.
  std::vector<int32_t> pending, draft;
  std::vector<int32_t> successors;  // the drafter's view: committed tokens after the forward's first row
  bool spec = false;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<StreamDecoder> dec;
  std::unique_ptr<StopMatcher> stops;
  bool done = false;

  int64_t prompt_len() const { return int64_t(req.prompt.size()); }
  GenerationEvent event(GenerationEvent::Kind k) const {
    GenerationEvent e;
    e.kind = k;
    e.prompt_tokens = prompt_len();
    e.completion_tokens = int64_t(generated.size());
    e.cached_tokens = cached;
    e.prefilled = fed;
    return e;
  }
};

namespace {
size_t state_bytes(const SequenceState& s) {
  size_t b = s.kv_bytes();
  for (auto& l : s.layers) {
    auto& c = l.attn.comp;
    auto& ic = l.attn.indexer.comp;
    b += 4 * (c.kv.size() + c.score.size() + c.prev_kv.size() + c.prev_score.size());
    b += 4 * (ic.kv.size() + ic.score.size() + ic.prev_kv.size() + ic.prev_score.size());
  }
  return b + sizeof(SequenceState);
}
}  // namespace

std::vector<TokenLogprob> top_logprobs(const float* logits, int64_t V, int n, int32_t chosen, float* chosen_logprob) {
  const float mx = *std::max_element(logits, logits + V);
  double sum = 0;
  for (int64_t v = 0; v < V; ++v) sum += std::exp(double(logits[v]) - mx);
  const float lse = mx + float(std::log(sum));
  if (chosen_logprob) *chosen_logprob = logits[chosen] - lse;
  std::vector<int32_t> idx(static_cast<size_t>(V));
  std::iota(idx.begin(), idx.end(), 0);
  n = int(std::min<int64_t>(n, V));
  std::partial_sort(idx.begin(), idx.begin() + n, idx.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  std::vector<TokenLogprob> out;
  for (int i = 0; i < n; ++i) out.push_back({idx[size_t(i)], logits[idx[size_t(i)]] - lse});
  return out;
}

Scheduler::Scheduler(const Model& model, const Tokenizer& tok, SchedulerOptions opt)
    : model_(model), tok_(tok), opt_(opt) {
  if (opt_.max_parallel < 1) fail("--parallel must be at least 1");
  if (opt_.max_context < 2) fail("--ctx must be at least 2");
  if (opt_.prefill_chunk < 1) fail("the prefill chunk must be at least 1 token");
  // Checkpoints pad the head past the last token (V4: 129280 rows); those rows must never be drawn.
  for (int32_t v = 0; v < int32_t(model_.config().vocab_size); ++v)
    if (!tok_.has_token(v)) untokenizable_.push_back(v);
  drafter_ = make_drafter(model_, opt_.spec, untokenizable_);
  if (!opt_.cache_dir.empty() && opt_.cache_disk_bytes > 0) {
    try {
      disk_ = std::make_unique<DiskCache>(model_, opt_.cache_dir, opt_.cache_disk_bytes);
    } catch (const Error& e) {
      std::fprintf(stderr, "dsv4: no disk prefix cache: %s\n", e.what());  // RAM only, still correct
    }
  }
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

uint64_t Scheduler::submit(GenerationRequest req, Callback cb) {
  const int64_t L = int64_t(req.prompt.size()), V = model_.config().vocab_size;
  if (L == 0) fail("the prompt is empty");
  if (L >= opt_.max_context)
    fail("the prompt has {} tokens, which does not fit the context of {} tokens", L, opt_.max_context);
  for (int32_t t : req.prompt)
    if (t < 0 || t >= V) fail("prompt token id {} is outside the vocabulary [0, {})", t, V);
  if (req.max_tokens < 1) fail("max_tokens must be at least 1 (got {})", req.max_tokens);
  if (req.top_logprobs > 20) fail("top_logprobs must be at most 20 (got {})", req.top_logprobs);
  auto a = std::make_unique<Active>();
  a->sampler = std::make_unique<Sampler>(req.sampling);  // validates the sampling parameters
  a->stops = std::make_unique<StopMatcher>(req.stop);
  a->dec = std::make_unique<StreamDecoder>(tok_);
  a->req = std::move(req);
  a->cb = std::move(cb);
  std::lock_guard<std::mutex> lk(mu_);
  a->id = next_id_++;
  const uint64_t id = a->id;
  queue_.push_back(std::move(a));
  ++stats_.requests_total;
  stats_.prompt_tokens += uint64_t(L);
  cv_.notify_all();
  return id;
}

void Scheduler::cancel(uint64_t id) {
  std::lock_guard<std::mutex> lk(mu_);
  cancelled_.push_back(id);
  cv_.notify_all();
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  SchedulerStats s = stats_;
  s.queued = queue_.size();
  s.cache_entries = cache_.size();
  s.cache_bytes = cache_bytes_;
  if (disk_) s.disk = disk_->stats();
  return s;
}

const Scheduler::CacheEntry* Scheduler::cache_lookup(const std::vector<int32_t>& prompt) {
  // Longest cached prefix that leaves at least the last prompt token to run (its logits are needed).
  auto best = cache_.end();
  for (auto it = cache_.begin(); it != cache_.end(); ++it)
    if (it->tokens.size() < prompt.size() && (best == cache_.end() || it->tokens.size() > best->tokens.size()) &&
        std::equal(it->tokens.begin(), it->tokens.end(), prompt.begin()))
      best = it;
  if (best == cache_.end()) return nullptr;
  cache_.splice(cache_.begin(), cache_, best);
  return &cache_.front();
}

void Scheduler::cache_put(const std::vector<int32_t>& tokens, const SequenceState& st) {
  if (disk_) disk_->put(tokens, st);
  if (tokens.empty() || opt_.prefix_cache_bytes == 0) return;
  const size_t bytes = state_bytes(st) + tokens.size() * 4;
  if (bytes > opt_.prefix_cache_bytes) return;
  std::lock_guard<std::mutex> lk(mu_);
  for (auto it = cache_.begin(); it != cache_.end(); ++it)
    if (it->tokens == tokens) {
      cache_.splice(cache_.begin(), cache_, it);
      return;
    }
  cache_.push_front(CacheEntry{tokens, st, bytes});
  cache_bytes_ += bytes;
  while (cache_bytes_ > opt_.prefix_cache_bytes) {
    cache_bytes_ -= cache_.back().bytes;
    cache_.pop_back();
  }
}

void Scheduler::admit(std::vector<std::unique_ptr<Active>>& active) {
  std::vector<std::unique_ptr<Active>> fresh;
  {
    std::lock_guard<std::mutex> lk(mu_);
    while (!queue_.empty() && int(active.size() + fresh.size()) < opt_.max_parallel) {
      fresh.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  }
  for (auto& a : fresh) {
    bool hit = false;
    {
      std::lock_guard<std::mutex> lk(mu_);
      ++stats_.cache_lookups;
      ++stats_.active;
      if (const CacheEntry* e = cache_lookup(a->req.prompt)) {
        hit = true;
        a->st = e->state;
        a->fed = a->cached = int64_t(e->tokens.size());
        ++stats_.cache_hits;
        stats_.cache_hit_tokens += uint64_t(a->cached);
      }
    }
    // The disk only for a longer prefix than RAM had (the last prompt token always runs).
    if (disk_)
      if (auto d = disk_->lookup(a->req.prompt, size_t(a->cached), a->req.prompt.size() - 1)) {
        std::lock_guard<std::mutex> lk(mu_);
        if (hit) stats_.cache_hit_tokens -= uint64_t(a->cached);
        else ++stats_.cache_hits;
        hit = true;
        a->st = std::move(d->state);
        a->fed = a->cached = int64_t(d->tokens.size());
        stats_.cache_hit_tokens += uint64_t(a->cached);
        ++stats_.disk_hits;
        stats_.disk_hit_tokens += uint64_t(a->cached);
      }
    if (!hit) a->st = model_.new_sequence();
    a->spec = drafter_ != nullptr;
    if (a->spec) drafter_->resync(a->st);
    active.push_back(std::move(a));
  }
}

void Scheduler::finish(Active& a, FinishReason reason, int32_t stop_token) {
  if (a.done) return;
  a.done = true;
  if (reason != FinishReason::Cancelled) {
    std::string tail = a.dec->flush();
    auto r = a.stops->push(tail);
    tail = r.text + (r.stopped ? "" : a.stops->flush());
    if (!tail.empty()) {
      GenerationEvent e = a.event(GenerationEvent::Kind::Token);
      e.text = tail;
      a.cb(e);
    }
  }
  GenerationEvent e = a.event(GenerationEvent::Kind::Done);
  e.finish_reason = reason;
  e.stop_token = stop_token;
  a.cb(e);
  // The state consumed (prompt + generated)[0 : pos]: keep it, so a follow-up turn resumes from here.
  std::vector<int32_t> all = a.req.prompt;
  all.insert(all.end(), a.generated.begin(), a.generated.end());
  all.resize(size_t(std::min<int64_t>(a.st.pos, int64_t(all.size()))));
  if (a.st.pos == int64_t(all.size())) cache_put(all, a.st);
  std::lock_guard<std::mutex> lk(mu_);
  --stats_.active;
  if (reason == FinishReason::Cancelled) ++stats_.requests_cancelled;
  else ++stats_.requests_finished;
}

void Scheduler::fail_request(Active& a, const std::string& message, bool unavailable) {
  if (a.done) return;
  a.done = true;
  GenerationEvent e = a.event(GenerationEvent::Kind::Error);
  e.error = message;
  e.unavailable = unavailable;
  a.cb(e);
  std::lock_guard<std::mutex> lk(mu_);
  --stats_.active;
  ++stats_.requests_failed;
}

void Scheduler::mask(float* logits) const {
  for (int32_t v : untokenizable_) logits[v] = -INFINITY;
}

void Scheduler::emit_token(Active& a, int32_t tok, const float* logits) {
  const int64_t V = model_.config().vocab_size;
  GenerationEvent e = a.event(GenerationEvent::Kind::Token);
  e.token = tok;
  if (a.req.top_logprobs >= 0) e.top = top_logprobs(logits, V, a.req.top_logprobs, tok, &e.logprob);
  a.generated.push_back(tok);
  e.completion_tokens = int64_t(a.generated.size());
  {
    std::lock_guard<std::mutex> lk(mu_);
    ++stats_.generated_tokens;
  }
  const bool is_stop = (!a.req.ignore_eos && tok == model_.config().eos_token_id) ||
                       std::find(a.req.stop_ids.begin(), a.req.stop_ids.end(), tok) != a.req.stop_ids.end();
  if (is_stop) {
    a.cb(e);
    finish(a, FinishReason::Stop, tok);
    return;
  }
  auto r = a.stops->push(a.dec->push(tok));
  e.text = r.text;
  a.cb(e);
  if (r.stopped) finish(a, FinishReason::Stop);
  else if (int64_t(a.generated.size()) >= a.req.max_tokens ||
           a.prompt_len() + int64_t(a.generated.size()) >= opt_.max_context)
    finish(a, FinishReason::Length);
}

// After a forward that consumed pending ++ draft: the tokens row by row, the draft's while they are
// accepted, then one drawn from the target. No state changes yet.
std::vector<int32_t> Scheduler::decide(Active& a, ForwardResult& r) {
  const size_t V = size_t(model_.config().vocab_size), k = a.draft.size();
  std::vector<int32_t> hist = a.generated, out;
  for (size_t row = 0; row <= k; ++row) {
    float* l = r.logits.data() + row * V;
    mask(l);
    const Verdict v = verify_draft(*a.sampler, std::span<const float>(l, V), hist, row < k ? a.draft[row] : -1);
    out.push_back(v.token);
    hist.push_back(v.token);
    if (!v.accepted) break;
  }
  return out;
}

// What the drafter needs after the forward (state still past the whole draft): the committed tokens
// after the forward's first row and how many drafts the next step may take.
void Scheduler::draft_input(Active& a, const ForwardResult& r, const std::vector<int32_t>& out,
                            std::vector<DraftInput>& drafts) {
  const size_t U = a.pending.size(), k = a.draft.size(), j = out.size() - 1;
  a.successors.assign(a.pending.begin() + 1, a.pending.end());
  a.successors.insert(a.successors.end(), out.begin(), out.end());
  const int64_t used = a.prompt_len() + int64_t(a.generated.size() + out.size());
  DraftInput d;
  d.st = &a.st;
  d.fwd = &r;
  d.pos0 = a.st.pos - int64_t(U + k);
  d.rows = int64_t(U + k);
  d.committed = int64_t(U + j);
  d.tokens = a.successors.data();
  d.max_draft = int(std::max<int64_t>(0, std::min<int64_t>({opt_.spec.draft_max,
                                                            a.req.max_tokens - int64_t(a.generated.size() + out.size()) - 1,
                                                            opt_.max_context - used - 1})));
  drafts.push_back(std::move(d));
}

// Puts the state where the accepted tokens end (rejected drafts leave it; the accepted ones are re-fed
// in front of the next draft) and emits the tokens.
void Scheduler::apply(Active& a, ForwardResult& r, const std::vector<int32_t>& out) {
  const size_t V = size_t(model_.config().vocab_size), k = a.draft.size(), j = out.size() - 1;
  std::vector<int32_t> pending;
  if (j < k) {
    a.st.rollback(r.mark);
    pending.assign(a.draft.begin(), a.draft.begin() + int64_t(j));
  }
  if (a.st.marked()) a.st.release();
  pending.push_back(out.back());
  if (k > 0) {
    std::lock_guard<std::mutex> lk(mu_);
    ++stats_.spec_steps;
    stats_.spec_drafted += k;
    stats_.spec_accepted += j;
  }
  a.pending = std::move(pending);
  a.draft.clear();
  for (size_t i = 0; i < out.size() && !a.done; ++i) emit_token(a, out[i], r.logits.data() + i * V);
}

void Scheduler::step(std::vector<std::unique_ptr<Active>>& active) {
  // One forward call: each prefilling sequence contributes a chunk of its prompt (stopping one short
  // of the end, so the state there can be cached), the others their pending tokens and draft.
  const bool streams = drafter_ && drafter_->needs_streams();
  ForwardOptions fo;
  fo.keep_taps = drafter_ && drafter_->needs_taps();
  std::vector<Model::SeqInput> in;
  std::vector<std::vector<int32_t>> feed(active.size());
  std::vector<bool> samples(active.size());
  for (size_t i = 0; i < active.size(); ++i) {
    Active& a = *active[i];
    const int64_t L = a.prompt_len();
    if (a.fed < L - 1) {
      const int64_t n = std::min(opt_.prefill_chunk, L - 1 - a.fed);
      in.push_back({&a.st, a.req.prompt.data() + a.fed, n, -1, 1, a.spec && streams});
    } else {
      if (a.pending.empty()) a.pending = {a.req.prompt[size_t(L - 1)]};
      feed[i] = a.pending;
      feed[i].insert(feed[i].end(), a.draft.begin(), a.draft.end());
      const int64_t S = int64_t(feed[i].size());
      in.push_back({&a.st, feed[i].data(), S, a.draft.empty() ? -1 : int64_t(a.pending.size()),
                    int64_t(a.draft.size()) + 1, a.spec && streams});
      samples[i] = true;
    }
  }
  std::vector<ForwardResult> res;
  try {
    res = model_.forward_batch(in, fo);
  } catch (const Unavailable& ex) {
    for (auto& a : active) fail_request(*a, ex.what(), true);
    return;
  } catch (const std::exception& ex) {
    for (auto& a : active) fail_request(*a, ex.what());
    return;
  }
  std::vector<DraftInput> drafts;
  drafts.reserve(active.size());
  std::vector<Active*> drafted;
  std::vector<std::vector<int32_t>> out(active.size());
  for (size_t i = 0; i < active.size(); ++i) {
    Active& a = *active[i];
    if (!samples[i]) {
      if (a.spec) {
        DraftInput d;
        d.st = &a.st;
        d.fwd = &res[i];
        d.pos0 = a.fed;
        d.rows = d.committed = in[i].S;
        d.tokens = a.req.prompt.data() + a.fed + 1;
        drafts.push_back(std::move(d));
        drafted.push_back(&a);
      }
      a.fed += in[i].S;
      // Long prefills leave snapshots along the way, so a prompt sharing only their start finds one.
      if (const int64_t I = opt_.disk_snapshot_interval; disk_ && I > 0 && a.fed / I != (a.fed - in[i].S) / I &&
                                                        a.fed < a.prompt_len() - 1)
        disk_->put({a.req.prompt.begin(), a.req.prompt.begin() + a.fed}, a.st);
      {
        std::lock_guard<std::mutex> lk(mu_);
        stats_.prefilled_tokens += uint64_t(in[i].S);
      }
      a.cb(a.event(GenerationEvent::Kind::Prefill));
      continue;
    }
    if (a.fed == a.prompt_len() - 1) {
      a.fed = a.prompt_len();
      std::lock_guard<std::mutex> lk(mu_);
      ++stats_.prefilled_tokens;
    }
    try {
      out[i] = decide(a, res[i]);
      if (a.spec) {
        draft_input(a, res[i], out[i], drafts);
        drafted.push_back(&a);
      }
    } catch (const std::exception& ex) {
      // A broken model (NaN logits) fails its requests, never the scheduler thread.
      fail_request(a, std::string("model error: ") + ex.what());
    }
  }
  // Drafts come before the rollback: the drafter reads this forward's rows of accepted positions.
  std::vector<std::vector<int32_t>> next(drafts.size());
  if (!drafts.empty()) {
    std::vector<DraftInput*> ptr;
    for (auto& d : drafts) ptr.push_back(&d);
    try {
      drafter_->advance(ptr);
      for (size_t i = 0; i < drafts.size(); ++i) next[i] = std::move(drafts[i].draft);
    } catch (const std::exception& ex) {
      const bool gone = dynamic_cast<const Unavailable*>(&ex) != nullptr;
      for (Active* a : drafted) fail_request(*a, std::string("draft model error: ") + ex.what(), gone);
    }
  }
  for (size_t i = 0; i < active.size(); ++i)
    if (samples[i] && !active[i]->done) apply(*active[i], res[i], out[i]);
  for (size_t i = 0; i < drafted.size(); ++i)
    if (!drafted[i]->done) drafted[i]->draft = std::move(next[i]);
  // The state at the end of the prompt but its last token: cached for later requests (the drafter's
  // state is level with it).
  for (size_t i = 0; i < active.size(); ++i)
    if (!samples[i] && !active[i]->done && active[i]->fed == active[i]->prompt_len() - 1)
      cache_put({active[i]->req.prompt.begin(), active[i]->req.prompt.end() - 1}, active[i]->st);
}

void Scheduler::loop() {
  std::vector<std::unique_ptr<Active>> active;
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !queue_.empty() || !active.empty() || !cancelled_.empty(); });
      if (stop_) break;
    }
    // Cancellations: queued requests leave the queue, active ones leave before the next step.
    std::vector<uint64_t> cancel;
    std::vector<std::unique_ptr<Active>> dropped;
    {
      std::lock_guard<std::mutex> lk(mu_);
      cancel.swap(cancelled_);
      for (auto it = queue_.begin(); it != queue_.end();)
        if (std::find(cancel.begin(), cancel.end(), (*it)->id) != cancel.end()) {
          dropped.push_back(std::move(*it));
          it = queue_.erase(it);
          ++stats_.active;  // balanced by finish()
        } else {
          ++it;
        }
    }
    for (auto& a : dropped) finish(*a, FinishReason::Cancelled);
    for (auto& a : active)
      if (std::find(cancel.begin(), cancel.end(), a->id) != cancel.end()) finish(*a, FinishReason::Cancelled);
    std::erase_if(active, [](const auto& a) { return a->done; });
    admit(active);
    if (active.empty()) continue;
    const auto t0 = std::chrono::steady_clock::now();
    step(active);
    std::erase_if(active, [](const auto& a) { return a->done; });
    std::lock_guard<std::mutex> lk(mu_);
    stats_.busy_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  for (auto& a : active) finish(*a, FinishReason::Cancelled);
}

}  // namespace dsv4
