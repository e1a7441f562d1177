#pragma once
// Speculative decoding with the checkpoint's own draft heads (architecture.md §5.5): a drafter proposes
// k tokens, the main model scores them in the same forward that consumes the last sampled token, and
// an acceptance rule keeps the longest prefix the target distribution agrees with. Drafts are greedy
// (a point mass), so the rule is: accept d with probability p(d); on rejection draw from p with d
// removed — exactly the target distribution (Leviathan et al. 2023, Chen et al. 2023, with q = δ_d).
// Greedy decoding therefore yields the same tokens as without drafts.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/transformer.h"
#include "runtime/sampler.h"

namespace dsv4 {

enum class SpecMode { Off, Mtp, DSpark };
SpecMode parse_spec_mode(const std::string& s);  // "off", "mtp", "dspark"; throws naming the value

struct SpecOptions {
  SpecMode mode = SpecMode::Off;
  int draft_max = 3;                // tokens drafted per step at most
  float draft_min_confidence = 0;   // DSpark: stop the block at the first row below this (0..1)
};

// The token emitted at one verified row: the draft when accepted, otherwise a draw from the target
// distribution with the draft's mass removed. Without a draft (draft < 0) an ordinary draw.
struct Verdict {
  int32_t token = -1;
  bool accepted = false;
};
Verdict verify_draft(Sampler& s, std::span<const float> logits, std::span<const int32_t> history, int32_t draft);

// One sequence as the drafter sees it after a forward: rows pos0 .. pos0+rows-1 were consumed,
// tokens[i] is the committed token at position pos0+1+i for i < committed, so positions pos0 ..
// pos0+committed-1 are final and their successors known. The drafter catches its own state up to
// pos0+committed and proposes up to max_draft tokens for the positions after tokens[committed-1].
struct DraftInput {
  SequenceState* st = nullptr;
  const ForwardResult* fwd = nullptr;  // final_streams (MTP) or taps (DSpark) of every row
  int64_t pos0 = 0, rows = 0, committed = 0;
  const int32_t* tokens = nullptr;
  int max_draft = 0;
  std::vector<int32_t> draft;  // out
};

class Drafter {
 public:
  virtual ~Drafter() = default;
  virtual bool needs_streams() const { return false; }  // ForwardResult::final_streams of every row
  virtual bool needs_taps() const { return false; }     // ForwardResult::taps of every row
  // Brings the drafter's state level with the main model's at a request's start (a prefix-cache
  // entry may come from a run without drafts, or end past its last committed token). Drafts after
  // it may be worse until the drafter has seen its window again, never wrong: they are verified.
  virtual void resync(SequenceState& st) const = 0;
  virtual void advance(std::vector<DraftInput*>& in) = 0;
};

// The preview MTP block chained on its own output streams: the pair (main streams at t, token t+1)
// predicts t+2; further drafts feed the block's output streams back with the drafted token. The
// block's state advances over committed pairs only; the chain runs on a copy that is dropped.
class MtpDrafter : public Drafter {
 public:
  // banned: ids never drafted (rows of the head past the tokenizer).
  MtpDrafter(const Model& m, std::vector<int32_t> banned);
  bool needs_streams() const override { return true; }
  void resync(SequenceState& st) const override { st.mtp_pos = st.pos; }
  void advance(std::vector<DraftInput*>& in) override;

 private:
  const Model& m_;
  std::vector<int32_t> banned_;
};

// The 0731 DSpark head: commits the taps of committed positions to its stage rings, then drafts one
// block after the newest token and keeps the rows up to the first whose confidence (sigmoid of the
// confidence head) is below draft_min_confidence.
class DSparkDrafter : public Drafter {
 public:
  DSparkDrafter(const Model& m, std::vector<int32_t> banned, float min_confidence);
  bool needs_taps() const override { return true; }
  void resync(SequenceState& st) const override { st.dspark_pos = st.pos; }
  void advance(std::vector<DraftInput*>& in) override;

 private:
  const Model& m_;
  std::vector<int32_t> banned_;
  float min_confidence_;
};

std::unique_ptr<Drafter> make_drafter(const Model& m, const SpecOptions& o, std::vector<int32_t> banned);

}  // namespace dsv4
