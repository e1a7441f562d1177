"""Minimal safetensors reader/writer (numpy only) and the V4 number-format codecs.

Safetensors layout: u64 little-endian header length, JSON header (name -> dtype, shape,
data_offsets relative to the end of the header), raw little-endian tensor bytes.
numpy has no bf16 / fp8 types, so those are carried as uint16 / uint8 code arrays and
decoded with the exact tables below (all decodes are exact in fp32).
"""
import json
import os
import struct

import numpy as np

# safetensors dtype -> numpy storage dtype
_NP = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "I8": np.int8,
       "U8": np.uint8, "BF16": np.uint16, "F16": np.float16,
       "F8_E4M3": np.uint8, "F8_E8M0": np.uint8}


def read_safetensors(path):
    """Returns {name: (dtype_str, np.ndarray of storage type)}."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n).decode("utf-8"))
        base = 8 + n
        raw = np.fromfile(f, dtype=np.uint8, offset=0)
    out = {}
    for name, info in hdr.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        dt = _NP[info["dtype"]]
        arr = raw[a:b].view(dt).reshape(info["shape"]) if b > a else np.zeros(info["shape"], dt)
        out[name] = (info["dtype"], arr)
    assert base > 0
    return out


def write_safetensors(path, tensors):
    """tensors: {name: (dtype_str, np.ndarray)} in the order given. Header padded to 8 bytes."""
    hdr, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, (dt, arr) in tensors.items():
        arr = np.ascontiguousarray(arr.astype(_NP[dt], copy=False))
        b = arr.tobytes()
        hdr[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_checkpoint(d):
    """All tensors of a sharded checkpoint directory (index json) or a single file."""
    idx = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) \
        else ["model.safetensors"]
    out = {}
    for fn in files:
        out.update(read_safetensors(os.path.join(d, fn)))
    return out


# ---------------------------------------------------------------- codecs (exact tables)
def _e4m3_table():
    t = np.zeros(256, np.float32)
    for c in range(256):
        s, e, m = c >> 7, (c >> 3) & 15, c & 7
        v = (2.0 ** -6) * m / 8 if e == 0 else 2.0 ** (e - 7) * (1 + m / 8)
        t[c] = -v if s else v
    t[0x7F] = t[0xFF] = np.nan
    return t


E4M3 = _e4m3_table()
E2M1 = np.array([0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6], np.float32)


def bf16_to_f32(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x):
    """Round-to-nearest-even fp32 -> bf16 code (uint16). No NaN inputs expected."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def e8m0_to_f32(u8):
    v = np.ldexp(np.float32(1), u8.astype(np.int32) - 127).astype(np.float32)
    v[u8 == 255] = np.nan
    return v


def dequant_fp8(w_u8, s_u8):
    """FP8 e4m3 [out,in] with E8M0 128x128 block scales -> fp32."""
    w = E4M3[w_u8]
    s = e8m0_to_f32(s_u8)
    s = np.repeat(np.repeat(s, 128, 0), 128, 1)[: w.shape[0], : w.shape[1]]
    return w * s


def dequant_fp4(w_i8, s_u8):
    """Packed e2m1 I8 [out,in/2] (low nibble = even index) with E8M0 1x32 scales -> fp32."""
    b = w_i8.view(np.uint8)
    w = np.empty((b.shape[0], b.shape[1] * 2), np.float32)
    w[:, 0::2] = E2M1[b & 15]
    w[:, 1::2] = E2M1[b >> 4]
    return w * np.repeat(e8m0_to_f32(s_u8), 32, 1)


def ceil_pow2_exp(p):
    """For p > 0 (fp32): integer k with 2^k = p rounded up to a power of two."""
    m, e = np.frexp(p.astype(np.float32))  # p = m * 2^e, m in [0.5, 1)
    return np.where(m == 0.5, e - 1, e).astype(np.int32)


def _rne(x):
    return np.round(x)  # numpy rounds half to even


def e4m3_code(y):
    """Round fp32 values (|y| <= 448) to e4m3 (RNE) and return the uint8 codes."""
    y = np.clip(y.astype(np.float32), -448, 448)
    a = np.abs(y)
    _, e = np.frexp(np.maximum(a, 2.0 ** -10))          # binade of |y|
    step = np.ldexp(np.float32(1), np.maximum(e - 1, -6) - 3)
    q = _rne(a / step) * step                              # exact value on the grid
    # encode the grid value
    _, e2 = np.frexp(np.maximum(q, 2.0 ** -10))
    ex = np.maximum(e2 - 1, -6)
    sub = q < 2.0 ** -6
    mant = np.where(sub, _rne(q / 2.0 ** -9), _rne(q / np.ldexp(np.float32(1), ex) * 8 - 8))
    ebits = np.where(sub, 0, ex + 7)
    code = (ebits.astype(np.int32) << 3) | mant.astype(np.int32)
    code = np.where(q == 0, 0, code) | np.where(np.signbit(y) & (q != 0), 128, 0)
    return code.astype(np.uint8)


def e2m1_code(y):
    """Round fp32 values (|y| <= 6) to e2m1 (RNE, ties to even code); return 4-bit codes."""
    a = np.abs(np.clip(y.astype(np.float32), -6, 6))
    step = np.where(a < 2, 0.5, np.where(a < 4, 1.0, 2.0)).astype(np.float32)
    q = _rne(a / step) * step
    code = np.where(q < 2, q * 2, np.where(q < 4, q + 2, q / 2 + 4)).astype(np.int32)
    return (code | np.where(np.signbit(y) & (q != 0), 8, 0)).astype(np.uint8)


def quant_fp8_weight(w):
    """fp32 [out,in] -> (e4m3 codes, E8M0 codes [ceil(out/128), ceil(in/128)]).
    Block scale 2^ceil(log2(amax/448)) (fp32 multiply by fp32(1/448)), RNE."""
    o, i = w.shape
    bo, bi = -(-o // 128), -(-i // 128)
    pad = np.zeros((bo * 128, bi * 128), np.float32)
    pad[:o, :i] = w
    blk = np.abs(pad.reshape(bo, 128, bi, 128)).max(axis=(1, 3))
    p = np.maximum(blk, np.float32(1e-4)).astype(np.float32) * np.float32(1 / 448)
    k = ceil_pow2_exp(p)
    s = np.ldexp(np.float32(1), np.repeat(np.repeat(k, 128, 0), 128, 1))[:o, :i]
    return e4m3_code(w / s), (k + 127).astype(np.uint8)


def quant_fp4_weight(w):
    """fp32 [out,in] -> (packed I8 [out,in/2], E8M0 [out,in/32]); 1x32 blocks along in."""
    o, i = w.shape
    blk = np.abs(w.reshape(o, i // 32, 32)).max(-1)
    p = np.maximum(blk, np.float32(6 * 2.0 ** -126)).astype(np.float32) * np.float32(1 / 6)
    k = ceil_pow2_exp(p)
    c = e2m1_code(w / np.ldexp(np.float32(1), np.repeat(k, 32, 1)))
    packed = (c[:, 0::2] | (c[:, 1::2] << 4)).astype(np.uint8).view(np.int8)
    return packed, (k + 127).astype(np.uint8)


def to_f32(dt, arr):
    """Decode a stored tensor that needs no companion scale."""
    if dt == "BF16":
        return bf16_to_f32(arr)
    if dt == "F8_E8M0":
        return e8m0_to_f32(arr)
    if dt == "F8_E4M3":
        return E4M3[arr]
    return arr
