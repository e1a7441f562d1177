"""Build the dsv4-nano text corpus from public-domain / freely licensed Debian package data.

Sources (installed by setup.sh):
  bible-kjv-text  King James Bible (public domain), dumped with `bible -f Gen1:1-Rev22:21`
  dict-devil      Ambrose Bierce, "The Devil's Dictionary" (public domain)
  fortunes-min    fortune-mod data files fortunes, literature, riddles (BSD licence)

Output (work dir, default tools/nano/work/, not committed):
  docs_train.jsonl, docs_heldout.jsonl   one document per line:
      {"kind": "plain", "text": ...} or {"kind": "chat", "user": ..., "assistant": ...}
  tokenizer_train.txt                    raw text of the train documents (tokenizer training)
and models/dsv4-nano/heldout.txt: ~40 KB of held-out plain text (committed, used by CI).

The split is deterministic: a unit (Bible chapter, dictionary entry, fortune) is held out iff
md5(key) % 40 == 0. Chat documents are derived from train units only, with a seeded RNG.
"""
import argparse
import gzip
import hashlib
import json
import os
import random
import re
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

BOOKS = ("Genesis Exodus Leviticus Numbers Deuteronomy Joshua Judges Ruth 1_Samuel 2_Samuel 1_Kings "
         "2_Kings 1_Chronicles 2_Chronicles Ezra Nehemiah Esther Job Psalms Proverbs Ecclesiastes "
         "Song_of_Solomon Isaiah Jeremiah Lamentations Ezekiel Daniel Hosea Joel Amos Obadiah Jonah "
         "Micah Nahum Habakkuk Zephaniah Haggai Zechariah Malachi Matthew Mark Luke John Acts Romans "
         "1_Corinthians 2_Corinthians Galatians Ephesians Philippians Colossians 1_Thessalonians "
         "2_Thessalonians 1_Timothy 2_Timothy Titus Philemon Hebrews James 1_Peter 2_Peter 1_John "
         "2_John 3_John Jude Revelation").split(" ")
BOOKS = [b.replace("_", " ") for b in BOOKS]


def heldout(key):
    return int(hashlib.md5(key.encode()).hexdigest(), 16) % 40 == 0


def clean(s):
    s = s.replace("\t", "    ").replace("\r", "")
    s = re.sub(r"[ ]+\n", "\n", s)
    return s.strip()


