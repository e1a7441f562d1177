"""Pure-Python encoder/decoder for Hugging Face byte-level BPE tokenizer.json files of the V4 kind
(added tokens matched first, Sequence of Split(Isolated) regexes, ByteLevel without regex, BPE
merges by rank). Validated against the real V4 tokenizer's golden encodings (tok.py --check).
"""
import json
import sys

import regex


def bytes_to_unicode():
    """GPT-2 byte <-> printable unicode map used by the ByteLevel pre-tokenizer/decoder."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


B2U = bytes_to_unicode()
U2B = {v: k for k, v in B2U.items()}


def split_isolated(pieces, pat):
    out = []
    for p in pieces:
        last = 0
        for m in pat.finditer(p):
            if m.start() > last:
                out.append(p[last:m.start()])
            if m.end() > m.start():
                out.append(m.group())
            last = m.end()
        if last < len(p):
            out.append(p[last:])
    return out


class Tokenizer:
    def __init__(self, path):
        t = json.load(open(path, encoding="utf-8"))
        m = t["model"]
        self.vocab = m["vocab"]
        self.merges = {tuple(x.split(" ") if isinstance(x, str) else x): i for i, x in enumerate(m["merges"])}
        self.added = {a["content"]: a["id"] for a in t["added_tokens"]}
        self.id2tok = {i: s for s, i in self.vocab.items()}
        self.id2tok.update({i: s for s, i in self.added.items()})
        self.special_ids = {a["id"] for a in t["added_tokens"]}
        self.pats = [regex.compile(p["pattern"]["Regex"]) for p in t["pre_tokenizer"]["pretokenizers"]
                     if p["type"] == "Split"]
        alts = sorted(self.added, key=len, reverse=True)
        self.added_re = regex.compile("|".join(regex.escape(a) for a in alts)) if alts else None
        self.cache = {}
        self.n_vocab = max(self.id2tok) + 1

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        syms = list(word)
        while len(syms) > 1:
            best, bi = None, -1
            for i in range(len(syms) - 1):
                r = self.merges.get((syms[i], syms[i + 1]))
                if r is not None and (best is None or r < best):
                    best, bi = r, i
            if best is None:
                break
            a, b = syms[bi], syms[bi + 1]
            out, i = [], 0
            while i < len(syms):
                if i < len(syms) - 1 and syms[i] == a and syms[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            syms = out
        ids = [self.vocab[s] for s in syms]
        self.cache[word] = ids
        return ids

    def encode_plain(self, text):
        pieces = [text]
        for p in self.pats:
            pieces = split_isolated(pieces, p)
        ids = []
        for p in pieces:
            ids += self.bpe("".join(B2U[b] for b in p.encode("utf-8")))
        return ids

    def encode(self, text, special=True):
        """Added tokens are matched (leftmost-longest) before pre-tokenization; no BOS is added."""
        if not special or self.added_re is None:
            return self.encode_plain(text)
        ids, last = [], 0
        for m in self.added_re.finditer(text):
            if m.start() > last:
                ids += self.encode_plain(text[last:m.start()])
            ids.append(self.added[m.group()])
            last = m.end()
        if last < len(text):
            ids += self.encode_plain(text[last:])
        return ids

    def decode(self, ids, skip_special=False):
        out, buf = [], bytearray()
        for i in ids:
            s = self.id2tok[i]
            if i in self.special_ids and s in self.added:
                if skip_special:
                    continue
                out.append(buf.decode("utf-8", errors="replace"))
                buf = bytearray()
                out.append(s)
            else:
                buf += bytes(U2B[c] for c in s)
        out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)


def check(path="/work/shared/tokenizer/deepseek-v4/tokenizer.json",
          golden="/work/shared/tokenizer/deepseek-v4/golden-encode.jsonl"):
    """Encode the real V4 tokenizer's golden strings with this implementation."""
    tk = Tokenizer(path)
    bad = n = 0
    for line in open(golden, encoding="utf-8"):
        g = json.loads(line)
        n += 1
        if tk.encode(g["text"]) != g["ids"]:
            bad += 1
            if bad <= 3:
                print("mismatch", g["id"], g["text"][:60])
    print(f"golden encodings: {n - bad}/{n} identical")
    return bad == 0


if __name__ == "__main__":
    if "--check" in sys.argv:
        sys.exit(0 if check() else 1)
