"""Independent PyTorch implementation of the DeepSeek-V4 forward pass (docs/architecture.md §4; bare §
numbers below refer to that document).

All activations are fp32, like the fixtures' oracle (fixtures README §6). Two numeric modes:
  NQ        (rt.quant False): exactly-dequantized weights, no activation/KV/index quantization.
  quantized (rt.quant True):  FP8 1x128 act round-trip before every FP8/FP4 linear except wo_a,
                              KV nope FP8 round-trip (64-blocks), indexer q/k FP4 round-trip (32-blocks).
One causal forward over a whole sequence gives logits at every position; this equals the
reference's prefill + teacher-forced decode (compressor entry j is visible at t iff j < (t+1)//R).

The module tree mirrors the checkpoint names (layers.L.attn.wq_a.weight, mtp.0.e_proj.weight, ...),
so state_dict() keys are the checkpoint names minus the FP8/FP4 `.scale` companions.
Training support: rt.ste=True makes every rounding a straight-through estimator and rt.wq=True
fake-quantizes the FP8/FP4 weights, so late training can see the deployed numerics.
"""
import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

F32 = torch.float32


# ----------------------------------------------------------------------------- config
@dataclass
class Config:
    vocab_size: int = 4096
    dim: int = 256
    n_layers: int = 4
    n_hash_layers: int = 1
    n_heads: int = 4
    head_dim: int = 128
    rope_dim: int = 64
    q_lora_rank: int = 128
    o_groups: int = 2
    o_lora_rank: int = 64
    window: int = 32
    index_n_heads: int = 8
    index_head_dim: int = 128
    index_topk: int = 8
    n_experts: int = 8
    n_act: int = 2
    moe_inter: int = 128
    route_scale: float = 1.5
    swiglu_limit: float = 10.0
    hc_mult: int = 4
    sinkhorn_iters: int = 20
    hc_eps: float = 1e-6
    eps: float = 1e-6
    rope_theta: float = 10000.0
    compress_rope_theta: float = 160000.0
    rope_factor: float = 16.0
    original_seq_len: int = 65536
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    compress_ratios: list = field(default_factory=lambda: [0, 4, 128, 4, 0])
    expert_fp4: bool = True
    n_mtp: int = 1

    @staticmethod
    def from_hf(c):
        rs = c.get("rope_scaling") or {}
        n_layers = c["num_hidden_layers"]
        return Config(
            vocab_size=c["vocab_size"], dim=c["hidden_size"], n_layers=n_layers,
            n_hash_layers=c.get("num_hash_layers", 0), n_heads=c["num_attention_heads"],
            head_dim=c["head_dim"], rope_dim=c["qk_rope_head_dim"], q_lora_rank=c["q_lora_rank"],
            o_groups=c["o_groups"], o_lora_rank=c["o_lora_rank"], window=c["sliding_window"],
            index_n_heads=c["index_n_heads"], index_head_dim=c["index_head_dim"],
            index_topk=c["index_topk"], n_experts=c["n_routed_experts"],
            n_act=c["num_experts_per_tok"], moe_inter=c["moe_intermediate_size"],
            route_scale=c["routed_scaling_factor"], swiglu_limit=c.get("swiglu_limit", 0.0),
            hc_mult=c["hc_mult"], sinkhorn_iters=c["hc_sinkhorn_iters"],
            hc_eps=c.get("hc_eps", 1e-6), eps=c.get("rms_norm_eps", 1e-6),
            rope_theta=c["rope_theta"], compress_rope_theta=c["compress_rope_theta"],
            rope_factor=rs.get("factor", 1.0),
            original_seq_len=rs.get("original_max_position_embeddings", 0),
            beta_fast=rs.get("beta_fast", 32), beta_slow=rs.get("beta_slow", 1),
            compress_ratios=list(c["compress_ratios"]),
            expert_fp4=c.get("expert_dtype") == "fp4",
            n_mtp=len(c["compress_ratios"]) - n_layers)


