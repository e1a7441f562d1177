// dsv4 perplexity: mean cross-entropy of a text file under the model.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <optional>

#include "cli/commands.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "core/thread_pool.h"
#include "runtime/perplexity.h"
#include "tokenizer/model_fit.h"

namespace dsv4::cli {

void register_eval_commands(CLI::App& app) {
  static std::string dir, file, kl_base;
  static int64_t ctx = 512;
  static int threads = 0;
  static bool no_act_quant = false, json = false;
  auto* c = app.add_subcommand("perplexity", "mean cross-entropy (nats/token) and perplexity of a text file");
  c->add_option("-m,--model", dir, "checkpoint folder (with tokenizer.json)")->required();
  c->add_option("-f,--file", file, "UTF-8 text file")->required();
  c->add_option("--kl-base", kl_base,
                "native checkpoint to compare with: adds the mean KL divergence of the next-token distributions");
  c->add_option("--ctx", ctx, "window length including the BOS that starts each window");
  c->add_option("-t,--threads", threads, "worker threads");
  c->add_flag("--no-act-quant", no_act_quant, "fp32 activations, no FP8/FP4 round-trips");
  c->add_flag("--json", json, "print one JSON object");
  c->callback([] {
    if (threads > 0) ThreadPool::set_global_threads(threads);
    const std::string text = read_text_file(file);
    Tokenizer tok = Tokenizer::load(dir);
    Model model(dir, no_act_quant ? NumericsOptions::no_act_quant() : NumericsOptions{});
    const ModelConfig& cfg = model.config();
    check_tokenizer_fits(tok, {cfg.vocab_size, cfg.bos_token_id, cfg.eos_token_id}, dir);
    std::optional<Model> base;
    if (!kl_base.empty()) base.emplace(kl_base, no_act_quant ? NumericsOptions::no_act_quant() : NumericsOptions{});
    const bool bar = isatty(STDERR_FILENO);
    const auto t0 = std::chrono::steady_clock::now();
    PerplexityResult r = perplexity(model, tok, text, ctx, [&](int64_t done, int64_t total) {
      if (!bar) return;
      const int width = 40, fill = int(width * done / total);
      std::fprintf(stderr, "\r[%.*s%*s] %lld/%lld tokens", fill, "########################################",
                   width - fill, "", (long long)done, (long long)total);
      std::fflush(stderr);
    }, base ? &*base : nullptr);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (bar) std::fputs("\n", stderr);
    if (json) {
      std::printf("{\"tokens\": %lld, \"ctx\": %lld, \"mean_ce_nats\": %.6f, \"perplexity\": %.4f", (long long)r.tokens,
                  (long long)ctx, r.mean_ce_nats, r.perplexity());
      if (r.has_base)
        std::printf(", \"base_mean_ce_nats\": %.6f, \"mean_kl\": %.6g, \"kl_p99\": %.6g, \"top1_agreement\": %.5f",
                    r.base_mean_ce_nats, r.mean_kl, r.kl_p99, r.top1_agreement);
      std::printf("}\n");
    } else {
      std::printf("%lld tokens, ctx %lld: mean cross-entropy %.5f nats/token, perplexity %.3f (%.1f tokens/s)\n",
                  (long long)r.tokens, (long long)ctx, r.mean_ce_nats, r.perplexity(), double(r.tokens) / secs);
      if (r.has_base)
        std::printf("against %s: base cross-entropy %.5f, mean KL %.6f nats/token (p99 %.5f), top-1 agreement %.2f%%\n",
                    kl_base.c_str(), r.base_mean_ce_nats, r.mean_kl, r.kl_p99, 100 * r.top1_agreement);
    }
  });
}

}  // namespace dsv4::cli
