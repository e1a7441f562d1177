"""Evaluate the EXPORTED dsv4-nano checkpoint (reloaded from disk with st_io, FP8/FP4 dequantized)
on models/dsv4-nano/heldout.txt, in quantized (reference numerics) and NQ modes.

Protocol (the C++ `dsv4 perplexity --ctx N` must reproduce it):
  1. ids = tokenizer.encode(whole file, no BOS added); the file holds no special tokens.
  2. Split ids into consecutive, non-overlapping chunks of CTX-1 tokens (the last may be shorter).
  3. Each window = [BOS(0)] + chunk, run as one fresh sequence from position 0 (fresh KV/compressor
     state per window); the prediction at window position i scores window token i+1.
  4. heldout_ce_nats = sum of -log p(token) over all scored tokens / their count; every text token
     is scored exactly once ("tokens" = len(ids)). ppl = exp(ce).
Writes models/dsv4-nano/eval.json. --sample also prints greedy chat completions.
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402
import v4  # noqa: E402
from tok import Tokenizer  # noqa: E402

MODEL = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "models", "dsv4-nano")
PROTOCOL = ("tokenize the whole file (no BOS); consecutive non-overlapping chunks of ctx-1 tokens; "
            "each window = [BOS] + chunk from position 0 with fresh state; score every chunk token "
            "(next-token CE, natural log); mean over all len(ids) scored tokens")


def load(model_dir, quant):
    cfg = v4.Config.from_hf(json.load(open(os.path.join(model_dir, "config.json"))))
    m = v4.Transformer(cfg, v4.Runtime(quant=quant)).eval()
    v4.load_state(m, st_io.load_checkpoint(model_dir))
    return m


@torch.no_grad()
def heldout_ce(m, ids, ctx):
    tot, n = 0.0, 0
    for s in range(0, len(ids), ctx - 1):
        chunk = ids[s: s + ctx - 1]
        win = torch.tensor([[0] + chunk])
        logits, _ = m(win, mtp=False)
        lp = F.log_softmax(logits[0, :-1].double(), -1)
        tot -= lp.gather(-1, win[0, 1:, None]).sum().item()
        n += len(chunk)
    return tot / n, n


@torch.no_grad()
def generate(m, tk, prompt, n=60):
    """Greedy completion of a non-thinking chat prompt (full recompute per token: tiny model)."""
    ids = tk.encode(f"<｜begin▁of▁sentence｜><｜User｜>{prompt}<｜Assistant｜></think>")
    out = []
    for _ in range(n):
        logits, _ = m(torch.tensor([ids + out]), mtp=False)
        t = int(logits[0, -1].argmax())
        if t == 1:
            break
        out.append(t)
    return tk.decode(out)


@torch.no_grad()
def diagnose(m, ids, ctx):
    """Indexer recall (share of the indexer's top-k that is also in the top-k by the main
    attention's dense distribution over visible compressed entries) and expert load balance."""
    for layer in m.layers:
        layer.attn.keep_sel = True
    win = torch.tensor([[0] + ids[: ctx - 1]])
    m(win, mtp=False)
    out = {}
    for li, layer in enumerate(m.layers):
        at = layer.attn
        if at.ratio == 4:
            k = m.cfg.index_topk
            vis = at.last_vis[0]
            rows = vis.sum(-1) > k                      # rows where top-k is a real choice
            p = torch.softmax(at.last_sc[0].masked_fill(~vis, float("-inf")), -1).nan_to_num().sum(0)
            dense = torch.zeros_like(vis).scatter(-1, p.topk(k, -1).indices, True) & vis
            rec = (dense & at.last_sel[0]).sum(-1)[rows].float() / k
            out[f"layer{li}.indexer_recall_at_{k}"] = round(rec.mean().item(), 3)
        ld = layer.ffn.load.float()
        out[f"layer{li}.expert_load_max_over_mean"] = round((ld.max() / ld.mean()).item(), 2)
    for layer in m.layers:
        layer.attn.keep_sel = False
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--sample", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    tk = Tokenizer(os.path.join(a.model, "tokenizer.json"))
    text = open(os.path.join(a.model, "heldout.txt"), encoding="utf-8").read()
    ids = tk.encode(text)
    res = {"ctx": a.ctx, "tokens": len(ids), "protocol": PROTOCOL, "file": "heldout.txt",
           "bytes": len(text.encode("utf-8"))}
    for mode in ("quantized", "nq"):
        m = load(a.model, mode == "quantized")
        ce, n = heldout_ce(m, ids, a.ctx)
        assert n == len(ids)
        key = "heldout_ce_nats" if mode == "quantized" else "heldout_ce_nats_nq"
        res[key] = round(ce, 5)
        res[key.replace("ce_nats", "ppl")] = round(math.exp(ce), 3)
        print(f"{mode:9s}: heldout CE {ce:.4f} nats/token (ppl {math.exp(ce):.2f}) over {n} tokens, ctx {a.ctx}")
        if mode == "quantized":
            res["diagnostics_first_window"] = diagnose(m, ids, a.ctx)
            print("  diagnostics:", res["diagnostics_first_window"])
        if a.sample and mode == "quantized":
            for p in ["In the beginning", "And Jesus said unto them", "What is a cynic?", "Tell me a fortune."]:
                print(f"  [{p}] -> {generate(m, tk, p)!r}")
    res["bits_per_byte"] = round(res["heldout_ce_nats"] * len(ids) / res["bytes"] / math.log(2), 4)
    with open(os.path.join(a.model, "eval.json"), "w") as f:
        json.dump(res, f, indent=2)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
