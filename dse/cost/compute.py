"""Compute cost: FLOPs and HBM bytes of every op of a transformer layer, and their roofline time.

An *op* is ``Op(kind, flops, bytes)`` for one chip: ``kind`` is ``"mm"`` (a matmul on the matrix
units), ``"attn"`` (the attention core: scores, softmax, context), or ``"vec"`` (element-wise /
normalisation work on the vector units). Its time is a roofline with achievable efficiency:

    t = max(flops / (peak * eff(flops)), bytes / (hbm_bw * eff_hbm)) + overhead

where for matmuls ``eff(F) = eff_max * F / (F + F_half)``: a matmul of ``F_half`` FLOPs reaches
half of the best efficiency (small matmuls run far below peak: tiles, waves and launch costs). The
same curve with ``attention_max`` applies to the attention core. ``eff_*`` are one calibration per
chip (``conf/hardware/*.yaml``, with provenance).

Builders return the forward ops of one layer for one chip; backward costs twice the forward
(two matmuls per forward matmul: input and weight gradients); recompute adds forward ops again.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from dse.specs import Chip, Model

ACT = 2.0  # bytes of an activation element outside matmul inputs (bf16)


class Op(NamedTuple):
    kind: str          # "mm" | "attn" | "vec"
    flops: jnp.ndarray
    bytes: jnp.ndarray


def _saturating(flops, half, top):
    """Time factor (flops + half) / top, i.e. flops / (top * flops / (flops + half)), safe at 0."""
    return (flops + half) / top


def op_time(op: Op, chip: Chip, peak) -> jnp.ndarray:
    """Roofline time of one op on one chip, s. ``peak``: matrix FLOP/s for the weight matmuls'
    dtype; the attention core always runs at the bf16 peak (W8A8 / FP8 quantise weight GEMMs,
    while scores and softmax stay in 16-bit)."""
    mem = op.bytes / (chip.hbm_bw * chip.eff_hbm)
    if op.kind == "vec":
        comp = op.flops / chip.vector_flops
    elif op.kind == "attn":
        comp = _saturating(op.flops, chip.eff_matmul_half_flop, chip.flops_bf16 * chip.eff_attention_max)
    else:
        comp = _saturating(op.flops, chip.eff_matmul_half_flop, peak * chip.eff_matmul_max)
    busy = jnp.maximum(comp, mem)
    return jnp.where(op.flops + op.bytes > 0, busy + chip.op_overhead_s, 0.0)


def ops_time(ops, chip: Chip, peak) -> jnp.ndarray:
    return sum(op_time(o, chip, peak) for o in ops)


def ops_flops(ops) -> jnp.ndarray:
    return sum(o.flops for o in ops if o.kind != "vec")


def ops_bytes(ops) -> jnp.ndarray:
    return sum(o.bytes for o in ops)


def matmul(m, k, n, in_bytes, w_bytes, out_bytes=ACT) -> Op:
    """(m x k) @ (k x n): 2mkn FLOPs; reads input and weights, writes output."""
    return Op("mm", 2.0 * m * k * n, m * k * in_bytes + k * n * w_bytes + m * n * out_bytes)


def vector(elements, bytes_per_element, flops_per_element=4.0) -> Op:
    return Op("vec", flops_per_element * elements, elements * bytes_per_element)


# ----------------------------------------------------------------------------------------------
# attention projections
# ----------------------------------------------------------------------------------------------
def attention_widths(model: Model):
    """(query width, key width, value width, output-projection input width) per token, all heads."""
    if model.attention == "mla":
        qk = model.qk_nope_dim + model.qk_rope_dim
        return model.heads * qk, model.heads * qk, model.heads * model.v_head_dim, model.heads * model.v_head_dim
    hq = model.heads * model.head_dim
    hkv = model.kv_heads * model.head_dim
    return hq, hkv, hkv, hq


def qkv_projection_ops(model: Model, tokens, tp, ab, wb):
    """Projections from the hidden state to queries, keys and values for ``tokens`` tokens."""
    h = model.hidden
    if model.attention == "mla":
        qk = model.qk_nope_dim + model.qk_rope_dim
        has_q_lora = model.q_lora_rank > 0
        q_in = jnp.where(has_q_lora, model.q_lora_rank, h)
        ops = [
            matmul(tokens, h, model.q_lora_rank, ab, wb),                          # q down (replicated)
            matmul(tokens, q_in, model.heads * qk / tp, ab, wb),                    # q up
            matmul(tokens, h, model.kv_lora_rank + model.qk_rope_dim, ab, wb),      # kv down (replicated)
            matmul(tokens, model.kv_lora_rank, model.heads * (model.qk_nope_dim + model.v_head_dim) / tp, ab, wb),
            vector(tokens * (model.q_lora_rank + model.kv_lora_rank), 2 * ACT),     # latent norms
        ]
        return ops
    hq, hk, hv, _ = attention_widths(model)
    kv_per_tp = jnp.maximum((hk + hv) / tp, 2.0 * model.head_dim)  # kv heads replicate when tp > kv_heads
    return [matmul(tokens, h, hq / tp + kv_per_tp, ab, wb)]


def output_projection_op(model: Model, tokens, tp, ab, wb) -> Op:
    _, _, _, hout = attention_widths(model)
    return matmul(tokens, hout / tp, model.hidden, ab, wb)


def attention_core_ops(model: Model, seqs, q_len, k_len, tp, flash, causal, training):
    """Scores, softmax and context for ``seqs`` sequences of ``q_len`` queries over ``k_len`` keys.

    ``flash`` (0/1): fused kernel that never writes the score matrix to HBM and skips the masked
    half when ``causal``; otherwise scores and probabilities round-trip through HBM (and dropout
    masks when ``training``), and the full square is computed as in Megatron (2021-22).
    """
    hq, hk, hv, _ = attention_widths(model)
    heads = model.heads / tp
    qk_dim = hq / model.heads
    v_dim = hv / model.heads
    pairs = seqs * heads * q_len * k_len                      # score elements on this chip
    skip = jnp.where(causal, 0.5, 1.0)
    f_flash = 2.0 * pairs * (qk_dim + v_dim) * skip
    io = seqs * (q_len * (hq + hv) + k_len * (hk + hv)) / tp * ACT
    fused = Op("attn", flash * f_flash, flash * io)
    drop = 5.0 if training else 0.0
    unfused = [
        Op("attn", (1 - flash) * 2.0 * pairs * qk_dim, (1 - flash) * (pairs * ACT + seqs * (q_len * hq + k_len * hk) / tp * ACT)),
        vector((1 - flash) * pairs, 2 * ACT + drop),                              # scale-mask-softmax (+dropout)
        Op("attn", (1 - flash) * 2.0 * pairs * v_dim, (1 - flash) * (pairs * ACT + seqs * k_len * hv / tp * ACT)),
    ]
    return [fused] + unfused


def mla_absorbed_decode_ops(model: Model, seqs, q_len, ctx, tp, kvb):
    """MLA decode with absorbed up-projections (DeepSeek): queries attend to the compressed cache.

    Per query token and head: absorb W_UK (nope x kv_lora), scores over (kv_lora + rope) per key,
    context over kv_lora, absorb W_UV (kv_lora x v). The cache (kv_lora + rope per token) is read once
    per sequence per step, shared by all heads and all ``q_len`` queries.
    """
    heads = model.heads / tp
    r, rope = model.kv_lora_rank, model.qk_rope_dim
    tokens = seqs * q_len
    f_core = 2.0 * tokens * heads * ctx * (2.0 * r + rope)
    cache = seqs * ctx * (r + rope) * kvb
    return [
        matmul(tokens * heads, model.qk_nope_dim, r, ACT, ACT),                    # q absorb (per head weights)
        Op("attn", f_core, cache + tokens * heads * (r + rope) * ACT),
        matmul(tokens * heads, r, model.v_head_dim, ACT, ACT),                     # v absorb
    ]


def gqa_decode_ops(model: Model, seqs, q_len, ctx, tp, kvb):
    """Decode attention for MHA/GQA: every query token attends to ``ctx`` cached keys/values."""
    heads = model.heads / tp
    kv_heads = jnp.maximum(model.kv_heads / tp, 1.0)
    tokens = seqs * q_len
    f = 4.0 * tokens * heads * ctx * model.head_dim
    cache = seqs * ctx * 2.0 * kv_heads * model.head_dim * kvb
    return [Op("attn", f, cache + tokens * heads * model.head_dim * 2 * ACT)]


# ----------------------------------------------------------------------------------------------
# feed-forward
# ----------------------------------------------------------------------------------------------
def dense_ffn_ops(model: Model, tokens, width, tp, ab, wb):
    """Dense (or shared-expert) FFN of ``width`` for ``tokens`` tokens, split ``tp`` ways."""
    up = model.ffn_mats - 1.0
    return [
        matmul(tokens, model.hidden, up * width / tp, ab, wb),
        vector(tokens * width / tp, (up + 1.0) * ACT),                              # activation (x gate)
        matmul(tokens, width / tp, model.hidden, ab, wb),
    ]


def expert_ffn_ops(model: Model, tokens_in, experts_local, tokens_group, ab, wb):
    """Routed experts on one chip: ``tokens_in`` token-expert assignments arrive for its
    ``experts_local`` experts. Each expert's weights are read once per step if it gets any token:
    with ``tokens_group`` assignments spread over all experts, a given expert is active with
    probability 1 - exp(-tokens_group / experts)."""
    ef, h, up = model.expert_ffn, model.hidden, model.ffn_mats - 1.0
    active = experts_local * (1.0 - jnp.exp(-tokens_group / jnp.maximum(model.experts, 1.0)))
    w = active * model.ffn_mats * h * ef * wb
    flops = 2.0 * tokens_in * h * ef * model.ffn_mats
    act_io = tokens_in * (h * ab + up * ef * ACT + ef * (up + 1) * ACT + ef * ab + h * ACT)
    return [Op("mm", flops, w + act_io), vector(tokens_in * ef, (up + 1.0) * ACT)]


def router_ops(model: Model, tokens, ab):
    """Gate matmul, top-k selection, and the permute / un-permute of token copies that group
    tokens by expert before dispatch and restore their order after combine (read + write each)."""
    copies = tokens * model.top_k * model.hidden
    return [matmul(tokens, model.hidden, model.experts, ab, ACT), vector(tokens * model.experts, 2 * ACT),
            vector(copies, ab + ab, 1.0), vector(copies, 2 * ACT + ACT, 1.0)]


def norm_residual_ops(model: Model, tokens_vec, training):
    """Two norms and two (bias +) dropout + residual adds per layer (bytes per element)."""
    drop = 1.0 if training else 0.0
    h = model.hidden
    return [vector(tokens_vec * h, 2 * ACT, 8.0), vector(tokens_vec * h, 3 * ACT + drop),
            vector(tokens_vec * h, 2 * ACT, 8.0), vector(tokens_vec * h, 3 * ACT + drop)]


def lm_head_ops(model: Model, tokens, tp, ab, wb):
    """Final norm, vocabulary projection and softmax/loss."""
    return [vector(tokens * model.hidden, 2 * ACT, 8.0),
            matmul(tokens, model.hidden, model.vocab / tp, ab, wb, out_bytes=4.0),
            vector(tokens * model.vocab / tp, 3 * 4.0)]
