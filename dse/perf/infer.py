"""Inference: prefill (a batch of prompts, TTFT) and decode (one step for every sequence, TPOT).

Serving follows DeepSeek / CloudMatrix-Infer: attention runs data-parallel (``plan.dp`` replicas of
``tp x pp`` chips each hold ``batch / dp`` sequences), and MoE layers are expert-parallel over
``plan.ep`` chips with an all-to-all *dispatch* (activation dtype) and *combine* (bf16) per MoE
layer on the tier the EP group spans. A package with several dies (``chip.dies``, e.g. the
Ascend 910C) runs one rank per die: DP and EP degrees, bandwidths and capacities are taken per die.

Decode with multi-token prediction verifies ``1 + d`` tokens per sequence per step, where
``d = ceil(mtp_tokens_per_step - 1)`` drafts come from ``mtp_depth`` extra MoE layers; a step
advances each sequence by ``mtp_tokens_per_step`` accepted tokens on average, so
``TPOT = step / mtp`` and ``tokens/s = batch * mtp / step``. With ``pp`` stages the replica's
sequences form ``pp`` microbatches in flight and a step takes ``pp`` stage times.
"""
from __future__ import annotations

import jax.numpy as jnp

from dse.cost import compute as C
from dse.cost import memory as M
from dse.cost import network as N
from dse.perf.common import energy_metrics, slack
from dse.perf.metrics import Metrics
from dse.specs import Model, Phase, Plan, System


def per_die(system: System, plan: Plan):
    """The system and plan seen at die granularity (one rank per die)."""
    c = system.chip
    d = c.dies
    chip = c.replace(flops_bf16=c.flops_bf16 / d, flops_fp8=c.flops_fp8 / d, flops_int8=c.flops_int8 / d,
                     hbm_bytes=c.hbm_bytes / d, hbm_bw=c.hbm_bw / d, vector_flops=c.vector_flops / d,
                     reserved_bytes=c.reserved_bytes / d)
    fab = lambda f: f.replace(bw=f.bw / d, domain_size=f.domain_size * d)
    die_sys = system.replace(chip=chip, scale_up=fab(system.scale_up), scale_out=fab(system.scale_out),
                             num_chips=system.num_chips * d)
    return die_sys, plan.replace(dp=plan.dp * d, ep=plan.ep * d)


def _layer_time(system: System, model: Model, phase: Phase, plan: Plan, tokens, moe, attn_ops, group_tokens):
    """Time of one layer on one rank for ``tokens`` tokens (attention ops given), with its ops."""
    chip, t = system.chip, plan.tp
    peak = chip.peak_flops(phase.dtype)
    ab = wb = phase.act_bytes
    ops = list(attn_ops) + C.qkv_projection_ops(model, tokens, t, ab, wb)
    ops += [C.output_projection_op(model, tokens, t, ab, wb)] + C.norm_residual_ops(model, tokens, False)
    ep_s = jnp.zeros_like(tokens)
    up_b = out_b = jnp.zeros_like(tokens)
    if moe:
        tok = tokens / t
        sent = tok * model.top_k
        local = M.experts_per_rank(model, plan)
        ops += C.router_ops(model, tok, ab)
        ops += C.dense_ffn_ops(model, tok, model.shared_experts * model.expert_ffn, 1.0, ab, wb)
        ops += C.expert_ffn_ops(model, sent * M.expert_load_factor(model, plan) * phase.expert_imbalance, local, group_tokens * model.top_k, ab, wb)
        a2a = sent * model.hidden * (phase.act_bytes + C.ACT)          # dispatch + combine
        msgs = sent                                                     # one message per token copy
        k = model.top_k
        dispatch = N.group_alltoall_time(sent * model.hidden * phase.act_bytes, plan.ep, system, messages=msgs, fanout=k)
        combine = N.group_alltoall_time(sent * model.hidden * C.ACT, plan.ep, system, messages=msgs, fanout=k)
        ep_s = (1.0 - plan.ep_overlap) * (dispatch + combine)
        up_b, out_b = N.alltoall_bytes_by_tier(a2a, plan.ep, system, fanout=model.top_k)
    else:
        ops += C.dense_ffn_ops(model, tokens, model.ffn, t, ab, wb)
    msg = tokens * model.hidden * C.ACT
    tp_s = (1.0 - plan.tp_overlap) * 2.0 * N.group_allreduce_time(msg, t, system)
    tp_b = jnp.where(t > 1.0, 2.0 * 2.0 * msg * (t - 1.0) / t, 0.0)
    comp = C.ops_time(ops, chip, peak)
    return dict(compute=comp, tp=tp_s, ep=ep_s, flops=C.ops_flops(ops), bytes=C.ops_bytes(ops),
                up=up_b + tp_b, out=out_b)


