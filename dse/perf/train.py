"""Training step time: dense and MoE transformers under DP/TP/PP/SP/CP/EP, ZeRO and recompute.

One microbatch on one pipeline stage costs, per layer, the forward ops, the backward ops (twice the
forward), the recomputed forward (selective: the attention core; full: everything) and the exposed
TP, CP and EP communication. The last stage adds the output layer. With ``m`` microbatches the
step is

    step = m * t_stage_max + (pp - 1) / vpp * t_stage_mean + exposed DP sync + optimizer

(interleaved 1F1B bubble). DP gradient sync overlaps with the backward pass of the last
microbatch (``plan.dp_overlap`` of that window). MFU counts model FLOPs (6 x active params per
token, plus attention at 6 L s (h_q + h_v) per token over the full square, no recompute); HFU adds
the recomputed FLOPs to the same count.
"""
from __future__ import annotations

import jax.numpy as jnp

from dse.cost import compute as C
from dse.cost import memory as M
from dse.cost import network as N
from dse.perf.common import energy_metrics, slack
from dse.perf.metrics import Metrics
from dse.specs import Model, Phase, Plan, System

GRAD_COMM_B = 4.0   # fp32 gradient reduction (Megatron accumulates/all-reduces grads in fp32)
OPT_BYTES_PER_PARAM = 30.0  # Adam step: read grad, master, m, v (16 B); write master, m, v, bf16 copy (14 B)


def _layer_ops(model: Model, phase: Phase, plan: Plan, moe: bool):
    """Forward ops of one layer for one microbatch on one chip: (attention core, the rest)."""
    t, b = plan.tp, plan.microbatch
    s_q = phase.seq_len / plan.cp
    tokens = b * s_q
    tokens_vec = tokens / (1.0 + plan.sp * (t - 1.0))
    ab = wb = phase.act_bytes
    core = C.attention_core_ops(model, b, s_q, phase.seq_len, t, plan.flash_attention, True, True)
    rest = C.qkv_projection_ops(model, tokens, t, ab, wb) + [C.output_projection_op(model, tokens, t, ab, wb)]
    rest += C.norm_residual_ops(model, tokens_vec, True)
    if moe:
        tok = tokens / t
        sent = tok * model.top_k
        local = M.experts_per_rank(model, plan)
        rest += C.router_ops(model, tok, ab)
        rest += C.dense_ffn_ops(model, tok, model.shared_experts * model.expert_ffn, 1.0, ab, wb)
        rest += C.expert_ffn_ops(model, sent * M.expert_load_factor(model, plan) * phase.expert_imbalance, local, sent * plan.ep, ab, wb)
    else:
        rest += C.dense_ffn_ops(model, tokens, model.ffn, t, ab, wb)
    return core, rest


def _hw_flops_per_layer(core, rest, recompute):
    f_core, f_all = C.ops_flops(core), C.ops_flops(core) + C.ops_flops(rest)
    extra = jnp.clip(recompute, 0.0, 1.0) * f_core + jnp.clip(recompute - 1.0, 0.0, 1.0) * (f_all - f_core)
    return 3.0 * f_all + extra


def model_flops_per_token(model: Model, seq_len):
    """Training model FLOPs per token: 6 x active params + 12 L s h_q (full attention square)."""
    hq, _, hv, _ = C.attention_widths(model)
    return 6.0 * M.active_params_per_token(model) + 6.0 * model.layers * seq_len * (hq + hv)


