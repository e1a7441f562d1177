"""Validate v4.py against the official golden fixtures (fixtures README §8).

Tier 1 (NQ mode) vs NQ.A.logits, NQ.C.logits, NQ.C.mtp_logits: max|d|/std(row) <= 2e-4 on every
row, identical argmax, identical indexer top-k sets, layer_out_streams within 1e-4 of their RMS.
Tier 2 (quantized mode) vs A.logits, A.mtp_logits, C.logits, C.mtp_logits: mean|d|/std <= 0.15,
median row max|d|/std(row) <= 0.45, argmax agreement >= 70%; layer 0 streams ~1e-5 relative.
A full causal forward equals the reference's prefill + teacher-forced decode, so each schedule is
one forward over the whole sequence; rows are taken at the schedule's positions.

usage: check_fixtures.py [fixture dirs...]   (default: tiny-flash tiny-pro)
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402
import v4  # noqa: E402

ROOT = "/work/shared/fixtures"


def rowstats(got, ref):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    d = np.abs(got - ref)
    row = d.max(1) / ref.std(1)
    return {"rows": len(ref), "row_max_med": float(np.median(row)), "row_max_max": float(row.max()),
            "mean_over_std": float(d.mean() / ref.std()),
            "argmax": int((got.argmax(1) == ref.argmax(1)).sum())}


def build(fdir, quant):
    cfg = v4.Config.from_hf(json.load(open(os.path.join(fdir, "config.json"))))
    m = v4.Transformer(cfg, v4.Runtime(quant=quant)).eval()
    v4.load_state(m, st_io.load_checkpoint(fdir))
    return cfg, m


def run(m, ids):
    with torch.no_grad():
        t = torch.tensor(ids, dtype=torch.long)[None]
        logits, ml, streams = m(t, return_streams=True)
    return logits[0].numpy(), ml[0].numpy(), [s[0] for s in streams]


def check(name):
    fdir = os.path.join(ROOT, name)
    g = {k: st_io.to_f32(dt, a) for k, (dt, a) in st_io.read_safetensors(os.path.join(fdir, "golden.safetensors")).items()}
    ids, cids = g["input_ids"].tolist(), g["C.input_ids"].tolist()
    apos, cpos = g["A.positions"], g["C.positions"]
    amp, cmp_ = g["A.mtp_positions"], g["C.mtp_positions"]
    P = int(apos[0]) + 1
    res, ok = {}, True
    for mode in ("NQ", "Q"):
        cfg, m = build(fdir, mode == "Q")
        for layer in m.layers:
            layer.attn.keep_sel = True
        la, mla, st = run(m, ids)
        tk = {li: sorted(layer.attn.last_sel[0, P - 1].nonzero().flatten().tolist())
              for li, layer in enumerate(m.layers) if layer.attn.ratio == 4}
        lc, mlc, _ = run(m, cids)
        pre = "NQ." if mode == "NQ" else ""
        r = {"A.logits": rowstats(la[apos], g[pre + "A.logits"]),
             "C.logits": rowstats(lc[cpos], g[pre + "C.logits"]),
             "C.mtp_logits": rowstats(mlc[cmp_], g[pre + "C.mtp_logits"])}
        if mode == "Q":
            r["A.mtp_logits"] = rowstats(mla[amp], g["A.mtp_logits"])
        ref_st = g[pre + "A.debug.layer_out_streams"]
        got_st = np.stack([s[P - 1].numpy() for s in st])
        rel = [float(np.abs(got_st[i] - ref_st[i]).max() / np.sqrt((ref_st[i] ** 2).mean())) for i in range(len(st))]
        r["layer_out_streams_maxrel"] = rel
        topk = {}
        for li, s in tk.items():
            ref = sorted(x for x in g[f"{pre}A.debug.indexer_topk.layer{li}"].tolist() if x >= 0)
            topk[li] = {"same": s == ref, "overlap": len(set(s) & set(ref)), "k": len(ref)}
        r["indexer_topk"] = topk
        # verdicts
        if mode == "NQ":
            passed = all(v["row_max_max"] <= 2e-4 and v["argmax"] == v["rows"]
                         for k, v in r.items() if k.endswith("logits"))
            passed &= all(t["same"] for t in topk.values()) and max(rel) <= 1e-4
        else:
            passed = all(v["mean_over_std"] <= 0.15 and v["row_max_med"] <= 0.45 and v["argmax"] >= 0.7 * v["rows"]
                         for k, v in r.items() if k.endswith("logits"))
            passed &= rel[0] <= 1e-4
        r["PASS"] = bool(passed)
        ok &= passed
        res[mode] = r
    return res, ok


def main():
    torch.set_num_threads(1)
    names = sys.argv[1:] or ["tiny-flash", "tiny-pro"]
    allok = True
    for n in names:
        res, ok = check(n)
        allok &= ok
        for mode, r in res.items():
            tier = "tier-1 (NQ)" if mode == "NQ" else "tier-2 (quantized)"
            print(f"== {n} {tier}: {'PASS' if r['PASS'] else 'FAIL'}")
            for k, v in r.items():
                if k.endswith("logits"):
                    print(f"  {k:14s} rows {v['rows']:3d}  row max|d|/std: median {v['row_max_med']:.2e} max {v['row_max_max']:.2e}"
                          f"  mean|d|/std {v['mean_over_std']:.2e}  argmax {v['argmax']}/{v['rows']}")
            print("  layer_out_streams max|d|/rms per layer:", " ".join(f"{x:.1e}" for x in r["layer_out_streams_maxrel"]))
            print("  indexer top-k at P-1:", r["indexer_topk"])
    print("ALL PASS" if allok else "SOME CHECKS FAILED")
    sys.exit(0 if allok else 1)


if __name__ == "__main__":
    main()
