#pragma once
// Options shared by the commands that load a model and generate text (run, chat, serve).
#include <CLI/CLI.hpp>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/thread_pool.h"
#include "cli/load_model.h"
#include "cli/ram_budget_args.h"
#include "runtime/ram_budget.h"
#include "runtime/scheduler.h"
#include "tokenizer/model_fit.h"

namespace dsv4::cli {

struct Engine {
  explicit Engine(Tokenizer t) : tok(std::move(t)) {}
  std::unique_ptr<Model> model;
  Tokenizer tok;
  std::unique_ptr<Scheduler> sched;
};

struct GenerationArgs {
  std::string dir;
  int threads = 0;
  bool no_act_quant = false;
  int64_t ctx = 65536;
  int parallel = 1;
  double cache_mb = 1024;
  std::string cache_dir;     // "": the user's cache folder for serve, none otherwise; "off": none
  double cache_disk_mb = 4096;
  bool server = false;
  std::string ram_budget, parallel_mode = "expert";
  std::string spec = "off";
  int draft_max = 3;
  float draft_min_confidence = 0;
  // Sampling; unset values come from the checkpoint's generation_config.json, then the API defaults.
  float temperature = -1, top_p = -1, min_p = 0, repeat_penalty = 1, presence = 0, frequency = 0;
  int top_k = 0, max_tokens = 512;
  uint64_t seed = 0;
  bool think = false;
  std::string reasoning_effort;

  void add(CLI::App* c, bool server = false) {
    c->add_option("-m,--model", dir, "checkpoint folder (with tokenizer.json)")->required();
    c->add_option("-t,--threads", threads, "worker threads (default: all cores)");
    c->add_flag("--no-act-quant", no_act_quant, "fp32 activations, no FP8/FP4 round-trips");
    c->add_option("--ctx", ctx, "context length per sequence (prompt + completion)");
    c->add_option("--cache-mb", cache_mb, "RAM budget of the prefix cache in MiB");
    this->server = server;
    c->add_option("--cache-dir", cache_dir,
                  server ? "disk prefix cache folder, kept across restarts (default: $DSV4_CACHE_DIR, else "
                           "$XDG_CACHE_HOME/dsv4, else ~/.cache/dsv4; off: none)"
                         : "disk prefix cache folder, kept across restarts (default: off)");
    c->add_option("--cache-disk-mb", cache_disk_mb, "size cap of the disk prefix cache in MiB");
    add_ram_budget_option(c, ram_budget);
    add_parallel_option(c, parallel_mode);
    c->add_option("--spec", spec, "speculative decoding with the checkpoint's draft head: off, mtp or dspark")
        ->check(CLI::IsMember({"off", "mtp", "dspark"}));
    c->add_option("--draft-max", draft_max, "tokens drafted per step at most (with --spec)");
    c->add_option("--draft-min-confidence", draft_min_confidence,
                  "DSpark: end the draft at the first token whose confidence is below this (0..1)");
    if (server) {
      c->add_option("--parallel", parallel, "sequences decoded together");
      return;
    }
    c->add_option("--temp", temperature, "temperature (0 = greedy)");
    c->add_option("--top-p", top_p, "nucleus sampling");
    c->add_option("--top-k", top_k, "top-k sampling (0 = off)");
    c->add_option("--min-p", min_p, "min-p sampling (0 = off)");
    c->add_option("--repeat-penalty", repeat_penalty, "repetition penalty (1 = off)");
    c->add_option("--presence-penalty", presence, "presence penalty");
    c->add_option("--frequency-penalty", frequency, "frequency penalty");
    c->add_option("--seed", seed, "sampling seed");
    c->add_option("-n,--max-tokens", max_tokens, "tokens to generate at most");
    c->add_flag("--think", think, "thinking mode (reasoning before the answer)");
    c->add_option("--reasoning-effort", reasoning_effort, "high or max (thinking mode)")
        ->check(CLI::IsMember({"", "high", "max"}));
  }

  std::unique_ptr<Engine> load() const {
    if (threads > 0) ThreadPool::set_global_threads(threads);
    const auto budget = ram_budget_arg(ram_budget);
    // The model first: under mpirun only rank 0 goes on from here, and only it needs the tokenizer.
    auto model = load_model(dir, no_act_quant ? NumericsOptions::no_act_quant() : NumericsOptions{}, budget, parallel_mode);
    auto e = std::make_unique<Engine>(Tokenizer::load(dir));
    e->model = std::move(model);
    const ModelConfig& c = e->model->config();
    check_tokenizer_fits(e->tok, {c.vocab_size, c.bos_token_id, c.eos_token_id}, dir);
    SchedulerOptions so;
    so.max_parallel = parallel;
    so.max_context = ctx;
    so.prefix_cache_bytes = size_t(cache_mb * 1024 * 1024);
    if (cache_dir == "off") so.cache_dir.clear();
    else so.cache_dir = cache_dir.empty() && server ? user_cache_dir() : cache_dir;
    if (cache_disk_mb < 0) fail("--cache-disk-mb must not be negative");
    so.cache_disk_bytes = uint64_t(cache_disk_mb * 1024 * 1024);
    so.spec = {parse_spec_mode(spec), draft_max, draft_min_confidence};
    e->sched = std::make_unique<Scheduler>(*e->model, e->tok, so);
    return e;
  }

  // The checkpoint's generation_config.json supplies defaults the user did not override.
  SamplingParams sampling() const {
    SamplingParams p;
    p.temperature = 1.0f;
    p.top_p = 1.0f;
    auto gc = std::filesystem::path(dir) / "generation_config.json";
    if (std::filesystem::exists(gc)) {
      try {
        auto j = nlohmann::json::parse(read_text_file(gc.string()));
        p.temperature = j.value("temperature", p.temperature);
        p.top_p = j.value("top_p", p.top_p);
        if (j.contains("do_sample") && j["do_sample"] == false) p.temperature = 0;
      } catch (const nlohmann::json::exception& e) {
        fail("{}: bad JSON: {}", gc.string(), e.what());
      }
    }
    if (temperature >= 0) p.temperature = temperature;
    if (top_p >= 0) p.top_p = top_p;
    p.top_k = top_k;
    p.min_p = min_p;
    p.repetition_penalty = repeat_penalty;
    p.presence_penalty = presence;
    p.frequency_penalty = frequency;
    p.seed = seed;
    return p;
  }

  GenerationRequest request(std::vector<int32_t> prompt) const {
    GenerationRequest r;
    r.prompt = std::move(prompt);
    r.sampling = sampling();
    r.max_tokens = max_tokens;
    return r;
  }
};

}  // namespace dsv4::cli
