"""Train dsv4-nano: a few-million-parameter model of the exact DeepSeek-V4 architecture (v4.py).

Every V4 mechanism is used: mHC with Sinkhorn, sliding-window layers, ratio-4 CSA with the
lightning indexer, ratio-128 HCA, hash-routed MoE layer(s), sqrtsoftplus MoE with a shared expert
and aux-loss-free bias balancing, and the MTP block (with its own loss).

Losses: CE(next token) + MTP_W * CE(token t+2 from the MTP block) + IDX_W * indexer KL.
The indexer's top-k is not differentiable, so the indexer (wq_b, weights_proj, its compressor) is
trained only by a distillation loss: KL from the main attention's distribution over ALL visible
compressed entries (summed over heads, detached) to softmax of the index scores; its inputs are
detached so this loss does not touch the main model (the DeepSeek-V3.2 recipe).
Load balancing: after each step, gate.bias += BIAS_U * sign(mean load - expert load) (biased
layers only; the bias only selects experts).
Phases: fp32 "NQ" training, then the last QAT_FRAC of steps with quantization-aware training
(FP8/FP4 weight fake-quant and activation/KV/index round-trips with straight-through gradients),
so the exported FP8/FP4 checkpoint is as good as the NQ one.

Resumable: state goes to work/ckpt.pt every SAVE_EVERY steps; rerunning continues from it.
"""
import argparse
import csv
import json
import math
import os
import time

import numpy as np
import torch

import v4
from tok import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MODEL_DIR = os.path.join(REPO, "models", "dsv4-nano")

# Model: every V4 mechanism at small scale. compress_ratios = 4 layers + 1 MTP stage.
NANO = dict(vocab_size=4096, dim=256, n_layers=4, n_hash_layers=1, n_heads=4, head_dim=128,
            rope_dim=64, q_lora_rank=128, o_groups=2, o_lora_rank=64, window=64,
            index_n_heads=8, index_head_dim=128, index_topk=16, n_experts=8, n_act=2,
            moe_inter=128, route_scale=1.5, swiglu_limit=10.0, compress_ratios=[0, 4, 128, 4, 0],
            expert_fp4=True, n_mtp=1)

MTP_W, IDX_W, BIAS_U = 0.3, 1.0, 2e-3


def chat(user, assistant):
    return f"<｜begin▁of▁sentence｜><｜User｜>{user}<｜Assistant｜></think>{assistant}<｜end▁of▁sentence｜>"


def token_stream(tk, work, seed):
    """All train documents (seeded order) as one id stream. Plain docs: BOS text EOS;
    chat docs: the DSV4 non-thinking chat format."""
    cache = os.path.join(work, "train_tokens.npy")
    if os.path.exists(cache):
        return np.load(cache)
    docs = [json.loads(l) for l in open(os.path.join(work, "docs_train.jsonl"), encoding="utf-8")]
    np.random.default_rng(seed).shuffle(docs)
    ids = []
    for d in docs:
        if d["kind"] == "plain":
            ids += [0] + tk.encode(d["text"], special=False) + [1]
        else:
            ids += tk.encode(chat(d["user"], d["assistant"]))
    arr = np.array(ids, dtype=np.int16)
    np.save(cache, arr)
    return arr


def init_weights(model, cfg, seed):
    g = torch.Generator().manual_seed(seed)
    n_out = 2 * (cfg.n_layers + cfg.n_mtp)
    for name, p in model.named_parameters():
        with torch.no_grad():
            if name == "embed.weight":
                p.normal_(0, 1.0, generator=g)
            elif name.endswith("norm.weight"):
                p.fill_(1.0)
            elif "hc_" in name and name.endswith("_fn"):
                p.normal_(0, 3e-3, generator=g)
            elif "hc_" in name and name.endswith("_base"):
                p.zero_()
                if p.numel() == (2 + cfg.hc_mult) * cfg.hc_mult:  # comb part: near-identity mixing
                    p[2 * cfg.hc_mult:].view(cfg.hc_mult, cfg.hc_mult).fill_diagonal_(2.0)
            elif "hc_" in name and name.endswith("_scale"):
                p.fill_(1.0)
            elif name.endswith("attn_sink") or name.endswith(".ape"):
                p.zero_()
            elif p.dim() == 2:
                std = p.shape[1] ** -0.5
                if name.endswith("wo_b.weight") or name.endswith("w2.weight"):
                    std /= math.sqrt(n_out)
                p.normal_(0, std, generator=g)
    for i, layer in enumerate(list(model.layers) + list(model.mtp)):
        gate = layer.ffn.gate
        if gate.hashed:  # fixed random token->experts table, distinct ids per row
            r = torch.rand(cfg.vocab_size, cfg.n_experts, generator=g)
            gate.tid2eid.copy_(r.argsort(-1)[:, : cfg.n_act])