def bible_chapters():
    out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout
    abbrevs, chapters = [], {}
    for line in out.splitlines():
        m = re.match(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$", line)
        if not m:
            continue
        ab, ch, text = m.group(1), int(m.group(2)), m.group(4).strip()
        if ab not in abbrevs:
            abbrevs.append(ab)
        chapters.setdefault((ab, ch), []).append(text)
    assert len(abbrevs) == 66, len(abbrevs)
    names = dict(zip(abbrevs, BOOKS))
    return [(f"{names[ab]} {ch}", verses) for (ab, ch), verses in chapters.items()]


def devil_entries():
    raw = gzip.open("/usr/share/dictd/devil.dict.dz", "rt", encoding="latin-1").read()
    raw = raw[raw.index("\nA, ") if "\nA, " in raw else raw.index("\nABASEMENT"):]
    ents = []
    for block in re.split(r"\n(?=[A-Z][A-Z'\- ]+, [a-z.]+\s)", raw):
        block = clean(block)
        m = re.match(r"^([A-Z][A-Z'\- ]+), ", block)
        if m and len(block) > 20:
            ents.append((m.group(1).strip(), block))
    return ents


def fortunes():
    out = []
    for fn in ("fortunes", "literature", "riddles"):
        txt = open(f"/usr/share/games/fortunes/{fn}", encoding="utf-8", errors="replace").read()
        for f in txt.split("\n%\n"):
            f = clean(f.strip("%\n"))
            if 10 < len(f) < 1200:
                out.append((fn, f))
    return out


def chapter_text(key, verses):
    return key + "\n" + "\n".join(verses)


CHAT_FORTUNE = ["Tell me a fortune.", "Give me a quote.", "Say something wise.", "Fortune",
                "Tell me something.", "Quote of the day?"]
CHAT_DEVIL = ["What is {w}?", "Define {w}.", "{W}", "What does {w} mean?", "Devil's Dictionary: {w}"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    ap.add_argument("--heldout-out", default=os.path.join(REPO, "models", "dsv4-nano", "heldout.txt"))
    ap.add_argument("--heldout-bytes", type=int, default=40000)
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    rng = random.Random(a.seed)
    train, held = [], []

    for key, verses in bible_chapters():
        doc = {"kind": "plain", "text": chapter_text(key, verses), "src": "kjv"}
        if heldout(key):
            held.append(doc)
            continue
        train.append(doc)
        # chat turns: a verse start -> its continuation (rest of the verse + up to 2 verses)
        for _ in range(3):
            i = rng.randrange(len(verses))
            words = verses[i].split(" ")
            if len(words) < 6:
                continue
            n = rng.randint(2, min(10, len(words) - 3))
            rest = " ".join(words[n:])
            follow = verses[i + 1: i + 1 + rng.randint(0, 2)]
            train.append({"kind": "chat", "user": " ".join(words[:n]),
                          "assistant": "\n".join([rest] + follow), "src": "kjv"})
        if rng.random() < 0.3:  # "Book C" -> opening verses
            train.append({"kind": "chat", "user": key, "assistant": "\n".join(verses[:3]), "src": "kjv"})

    for word, entry in devil_entries():
        doc = {"kind": "plain", "text": entry, "src": "devil"}
        if heldout("devil:" + word):
            held.append(doc)
            continue
        train.append(doc)
        q = rng.choice(CHAT_DEVIL).format(w=word.lower(), W=word.capitalize())
        train.append({"kind": "chat", "user": q, "assistant": entry, "src": "devil"})

    for fn, f in fortunes():
        doc = {"kind": "plain", "text": f, "src": "fortune"}
        if heldout("fortune:" + f):
            held.append(doc)
            continue
        train.append(doc)
        m = re.search(r"^A:\s*(.*?)\nQ:\s*(.*)$", f, re.S)
        if m:  # "questions for the great answers": ask the Q, answer with the A
            train.append({"kind": "chat", "user": m.group(2).strip(), "assistant": m.group(1).strip(), "src": fn})
        else:
            train.append({"kind": "chat", "user": rng.choice(CHAT_FORTUNE), "assistant": f, "src": fn})

    rng.shuffle(train)
    with open(os.path.join(a.work, "docs_train.jsonl"), "w") as fo:
        for d in train:
            fo.write(json.dumps(d, ensure_ascii=False) + "\n")
    with open(os.path.join(a.work, "docs_heldout.jsonl"), "w") as fo:
        for d in held:
            fo.write(json.dumps(d, ensure_ascii=False) + "\n")
    with open(os.path.join(a.work, "tokenizer_train.txt"), "w") as fo:
        for d in train:
            fo.write((d["text"] if d["kind"] == "plain" else d["user"] + "\n" + d["assistant"]) + "\n\n")

    # committed held-out slice: held-out documents in corpus order, separated by blank lines,
    # cut at a document boundary once --heldout-bytes is reached; interleave sources.
    by = {}
    for d in held:
        by.setdefault(d["src"], []).append(d["text"])
    order, parts, size = ["kjv", "devil", "fortune"], [], 0
    idx = {s: 0 for s in order}
    while size < a.heldout_bytes and any(idx[s] < len(by.get(s, [])) for s in order):
        for s in order:
            if idx[s] < len(by.get(s, [])) and size < a.heldout_bytes:
                t = by[s][idx[s]]
                idx[s] += 1
                parts.append(t)
                size += len(t.encode()) + 2
    os.makedirs(os.path.dirname(a.heldout_out), exist_ok=True)
    with open(a.heldout_out, "w") as fo:
        fo.write("\n\n".join(parts) + "\n")
    nplain = sum(d["kind"] == "plain" for d in train)
    print(f"train docs {len(train)} ({nplain} plain, {len(train) - nplain} chat), heldout docs {len(held)}, "
          f"heldout.txt {os.path.getsize(a.heldout_out)} bytes, "
          f"tokenizer text {os.path.getsize(os.path.join(a.work, 'tokenizer_train.txt'))} bytes")


if __name__ == "__main__":
    main()