def _stage(system, model, phase, plan, tokens, attn_ops, group_tokens):
    """One pipeline stage (layers / pp) for one microbatch: summed components."""
    dense = _layer_time(system, model, phase, plan, tokens, False, attn_ops, group_tokens)
    moe = _layer_time(system, model, phase, plan, tokens, True, attn_ops, group_tokens)
    n_moe = model.moe_layers / plan.pp
    n_dense = model.layers / plan.pp - n_moe
    return {k: n_dense * dense[k] + n_moe * moe[k] for k in dense}, moe


def _finish(system_chip, die_system, die_plan, model, phase, step, tokens_step, st, extra_s, mem_parts,
            kv_per_seq, ttft, tpot):
    """Assemble Metrics (per-chip figures at package granularity)."""
    d = system_chip.chip.dies
    n_chips = system_chip.num_chips
    tps = tokens_step / step
    peak = system_chip.chip.peak_flops(phase.dtype)
    mem_die = sum(mem_parts.values())
    mem = mem_die * d
    free = jnp.maximum(die_system.chip.hbm_bytes - (mem_die - mem_parts["kv_cache"]), 0.0)
    max_batch = jnp.floor(free / jnp.maximum(kv_per_seq, 1e-30)) * die_plan.dp
    power, tpj, pbr = energy_metrics(system_chip, phase, step, st["flops"] * d, st["bytes"] * d,
                                     st["up"] * d, st["out"] * d, tokens_step)
    slo = slack(phase.tpot_slo_s, tpot) if phase.kind == "decode" else slack(phase.ttft_slo_s, ttft)
    hw_flops = st["flops"] * d * n_chips
    return Metrics(
        step_time_s=step, tokens_per_s=tps, tokens_per_s_per_chip=tps / n_chips,
        mfu=2.0 * M.active_params_per_token(model) * tokens_step / (step * n_chips * peak),
        hfu=hw_flops / (step * n_chips * peak),
        memory_per_chip_bytes=mem, memory_capacity_bytes=system_chip.chip.hbm_bytes,
        power_w=power, tokens_per_joule=tpj, ttft_s=ttft, tpot_s=tpot, max_batch=max_batch,
        memory_slack_bytes=system_chip.chip.hbm_bytes - mem, slo_slack_s=slo,
        power_slack_w=slack(phase.power_budget_w, power),
        breakdown=extra_s, power_breakdown=pbr,
        memory_breakdown={k: v * d for k, v in mem_parts.items()},
        comm_bytes=dict(scale_up=st["up"] * d, scale_out=st["out"] * d),
    )


