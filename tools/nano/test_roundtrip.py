"""Export -> reload -> dequantize round-trip test.

Every reloaded tensor must equal, bit for bit, the training-time quantized value of the source
weight: FP8 linears == v4.fp8_weight_q(w) (the QAT fake-quant), FP4 experts == v4.fp4_weight_q(w),
BF16 tensors == RNE bf16 rounding of w, F32 / I64 unchanged. The checkpoint's tensor names,
dtypes and scale shapes must match the official tiny-flash fixture (same layer schedule).
usage: test_roundtrip.py [--ckpt work/final.pt]   (default: a freshly initialised model)
"""
import argparse
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export  # noqa: E402
import st_io  # noqa: E402
import train  # noqa: E402
import v4  # noqa: E402

FIXTURE = "/work/shared/fixtures/tiny-flash"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.ckpt:
        st = torch.load(a.ckpt)
        cfg = v4.Config(**st["config"])
        src = v4.Transformer(cfg)
        src.load_state_dict(st["model"])
    else:
        cfg = v4.Config(**train.NANO)
        src = v4.Transformer(cfg)
        train.init_weights(src, cfg, 7)
        with torch.no_grad():  # exercise non-trivial values everywhere
            for n, p in src.named_parameters():
                p.add_(torch.randn_like(p) * 0.01)
            for l in src.layers:
                if not l.ffn.gate.hashed:
                    l.ffn.gate.bias.normal_(0, 0.1)
    sd = src.state_dict()
    fails = 0
    with tempfile.TemporaryDirectory() as d:
        export.export(sd, cfg, d)
        tensors = st_io.load_checkpoint(d)
        dst = v4.Transformer(v4.Config.from_hf(__import__("json").load(open(os.path.join(d, "config.json")))))
        v4.load_state(dst, tensors)
        for name, w in sd.items():
            got = dst.state_dict()[name]
            fmt = export.tensor_format(name)
            if fmt == "fp8":
                want = v4.fp8_weight_q(w.float())
            elif fmt == "fp4":
                want = v4.fp4_weight_q(w.float())
            elif fmt == "BF16":
                want = w.float().bfloat16().float()
            else:
                want = w
            if not torch.equal(got, want.to(got.dtype)):
                fails += 1
                print("MISMATCH", name, fmt, (got.float() - want.float()).abs().max().item())
        # naming / dtype / shape layout vs the official fixture (identical schedule [0,4,128,4]+[0])
        ref = st_io.load_checkpoint(FIXTURE)
        mine = {k: (dt, a.ndim) for k, (dt, a) in tensors.items()}
        theirs = {k: (dt, a.ndim) for k, (dt, a) in ref.items()}
        if set(mine) != set(theirs):
            fails += 1
            print("name set differs from fixture:", sorted(set(mine) ^ set(theirs))[:10])
        bad = [k for k in mine if k in theirs and mine[k] != theirs[k]]
        for k in bad:
            print("dtype/rank differs from fixture:", k, mine[k], theirs[k])
        fails += len(bad)
        # FP8 scale shapes must be ceil(out/128) x ceil(in/128); FP4 scales out x in/32
        for k, (dt, arr) in tensors.items():
            if dt == "F8_E4M3":
                o, i = arr.shape
                if tensors[k[:-7] + ".scale"][1].shape != (-(-o // 128), -(-i // 128)):
                    fails += 1
                    print("bad fp8 scale shape", k)
            if dt == "I8":
                o, i2 = arr.shape
                if tensors[k[:-7] + ".scale"][1].shape != (o, i2 * 2 // 32):
                    fails += 1
                    print("bad fp4 scale shape", k)
        print(f"{len(sd)} tensors checked, {len(tensors)} checkpoint tensors, "
              f"{sum(x[1].nbytes for x in tensors.values()):,} bytes")
    print("ROUNDTRIP OK" if fails == 0 else f"ROUNDTRIP FAILED ({fails})")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
