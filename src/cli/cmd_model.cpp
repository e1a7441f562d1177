// Model-level commands: inspect, logits, generate.
#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>

#include "cli/commands.h"
#include "cli/load_model.h"
#include "dist/expert_parallel.h"
#include "cli/ram_budget_args.h"
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/thread_pool.h"
#include "io/npy.h"
#include "cli/random_checkpoint.h"
#include "core/profile.h"
#include "runtime/bench.h"
#include "model/schema.h"
#include "model/transformer.h"
#include "tokenizer/model_fit.h"
#include "tokenizer/tokenizer.h"

namespace dsv4::cli {

namespace {

struct ModelArgs {
  std::string dir;
  int threads = 0;
  bool no_act_quant = false;
  bool first_revision = false;
  std::string ram_budget, parallel_mode = "expert";

  void add(CLI::App* c) {
    add_ram_budget_option(c, ram_budget);
    add_parallel_option(c, parallel_mode);
    c->add_option("-m,--model", dir, "checkpoint folder")->required();
    c->add_option("-t,--threads", threads, "worker threads (default: all cores)");
    c->add_flag("--no-act-quant", no_act_quant, "fp32 activations: no FP8/FP4 activation, KV or index round-trips");
    c->add_flag("--first-revision", first_revision, "first V4-Flash upload numerics (no KV rounding, no shared clamp)");
  }
  NumericsOptions numerics() const {
    if (no_act_quant) return NumericsOptions::no_act_quant();
    if (first_revision) return NumericsOptions::first_revision();
    return {};
  }
  void apply_threads() const {
    if (threads > 0) ThreadPool::set_global_threads(threads);
  }
};

std::vector<int32_t> parse_ids(const std::string& text, const std::string& what) {
  std::vector<int32_t> ids;
  std::istringstream ss(text);
  std::string tok;
  while (ss >> tok) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(tok, &used);
    } catch (...) {
      used = 0;
    }
    if (used != tok.size() || v < 0 || v > INT32_MAX) fail("{}: '{}' is not a token id", what, tok);
    ids.push_back(int32_t(v));
  }
  return ids;
}

int32_t argmax(const float* v, int64_t n) { return int32_t(std::max_element(v, v + n) - v); }

std::string variant_name(const ModelConfig& c, const ModelWeights& w) {
  const Linear& w1 = w.blocks.empty() ? Linear() : w.blocks[0].moe.experts[0].w1;
  const bool fp4 = w1.fmt == Linear::Format::FP4;
  std::string base = c.dim == 4096 && c.n_layers == 43   ? "V4-Flash"
                     : c.dim == 7168 && c.n_layers == 61 ? "V4-Pro"
                                                         : fmt::format("V4 architecture (dim {}, {} layers)", c.dim, c.n_layers);
  if (c.is_dspark()) base += "-0731 (DSpark draft head)";
  if (w1.fmt == Linear::Format::Block) base += fmt::format(", {} routed experts", block_name(w1.block));
  else if (!fp4 && !c.is_dspark()) base += ", FP8 routed experts (Base / FP8-mixed format)";
  return base;
}

// The tokenizer.json line of inspect, or the error that makes the checkpoint unusable for text.
std::string inspect_tokenizer(const std::string& dir, const ModelConfig& cfg, std::string& error) {
  try {
    const Tokenizer tok = Tokenizer::load(dir);
    check_tokenizer_fits(tok, {cfg.vocab_size, cfg.bos_token_id, cfg.eos_token_id}, dir);
    return fmt::format("tokenizer: {} ids, BOS {} \"{}\", EOS {} \"{}\"", tok.vocab_size(), cfg.bos_token_id,
                       tok.token_text(cfg.bos_token_id), cfg.eos_token_id, tok.token_text(cfg.eos_token_id));
  } catch (const Error& e) {
    error = e.what();
    return "tokenizer: FAILED";
  }
}

