"""Plot the training log (work/train_log.csv) to models/dsv4-nano/loss.png and copy the CSV next
to it (models/dsv4-nano/train_log.csv) so the model card's curve is reproducible from data."""
import csv
import json
import os
import shutil
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(os.path.dirname(os.path.dirname(HERE)), "models", "dsv4-nano")


def smooth(v, k=25):
    out, acc = [], []
    for x in v:
        acc.append(x)
        if len(acc) > k:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def main():
    log = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "work", "train_log.csv")
    rows = list(csv.DictReader(open(log)))
    tok = [int(r["tokens"]) / 1e6 for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(tok, [float(r["loss"]) for r in rows], color="#9ec5e8", lw=0.6)
    ax.plot(tok, smooth([float(r["loss"]) for r in rows]), color="#1f77b4", lw=1.6, label="next-token CE (train)")
    ax.plot(tok, smooth([float(r["mtp_loss"]) for r in rows]), color="#ff7f0e", lw=1.2, label="MTP CE, token t+2 (train)")
    ax.plot(tok, smooth([float(r["idx_loss"]) for r in rows]), color="#2ca02c", lw=1.0, label="indexer KL")
    q = [t for t, r in zip(tok, rows) if r["qat"] == "1"]
    if q:
        ax.axvspan(q[0], tok[-1], color="#eeeeee", zorder=0, label="quantization-aware phase")
    ev = os.path.join(MODEL, "eval.json")
    if os.path.exists(ev):
        e = json.load(open(ev))
        ax.axhline(e["heldout_ce_nats"], color="#d62728", ls="--", lw=1,
                   label=f"held-out CE, exported FP8/FP4 ({e['heldout_ce_nats']:.3f})")
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("nats / token")
    ax.set_ylim(0, 9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"dsv4-nano training ({len(rows)} steps, {float(rows[-1]['elapsed_s']) / 60:.0f} min, 1 CPU thread)", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(MODEL, "loss.png"))
    shutil.copy(log, os.path.join(MODEL, "train_log.csv"))
    print("wrote", os.path.join(MODEL, "loss.png"))


if __name__ == "__main__":
    main()
