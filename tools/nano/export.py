"""Export a trained dsv4-nano state to the official DeepSeek-V4 checkpoint format
(docs/architecture.md §6, fixtures README §3): HF config.json (+ inference/config.json with native
names), two safetensors shards + model.safetensors.index.json. Tokenizer files are written by
train_tokenizer.py.

Formats: FP8 e4m3 linears with 128x128 E8M0 block scales (scale 2^ceil(log2(amax/448)), RNE);
FP4 e2m1 routed experts (I8 [out,in/2], low nibble = even index, 1x32 E8M0 scales); BF16 (RNE)
for embed/head/norms/gate/compressor/weights_proj; F32 for hc_*, attn_sink, ape, gate.bias;
I64 tid2eid. The scale rule equals v4.fp8_weight_q / fp4_weight_q used for QAT, so the exported
values are exactly the weights the quantization-aware phase trained against.
"""
import argparse
import json
import os

import numpy as np
import torch

import st_io
import v4

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(os.path.dirname(HERE)), "models", "dsv4-nano")

FP8_LINEARS = ("attn.wq_a", "attn.wq_b", "attn.wkv", "attn.wo_a", "attn.wo_b", "attn.indexer.wq_b",
               "shared_experts.w1", "shared_experts.w2", "shared_experts.w3", "e_proj", "h_proj")


def tensor_format(name):
    """-> 'fp8' | 'fp4' | 'BF16' | 'F32' | 'I64' for a state-dict name."""
    if name.endswith("tid2eid"):
        return "I64"
    if "hc_" in name.split(".")[-1] or name.endswith(("attn_sink", ".ape", "gate.bias")):
        return "F32"
    if name.endswith(".weight") and ".experts." in name:
        return "fp4"
    if name.endswith(".weight") and name[:-7].endswith(FP8_LINEARS):
        return "fp8"
    return "BF16"