void cmd_inspect(const ModelArgs& a, const std::string& ram_budget, int ranks) {
  const auto budget = ram_budget_arg(ram_budget);
  std::optional<ModelConfig> cfg_or;
  std::optional<Checkpoint> ck_or;
  try {
    cfg_or.emplace(load_config(a.dir));
    ck_or.emplace(a.dir);
  } catch (const Error& e) {  // nothing to describe: an invalid checkpoint all the same
    std::fprintf(stderr, "error: %s\n", e.what());
    set_exit_code(2);
    return;
  }
  const ModelConfig& cfg = *cfg_or;
  const Checkpoint& ck = *ck_or;
  std::vector<std::string> errors(1);
  std::unique_ptr<ModelWeights> w;
  try {
    w = std::make_unique<ModelWeights>(bind_weights(ck, cfg));
  } catch (const Error& e) {
    errors[0] = e.what();
  }
  std::printf("checkpoint: %s (%zu shard%s)\n", a.dir.c_str(), ck.num_files(), ck.num_files() == 1 ? "" : "s");
  if (w) std::printf("variant: %s\n", variant_name(cfg, *w).c_str());
  errors.emplace_back();
  std::printf("%s\n", inspect_tokenizer(a.dir, cfg, errors.back()).c_str());
  std::printf("dim %d, %d layers, %d heads x %d, vocab %d, window %d, %d routed experts (top %d), %d MTP stage(s)\n",
              cfg.dim, cfg.n_layers, cfg.n_heads, cfg.head_dim, cfg.vocab_size, cfg.window_size,
              cfg.n_routed_experts, cfg.n_activated_experts, cfg.n_mtp_layers);
  std::printf("layers:");
  for (int l = 0; l < cfg.n_layers + cfg.n_mtp_layers; ++l) {
    const LayerKind k = cfg.layer_kind(l);
    std::string kind = layer_kind_name(k);
    if (k == LayerKind::HCA) kind += std::to_string(cfg.layer_ratio(l));  // the schedule shows "HCA128"
    if (l < cfg.n_hash_layers) kind += "+hash";
    if (l >= cfg.n_layers) kind = fmt::format("MTP{}", l - cfg.n_layers);
    std::printf(" %d:%s", l, kind.c_str());
  }
  std::printf("\n");
  // Parameters by dtype; packed FP4 bytes hold two parameters, scales are not parameters.
  const SchemaIndex schema(cfg, ck);
  std::map<std::string, std::pair<int64_t, int64_t>> by_dtype;  // dtype -> (params, bytes)
  std::map<std::string, std::array<int64_t, 3>> by_group;       // schema group -> (tensors, params, bytes)
  int64_t total = 0, expert_params = 0, mtp_params = 0;
  std::vector<std::string> unknown;
  for (auto& [name, t] : ck.tensors()) {
    const TensorClass tc = schema.classify(name);
    if (!tc.known) unknown.push_back(name);
    const bool scale = tc.known ? tc.scale : name.ends_with(".scale");
    const bool block = t->format != BlockFormat::None;  // numel() is already the logical weight count
    const bool packed = !block && (t->dtype == DType::I8 || t->dtype == DType::U8) && tc.item &&
                        tc.item->entry->form == Form::Quant;
    const int64_t params = scale ? 0 : t->numel() * (packed ? 2 : 1);
    std::string key = packed  ? "FP4 (I8 packed)"
                      : block ? fmt::format("{} ({:.4g} bits)", block_name(t->format), block_bits_per_weight(t->format))
                              : std::string(dtype_name(t->dtype));
    by_dtype[key].first += params;
    by_dtype[key].second += int64_t(t->nbytes);
    total += params;
    const bool stage = tc.item && tc.item->stage >= 0;
    if (tc.role == Role::RoutedExpert && !stage) expert_params += params;
    if (stage || tc.role == Role::Unused) mtp_params += params;
    const std::string group = !tc.known ? "not in the schema"
                              : stage   ? fmt::format("{}: {}", cfg.is_dspark() ? "DSpark head" : "MTP block", role_name(tc.role))
                                        : role_name(tc.role);
    auto& g = by_group[group];
    g[0] += 1, g[1] += params, g[2] += int64_t(t->nbytes);
  }
  std::printf("parameters: %.6g (%lld)\n", double(total), (long long)total);
  for (auto& [k, v] : by_dtype)
    std::printf("  %-16s %14lld params %14lld bytes\n", k.c_str(), (long long)v.first, (long long)v.second);
  std::printf("tensors by schema role:\n");
  for (auto& [k, v] : by_group)
    std::printf("  %-30s %7lld tensors %14lld params %14lld bytes\n", k.c_str(), (long long)v[0], (long long)v[1],
                (long long)v[2]);
  for (size_t i = 0; i < unknown.size() && i < 20; ++i)
    std::printf("warning: tensor '%s' is not in the schema (unexpected)\n", unknown[i].c_str());
  if (unknown.size() > 20) std::printf("warning: ... and %zu more tensors not in the schema\n", unknown.size() - 20);
  int64_t active = total - mtp_params - expert_params +
                   expert_params / cfg.n_routed_experts * cfg.n_activated_experts;
  std::printf("active parameters per token (backbone, %d of %d experts): %.6g\n", cfg.n_activated_experts,
              cfg.n_routed_experts, double(active));
  if (budget && w) std::printf("%s\n", describe_budget(plan_weights(ck, *w, cfg), *budget, true).c_str());
  if (ranks > 1 && w) {
    try {
      dist::PlacementInput in = dist::placement_input(ck, *w, cfg, ranks);
      if (budget) in.budget.assign(size_t(ranks), *budget);
      std::printf("%s\n", dist::describe_placement(dist::place_experts(in), in).c_str());
    } catch (const Error& e) {
      errors.push_back(e.what());
    }
  }
  std::erase(errors, std::string());
  if (!errors.empty()) {
    std::printf("validation: FAILED\n");
    for (auto& e : errors) std::printf("%s\n", e.c_str());
    set_exit_code(2);
  } else {
    std::printf("validation: OK (every tensor bound with the expected dtype and shape; tokenizer.json fits)\n");
  }
}

