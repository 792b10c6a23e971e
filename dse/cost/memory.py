"""Memory cost: bytes resident per chip (weights, gradients, optimizer state, activations, KV cache).

Parameter counts follow the transformer shape. Training uses mixed-precision Adam: 2 B bf16
weights, 4 B fp32 gradients, 12 B optimizer state (fp32 master weights, first and second
moments) per parameter = 18 B, as in Megatron. ZeRO stage 1 shards the optimizer state over the
data-parallel group, stage 2 also the gradients, stage 3 also the weights; a relaxed (fractional)
stage interpolates linearly between neighbouring stages.

Activations per layer per microbatch follow Korthikanti et al. (2022), generalised to GQA/MLA
widths and gated FFNs (bf16 elements; ``sbh`` = tokens x hidden):
  * replicated across TP unless SP: two norm inputs, QKV input, MLP input (2 B each) and two
    dropout masks (1 B each) = 10 sbh;
  * split by TP: Q, K, V, output-projection input, FFN intermediates (2 B each) = 24 sbh/t for
    MHA with ffn = 4h;
  * attention scores without flash attention: 5 a s^2 b (softmax out 2 B, dropout mask 1 B,
    dropout out 2 B), split by TP; removed by selective recompute;
  * full recompute keeps only the layer input, 2 sbh (/t with SP).
The first pipeline stage holds ``min(pp, m)`` microbatches in flight under 1F1B, times
(1 + (pp-1)/(pp vpp)) when interleaved (vpp > 1).
"""
from __future__ import annotations

import jax.numpy as jnp

from dse.cost.compute import attention_widths
from dse.specs import Model, Phase, Plan

WEIGHT_B, GRAD_B, OPT_B = 2.0, 4.0, 12.0


def attention_params(model: Model):
    """Parameters of one attention block (projections only)."""
    h = model.hidden
    if model.attention == "mla":
        qk = model.qk_nope_dim + model.qk_rope_dim
        q = jnp.where(model.q_lora_rank > 0, h * model.q_lora_rank + model.q_lora_rank * model.heads * qk,
                      h * model.heads * qk)
        kv = h * (model.kv_lora_rank + model.qk_rope_dim) + model.kv_lora_rank * model.heads * (model.qk_nope_dim + model.v_head_dim)
        return q + kv + model.heads * model.v_head_dim * h
    hq, hk, hv, hout = attention_widths(model)
    return h * (hq + hk + hv) + hout * h


def ffn_params(model: Model, width):
    return model.ffn_mats * model.hidden * width


def expert_params_per_layer(model: Model):
    """Routed-expert parameters of one MoE layer."""
    return model.experts * ffn_params(model, model.expert_ffn)


def dense_part_params_per_moe_layer(model: Model):
    """Non-routed parameters of one MoE layer: attention, shared experts, router."""
    return attention_params(model) + model.shared_experts * ffn_params(model, model.expert_ffn) + model.hidden * model.experts


def layer_stack_params(model: Model):
    """(non-expert params, routed-expert params) of all transformer layers."""
    dense_layers = jnp.where(model.experts > 0, model.dense_layers, model.layers)
    non_expert = (dense_layers * (attention_params(model) + ffn_params(model, model.ffn))
                  + model.moe_layers * dense_part_params_per_moe_layer(model))
    return non_expert, model.moe_layers * expert_params_per_layer(model)


def total_params(model: Model):
    """All parameters: layers + input embedding + (untied) output layer."""
    non_expert, expert = layer_stack_params(model)
    return non_expert + expert + 2.0 * model.vocab * model.hidden


def active_params_per_token(model: Model):
    """Parameters a token passes through (routed experts: top_k of them)."""
    non_expert, expert = layer_stack_params(model)
    active_expert = jnp.where(model.experts > 0, expert * model.top_k / jnp.maximum(model.experts, 1.0), 0.0)
    return non_expert + active_expert + model.vocab * model.hidden


def params_per_chip(model: Model, plan: Plan):
    """(layer params, embedding/head params) stored by one chip of the heaviest pipeline stage.

    Non-expert layers split over TP and PP; the busiest EP rank holds ``experts_per_rank`` experts
    of every MoE layer of its stage.
    The first stage holds the input embedding and the last the output layer: one vocab x hidden
    matrix split over TP is charged to the stage (both when there is a single stage).
    """
    non_expert, expert = layer_stack_params(model)
    per_expert = expert / jnp.maximum(model.experts, 1.0)
    layers = non_expert / (plan.tp * plan.pp) + per_expert * experts_per_rank(model, plan) / plan.pp
    tables = jnp.where(plan.pp > 1.0, 1.0, 2.0)   # both embedding and head when pp == 1
    return layers, tables * model.vocab * model.hidden / plan.tp