class Runtime:
    """Numeric switches shared by all modules."""
    def __init__(self, quant=False, ste=False, wq=False):
        self.quant, self.ste, self.wq = quant, ste, wq


# ----------------------------------------------------------------------------- quantization ops
_INV448 = torch.tensor(1 / 448, dtype=F32)
_INV6 = torch.tensor(1 / 6, dtype=F32)


def ceil_pow2(p):
    """p > 0 fp32 -> 2^ceil(log2 p), exact (frexp: p = m 2^e, m in [0.5,1))."""
    m, e = torch.frexp(p)
    e = torch.where(m == 0.5, e - 1, e)
    return torch.ldexp(torch.ones_like(p), e)


def round_e4m3(y):
    """RNE onto the e4m3fn grid; |y| <= 448 expected (callers clamp). Exact in fp32."""
    a = y.abs()
    _, e = torch.frexp(torch.clamp(a, min=2.0 ** -10))
    step = torch.ldexp(torch.ones_like(a), torch.clamp(e - 1, min=-6) - 3)
    return torch.round(y / step) * step  # torch.round is half-to-even; steps are powers of two


def round_e2m1(y):
    """RNE onto {0,.5,1,1.5,2,3,4,6}: within each binade the grid is uniform, and an even
    multiple of the step is an even code, so half-even rounding of y/step = ties to even code."""
    a = y.abs()
    step = torch.where(a < 2, 0.5, torch.where(a < 4, 1.0, 2.0)).to(y.dtype)
    return torch.round(y / step) * step


def _ste(x, q, rt):
    return x + (q - x).detach() if (rt is not None and rt.ste and x.requires_grad) else q