struct LogitsArgs {
  std::string ids_file, out, mtp_out;
  int64_t prefill = 0, chunk = 0;
};

void cmd_logits(const ModelArgs& a, const LogitsArgs& la) {
  a.apply_threads();
  auto ids = parse_ids(read_text_file(la.ids_file), la.ids_file);
  const int64_t T = int64_t(ids.size());
  if (la.prefill < 1 || la.prefill > T) fail("--prefill must lie in [1, {}] (the number of ids)", T);
  const auto budget = ram_budget_arg(a.ram_budget);
  const std::unique_ptr<Model> owned = load_model(a.dir, a.numerics(), budget, a.parallel_mode);
  Model& model = *owned;
  const int64_t V = model.config().vocab_size, N = la.prefill;
  const bool mtp = !la.mtp_out.empty();
  if (mtp && !model.has_mtp()) fail("{} has no preview MTP block (mtp.0.e_proj)", a.dir);
  if (mtp && N >= T) fail("--mtp needs at least one id after the prefill");
  SequenceState st = model.new_sequence();
  std::vector<float> out, mtp_logits, streams;
  ForwardOptions fo;
  fo.keep_streams = mtp;
  const int64_t chunk = la.chunk > 0 ? la.chunk : N;
  for (int64_t p = 0; p < N; p += chunk) {
    int64_t s = std::min(chunk, N - p);
    auto r = model.forward(st, ids.data() + p, s, fo);
    if (mtp) streams.insert(streams.end(), r.final_streams.begin(), r.final_streams.end());
    if (p + s == N) out = std::move(r.logits);
  }
  if (mtp) mtp_logits = model.mtp_forward(st, streams.data(), ids.data() + 1, N);
  for (int64_t t = N; t < T; ++t) {
    auto r = model.forward(st, ids.data() + t, 1, fo);
    out.insert(out.end(), r.logits.begin(), r.logits.end());
    if (mtp && t + 1 < T) {
      auto m = model.mtp_forward(st, r.final_streams.data(), ids.data() + t + 1, 1);
      mtp_logits.insert(mtp_logits.end(), m.begin(), m.end());
    }
  }
  write_npy_f32(la.out, {T - N + 1, V}, out.data());
  if (mtp) write_npy_f32(la.mtp_out, {T - N, V}, mtp_logits.data());
}

void cmd_generate(const ModelArgs& a, const std::string& ids_text, int n) {
  a.apply_threads();
  auto ids = parse_ids(ids_text, "--ids");
  if (ids.empty()) fail("--ids needs at least one token id");
  const auto budget = ram_budget_arg(a.ram_budget);
  const std::unique_ptr<Model> owned = load_model(a.dir, a.numerics(), budget, a.parallel_mode);
  Model& model = *owned;
  const int64_t V = model.config().vocab_size;
  SequenceState st = model.new_sequence();
  auto r = model.forward(st, ids.data(), int64_t(ids.size()));
  std::vector<int32_t> outs;
  for (int i = 0; i < n; ++i) {
    int32_t next = argmax(r.logits.data(), V);
    outs.push_back(next);
    std::printf("%s%d", i ? " " : "", next);
    std::fflush(stdout);
    if (i + 1 < n) r = model.forward(st, &next, 1);
  }
  std::printf("\n");
}

