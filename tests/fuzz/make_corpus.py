#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into tests/fuzz/corpus/<target>/ from the fixtures in
tests/data and models/dsv4-nano plus a few hand-written inputs. Deterministic; rerun after changing it.
Crash reproducers found later are added by hand (named crash-*) and are not touched here."""
import json
import os
import struct
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def jsonl(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def safetensors(tensors, metadata=True, pad=True):
    """tensors: [(name, dtype, shape, bytes)] -> file bytes."""
    header, off = {}, 0
    if metadata:
        header["__metadata__"] = {"format": "pt"}
    for name, dt, shape, b in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - (len(h) + 8) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(t[3] for t in tensors)


def main():
    # safetensors: hand-made files of every dtype, edge shapes, and the real nano header (data cut off).
    st = {
        "f32": [("w", "F32", [2, 3], bytes(range(24)))],
        "bf16_f8": [("a", "BF16", [4], b"\x80\x3f" * 4), ("b", "F8_E4M3", [2, 2], b"\x38\x38\xb8\x00")],
        "scalar_empty": [("s", "F32", [], b"\0\0\x80\x3f"), ("e", "F32", [0, 5], b"")],
        "ints": [("i", "I32", [2], b"\1\0\0\0\2\0\0\0"), ("u", "U8", [3], b"abc"), ("l", "I64", [1], bytes(8))],
        "e8m0_fp4": [("sc", "F8_E8M0", [2], b"\x7f\x80"), ("q", "F4", [4], b"\x12\x34")],
    }
    for name, ts in st.items():
        put("safetensors", name, safetensors(ts))
    put("safetensors", "no_metadata", safetensors([("x", "F16", [1], b"\0\x3c")], metadata=False, pad=False))
    with open(os.path.join(ROOT, "models/dsv4-nano/model-00001-of-00002.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        f.seek(0)
        put("safetensors", "nano_header_only", f.read(8 + n))

    # checkpoint: index, then shards s1.safetensors, s2.safetensors, ... (see fuzz_checkpoint.cpp).
    sep = b"\n--8<--\n"
    s1 = safetensors([("a.weight", "F32", [2], bytes(8)), ("b.weight", "BF16", [2, 2], bytes(8))])
    s2 = safetensors([("c.weight", "F8_E4M3", [4], b"\1\2\3\4")])
    idx = {"metadata": {"total_size": 20},
           "weight_map": {"a.weight": "s1.safetensors", "b.weight": "s1.safetensors", "c.weight": "s2.safetensors"}}
    put("checkpoint", "sharded", json.dumps(idx).encode() + sep + s1 + sep + s2)
    put("checkpoint", "no_index", sep + s1 + sep + s2)
    dup = safetensors([("a.weight", "F32", [2], bytes(8))])
    put("checkpoint", "duplicate_tensor", sep + s1 + sep + dup)
    idx_missing = {"weight_map": {"a.weight": "s1.safetensors", "z.weight": "s3.safetensors"}}
    put("checkpoint", "missing_shard", json.dumps(idx_missing).encode() + sep + s1)

    # config: the real configs.
    for name, path in [("nano", "models/dsv4-nano"), ("tiny_flash", "tests/data/fixtures/tiny-flash"),
                       ("tiny_pro", "tests/data/fixtures/tiny-pro"), ("tiny_0731", "tests/data/fixtures/tiny-0731")]:
        with open(os.path.join(ROOT, path, "config.json"), "rb") as f:
            put("config", name, f.read())

    # tokenizer: byte 0 (bit 0 = parse special tokens), then text; a few golden texts per category.
    seen = {}
    for r in jsonl("tests/data/tokenizer/golden-encode.jsonl"):
        k = seen.get(r["category"], 0)
        if k >= 4 or len(r["text"].encode()) > 2000:
            continue
        seen[r["category"]] = k + 1
        put("tokenizer", r["id"], b"\x01" + r["text"].encode())
    for r in jsonl("tests/data/encoding/golden-chat.jsonl")[:6]:
        put("tokenizer", r["id"], b"\x01" + r["prompt"].encode())

    # tokenizer_json: tiny byte-level BPE files (ids 0..255 the bytes, then merges).
    def byte_map():
        bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
        cs, n = bs[:], 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        return {b: chr(c) for b, c in zip(bs, cs)}

    bm = byte_map()
    vocab = {bm[b]: b for b in range(256)}
    vocab.update({"ab": 256, "abc": 257, "cd": 258, "Ġw": 259})

    def tiny(merges, added=(), pre=None, normalizer=None):
        pre = pre or {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
        return json.dumps({"version": "1.0", "added_tokens": list(added), "normalizer": normalizer,
                           "pre_tokenizer": pre, "post_processor": None, "decoder": {"type": "ByteLevel"},
                           "model": {"type": "BPE", "dropout": None, "unk_token": None, "vocab": vocab,
                                     "merges": merges}}, ensure_ascii=False)

    def added(content, i, special=True, normalized=False, lstrip=False, rstrip=False, single_word=False):
        return {"id": i, "content": content, "special": special, "normalized": normalized, "lstrip": lstrip,
                "rstrip": rstrip, "single_word": single_word}

    merges = ["a b", "ab c", "c d", "Ġ w"]
    put("tokenizer_json", "plain", tiny(merges))
    put("tokenizer_json", "pair_merges", tiny([m.split(" ") for m in merges]))
    put("tokenizer_json", "added_tokens", tiny(merges, [
        added("<｜begin▁of▁sentence｜>", 260), added("<｜end▁of▁sentence｜>", 261),
        added("<｜User｜>", 262, lstrip=True, rstrip=True), added("word", 263, special=False, normalized=True,
                                                                single_word=True)]))
    split_seq = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    put("tokenizer_json", "split_sequence", tiny(merges, pre=split_seq))
    put("tokenizer_json", "byte_level_regex",
        tiny(merges, pre={"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}))
    for norm in ["NFC", "NFKC"]:
        put("tokenizer_json", "normalizer_" + norm.lower(),
            tiny(merges, normalizer={"type": "Sequence", "normalizers": [{"type": norm}]}))
    put("tokenizer_json", "normalizer_replace", tiny(merges, normalizer={
        "type": "Replace", "pattern": {"String": "x"}, "content": "ab"}))
    put("tokenizer_json", "split_behaviours", tiny(merges, pre={"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "[a-c]+"}, "behavior": b, "invert": inv}
        for b, inv in [("Removed", False), ("MergedWithPrevious", True), ("Contiguous", False)]] +
        [{"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}))

    # encoder: the golden conversations and their options.
    for r in jsonl("tests/data/encoding/golden-chat.jsonl"):
        put("encoder", r["id"], json.dumps({"messages": r["messages"], "options": r["options"]}, ensure_ascii=False))

    # parser: byte 0 = mode (1 = thinking), byte 1 = chunking seed, then the completion text.
    for i, r in enumerate(jsonl("tests/data/encoding/golden-parse.jsonl")):
        mode = b"\x01" if r["thinking_mode"] == "thinking" else b"\x00"
        put("parser", r["id"], mode + bytes([i * 37 % 256]) + r["text"].encode())

    # http: byte 0 = route (fuzz_http.cpp's kRoutes; 8 = a raw request), then the body.
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    reqs = {
        "chat": (0, {"model": "dsv4-nano", "messages": [{"role": "user", "content": "Who was Moses?"}],
                     "max_tokens": 4, "temperature": 0}),
        "chat_stream_tools": (0, {"messages": [{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": "Weather in Paris?"}],
                                  "tools": [tool], "tool_choice": "auto", "stream": True,
                                  "stream_options": {"include_usage": True}, "max_tokens": 3, "logprobs": True,
                                  "top_logprobs": 2, "seed": 7, "stop": ["\n"],
                                  "response_format": {"type": "json_object"}}),
        "chat_history": (0, {"messages": [{"role": "user", "content": "Hi"},
                                          {"role": "assistant", "content": "", "tool_calls": [
                                              {"id": "c1", "type": "function", "function": {
                                                  "name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}]},
                                          {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
                             "reasoning_effort": "high", "max_completion_tokens": 2, "top_p": 0.9, "top_k": 5,
                             "frequency_penalty": 0.5, "presence_penalty": 0.1, "logit_bias": {"5": 1}}),
        "completions": (1, {"prompt": "In the beginning", "max_tokens": 4, "echo": True, "logprobs": 2,
                            "temperature": 0.7}),
        "completions_stream": (1, {"prompt": ["And God said", "Let"], "max_tokens": 2, "stream": True}),
        "responses": (2, {"input": "Say hi", "instructions": "Be kind.", "max_output_tokens": 3,
                          "reasoning": {"effort": "high"}, "tools": [{"type": "function", "name": "f",
                                                                      "parameters": {"type": "object"}}]}),
        "responses_stream": (2, {"input": [{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}],
                                 "stream": True, "max_output_tokens": 2,
                                 "text": {"format": {"type": "json_schema", "name": "x",
                                                     "schema": {"type": "object"}}}}),
        "messages": (3, {"model": "dsv4-nano", "max_tokens": 3, "system": "Be brief.",
                         "messages": [{"role": "user", "content": "Hello"}],
                         "thinking": {"type": "enabled", "budget_tokens": 1024}}),
        "messages_tools_stream": (3, {"max_tokens": 2, "stream": True, "tools": [
            {"name": "get_weather", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "auto"}, "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather",
                                                    "input": {"city": "Oslo"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "cold"}]}],
            "stop_sequences": ["."], "temperature": 0.5, "top_k": 3}),
        "count_tokens": (4, {"messages": [{"role": "user", "content": "How many tokens?"}], "system": "x"}),
        "render": (5, {"messages": [{"role": "user", "content": "Render me"}], "tools": [tool]}),
        "tokenize": (6, {"content": "Hello <｜User｜> world", "with_pieces": True}),
        "detokenize": (7, {"tokens": [1, 2, 300, 4000]}),
    }
    # Nested just under the depth limit (core/json.h, 128 levels with the envelope): every recursive
    # walk over a schema or argument object runs at its deepest.
    deep = {"type": "string"}
    for _ in range(58):  # two levels each
        deep = {"type": "object", "properties": {"x": deep}}
    deep_tool = {"type": "function", "function": {"name": "deep", "parameters": deep}}
    reqs["render_deep_schema"] = (5, {"messages": [{"role": "user", "content": "x"}], "tools": [deep_tool]})
    reqs["count_tokens_deep_input"] = (4, {"messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "deep", "input": deep}]}],
        "tools": [{"name": "deep", "input_schema": deep}]})
    reqs["responses_deep_schema"] = (2, {"input": "x", "max_output_tokens": 1,
                                         "text": {"format": {"type": "json_schema", "name": "d", "schema": deep}}})
    put("encoder", "deep_schema", json.dumps({"messages": [
        {"role": "system", "content": "s", "tools": [deep_tool]}, {"role": "user", "content": "x"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
            "name": "deep", "arguments": deep["properties"]}}]}]}))
    for name, (route, body) in reqs.items():
        put("http", name, bytes([route]) + json.dumps(body, ensure_ascii=False).encode())
    for name, raw in {
        "raw_health": "GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        "raw_models": "GET /v1/models/dsv4-nano HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "raw_metrics": "GET /metrics HTTP/1.1\r\n\r\n",
        "raw_chunked": "POST /tokenize HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "7\r\n{\"conte\r\n9\r\nnt\":\"hi\"}\r\n0\r\n\r\n",
        "raw_404": "POST /v2/nothing HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
    }.items():
        put("http", name, b"\x08" + raw.encode())


if __name__ == "__main__":
    sys.exit(main())
