"""Train a small byte-level BPE tokenizer (4096 ids) on the train corpus and write it as a Hugging
Face tokenizer.json with the structure of the real V4 tokenizer (same normalizer, pre_tokenizer
regexes, post_processor, decoder, BPE model keys, added-token flags) plus tokenizer_config.json.

Id layout (mirrors V4): 0 BOS, 1 EOS, 2 pad (in the vocab and in added_tokens), 3..258 the 256
byte symbols, then merges; the V4 chat/tool special tokens take the last ids (added_tokens only,
like V4's ids >= 128000). Merge selection: highest pair count, ties -> smallest pair (deterministic).
"""
import argparse
import collections
import heapq
import json
import os

from tok import B2U, Tokenizer, split_isolated
import regex

HERE = os.path.dirname(os.path.abspath(__file__))
REAL = "/work/shared/tokenizer/deepseek-v4/tokenizer.json"
SPECIAL_HEAD = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"]
SPECIAL_TAIL = ["<｜User｜>", "<｜Assistant｜>", "<think>", "</think>", "｜DSML｜", "<｜latest_reminder｜>",
                "<｜action｜>", "<｜query｜>", "<｜authority｜>", "<｜domain｜>", "<｜title｜>",
                "<｜extracted_url｜>", "<｜read_url｜>"]


def train_bpe(words, n_merges):
    """words: Counter of byte-level strings. Returns the merge list [(a, b), ...]."""
    wl = [(list(w), c) for w, c in words.items()]
    pairs = collections.Counter()
    where = collections.defaultdict(set)
    for wi, (s, c) in enumerate(wl):
        for p in zip(s, s[1:]):
            pairs[p] += c
            where[p].add(wi)
    heap = [(-c, p) for p, c in pairs.items()]
    heapq.heapify(heap)
    merges = []
    while len(merges) < n_merges and heap:
        nc, p = heapq.heappop(heap)
        if pairs.get(p, 0) != -nc or nc == 0:
            continue  # stale heap entry
        merges.append(p)
        a, b = p
        touched = set()
        for wi in list(where[p]):
            s, c = wl[wi]
            for q in zip(s, s[1:]):
                pairs[q] -= c
                touched.add(q)
            out, i = [], 0
            while i < len(s):
                if i < len(s) - 1 and s[i] == a and s[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            wl[wi] = (out, c)
            for q in zip(out, out[1:]):
                pairs[q] += c
                where[q].add(wi)
                touched.add(q)
        del pairs[p]
        for q in touched:
            if q != p and pairs.get(q, 0) > 0:
                heapq.heappush(heap, (-pairs[q], q))
    return merges


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", default=os.path.join(HERE, "work", "tokenizer_train.txt"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.dirname(HERE)), "models", "dsv4-nano"))
    ap.add_argument("--vocab", type=int, default=4096)
    a = ap.parse_args()
    real = json.load(open(REAL, encoding="utf-8"))
    pats = [regex.compile(p["pattern"]["Regex"]) for p in real["pre_tokenizer"]["pretokenizers"] if p["type"] == "Split"]
    words = collections.Counter()
    for para in open(a.text, encoding="utf-8").read().split("\n\n"):
        pieces = [para + "\n\n"]
        for p in pats:
            pieces = split_isolated(pieces, p)
        words.update("".join(B2U[b] for b in x.encode("utf-8")) for x in pieces)
    n_base = len(SPECIAL_HEAD) + 256
    n_merges = a.vocab - n_base - len(SPECIAL_TAIL)
    merges = train_bpe(words, n_merges)
    vocab = {s: i for i, s in enumerate(SPECIAL_HEAD)}
    for b in range(256):
        vocab[B2U[b]] = len(vocab)
    for x, y in merges:
        vocab[x + y] = len(vocab)
    assert len(vocab) == a.vocab - len(SPECIAL_TAIL)

    def added(i, s, head):  # flags copied from the real V4 file
        return {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": not head, "special": head}
    added_tokens = [added(i, s, True) for i, s in enumerate(SPECIAL_HEAD)]
    added_tokens += [added(len(vocab) + i, s, False) for i, s in enumerate(SPECIAL_TAIL)]
    model = {k: v for k, v in real["model"].items() if k not in ("vocab", "merges")}
    model["vocab"] = vocab
    model["merges"] = [f"{x} {y}" for x, y in merges]
    tj = {"version": real["version"], "truncation": None, "padding": None, "added_tokens": added_tokens,
          "normalizer": real["normalizer"], "pre_tokenizer": real["pre_tokenizer"],
          "post_processor": real["post_processor"], "decoder": real["decoder"], "model": model}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=None, separators=(",", ":"))
    cfg = json.load(open(os.path.join(os.path.dirname(REAL), "tokenizer_config.json"), encoding="utf-8"))
    cfg["model_max_length"] = 1048576
    with open(os.path.join(a.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=2)
    tk = Tokenizer(os.path.join(a.out, "tokenizer.json"))
    sample = "In the beginning God created the heaven and the earth.<｜User｜>Hi<｜Assistant｜></think>ok<｜end▁of▁sentence｜>"
    ids = tk.encode(sample)
    assert tk.decode(ids) == sample
    held = open(os.path.join(a.out, "heldout.txt"), encoding="utf-8").read() if os.path.exists(os.path.join(a.out, "heldout.txt")) else ""
    print(f"vocab {tk.n_vocab} ({len(merges)} merges); sample -> {len(ids)} tokens; "
          f"heldout.txt {len(held)} chars -> {len(tk.encode(held, special=False))} tokens")


if __name__ == "__main__":
    main()