def lr_at(step, total, peak, warm=100, floor=0.1):
    if step < warm:
        return peak * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def moe_layers(model):
    return [l.ffn for l in list(model.layers) + list(model.mtp) if not l.ffn.gate.hashed]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    ap.add_argument("--steps", type=int, default=1800)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--qat-frac", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--save-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    os.makedirs(a.work, exist_ok=True)
    tk = Tokenizer(os.path.join(MODEL_DIR, "tokenizer.json"))
    data = token_stream(tk, a.work, a.seed)
    cfg = v4.Config(**NANO)
    rt = v4.Runtime()
    model = v4.Transformer(cfg, rt)
    init_weights(model, cfg, a.seed)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "hc_" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "hc_" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    ck = os.path.join(a.work, f"ckpt{a.tag}.pt")
    log = os.path.join(a.work, f"train_log{a.tag}.csv")
    step, elapsed = 0, 0.0
    if os.path.exists(ck):
        st = torch.load(ck)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, elapsed = st["step"], st["elapsed"]
        print(f"resumed at step {step} ({elapsed:.0f}s)")
    else:
        with open(log, "w") as f:
            f.write("step,tokens,lr,loss,mtp_loss,idx_loss,qat,elapsed_s\n")
    n_params = sum(p.numel() for p in model.parameters())
    print(f"params {n_params:,}; train tokens {len(data):,}; steps {a.steps} x {a.batch} x {a.seq}")
    qat_start = int(a.steps * (1 - a.qat_frac))
    model.train()
    t0 = time.time() - elapsed
    while step < a.steps:
        qat = step >= qat_start
        rt.quant = rt.ste = rt.wq = qat
        rng = np.random.default_rng(a.seed * 100003 + step)  # per-step RNG: resume-exact batches
        starts = rng.integers(0, len(data) - a.seq - 1, a.batch)
        batch = torch.from_numpy(np.stack([data[s: s + a.seq + 1] for s in starts]).astype(np.int64))
        x, y = batch[:, :-1], batch[:, 1:]
        lr = lr_at(step, a.steps, a.lr)
        for gp in opt.param_groups:
            gp["lr"] = lr
        logits, ml = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), y.reshape(-1))
        mtp_loss = torch.nn.functional.cross_entropy(ml.reshape(-1, cfg.vocab_size), y[:, 1:].reshape(-1))
        aux = [l.attn.aux for l in model.layers if l.attn.ratio == 4 and l.attn.aux is not None]
        idx_loss = torch.stack(aux).mean() if aux else torch.zeros(())
        opt.zero_grad(set_to_none=True)
        (loss + MTP_W * mtp_loss + IDX_W * idx_loss).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():  # aux-loss-free balancing
            for moe in moe_layers(model):
                ld = moe.load.float()
                moe.gate.bias += BIAS_U * torch.sign(ld.mean() - ld)
        step += 1
        el = time.time() - t0
        with open(log, "a") as f:
            f.write(f"{step},{step * a.batch * a.seq},{lr:.6g},{loss.item():.5f},{mtp_loss.item():.5f},"
                    f"{idx_loss.item():.5f},{int(qat)},{el:.1f}\n")
        if step % 10 == 0:
            print(f"step {step} loss {loss.item():.3f} mtp {mtp_loss.item():.3f} idx {idx_loss.item():.3f} "
                  f"lr {lr:.2e} qat {int(qat)} {el:.0f}s", flush=True)
        if step % a.save_every == 0 or step == a.steps:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": el,
                        "config": NANO, "args": vars(a)}, ck + ".tmp")
            os.replace(ck + ".tmp", ck)
    torch.save({"model": model.state_dict(), "config": NANO, "steps": step, "elapsed": time.time() - t0,
                "args": vars(a)}, os.path.join(a.work, f"final{a.tag}.pt"))
    print(f"done: {step} steps in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
