#pragma once
// What every step of the forward pass reads besides the weights and the sequence state: the
// configuration, the numerics switches, the thread pool, the two RoPE tables (architecture.md §2.4)
// and the calling thread's scratch arena. Model builds one per call (the global pool may change size
// between calls); model functions take it instead of loose parameters.
//
// Scratch (architecture.md §5.6): every activation buffer of a step is taken from an arena
// (core/arena.h) and given back when its function returns, so once a step of some shape has run,
// the next step of that shape allocates nothing. Code inside a parallel loop takes from its own
// thread's arena. Sizes that vary from step to step below a bound (how many tokens an expert gets,
// how many entries a sequence has) reserve the bound, so they cannot move later takes.
#include "core/arena.h"
#include "io/config.h"
#include "io/layer_kind.h"
#include "kernels/rope.h"
#include "model/options.h"

namespace dsv4 {

class ThreadPool;
class Backend;  // a slot for an accelerator: none yet, every kernel runs on the CPU

struct ForwardContext {
  const ModelConfig& cfg;
  const NumericsOptions& opt;
  ThreadPool& pool;
  const Rope& rope_window;      // ratio-0 layers
  const Rope& rope_compressed;  // CSA and HCA layers, their compressors and indexer
  Arena& arena;                 // the calling thread's (thread_arena())
  Backend* backend = nullptr;

  const Rope& rope(LayerKind k) const { return has_compressor(k) ? rope_compressed : rope_window; }
};

}  // namespace dsv4