def experts_per_rank(model: Model, plan: Plan):
    """Expert slots (routed + redundant copies) on the busiest EP rank: ceil(slots / ep), >= 1.

    EP need not divide the experts (CloudMatrix-Infer runs 256 routed + 32 redundant experts on
    320 dies): slots are dealt out round-robin, so some ranks hold one more than others.
    """
    slots = model.experts + plan.redundant_experts
    return jnp.maximum(jnp.ceil(slots / plan.ep - 1e-6), 1.0)


def expert_load_factor(model: Model, plan: Plan):
    """Token-expert assignments received by the busiest rank / assignments sent per rank.

    With ``slots`` expert slots over ``ep`` ranks, a rank holding ``k`` slots receives
    ``k / slots`` of the group's ``ep x sent`` assignments (before skew, ``phase.expert_imbalance``).
    """
    slots = jnp.maximum(model.experts + plan.redundant_experts, 1.0)
    return plan.ep * experts_per_rank(model, plan) / slots


def _lerp_shard(stage_frac, dp):
    """Sharding factor 1 -> 1/dp as ``stage_frac`` goes 0 -> 1 (clipped)."""
    f = jnp.clip(stage_frac, 0.0, 1.0)
    return 1.0 - f + f / dp


def training_state_bytes(model: Model, plan: Plan):
    """(weights, gradients, optimizer) bytes per chip under ZeRO over the DP (x CP) group."""
    layers, embed = params_per_chip(model, plan)
    p = layers + embed
    dp = plan.dp * plan.cp
    return (p * WEIGHT_B * _lerp_shard(plan.zero - 2.0, dp),
            p * GRAD_B * _lerp_shard(plan.zero - 1.0, dp),
            p * OPT_B * _lerp_shard(plan.zero, dp))


def activation_bytes_per_layer(model: Model, plan: Plan, seq, micro):
    """Korthikanti activation bytes of one layer, one microbatch, on one chip.

    ``seq``: tokens per sequence on this CP rank; ``micro``: sequences per microbatch.
    """
    t, sp = plan.tp, plan.sp
    sbh = seq * micro * model.hidden
    hq, hk, hv, hout = attention_widths(model)
    ffn = jnp.where(model.experts > 0, model.top_k * model.expert_ffn * 1.0 + model.shared_experts * model.expert_ffn, model.ffn)
    split = seq * micro * (2.0 * (hq + hk + hv + hout) + 2.0 * ffn * model.ffn_mats) / t
    replicated = 10.0 * sbh / (1.0 + sp * (t - 1.0))
    scores = 5.0 * model.heads * seq * seq * micro / t * (1.0 - plan.flash_attention)
    keep_scores = jnp.clip(1.0 - plan.recompute, 0.0, 1.0)           # selective drops them
    stored = replicated + split + keep_scores * scores
    full = 2.0 * sbh / (1.0 + sp * (t - 1.0))
    w_full = jnp.clip(plan.recompute - 1.0, 0.0, 1.0)                  # selective -> full
    return (1.0 - w_full) * stored + w_full * full


def inflight_microbatches(plan: Plan, num_micro):
    """Microbatches whose activations the first stage holds at once (1F1B, interleaved)."""
    base = jnp.minimum(plan.pp, num_micro)
    interleave = jnp.where(plan.vpp > 1.0, 1.0 + (plan.pp - 1.0) / (plan.pp * plan.vpp), 1.0)
    return base * interleave


def training_activation_bytes(model: Model, plan: Plan, phase: Phase):
    """Activation bytes held per chip on the first pipeline stage during a training step."""
    seq = phase.seq_len / plan.cp
    m = phase.global_batch / (plan.dp * plan.microbatch)
    per_layer = activation_bytes_per_layer(model, plan, seq, plan.microbatch)
    return per_layer * model.layers / plan.pp * inflight_microbatches(plan, m)


def logits_bytes(model: Model, plan: Plan, tokens):
    """fp32 logits and their gradient for ``tokens`` tokens on the last stage (transient)."""
    return 2.0 * 4.0 * tokens * model.vocab / plan.tp


def kv_bytes_per_token(model: Model, phase: Phase):
    """KV-cache bytes per token for the whole model (all layers, all KV heads)."""
    if model.attention == "mla":
        per_layer = model.kv_lora_rank + model.qk_rope_dim
    else:
        per_layer = 2.0 * model.kv_heads * model.head_dim
    return model.layers * per_layer * phase.kv_bytes


def kv_bytes_per_chip(model: Model, phase: Phase, plan: Plan, seqs_per_replica, ctx):
    """KV cache per chip: a replica's sequences split over PP; KV heads over TP (MLA's latent and
    kv heads fewer than TP replicate)."""
    tp_split = 1.0 if model.attention == "mla" else jnp.minimum(plan.tp, model.kv_heads)
    return seqs_per_replica * ctx * kv_bytes_per_token(model, phase) / (plan.pp * tp_split)


def inference_weight_bytes(model: Model, phase: Phase, plan: Plan):
    """Weights per chip for inference: non-expert over TP x PP, experts over EP x PP."""
    layers, embed = params_per_chip(model, plan)
    return (layers + embed) * phase.weight_bytes
