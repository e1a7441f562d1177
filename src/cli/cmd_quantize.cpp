// dsv4 quantize and dsv4 imatrix: low-bit routed experts in the ggml block formats, weighted by activation
// statistics collected from a calibration text.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "core/thread_pool.h"
#include "runtime/imatrix.h"
#include "runtime/quantize.h"
#include "tokenizer/model_fit.h"

namespace dsv4::cli {

namespace {

// A progress bar on a terminal, a line every 10% otherwise (logs of long conversions).
class Progress {
 public:
  explicit Progress(const char* unit) : unit_(unit), tty_(isatty(STDERR_FILENO)) {}
  void operator()(double done, double total, double scale) {
    const int pct = total > 0 ? int(100 * done / total) : 100;
    if (tty_) {
      const int width = 40, fill = pct * width / 100;
      std::fprintf(stderr, "\r[%.*s%*s] %3d%% %.1f/%.1f %s", fill, "########################################",
                   width - fill, "", pct, done / scale, total / scale, unit_);
    } else if (pct / 10 != last_ / 10) {
      std::fprintf(stderr, "%d%% (%.1f/%.1f %s)\n", pct, done / scale, total / scale, unit_);
    }
    last_ = pct;
    std::fflush(stderr);
  }
  ~Progress() {
    if (tty_) std::fputs("\n", stderr);
  }

 private:
  const char* unit_;
  bool tty_;
  int last_ = -1;
};

BlockFormat format_arg(const std::string& s, const char* flag) {
  if (s.empty() || s == "none") return BlockFormat::None;
  BlockFormat f;
  if (!parse_block_format(s, f)) {
    std::string names;
    for (const auto& e : kBlockFormats) names += std::string(names.empty() ? "" : ", ") + std::string(e.name);
    fail("{} {}: unknown format (known: none, {})", flag, s, names);
  }
  return f;
}

}  // namespace

void register_quantize_commands(CLI::App& app) {
  static std::string in, out, experts, dense, imatrix;
  static int threads = 0;
  auto* q = app.add_subcommand("quantize", "rewrite a checkpoint with block-quantised routed experts (and dense linears)");
  q->add_option("-m,--model", in, "input checkpoint folder")->required();
  q->add_option("-o,--output", out, "output checkpoint folder (created)")->required();
  q->add_option("--experts", experts, "routed experts: q8_0, q4_0, mxfp4, q2_k, q3_k, q4_k, q5_k, q6_k, or none");
  q->add_option("--dense", dense, "the other FP8 linears (attention, shared expert, compressor, indexer), or none");
  q->add_option("--imatrix", imatrix, "importance matrix from `dsv4 imatrix` (weights the low-bit encoders)");
  q->add_option("-t,--threads", threads, "worker threads");
  q->callback([] {
    if (threads > 0) ThreadPool::set_global_threads(threads);
    QuantizeOptions o{format_arg(experts, "--experts"), format_arg(dense, "--dense"), imatrix};
    if (o.experts == BlockFormat::None && o.dense == BlockFormat::None) fail("quantize: give --experts and/or --dense");
    const auto t0 = std::chrono::steady_clock::now();
    QuantizeReport r;
    {
      Progress bar("GB");
      r = quantize_checkpoint(in, out, o, [&](uint64_t d, uint64_t t) { bar(double(d), double(t), 1e9); });
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s: %lld tensors encoded (%lld in a fallback format, %lld with importance weights), %lld copied; "
                "%.3f GB -> %.3f GB in %.1f s\n",
                out.c_str(), (long long)r.tensors_encoded, (long long)r.tensors_fallback,
                (long long)r.imatrix_rows_weighted, (long long)r.tensors_copied, double(r.bytes_in) / 1e9,
                double(r.bytes_out) / 1e9, secs);
  });

  static std::string im_model, im_file, im_out;
  static int64_t im_ctx = 512;
  auto* im = app.add_subcommand("imatrix", "collect the importance matrix of a calibration text (for quantize)");
  im->add_option("-m,--model", im_model, "checkpoint folder (with tokenizer.json)")->required();
  im->add_option("-f,--file", im_file, "UTF-8 calibration text")->required();
  im->add_option("-o,--output", im_out, "importance matrix file to write")->required();
  im->add_option("--ctx", im_ctx, "window length including the BOS that starts each window");
  im->add_option("-t,--threads", threads, "worker threads");
  im->callback([] {
    if (threads > 0) ThreadPool::set_global_threads(threads);
    const std::string text = read_text_file(im_file);
    const Tokenizer tok = Tokenizer::load(im_model);
    const Model model(im_model);
    const ModelConfig& cfg = model.config();
    check_tokenizer_fits(tok, {cfg.vocab_size, cfg.bos_token_id, cfg.eos_token_id}, im_model);
    ImportanceMatrix m;
    {
      Progress bar("k tokens");
      m = collect_imatrix(model, tok, text, im_ctx, [&](int64_t d, int64_t t) { bar(double(d), double(t), 1e3); });
    }
    save_imatrix(m, im_out);
    int64_t tokens = 0;
    for (const auto& [name, n] : m.count) tokens = std::max(tokens, n);
    std::printf("%s: %zu weight tensors, up to %lld tokens each\n", im_out.c_str(), m.mean_sq.size(),
                (long long)tokens);
  });
}

}  // namespace dsv4::cli
