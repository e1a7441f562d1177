#pragma once
// Continuous batching over one model: requests join between steps, every step is one forward call over
// all active sequences (prefill chunks and decode tokens together), finished or cancelled requests
// leave at once. A RAM prefix cache restores the exact sequence state of the longest cached prompt
// prefix (architecture.md §5.4: window ring, compressor states, compressed KV, index keys).
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "model/transformer.h"
#include "runtime/disk_cache.h"
#include "runtime/sampler.h"
#include "runtime/speculative.h"
#include "tokenizer/tokenizer.h"

namespace dsv4 {

struct GenerationRequest {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int max_tokens = 256;
  std::vector<int32_t> stop_ids;   // besides EOS
  std::vector<std::string> stop;   // stop strings (matched on the decoded text, not emitted)
  bool ignore_eos = false;
  int top_logprobs = -1;           // -1: no logprobs; 0..20: the chosen token's logprob plus that many alternatives
};

struct TokenLogprob {
  int32_t id;
  float logprob;
};

// Why a generation ended. Stop: end-of-sentence, a stop token or a stop string; ToolCalls: a Stop whose
// output held a tool call (decided by the output parser); Cancelled: by its caller, a disconnect or
// shutdown; Error: the model failed (e.g. non-finite logits).
enum class FinishReason { Stop, Length, ToolCalls, Cancelled, Error };
// The OpenAI spelling: "stop", "length", "tool_calls", "cancelled", "error".
const char* finish_reason_name(FinishReason r);

struct GenerationEvent {
  enum class Kind { Prefill, Token, Done, Error };
  Kind kind = Kind::Token;
  int32_t token = -1;
  std::string text;                // Token: newly complete text (UTF-8 whole, stop strings held back)
  float logprob = 0;               // Token, when logprobs were asked for
  std::vector<TokenLogprob> top;
  FinishReason finish_reason = FinishReason::Stop;  // Done: Stop, Length or Cancelled
  int32_t stop_token = -1;         // Done with Stop on a stop token (EOS or stop_ids)
  std::string error;               // Error
  bool unavailable = false;        // Error: dsv4::Unavailable (a peer rank is gone), not the model
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0, prefilled = 0;
};

struct SchedulerOptions {
  int max_parallel = 4;                  // sequences decoded together
  int64_t max_context = 65536;           // prompt + completion tokens per sequence
  int64_t prefill_chunk = 256;           // prompt tokens per sequence per step
  size_t prefix_cache_bytes = size_t(1) << 30;
  std::string cache_dir{};               // the disk tier (runtime/disk_cache.h); empty: none
  uint64_t cache_disk_bytes = uint64_t(4096) << 20;
  int64_t disk_snapshot_interval = 2048;  // prompt tokens between disk snapshots of a long prefill (0: none)
  SpecOptions spec{};                    // speculative decoding (off by default)
};

struct SchedulerStats {
  uint64_t requests_total = 0, requests_finished = 0, requests_cancelled = 0, requests_failed = 0;
  uint64_t active = 0, queued = 0;
  uint64_t prompt_tokens = 0, prefilled_tokens = 0, generated_tokens = 0;
  uint64_t cache_hits = 0, cache_lookups = 0, cache_hit_tokens = 0, cache_entries = 0, cache_bytes = 0;
  uint64_t disk_hits = 0, disk_hit_tokens = 0;  // of cache_hits, those found on disk
  DiskCacheStats disk;
  // Speculative decoding: verification steps that carried a draft, tokens drafted, drafts accepted.
  uint64_t spec_steps = 0, spec_drafted = 0, spec_accepted = 0;
  double busy_seconds = 0;
};

class Scheduler {
 public:
  using Callback = std::function<void(const GenerationEvent&)>;
  Scheduler(const Model& model, const Tokenizer& tok, SchedulerOptions opt = {});
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request; events arrive on the scheduler thread, in order, ending with Done or Error.
  // Throws dsv4::Error for a request that can never run (empty or over-long prompt, bad parameters).
  uint64_t submit(GenerationRequest req, Callback cb);
  // Stops a request at the next step and frees its state; no further events after Done("cancelled").
  void cancel(uint64_t id);
  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return opt_; }
  const Model& model() const { return model_; }
  const Tokenizer& tokenizer() const { return tok_; }

 private:
  struct Active;
  struct CacheEntry {
    std::vector<int32_t> tokens;
    SequenceState state;
    size_t bytes = 0;
  };

  void loop();
  void step(std::vector<std::unique_ptr<Active>>& active);
  void admit(std::vector<std::unique_ptr<Active>>& active);
  void finish(Active& a, FinishReason reason, int32_t stop_token = -1);
  // An Error event: the model failed, or (unavailable) a peer it needs is gone.
  void fail_request(Active& a, const std::string& message, bool unavailable = false);
  void mask(float* logits) const;  // untokenizable ids to -inf
  void emit_token(Active& a, int32_t tok, const float* logits);
  std::vector<int32_t> decide(Active& a, ForwardResult& r);
  void draft_input(Active& a, const ForwardResult& r, const std::vector<int32_t>& out, std::vector<DraftInput>& drafts);
  void apply(Active& a, ForwardResult& r, const std::vector<int32_t>& out);
  void cache_put(const std::vector<int32_t>& tokens, const SequenceState& st);
  const CacheEntry* cache_lookup(const std::vector<int32_t>& prompt);

  const Model& model_;
  Tokenizer tok_;
  SchedulerOptions opt_;
  std::vector<int32_t> untokenizable_;  // model ids the tokenizer cannot decode: never sampled
  std::unique_ptr<Drafter> drafter_;     // null: no speculative decoding
  std::unique_ptr<DiskCache> disk_;      // null: no disk tier; outlives the loop thread
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Active>> queue_;
  std::vector<uint64_t> cancelled_;
  std::list<CacheEntry> cache_;  // most recently used first
  size_t cache_bytes_ = 0;
  SchedulerStats stats_;
  uint64_t next_id_ = 1;
  bool stop_ = false;
  std::thread thread_;
};

// Log-softmax of one logits row and its top-n entries (ties: lower id first).
std::vector<TokenLogprob> top_logprobs(const float* logits, int64_t V, int n, int32_t chosen, float* chosen_logprob);

}  // namespace dsv4