def decode_metrics(system: System, model: Model, phase: Phase, plan: Plan) -> Metrics:
    sys_d, plan_d = per_die(system, plan)
    chip, t, pp = sys_d.chip, plan_d.tp, plan_d.pp
    peak = chip.peak_flops(phase.dtype)
    drafts = jnp.ceil(phase.mtp_tokens_per_step - 1.0 - 1e-6)
    drafts = jnp.maximum(drafts, 0.0)
    q = 1.0 + drafts
    seqs = phase.batch / plan_d.dp / pp                       # sequences per microbatch per replica
    tokens = seqs * q
    ctx = phase.context_len
    if model.attention == "mla":
        attn = C.mla_absorbed_decode_ops(model, seqs, q, ctx, t, phase.kv_bytes)
    else:
        attn = C.gqa_decode_ops(model, seqs, q, ctx, t, phase.kv_bytes)
    st, moe = _stage(sys_d, model, phase, plan_d, tokens, attn, tokens / t * plan_d.ep)
    head = C.lm_head_ops(model, tokens, t, phase.act_bytes, phase.weight_bytes)
    t_head = C.ops_time(head, chip, peak)
    # MTP drafting: mtp_depth extra MoE layers + a head pass per draft token, for one token per sequence
    mtp_on = jnp.where(drafts > 0, 1.0, 0.0)
    if model.attention == "mla":
        attn1 = C.mla_absorbed_decode_ops(model, seqs, 1.0, ctx, t, phase.kv_bytes)
    else:
        attn1 = C.gqa_decode_ops(model, seqs, 1.0, ctx, t, phase.kv_bytes)
    mtp_layer = _layer_time(sys_d, model, phase, plan_d, seqs, True, attn1, seqs / t * plan_d.ep)
    head1 = C.ops_time(C.lm_head_ops(model, seqs, t, phase.act_bytes, phase.weight_bytes), chip, peak)
    t_mtp = mtp_on * drafts * (model.mtp_depth * (mtp_layer["compute"] + mtp_layer["tp"] + mtp_layer["ep"]) + head1)
    stage = st["compute"] + st["tp"] + st["ep"] + (t_head + t_mtp) / pp
    step = pp * stage
    tpot = step / phase.mtp_tokens_per_step
    tokens_step = phase.batch * phase.mtp_tokens_per_step
    st = dict(st)
    st["flops"] = pp * st["flops"] + C.ops_flops(head)
    st["bytes"] = pp * st["bytes"] + C.ops_bytes(head)
    st["up"], st["out"] = pp * st["up"], pp * st["out"]
    kv_per_seq = M.kv_bytes_per_token(model, phase) * ctx / (pp * (1.0 if model.attention == "mla" else jnp.minimum(t, model.kv_heads)))
    mem = dict(weights=M.inference_weight_bytes(model, phase, plan_d),
               kv_cache=kv_per_seq * phase.batch / plan_d.dp,
               activations=4.0 * tokens * (model.hidden + model.vocab / t) * C.ACT,
               reserved=jnp.broadcast_to(chip.reserved_bytes, jnp.shape(tokens)))
    br = dict(compute=pp * st["compute"], tp_comm=pp * st["tp"], ep_comm=pp * st["ep"], lm_head=t_head, mtp=t_mtp)
    nan = jnp.full_like(step, jnp.nan)
    return _finish(system, sys_d, plan_d, model, phase, step, tokens_step, st, br, mem, kv_per_seq, nan, tpot)


def prefill_metrics(system: System, model: Model, phase: Phase, plan: Plan) -> Metrics:
    sys_d, plan_d = per_die(system, plan)
    chip, t, pp = sys_d.chip, plan_d.tp, plan_d.pp
    peak = chip.peak_flops(phase.dtype)
    s = phase.seq_len
    prompts = phase.batch / plan_d.dp                          # prompts per replica
    chunks = jnp.where(pp > 1.0, jnp.maximum(prompts, 1.0), 1.0)  # pipeline microbatches
    seqs = prompts / chunks
    tokens = seqs * s
    attn = C.attention_core_ops(model, seqs, s, s, t, plan_d.flash_attention, True, False)
    st, _ = _stage(sys_d, model, phase, plan_d, tokens, attn, tokens / t * plan_d.ep)
    head = C.lm_head_ops(model, seqs, t, phase.act_bytes, phase.weight_bytes)    # last position only
    t_head = C.ops_time(head, chip, peak)
    stage = st["compute"] + st["tp"] + st["ep"] + t_head / pp
    total = (chunks + pp - 1.0) * stage
    tokens_step = phase.batch * s
    st = dict(st)
    st = {k: v * chunks if k in ("flops", "bytes", "up", "out") else v for k, v in st.items()}   # per chip: its own stage
    kv_per_seq = M.kv_bytes_per_token(model, phase) * s / (pp * (1.0 if model.attention == "mla" else jnp.minimum(t, model.kv_heads)))
    mem = dict(weights=M.inference_weight_bytes(model, phase, plan_d),
               kv_cache=kv_per_seq * prompts,
               activations=6.0 * tokens * model.hidden * C.ACT / t,
               reserved=jnp.broadcast_to(chip.reserved_bytes, jnp.shape(tokens)))
    br = dict(compute=chunks * st["compute"], tp_comm=chunks * st["tp"], ep_comm=chunks * st["ep"],
              lm_head=chunks * t_head / pp, pp_bubble=(pp - 1.0) * stage)
    nan = jnp.full_like(total, jnp.nan)
    return _finish(system, sys_d, plan_d, model, phase, total, tokens_step, st, br, mem, kv_per_seq, total, nan)