struct SpecBenchArgs {
  std::string mode = "off", text, batch;
  int draft_max = 3, verify_max = 0, tokens = 64, prompts = 4;
  float min_confidence = 0;
};

// Prompts of 64 tokens at evenly spaced offsets of a text, tokenized by the model's tokenizer.
std::vector<std::vector<int32_t>> spec_prompts(const Tokenizer& tok, const std::string& file, int n) {
  const std::vector<int32_t> ids = tok.encode(read_text_file(file));
  const size_t len = 64;
  if (ids.size() < len * size_t(n)) fail("--spec-text {}: {} tokens, {} prompts of {} need more", file, ids.size(), n, len);
  std::vector<std::vector<int32_t>> out;
  for (int i = 0; i < n; ++i) {
    const size_t at = (ids.size() - len) * size_t(i) / size_t(std::max(n - 1, 1));
    out.emplace_back(ids.begin() + int64_t(at), ids.begin() + int64_t(at + len));
  }
  return out;
}

void bench_batches(Model& model, const std::vector<int64_t>& ctxs, const std::string& list, int steps, bool json) {
  std::vector<int> batches;
  for (auto b : parse_ids([&] { std::string s = list; std::replace(s.begin(), s.end(), ',', ' '); return s; }(), "--batch"))
    batches.push_back(int(b));
  if (batches.empty()) fail("--batch needs at least one batch size");
  for (int64_t ctx : ctxs) {
    if (ctx < 1) fail("--ctx values must be positive");
    if (!json) std::printf("ctx %lld: batch, tok/s (all sequences), experts/layer, B/step, FLOP/step, binding roof, ratio\n", (long long)ctx);
    for (const auto& r : run_batch_bench(model, ctx, batches, steps)) {
      if (json) {
        nlohmann::json j = {{"ctx", r.ctx}, {"batch", r.batch}, {"threads", ThreadPool::global().size()},
                            {"step_s", r.step_s}, {"tokens_per_s", r.tokens_per_s},
                            {"experts_per_layer", r.experts_per_layer}, {"bytes_per_step", r.bytes_per_step},
                            {"flops_per_step", r.flops_per_step},
                            {"read_bandwidth_bytes_per_s", r.read_bandwidth_bytes_per_s},
                            {"peak_flops_per_s", r.peak_flops_per_s}, {"dot", r.dot}, {"binding", r.binding},
                            {"roofline_ratio", r.roofline_ratio}};
        std::printf("%s\n", j.dump().c_str());
      } else {
        std::printf("  %3d  %8.2f  %6.1f  %.3g  %.3g  %s (%.3g GB/s, %s %.3g GFLOP/s)  %.1f%%\n", r.batch,
                    r.tokens_per_s, r.experts_per_layer, r.bytes_per_step, r.flops_per_step, r.binding.c_str(),
                    r.read_bandwidth_bytes_per_s / 1e9, r.dot.c_str(), r.peak_flops_per_s / 1e9,
                    100 * r.roofline_ratio);
      }
      std::fflush(stdout);
    }
  }
}