def train_metrics(system: System, model: Model, phase: Phase, plan: Plan) -> Metrics:
    chip = system.chip
    peak = chip.peak_flops(phase.dtype)
    t, pp, cp, vpp = plan.tp, plan.pp, plan.cp, plan.vpp
    m = phase.global_batch / (plan.dp * plan.microbatch)
    tokens = plan.microbatch * phase.seq_len / cp
    up = system.scale_up_size

    n_moe = model.moe_layers / pp
    n_dense = model.layers / pp - n_moe
    per_kind = {}
    for moe, count in ((False, n_dense), (True, n_moe)):
        core, rest = _layer_ops(model, phase, plan, moe)
        t_core, t_rest = C.ops_time(core, chip, peak), C.ops_time(rest, chip, peak)
        t_fwd = t_core + t_rest
        t_rc = jnp.clip(plan.recompute, 0.0, 1.0) * t_core + jnp.clip(plan.recompute - 1.0, 0.0, 1.0) * t_rest
        hw = _hw_flops_per_layer(core, rest, plan.recompute)
        per_kind[moe] = dict(count=count, fwd=t_fwd, bwd=2.0 * t_fwd, rc=t_rc, core=t_core, flops=hw,
                             rc_flops=hw - 3.0 * (C.ops_flops(core) + C.ops_flops(rest)),
                             bytes=3.0 * C.ops_bytes(core + rest))
    compute = sum(v["count"] * (v["fwd"] + v["bwd"] + v["rc"]) for v in per_kind.values())
    core_time = sum(v["count"] * 3.0 * v["core"] for v in per_kind.values())
    bwd_time = sum(v["count"] * v["bwd"] for v in per_kind.values())

    # tensor parallel: 2 all-reduces (or AG + RS with SP) forward, 2 backward, 2 in full recompute
    act_msg = tokens * model.hidden * C.ACT
    n_tp_coll = 4.0 + 2.0 * jnp.clip(plan.recompute - 1.0, 0.0, 1.0)
    tp_one = N.group_allreduce_time(act_msg, t, system)
    tp_comm = (1.0 - plan.tp_overlap) * n_tp_coll * tp_one * model.layers / pp
    # context parallel: all-gather K,V forward, reduce-scatter their grads backward; hidden behind attention
    hq, hk, hv, _ = C.attention_widths(model)
    kv_full = plan.microbatch * phase.seq_len * (hk + hv) / t * C.ACT
    cp_raw = 2.0 * N.group_allgather_time(kv_full, cp, system, up / t) * model.layers / pp
    cp_comm = jnp.maximum(cp_raw - core_time, 0.0)
    # expert parallel: dispatch + combine forward and backward (+ forward again in full recompute)
    copies = tokens / t * model.top_k
    a2a_bytes = copies * model.hidden * (phase.act_bytes + C.ACT)
    n_a2a = 2.0 + jnp.clip(plan.recompute - 1.0, 0.0, 1.0)
    ep_domain = up / (t * cp)
    k = model.top_k
    one_pair = (N.group_alltoall_time(copies * model.hidden * phase.act_bytes, plan.ep, system, ep_domain, copies, k)
                + N.group_alltoall_time(copies * model.hidden * C.ACT, plan.ep, system, ep_domain, copies, k))
    ep_comm = (1.0 - plan.ep_overlap) * n_a2a * one_pair * n_moe
    # pipeline p2p: activations forward and gradients backward at each boundary; Megatron's
    # scatter/gather splits each message over the TP ranks (each sends 1/t, then all-gathers on scale-up)
    p2p_msg = act_msg / t
    stride = plan.dp * t * cp                        # chips between neighbouring stages
    stages_per_domain = jnp.clip(up / stride, 1.0, pp)
    crosses = jnp.where(pp > 1.0, (pp / stages_per_domain - 1.0) / jnp.maximum(pp - 1.0, 1.0), 0.0)
    pp_comm = jnp.where(pp > 1.0, 2.0 * vpp * N.group_p2p_time(p2p_msg, crosses, system), 0.0)

    head = C.lm_head_ops(model, tokens, t, phase.act_bytes, phase.act_bytes)
    t_head = 3.0 * C.ops_time(head, chip, peak)
    stage = compute + tp_comm + cp_comm + ep_comm + pp_comm
    stage_max = stage + t_head
    stage_mean = stage + t_head / pp
    bubble = (pp - 1.0) / vpp * stage_mean

    # data parallel gradient sync (ZeRO >= 1: reduce-scatter grads + all-gather weights)
    layer_p, embed_p = M.params_per_chip(model, plan)
    p_chip = layer_p + embed_p
    dp_n, dp_domain = plan.dp * cp, up / (t * cp)
    ar = N.group_allreduce_time(p_chip * GRAD_COMM_B, dp_n, system, dp_domain)
    rs_ag = (N.group_reduce_scatter_time(p_chip * GRAD_COMM_B, dp_n, system, dp_domain)
             + N.group_allgather_time(p_chip * M.WEIGHT_B, dp_n, system, dp_domain))
    z1 = jnp.clip(plan.zero, 0.0, 1.0)
    z3 = jnp.clip(plan.zero - 2.0, 0.0, 1.0)
    dp_raw = (1.0 - z1) * ar + z1 * rs_ag + z3 * 2.0 * m * N.group_allgather_time(p_chip * M.WEIGHT_B, dp_n, system, dp_domain)
    window = bwd_time * (1.0 + (pp - 1.0) / vpp) + z3 * m * compute
    dp_comm = jnp.maximum(dp_raw - plan.dp_overlap * window, 0.0)
    opt_shard = 1.0 - z1 + z1 / dp_n
    optimizer = p_chip * opt_shard * OPT_BYTES_PER_PARAM / (chip.hbm_bw * chip.eff_hbm)

    step = m * stage_max + bubble + dp_comm + optimizer
    tokens_step = phase.global_batch * phase.seq_len
    tps = tokens_step / step

    # memory
    w, g, o = M.training_state_bytes(model, plan)
    acts_first = M.training_activation_bytes(model, plan, phase)
    acts_last = acts_first / jnp.maximum(M.inflight_microbatches(plan, m), 1.0) + M.logits_bytes(model, plan, tokens)
    acts = jnp.maximum(acts_first, acts_last)
    mem = w + g + o + acts + chip.reserved_bytes

    # activity for power: FLOPs, HBM bytes and link bytes per chip per step
    hw_flops = m * (sum(v["count"] * v["flops"] for v in per_kind.values()) + 3.0 * C.ops_flops(head) / pp)
    hbm = m * sum(v["count"] * v["bytes"] for v in per_kind.values()) + p_chip * OPT_BYTES_PER_PARAM * opt_shard
    tp_bytes = m * n_tp_coll * 2.0 * act_msg * model.layers / pp * jnp.where(t > 1.0, (t - 1.0) / t, 0.0)
    ep_up, ep_out = N.alltoall_bytes_by_tier(a2a_bytes * n_a2a * n_moe * m, plan.ep, system, ep_domain, model.top_k)
    dp_bytes = 2.0 * p_chip * GRAD_COMM_B * jnp.where(dp_n > 1.0, (dp_n - 1.0) / dp_n, 0.0)
    dp_out_share = jnp.where(dp_n > dp_domain, 1.0, 0.0)
    pp_bytes = jnp.where(pp > 1.0, m * 2.0 * vpp * p2p_msg, 0.0)
    up_bytes = tp_bytes + ep_up + dp_bytes * (1 - dp_out_share) + pp_bytes * (1 - crosses)
    out_bytes = ep_out + dp_bytes * dp_out_share + pp_bytes * crosses
    power, tpj, pbr = energy_metrics(system, phase, step, hw_flops, hbm, up_bytes, out_bytes, tokens_step)

    model_flops = model_flops_per_token(model, phase.seq_len) * tokens_step
    rc_flops = m * sum(v["count"] * v["rc_flops"] for v in per_kind.values())
    denom = step * system.num_chips * peak
    nan = jnp.full_like(step, jnp.nan)
    return Metrics(
        step_time_s=step, tokens_per_s=tps, tokens_per_s_per_chip=tps / system.num_chips,
        mfu=model_flops / denom, hfu=(model_flops + rc_flops * system.num_chips) / denom,
        memory_per_chip_bytes=mem, memory_capacity_bytes=chip.hbm_bytes, power_w=power, tokens_per_joule=tpj,
        ttft_s=nan, tpot_s=nan, max_batch=nan,
        memory_slack_bytes=chip.hbm_bytes - mem, slo_slack_s=jnp.full_like(step, jnp.inf),
        power_slack_w=slack(phase.power_budget_w, power),
        breakdown=dict(compute=m * (compute + t_head),
                       tp_comm=m * tp_comm, cp_comm=m * cp_comm, ep_comm=m * ep_comm, pp_comm=m * pp_comm,
                       pp_bubble=bubble, dp_comm=dp_comm, optimizer=optimizer),
        power_breakdown=pbr,
        memory_breakdown=dict(weights=w, gradients=g, optimizer=o, activations=acts, reserved=jnp.broadcast_to(chip.reserved_bytes, jnp.shape(w))),
        comm_bytes=dict(scale_up=up_bytes, scale_out=out_bytes),
    )