def act_quant(x, rt, block=128):
    """FP8 e4m3 round-trip per 1 x block along the last dim, ceil-pow2 scales (§3.2 rules 1/2)."""
    sh = x.shape
    xb = x.detach().reshape(*sh[:-1], sh[-1] // block, block)
    amax = torch.clamp(xb.abs().amax(-1, keepdim=True), min=1e-4)
    s = ceil_pow2(amax * _INV448)
    q = (round_e4m3(torch.clamp(xb / s, -448, 448)) * s).reshape(sh)
    return _ste(x, q, rt)


def fp4_quant(x, rt, block=32):
    """FP4 e2m1 round-trip per 1 x 32 (§3.2 rule 3)."""
    sh = x.shape
    xb = x.detach().reshape(*sh[:-1], sh[-1] // block, block)
    amax = torch.clamp(xb.abs().amax(-1, keepdim=True), min=6 * 2.0 ** -126)
    s = ceil_pow2(amax * _INV6)
    q = (round_e2m1(torch.clamp(xb / s, -6, 6)) * s).reshape(sh)
    return _ste(x, q, rt)


def fp8_weight_q(w):
    """Value of the exported FP8 weight: 128x128 blocks, scale 2^ceil(log2(amax/448)), RNE."""
    o, i = w.shape
    bo, bi = -(-o // 128), -(-i // 128)
    wp = F.pad(w.detach(), (0, bi * 128 - i, 0, bo * 128 - o))
    blk = wp.view(bo, 128, bi, 128).abs().amax((1, 3))
    s = ceil_pow2(torch.clamp(blk, min=1e-4) * _INV448)
    s = s.repeat_interleave(128, 0).repeat_interleave(128, 1)[:o, :i]
    return round_e4m3(torch.clamp(w.detach() / s, -448, 448)) * s


def fp4_weight_q(w):
    """Value of the exported FP4 weight: 1x32 blocks along the input dim."""
    o, i = w.shape
    wb = w.detach().view(o, i // 32, 32)
    s = ceil_pow2(torch.clamp(wb.abs().amax(-1, keepdim=True), min=6 * 2.0 ** -126) * _INV6)
    return (round_e2m1(torch.clamp(wb / s, -6, 6)) * s).view(o, i)


def hadamard(n):
    """Natural-order Sylvester Walsh-Hadamard matrix, H[i][j] = (-1)^popcount(i&j)."""
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


# ----------------------------------------------------------------------------- basic modules
class Linear(nn.Module):
    """kind: 'fp8' / 'fp4' (quantized weight, activation FP8 round-trip in quantized mode),
    'wo_a' (FP8 weight but plain GEMM, §4.15), 'plain' (bf16/fp32 weight used in fp32)."""
    def __init__(self, i, o, kind, rt):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(o, i))
        self.kind, self.rt = kind, rt

    def w(self):
        if self.rt.wq and self.kind in ("fp8", "fp4", "wo_a"):
            q = fp4_weight_q(self.weight) if self.kind == "fp4" else fp8_weight_q(self.weight)
            return self.weight + (q - self.weight).detach() if self.weight.requires_grad else q
        return self.weight

    def forward(self, x):
        if self.rt.quant and self.kind in ("fp8", "fp4"):
            x = act_quant(x, self.rt)
        return F.linear(x, self.w())


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rope_freqs(cfg, ratio):
    """Per-layer inverse frequencies (§4.7): base 10000 without YaRN for ratio 0,
    compress_rope_theta with YaRN (no mscale) for ratio > 0."""
    r = cfg.rope_dim
    base = cfg.compress_rope_theta if ratio else cfg.rope_theta
    f = 1.0 / (base ** (torch.arange(0, r, 2, dtype=F32) / r))
    if ratio and cfg.original_seq_len > 0:
        def corr(b):
            return r * math.log(cfg.original_seq_len / (b * 2 * math.pi)) / (2 * math.log(base))
        low = max(math.floor(corr(cfg.beta_fast)), 0)
        high = min(math.ceil(corr(cfg.beta_slow)), r - 1)
        if low == high:
            high += 0.001
        ramp = torch.clamp((torch.arange(r // 2, dtype=F32) - low) / (high - low), 0, 1)
        smooth = 1 - ramp
        f = f / cfg.rope_factor * (1 - smooth) + f * smooth
    return f


def rope_cs(freqs, pos):
    th = torch.outer(pos.to(F32), freqs)  # fp32 product, as the reference
    return torch.cos(th), torch.sin(th)


def apply_rope(x, cos, sin, inverse=False):
    """Interleaved pairs on the LAST rope dims. cos/sin broadcast to [..., r/2]."""
    r = cos.shape[-1] * 2
    nope, pe = x[..., :-r], x[..., -r:]
    a, b = pe[..., 0::2], pe[..., 1::2]
    if inverse:
        sin = -sin
    out = torch.stack([a * cos - b * sin, a * sin + b * cos], -1).flatten(-2)
    return torch.cat([nope, out], -1)


# ----------------------------------------------------------------------------- compressor / indexer
class Compressor(nn.Module):
    """Pools groups of R tokens into one vector (§4.11). Overlap (R=4): slots = previous group's
    half A + current group's half B. Returns entries for complete groups only."""
    def __init__(self, cfg, rt, ratio, d_c, is_index):
        super().__init__()
        self.R, self.d_c, self.overlap, self.is_index = ratio, d_c, ratio == 4, is_index
        c = 2 if self.overlap else 1
        self.wkv = Linear(cfg.dim, c * d_c, "plain", rt)
        self.wgate = Linear(cfg.dim, c * d_c, "plain", rt)
        self.ape = nn.Parameter(torch.zeros(ratio, c * d_c))
        self.norm = RMSNorm(d_c, cfg.eps)
        self.rt = rt

    def forward(self, x, freqs):
        B, S, _ = x.shape
        R, dc = self.R, self.d_c
        n = S // R
        if n == 0:
            return x.new_zeros(B, 0, dc)
        x = x[:, : n * R]
        a = self.wkv(x).view(B, n, R, -1)
        g = (self.wgate(x).view(B, n, R, -1) + self.ape)  # ape[t mod R]
        if self.overlap:
            pa = torch.cat([a.new_zeros(B, 1, R, dc), a[:, :-1, :, :dc]], 1)
            pg = torch.cat([g.new_full((B, 1, R, dc), float("-inf")), g[:, :-1, :, :dc]], 1)
            a = torch.cat([pa, a[..., dc:]], 2)
            g = torch.cat([pg, g[..., dc:]], 2)
        e = (torch.softmax(g, 2) * a).sum(2)
        e = self.norm(e)
        cos, sin = rope_cs(freqs, torch.arange(n) * R)  # position of the group's FIRST token
        e = apply_rope(e, cos, sin)
        if self.is_index:
            e = e @ (hadamard(dc) * dc ** -0.5).to(e)
            if self.rt.quant:
                e = fp4_quant(e, self.rt)
        elif self.rt.quant:
            e = torch.cat([act_quant(e[..., :-64], self.rt, 64), e[..., -64:]], -1)
        return e


class Indexer(nn.Module):
    """Lightning indexer (§4.13). Scores I[t,j] = sum_h w_h relu(<qI_h, K_j>)."""
    def __init__(self, cfg, rt):
        super().__init__()
        self.nh, self.hd, self.topk = cfg.index_n_heads, cfg.index_head_dim, cfg.index_topk
        self.wq_b = Linear(cfg.q_lora_rank, self.nh * self.hd, "fp8", rt)
        self.weights_proj = Linear(cfg.dim, self.nh, "plain", rt)
        self.compressor = Compressor(cfg, rt, 4, self.hd, True)
        self.rt = rt

    def scores(self, x, qr, freqs, cos, sin):
        B, S, _ = x.shape
        q = self.wq_b(qr).view(B, S, self.nh, self.hd)
        q = apply_rope(q, cos[:, None], sin[:, None])
        q = q @ (hadamard(self.hd) * self.hd ** -0.5).to(q)
        if self.rt.quant:
            q = fp4_quant(q, self.rt)
        k = self.compressor(x, freqs)                                 # [B, n, hd]
        w = self.weights_proj(x) * (self.hd ** -0.5 * self.nh ** -0.5)  # [B, S, nh]
        s = torch.relu(torch.einsum("bshd,bnd->bshn", q, k))
        return torch.einsum("bshn,bsh->bsn", s, w)                    # [B, S, n]


# ----------------------------------------------------------------------------- attention
class Attention(nn.Module):
    def __init__(self, cfg, rt, ratio):
        super().__init__()
        D, H, d = cfg.dim, cfg.n_heads, cfg.head_dim
        self.cfg, self.rt, self.ratio = cfg, rt, ratio
        self.attn_sink = nn.Parameter(torch.zeros(H))
        self.wq_a = Linear(D, cfg.q_lora_rank, "fp8", rt)
        self.q_norm = RMSNorm(cfg.q_lora_rank, cfg.eps)
        self.wq_b = Linear(cfg.q_lora_rank, H * d, "fp8", rt)
        self.wkv = Linear(D, d, "fp8", rt)
        self.kv_norm = RMSNorm(d, cfg.eps)
        self.wo_a = Linear(H * d // cfg.o_groups, cfg.o_groups * cfg.o_lora_rank, "wo_a", rt)
        self.wo_b = Linear(cfg.o_groups * cfg.o_lora_rank, D, "fp8", rt)
        if ratio:
            self.compressor = Compressor(cfg, rt, ratio, d, False)
        if ratio == 4:
            self.indexer = Indexer(cfg, rt)
        self.register_buffer("freqs", rope_freqs(cfg, ratio), persistent=False)
        self.aux = None  # indexer distillation loss of the last training forward
        self.keep_sel, self.last_sel = False, None  # debug: record the top-k selection

    def forward(self, x):
        cfg, rt = self.cfg, self.rt
        B, S, _ = x.shape
        H, d, r = cfg.n_heads, cfg.head_dim, cfg.rope_dim
        pos = torch.arange(S)
        cos, sin = rope_cs(self.freqs, pos)
        qr = self.q_norm(self.wq_a(x))
        q = self.wq_b(qr).view(B, S, H, d)
        q = q * torch.rsqrt(q.pow(2).mean(-1, keepdim=True) + cfg.eps)  # unweighted per-head RMS
        q = apply_rope(q, cos[:, None], sin[:, None])
        kv = apply_rope(self.kv_norm(self.wkv(x)), cos, sin)
        if rt.quant:
            kv = torch.cat([act_quant(kv[..., :-r], rt, 64), kv[..., -r:]], -1)
        # window part (keys max(0, t-w+1) .. t), computed in blocks of w queries that see their
        # own and the previous key block; queries are padded to a multiple of w (pad rows dropped)
        w = cfg.window
        nb = -(-S // w)
        Sp = nb * w
        qp = F.pad(q, (0, 0, 0, 0, 0, Sp - S))
        kb = F.pad(kv, (0, 0, 0, Sp - S)).view(B, nb, w, d)
        kwin = torch.cat([torch.cat([kb.new_zeros(B, 1, w, d), kb[:, :-1]], 1), kb], 2)  # [B,nb,2w,d]
        qpos = torch.arange(Sp).view(nb, w, 1)
        kpos = (torch.arange(nb).view(nb, 1, 1) - 1) * w + torch.arange(2 * w).view(1, 1, 2 * w)
        wmask = (kpos <= qpos) & (kpos > qpos - w) & (kpos >= 0)
        sw = torch.einsum("bnqhd,bnkd->bhnqk", qp.view(B, nb, w, H, d), kwin) * d ** -0.5
        parts = [sw.masked_fill(~wmask, float("-inf")).reshape(B, H, Sp, 2 * w)]
        n = 0
        if self.ratio:
            ce = self.compressor(x, self.freqs)                     # [B, n, d]
            n = ce.shape[1]
            vis = (torch.arange(n)[None, :] < ((pos + 1) // self.ratio)[:, None]).expand(B, S, n)
            if self.ratio == 4 and n > 0:
                xi, qi = (x.detach(), qr.detach()) if self.training else (x, qr)
                I = self.indexer.scores(xi, qi, self.freqs, cos, sin)
                Im = I.masked_fill(~vis, float("-inf"))
                # deterministic tie rule: stable descending sort, lower j wins
                order = torch.sort(Im.detach(), dim=-1, descending=True, stable=True).indices
                k = min(cfg.index_topk, n)
                sel = torch.zeros_like(vis).scatter(-1, order[..., :k], True) & vis
                if self.keep_sel:
                    self.last_sel = sel
            else:
                sel = vis
            if n:
                sc = torch.einsum("bshd,bnd->bhsn", qp, ce) * d ** -0.5
                selp = torch.cat([sel, sel.new_zeros(B, Sp - S, n)], 1)
                if self.keep_sel:
                    self.last_sc, self.last_vis = sc[:, :, :S], vis
                parts.append(sc.masked_fill(~selp[:, None], float("-inf")))
        sink = self.attn_sink.view(1, H, 1, 1).expand(B, H, Sp, 1)
        p = torch.softmax(torch.cat(parts + [sink], -1), -1)
        o = torch.einsum("bhnqk,bnkd->bnqhd", p[..., : 2 * w].reshape(B, H, nb, w, 2 * w), kwin).reshape(B, Sp, H, d)
        if n:
            o = o + torch.einsum("bhsn,bnd->bshd", p[..., 2 * w: 2 * w + n], ce)
        o = o[:, :S]
        if self.training and self.ratio == 4 and n > 0:
            self.aux = self._indexer_loss(sc[:, :, :S].detach(), vis, Im)
        o = apply_rope(o, cos[:, None], sin[:, None], inverse=True)  # de-rotate at query position
        G = cfg.o_groups
        o = o.reshape(B, S, G, H // G * d)
        wa = self.wo_a.w().view(G, cfg.o_lora_rank, H // G * d)
        u = torch.einsum("bsgi,goi->bsgo", o, wa)                  # grouped, no act quant
        return self.wo_b(u.reshape(B, S, G * cfg.o_lora_rank))

    @staticmethod
    def _indexer_loss(csc, vis, I):
        """KL(target || softmax(I)) over visible compressed entries, target = main attention's
        dense distribution over ALL visible compressed entries, summed over heads (detached)."""
        ok = vis.sum(-1) >= 2
        if not ok.any():
            return None
        tgt = torch.softmax(csc.masked_fill(~vis[:, None], float("-inf")), -1)
        tgt = torch.nan_to_num(tgt).sum(1)
        tgt = tgt / tgt.sum(-1, keepdim=True).clamp(min=1e-9)
        logq = torch.log_softmax(I, -1)
        kl = (tgt * (torch.log(tgt.clamp(min=1e-12)) - logq.clamp(min=-1e4))).masked_fill(~vis, 0)
        return kl.sum(-1)[ok].mean()


# ----------------------------------------------------------------------------- MoE
class Expert(nn.Module):
    def __init__(self, cfg, rt, kind):
        super().__init__()
        D, I = cfg.dim, cfg.moe_inter
        self.w1, self.w3 = Linear(D, I, kind, rt), Linear(D, I, kind, rt)
        self.w2 = Linear(I, D, kind, rt)
        self.lim = cfg.swiglu_limit

    def forward(self, x, wt=None):
        g, u = self.w1(x), self.w3(x)
        if self.lim > 0:
            u = torch.clamp(u, -self.lim, self.lim)
            g = torch.clamp(g, max=self.lim)  # gate clamped from above only
        h = F.silu(g) * u
        if wt is not None:
            h = h * wt  # routing weight before w2
        return self.w2(h)


class Gate(nn.Module):
    def __init__(self, cfg, rt, hashed):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cfg.n_experts, cfg.dim))
        self.hashed, self.k, self.scale = hashed, cfg.n_act, cfg.route_scale
        if hashed:
            self.register_buffer("tid2eid", torch.zeros(cfg.vocab_size, cfg.n_act, dtype=torch.long))
        else:
            self.register_buffer("bias", torch.zeros(cfg.n_experts))

    def forward(self, x, ids):
        s = torch.sqrt(F.softplus(x @ self.weight.t()))  # sqrtsoftplus
        if self.hashed:
            idx = self.tid2eid[ids]
        else:
            idx = torch.topk((s + self.bias).detach(), self.k, -1).indices  # bias selects only
        w = s.gather(-1, idx)
        w = w / w.sum(-1, keepdim=True) * self.scale
        return w, idx


class MoE(nn.Module):
    def __init__(self, cfg, rt, hashed):
        super().__init__()
        self.gate = Gate(cfg, rt, hashed)
        kind = "fp4" if cfg.expert_fp4 else "fp8"
        self.experts = nn.ModuleList([Expert(cfg, rt, kind) for _ in range(cfg.n_experts)])
        self.shared_experts = Expert(cfg, rt, "fp8")
        self.load = None  # per-expert token counts of the last forward (bias balancing)

    def forward(self, x, ids):
        sh = x.shape
        x = x.reshape(-1, sh[-1])
        w, idx = self.gate(x, ids.reshape(-1))
        y = torch.zeros_like(x)
        counts = torch.bincount(idx.reshape(-1), minlength=len(self.experts))
        self.load = counts.detach()
        for e in range(len(self.experts)):  # ascending expert id
            if counts[e] == 0:
                continue
            tok, slot = torch.nonzero(idx == e, as_tuple=True)
            y = y.index_add(0, tok, self.experts[e](x[tok], w[tok, slot, None]))
        y = y + self.shared_experts(x)
        return y.view(sh)


# ----------------------------------------------------------------------------- hyper-connections
def sinkhorn(C, iters, eps):
    C = torch.softmax(C, -1) + eps
    C = C / (C.sum(-2, keepdim=True) + eps)
    for _ in range(iters - 1):
        C = C / (C.sum(-1, keepdim=True) + eps)
        C = C / (C.sum(-2, keepdim=True) + eps)
    return C


def hc_mix(X, fn, eps):
    v = X.flatten(-2)
    return (v @ fn.t()) * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + eps)


class Block(nn.Module):
    def __init__(self, cfg, rt, layer_id, ratio):
        super().__init__()
        D, n = cfg.dim, cfg.hc_mult
        self.cfg = cfg
        self.attn_norm, self.ffn_norm = RMSNorm(D, cfg.eps), RMSNorm(D, cfg.eps)
        self.attn = Attention(cfg, rt, ratio)
        self.ffn = MoE(cfg, rt, layer_id < cfg.n_hash_layers)
        mix = (2 + n) * n
        for s in ("attn", "ffn"):
            setattr(self, f"hc_{s}_fn", nn.Parameter(torch.zeros(mix, n * D)))
            setattr(self, f"hc_{s}_base", nn.Parameter(torch.zeros(mix)))
            setattr(self, f"hc_{s}_scale", nn.Parameter(torch.ones(3)))

    def hc_pre(self, X, fn, scale, base):
        cfg, n = self.cfg, self.cfg.hc_mult
        m = hc_mix(X, fn, cfg.eps)
        pre = torch.sigmoid(m[..., :n] * scale[0] + base[:n]) + cfg.hc_eps
        post = 2 * torch.sigmoid(m[..., n:2 * n] * scale[1] + base[n:2 * n])
        C = (m[..., 2 * n:] * scale[2] + base[2 * n:]).unflatten(-1, (n, n))
        C = sinkhorn(C, cfg.sinkhorn_iters, cfg.hc_eps)
        x = (pre.unsqueeze(-1) * X).sum(-2)
        return x, post, C

    @staticmethod
    def hc_post(f, X, post, C):
        # destination stream j uses column j of C: X'_j = post_j f + sum_i C[i,j] X_i
        return post.unsqueeze(-1) * f.unsqueeze(-2) + torch.einsum("...ij,...id->...jd", C, X)

    def forward(self, X, ids):
        x, post, C = self.hc_pre(X, self.hc_attn_fn, self.hc_attn_scale, self.hc_attn_base)
        X = self.hc_post(self.attn(self.attn_norm(x)), X, post, C)
        x, post, C = self.hc_pre(X, self.hc_ffn_fn, self.hc_ffn_scale, self.hc_ffn_base)
        return self.hc_post(self.ffn(self.ffn_norm(x), ids), X, post, C)


class HCHead(nn.Module):
    """hc_head: pre weights without Sinkhorn, collapse the streams (§4.18)."""
    @staticmethod
    def apply(X, fn, scale, base, cfg):
        m = hc_mix(X, fn, cfg.eps)
        pre = torch.sigmoid(m * scale + base) + cfg.hc_eps
        return (pre.unsqueeze(-1) * X).sum(-2)


class MTP(Block):
    def __init__(self, cfg, rt, layer_id):
        super().__init__(cfg, rt, layer_id, 0)
        D, n = cfg.dim, cfg.hc_mult
        self.e_proj, self.h_proj = Linear(D, D, "fp8", rt), Linear(D, D, "fp8", rt)
        self.enorm, self.hnorm, self.norm = RMSNorm(D, cfg.eps), RMSNorm(D, cfg.eps), RMSNorm(D, cfg.eps)
        self.hc_head_fn = nn.Parameter(torch.zeros(n, n * D))
        self.hc_head_base = nn.Parameter(torch.zeros(n))
        self.hc_head_scale = nn.Parameter(torch.ones(1))

    def run(self, Xmain, emb_next, ids_next):
        """Xmain [B,S,n,D] main final streams at t; emb_next = E[ids[t+1]]; predicts t+2."""
        X = self.e_proj(self.enorm(emb_next)).unsqueeze(-2) + self.h_proj(self.hnorm(Xmain))
        X = self.forward(X, ids_next)
        return self.norm(HCHead.apply(X, self.hc_head_fn, self.hc_head_scale, self.hc_head_base, self.cfg))


class Embed(nn.Module):
    def __init__(self, v, d):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(v, d))


class Transformer(nn.Module):
    def __init__(self, cfg, rt=None):
        super().__init__()
        self.cfg, self.rt = cfg, rt or Runtime()
        rt, D, n = self.rt, cfg.dim, cfg.hc_mult
        self.embed = Embed(cfg.vocab_size, D)
        self.layers = nn.ModuleList([Block(cfg, rt, i, cfg.compress_ratios[i]) for i in range(cfg.n_layers)])
        self.norm = RMSNorm(D, cfg.eps)
        self.head = Linear(D, cfg.vocab_size, "plain", rt)
        self.hc_head_fn = nn.Parameter(torch.zeros(n, n * D))
        self.hc_head_base = nn.Parameter(torch.zeros(n))
        self.hc_head_scale = nn.Parameter(torch.ones(1))
        self.mtp = nn.ModuleList([MTP(cfg, rt, cfg.n_layers + i) for i in range(cfg.n_mtp)])

    def forward(self, ids, mtp=True, return_streams=False):
        """ids [B,S] -> logits [B,S,V] (position t predicts t+1) and, if mtp, MTP logits
        [B,S-1,V] (row t uses streams at t and token t+1, predicts t+2)."""
        cfg = self.cfg
        h = F.embedding(ids, self.embed.weight)
        X = h.unsqueeze(-2).expand(*h.shape[:-1], cfg.hc_mult, cfg.dim)
        outs = []
        for layer in self.layers:
            X = layer(X, ids)
            outs.append(X)
        z = self.norm(HCHead.apply(X, self.hc_head_fn, self.hc_head_scale, self.hc_head_base, cfg))
        logits = self.head(z)
        ml = None
        if mtp and self.cfg.n_mtp and ids.shape[1] > 1:
            zm = self.mtp[0].run(X[:, :-1], F.embedding(ids[:, 1:], self.embed.weight), ids[:, 1:])
            ml = self.head(zm)
        if return_streams:
            return logits, ml, outs
        return logits, ml


# ----------------------------------------------------------------------------- checkpoint loading
def load_state(model, tensors):
    """Fill the model from decoded checkpoint tensors {name: (dtype, np array)} (st_io format).
    FP8/FP4 weights are dequantized exactly; wo_a too (the reference dequantizes it)."""
    import numpy as np
    import st_io
    sd = model.state_dict()
    done = set()
    for name, (dt, arr) in tensors.items():
        if name.endswith(".scale") and name[:-6] + ".weight" in tensors:
            continue
        if dt == "I8":
            v = st_io.dequant_fp4(arr, tensors[name[:-7] + ".scale"][1])
        elif dt == "F8_E4M3":
            v = st_io.dequant_fp8(arr, tensors[name[:-7] + ".scale"][1])
        else:
            v = st_io.to_f32(dt, arr)
        key = name
        if key not in sd:
            raise KeyError(f"unexpected tensor {name}")
        t = torch.from_numpy(np.ascontiguousarray(v))
        if sd[key].shape != t.shape:
            raise ValueError(f"{name}: {tuple(t.shape)} vs {tuple(sd[key].shape)}")
        sd[key].copy_(t.to(sd[key].dtype))
        done.add(key)
    missing = [k for k in sd if k not in done]
    if missing:
        raise KeyError(f"missing tensors: {missing[:5]} ...")