void cmd_bench(const ModelArgs& a, const std::string& ctx_list, int steps, bool json, bool phases,
               const SpecBenchArgs& sb) {
  a.apply_threads();
  profile::enable(phases);
  const auto budget = ram_budget_arg(a.ram_budget);
  const std::unique_ptr<Model> owned = load_model(a.dir, a.numerics(), budget, a.parallel_mode);
  Model& model = *owned;
  std::vector<int64_t> ctxs;
  for (auto& t : parse_ids([&] { std::string s = ctx_list; std::replace(s.begin(), s.end(), ',', ' '); return s; }(), "--ctx"))
    ctxs.push_back(t);
  if (ctxs.empty()) fail("--ctx needs at least one context length");
  if (!sb.batch.empty()) return bench_batches(model, ctxs, sb.batch, std::max(steps, 1), json);
  nlohmann::json all = nlohmann::json::array();
  for (int64_t ctx : ctxs) {
    if (ctx < 1) fail("--ctx values must be positive");
    BenchResult r = run_bench(model, ctx, std::max(steps, 1), 42, sb.verify_max);
    nlohmann::json j = {{"ctx", r.ctx},
                        {"threads", ThreadPool::global().size()},
                        {"decode_tokens_per_s", r.decode_tokens_per_s},
                        {"decode_bytes_per_token", r.decode_bytes_per_token},
                        {"read_bandwidth_bytes_per_s", r.read_bandwidth_bytes_per_s},
                        {"decode_roofline_ratio", r.decode_roofline_ratio},
                        {"prefill_tokens_per_s", r.prefill_tokens_per_s},
                        {"prefill_flops_per_token", r.prefill_flops_per_token},
                        {"peak_flops_per_s", r.peak_flops_per_s},
                        {"prefill_roofline_ratio", r.prefill_roofline_ratio},
                        {"dot", r.dot},
                        {"fma_peak_flops_per_s", r.fma_peak_flops_per_s},
                        {"bf16_peak_flops_per_s", r.bf16_peak_flops_per_s},
                        {"prefill_fma_roofline_ratio", r.prefill_fma_roofline_ratio}};
    if (r.streaming) {
      j["expert_cache_hit_rate"] = r.expert_cache_hit_rate;
      j["hash_predictor_hit_rate"] = r.hash_predictor_hit_rate;
      j["next_gate_predictor_hit_rate"] = r.next_gate_predictor_hit_rate;
      j["disk_bytes_per_token"] = r.disk_bytes_per_token;
      j["process_disk_bytes_per_token"] = r.process_disk_bytes_per_token;
      j["disk_read_bandwidth_bytes_per_s"] = r.disk_read_bandwidth_bytes_per_s;
      j["disk_probe_direct"] = r.disk_probe_direct;
      j["stream_roofline_ratio"] = r.stream_roofline_ratio;
    }
    if (r.parallel) {
      j["peer_bytes_per_token"] = r.peer_bytes_per_token;
      j["peer_messages_per_token"] = r.peer_messages_per_token;
      j["peer_wait_s_per_token"] = r.peer_wait_s_per_token;
      j["peer_compute_s_per_token"] = r.peer_compute_s_per_token;
      j["peer_wire_s_per_token"] = r.peer_wire_s_per_token;
    }
    if (!r.verify_cost_ratio.empty()) {
      j["verify_cost_ratio"] = r.verify_cost_ratio;
      if (model.has_mtp()) j["mtp_step_cost_ratio"] = r.mtp_step_cost_ratio;
    }
    if (phases) {
      j["prefill_phase_s"] = nlohmann::json::object();
      j["decode_phase_s"] = nlohmann::json::object();
      for (auto& [name, sec] : r.prefill_phases) j["prefill_phase_s"][name] = sec;
      for (auto& [name, sec] : r.decode_phases) j["decode_phase_s"][name] = sec;
    }
    if (json) {
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("ctx %lld: decode %.2f tok/s, %.3g B/token, read bandwidth %.3g GB/s -> %.1f%% of roofline | "
                  "prefill %.2f tok/s, %.3g FLOP/token, %s peak %.3g GFLOP/s -> %.1f%% of roofline (%.1f%% of the fp32 FMA peak)\n",
                  (long long)ctx, r.decode_tokens_per_s, r.decode_bytes_per_token, r.read_bandwidth_bytes_per_s / 1e9,
                  100 * r.decode_roofline_ratio, r.prefill_tokens_per_s, r.prefill_flops_per_token,
                  r.dot.c_str(), r.peak_flops_per_s / 1e9, 100 * r.prefill_roofline_ratio,
                  100 * r.prefill_fma_roofline_ratio);
      if (r.streaming)
        std::printf("  streaming: expert cache hit rate %.1f%% (hash predictor %.1f%%, next-gate predictor %.1f%%), "
                    "%.3g disk B/token (process I/O counter %.3g), disk %.3g GB/s%s -> %.1f%% of the stream roofline\n",
                    100 * r.expert_cache_hit_rate, 100 * r.hash_predictor_hit_rate,
                    100 * r.next_gate_predictor_hit_rate, r.disk_bytes_per_token, r.process_disk_bytes_per_token,
                    r.disk_read_bandwidth_bytes_per_s / 1e9, r.disk_probe_direct ? " (O_DIRECT)" : "",
                    100 * r.stream_roofline_ratio);
      if (r.parallel)
        std::printf("  expert parallel, per decode token: %.3g B over %.3g messages; of the %.3g ms step, %.3g ms blocked "
                    "on peers (slowest peer's experts %.3g ms, wire and MPI %.3g ms)\n",
                    r.peer_bytes_per_token, r.peer_messages_per_token, 1e3 / r.decode_tokens_per_s,
                    1e3 * r.peer_wait_s_per_token, 1e3 * r.peer_compute_s_per_token, 1e3 * r.peer_wire_s_per_token);
      if (!r.verify_cost_ratio.empty()) {
        std::printf("  verification step cost / decode step:");
        for (size_t k = 0; k < r.verify_cost_ratio.size(); ++k) std::printf(" k=%zu %.2f", k + 1, r.verify_cost_ratio[k]);
        if (model.has_mtp()) std::printf(" | one MTP draft step %.3f", r.mtp_step_cost_ratio);
        std::printf("\n");
      }
      if (phases) {
        std::printf("  %-18s %12s %14s\n", "phase", "prefill ms", "decode ms/step");
        for (auto& [name, sec] : r.prefill_phases) {
          double dec = 0;
          for (auto& [n2, s2] : r.decode_phases)
            if (n2 == name) dec = s2;
          std::printf("  %-18s %12.1f %14.2f\n", name.c_str(), 1e3 * sec, 1e3 * dec);
        }
      }
    }
    std::fflush(stdout);
  }
  if (sb.mode == "off") return;
  const SpecOptions so{parse_spec_mode(sb.mode), sb.draft_max, sb.min_confidence};
  const Tokenizer tok = Tokenizer::load(a.dir);
  const std::string text = !sb.text.empty() ? sb.text : a.dir + "/heldout.txt";
  const SpecBenchResult r = run_spec_bench(model, tok, spec_prompts(tok, text, sb.prompts), sb.tokens, so);
  nlohmann::json j = {{"spec", sb.mode},
                      {"draft_max", sb.draft_max},
                      {"threads", ThreadPool::global().size()},
                      {"plain_tokens_per_s", r.plain_tokens_per_s},
                      {"spec_tokens_per_s", r.spec_tokens_per_s},
                      {"speedup", r.speedup},
                      {"acceptance_rate", r.acceptance_rate},
                      {"tokens_per_step", r.tokens_per_step},
                      {"generated", r.generated},
                      {"identical", r.identical}};
  if (json) std::printf("%s\n", j.dump().c_str());
  else
    std::printf("spec %s, draft-max %d: %.2f tok/s vs %.2f without drafts (x%.2f median of A/B pairs), %.1f%% of drafts "
                "accepted, %.2f tokens per step, greedy output %s\n",
                sb.mode.c_str(), sb.draft_max, r.spec_tokens_per_s, r.plain_tokens_per_s, r.speedup,
                100 * r.acceptance_rate, r.tokens_per_step, r.identical ? "identical" : "DIFFERENT");
  if (!r.identical) fail("speculative greedy output differs from plain greedy output");
}

}  // namespace