def hf_config(cfg):
    """Same keys and order as the fixtures' / real V4 root config.json."""
    return {
        "architectures": ["DeepseekV4ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 0, "eos_token_id": 1, "expert_dtype": "fp4" if cfg.expert_fp4 else None,
        "hc_eps": cfg.hc_eps, "hc_mult": cfg.hc_mult, "hc_sinkhorn_iters": cfg.sinkhorn_iters,
        "head_dim": cfg.head_dim, "hidden_act": "silu", "hidden_size": cfg.dim,
        "index_head_dim": cfg.index_head_dim, "index_n_heads": cfg.index_n_heads,
        "index_topk": cfg.index_topk, "initializer_range": 0.02, "max_position_embeddings": 1048576,
        "model_type": "deepseek_v4", "moe_intermediate_size": cfg.moe_inter,
        "n_routed_experts": cfg.n_experts, "n_shared_experts": 1, "norm_topk_prob": True,
        "num_attention_heads": cfg.n_heads, "num_experts_per_tok": cfg.n_act,
        "num_hash_layers": cfg.n_hash_layers, "num_hidden_layers": cfg.n_layers,
        "num_key_value_heads": 1, "num_nextn_predict_layers": cfg.n_mtp, "o_groups": cfg.o_groups,
        "o_lora_rank": cfg.o_lora_rank, "q_lora_rank": cfg.q_lora_rank, "qk_rope_head_dim": cfg.rope_dim,
        "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                "scale_fmt": "ue8m0", "weight_block_size": [128, 128]},
        "rms_norm_eps": cfg.eps,
        "rope_scaling": {"beta_fast": int(cfg.beta_fast), "beta_slow": int(cfg.beta_slow),
                         "factor": int(cfg.rope_factor),
                         "original_max_position_embeddings": cfg.original_seq_len, "type": "yarn"},
        "rope_theta": int(cfg.rope_theta), "routed_scaling_factor": cfg.route_scale,
        "scoring_func": "sqrtsoftplus", "sliding_window": cfg.window, "swiglu_limit": cfg.swiglu_limit,
        "tie_word_embeddings": False, "topk_method": "noaux_tc", "torch_dtype": "bfloat16",
        "transformers_version": "4.57.1", "use_cache": True, "vocab_size": cfg.vocab_size,
        "compress_rope_theta": int(cfg.compress_rope_theta), "compress_ratios": list(cfg.compress_ratios),
    }


def native_config(cfg):
    return {
        "vocab_size": cfg.vocab_size, "dim": cfg.dim, "moe_inter_dim": cfg.moe_inter,
        "n_layers": cfg.n_layers, "n_hash_layers": cfg.n_hash_layers, "n_heads": cfg.n_heads,
        "n_routed_experts": cfg.n_experts, "n_shared_experts": 1, "n_activated_experts": cfg.n_act,
        "score_func": "sqrtsoftplus", "route_scale": cfg.route_scale, "swiglu_limit": cfg.swiglu_limit,
        "q_lora_rank": cfg.q_lora_rank, "head_dim": cfg.head_dim, "rope_head_dim": cfg.rope_dim,
        "o_groups": cfg.o_groups, "o_lora_rank": cfg.o_lora_rank, "window_size": cfg.window,
        "original_seq_len": cfg.original_seq_len, "rope_theta": int(cfg.rope_theta),
        "rope_factor": int(cfg.rope_factor), "beta_fast": int(cfg.beta_fast),
        "beta_slow": int(cfg.beta_slow), "index_n_heads": cfg.index_n_heads,
        "index_head_dim": cfg.index_head_dim, "index_topk": cfg.index_topk, "hc_mult": cfg.hc_mult,
        "hc_sinkhorn_iters": cfg.sinkhorn_iters, "dtype": "fp8", "scale_fmt": "ue8m0",
        "expert_dtype": "fp4", "compress_rope_theta": int(cfg.compress_rope_theta),
        "compress_ratios": list(cfg.compress_ratios),
    }


def encode_state(sd):
    """{name: fp32 tensor} -> {checkpoint name: (dtype, np array)}."""
    out = {}
    for name in sorted(sd):
        w = sd[name].detach().cpu()
        fmt = tensor_format(name)
        base = name[:-7]
        if fmt == "fp8":
            q, s = st_io.quant_fp8_weight(w.float().numpy())
            out[name], out[base + ".scale"] = ("F8_E4M3", q), ("F8_E8M0", s)
        elif fmt == "fp4":
            q, s = st_io.quant_fp4_weight(w.float().numpy())
            out[name], out[base + ".scale"] = ("I8", q), ("F8_E8M0", s)
        elif fmt == "BF16":
            out[name] = ("BF16", st_io.f32_to_bf16(w.float().numpy()))
        elif fmt == "F32":
            out[name] = ("F32", w.float().numpy())
        else:
            out[name] = ("I64", w.long().numpy())
    return out


def shard_of(name, n_layers):
    """Shard 1: embed + first half of the layers; shard 2: the rest, head, hc_head, mtp (as fixtures)."""
    if name.startswith("embed."):
        return 1
    if name.startswith("layers."):
        return 1 if int(name.split(".")[1]) < (n_layers + 1) // 2 else 2
    return 2


def export(sd, cfg, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    enc = encode_state(sd)
    shards = {1: {}, 2: {}}
    for k, v in enc.items():
        shards[shard_of(k, cfg.n_layers)][k] = v
    wmap, total = {}, 0
    for i, tensors in shards.items():
        fn = f"model-{i:05d}-of-00002.safetensors"
        st_io.write_safetensors(os.path.join(out_dir, fn), tensors)
        for k, (dt, a) in tensors.items():
            wmap[k] = fn
            total += a.nbytes
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(wmap.items()))}, f, indent=2)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf_config(cfg), f, indent=2)
    os.makedirs(os.path.join(out_dir, "inference"), exist_ok=True)
    with open(os.path.join(out_dir, "inference", "config.json"), "w") as f:
        json.dump(native_config(cfg), f, indent=4)
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 0, "eos_token_id": 1, "do_sample": True, "temperature": 1.0,
                   "top_p": 1.0}, f, indent=2)
    return enc, total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=os.path.join(HERE, "work", "final.pt"))
    ap.add_argument("--out", default=OUT)
    a = ap.parse_args()
    st = torch.load(a.ckpt)
    cfg = v4.Config(**st["config"])
    model = v4.Transformer(cfg)
    model.load_state_dict(st["model"])
    _, total = export(model.state_dict(), cfg, a.out)
    print(f"exported {sum(p.numel() for p in model.parameters()):,} parameters, {total:,} tensor bytes -> {a.out}")


if __name__ == "__main__":
    main()