void register_model_commands(CLI::App& app) {
  static ModelArgs inspect_args, logits_args, gen_args;
  static std::string inspect_budget;
  static int inspect_ranks = 1;
  static LogitsArgs la;
  static std::string gen_ids;
  static int gen_n = 16;

  auto* inspect = app.add_subcommand("inspect", "describe and validate a checkpoint");
  inspect->add_option("-m,--model", inspect_args.dir, "checkpoint folder")->required();
  inspect->add_option("--ram-budget", inspect_budget, "also print what would stay resident and what would stream");
  inspect->add_option("--ranks", inspect_ranks,
                      "also print the expert parallel plan over N ranks (with --ram-budget: each rank's budget)")
      ->check(CLI::Range(1, 32767));
  inspect->callback([] { cmd_inspect(inspect_args, inspect_budget, inspect_ranks); });

  auto* logits = app.add_subcommand("logits", "teacher-forced logits: prefill N ids, then decode the rest");
  logits_args.add(logits);
  logits->add_option("--ids-file", la.ids_file, "whitespace-separated token ids")->required();
  logits->add_option("--prefill", la.prefill, "number of ids in the first forward call")->required();
  logits->add_option("-o,--output", la.out, "output .npy [T-N+1, vocab]")->required();
  logits->add_option("--mtp", la.mtp_out, "also write MTP logits [T-N, vocab] (hidden at t + token t+1)");
  logits->add_option("--chunk", la.chunk, "split the prefill into chunks of this many tokens");
  logits->callback([] { cmd_logits(logits_args, la); });

  static RandomCheckpointSpec mk;
  static std::string mk_out, mk_tokenizer;
  static int mk_threads = 0;
  auto* make = app.add_subcommand("make-model", "write a random checkpoint in the official format (benchmarks, tests)");
  make->add_option("--like", mk.like, "flash, pro or tiny")->check(CLI::IsMember({"flash", "pro", "tiny"}));
  make->add_option("--layers", mk.layers, "backbone layers (alternating CSA and HCA)");
  make->add_option("--experts", mk.experts, "routed experts per layer (default: the variant's)");
  make->add_option("--vocab", mk.vocab, "vocabulary rows (default: the variant's)");
  make->add_option("--hash-layers", mk.hash_layers, "hash-routed layers (default: min(3, layers/2))");
  make->add_flag("--mtp", mk.mtp, "add the preview MTP block");
  make->add_flag("--fp8-experts", mk.fp8_experts, "FP8 routed experts (Base format) instead of FP4");
  make->add_option("--seed", mk.seed, "random seed");
  make->add_option("--tokenizer", mk_tokenizer, "tokenizer.json to copy into the checkpoint");
  make->add_option("-t,--threads", mk_threads, "worker threads");
  make->add_option("-o,--output", mk_out, "output folder")->required();
  make->callback([] {
    if (mk_threads > 0) ThreadPool::set_global_threads(mk_threads);
    write_random_checkpoint(mk, mk_out);
    if (!mk_tokenizer.empty())
      std::filesystem::copy_file(mk_tokenizer, std::filesystem::path(mk_out) / "tokenizer.json",
                                 std::filesystem::copy_options::overwrite_existing);
    std::printf("wrote %s\n", mk_out.c_str());
  });

  static ModelArgs bench_args;
  static std::string bench_ctx = "1024";
  static bool bench_json = false;
  static int bench_steps = 8;
  static bool bench_phases = false;
  auto* bench = app.add_subcommand("bench", "decode and prefill speed against the roofline measured in the same run");
  bench_args.add(bench);
  bench->add_option("--ctx", bench_ctx, "comma-separated context lengths");
  bench->add_option("--decode-steps", bench_steps, "decode steps timed per context (median)");
  bench->add_flag("--json", bench_json, "one JSON object per context length");
  bench->add_flag("--profile", bench_phases, "also time each forward phase (attention parts, MoE, hyper-connections, head)");
  static SpecBenchArgs bench_spec;
  bench->add_option("--verify-max", bench_spec.verify_max,
                    "also time verification steps of k = 1..N drafts against one decode step (the speculative cost curve)");
  bench->add_option("--spec", bench_spec.mode, "also run greedy generation on real text with and without drafts: off, mtp, dspark")
      ->check(CLI::IsMember({"off", "mtp", "dspark"}));
  bench->add_option("--draft-max", bench_spec.draft_max, "tokens drafted per step at most (--spec)");
  bench->add_option("--draft-min-confidence", bench_spec.min_confidence,
                    "DSpark: end the draft at the first token whose confidence is below this (0..1)");
  bench->add_option("--spec-text", bench_spec.text, "text the --spec prompts come from (default: the model's heldout.txt)");
  bench->add_option("--spec-tokens", bench_spec.tokens, "tokens generated per prompt (--spec)");
  bench->add_option("--batch", bench_spec.batch,
                    "comma-separated batch sizes: time the decode step of B sequences in one forward instead, "
                    "against the roof that binds at each B");
  bench->callback([] { cmd_bench(bench_args, bench_ctx, bench_steps, bench_json, bench_phases, bench_spec); });

  auto* gen = app.add_subcommand("generate", "greedy generation from token ids");
  gen_args.add(gen);
  gen->add_option("--ids", gen_ids, "prompt token ids")->required();
  gen->add_option("-n", gen_n, "tokens to generate");
  gen->callback([] { cmd_generate(gen_args, gen_ids, gen_n); });
}

}  // namespace dsv4::cli
