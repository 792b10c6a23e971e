"""Count non-finite outputs and gradients of ``dse.perf.evaluate`` over random in-bounds designs.

For every phase (train, prefill, decode) the script draws ``--designs`` random designs, spread
evenly over four preset combinations (dgx_a100+gpt3_175b, gb200_nvl72+llama3_70b,
cloudmatrix384+deepseek_v3 at int8, hgx_h800+mixtral_8x7b). Each design samples every numeric
field of the chip, both fabric tiers, the plan and the phase within the bounds that validation
allows (bandwidths 1e-3x..1e3x the preset, degrees that divide heads/layers, relaxed non-integer
degrees and ZeRO/recompute stages for half of them, optional SLO and power limits); the model is
the preset's. Designs are evaluated with ``jit(vmap(evaluate))`` in batches, and the gradient of
tokens_per_joule w.r.t. every System leaf with ``jit(vmap(grad))`` on a subset.

Prints a table (with two informational integrity counts: designs whose HFU exceeds 1 and whose
power at load exceeds the TDP-based ``system.power_max_w``) and ends with one JSON line:
``{"designs": N, "nonfinite_outputs": k, "nonfinite_grads": g, "seconds": s}`` where ``k`` counts
designs with a non-finite tokens_per_s, power_w, memory_per_chip_bytes, step_time_s or
tokens_per_joule, and ``g`` designs (of the gradient subset) with any non-finite gradient leaf.

    JAX_PLATFORMS=cpu python benchmarks/nonfinite_check.py            # 10^6 designs per phase
    JAX_PLATFORMS=cpu python benchmarks/nonfinite_check.py --quick    # 10^4 designs per phase
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("WANDB_MODE", "disabled")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from dse.build import build  # noqa: E402
from dse.config import compose_config  # noqa: E402
from dse.perf import evaluate  # noqa: E402

PHASES = ("train", "prefill", "decode")
COMBOS = {
    "a100+gpt3": (["hardware=dgx_a100", "workload=gpt3_175b", "hardware.num_chips=64", "plan.tp=8"],
                  (1, 2, 4, 8, 16), (1, 2, 4, 8)),
    "gb200+llama70b": (["hardware=gb200_nvl72", "workload=llama3_70b", "hardware.num_chips=72", "plan.tp=8",
                        "phase.global_batch=1152"], (1, 2, 4, 8, 16), (1, 2, 4, 8)),
    "cm384+dsv3(int8)": (["hardware=cloudmatrix384", "workload=deepseek_v3", "hardware.num_chips=64", "plan.ep=64",
                          "phase.dtype=int8"], (1, 2, 4, 8), (1,)),
    "h800+mixtral": (["hardware=hgx_h800", "workload=mixtral_8x7b", "hardware.num_chips=64", "plan.tp=2",
                      "plan.ep=8"], (1, 2, 4, 8), (1, 2, 4, 8)),
}
OUTPUTS = ("tokens_per_s", "power_w", "memory_per_chip_bytes", "step_time_s", "tokens_per_joule")


def base_specs(overrides, kind):
    ov = list(overrides) + [f"phase={kind}"] + ([] if kind == "train" else ["phase.batch=512"])
    system, model, phase, plan = build(compose_config(ov))
    f32 = lambda t: jax.tree_util.tree_map(lambda x: np.float32(x), t)
    return f32(system), model, f32(phase), f32(plan)


# ------------------------------------------------------------------------------------------------
# vectorised sampling of in-bounds designs
# ------------------------------------------------------------------------------------------------
def _choice(rng, options, n):
    return np.asarray(options, dtype=np.float64)[rng.integers(0, len(options), n)]


def _logu(rng, lo, hi, n):
    return 10.0 ** rng.uniform(lo, hi, n)


def _stage_or_relaxed(rng, hi, n):
    """Integer stage 0..hi for half the designs, a relaxed real in [0, hi] for the other half."""
    return np.where(rng.random(n) < 0.5, rng.integers(0, hi + 1, n), rng.uniform(0.0, hi, n))


def _fabric(rng, f, n):
    return f.replace(
        bw=f.bw * _logu(rng, -3, 3, n), latency_s=rng.uniform(0, 1e-4, n), msg_s=rng.uniform(0, 2e-6, n),
        domain_size=_choice(rng, (1, 2, 8, 16, 72, 384, 100_000), n), efficiency=rng.uniform(0.05, 1.0, n),
        j_per_byte=rng.uniform(0, 5e-11, n), optics_per_chip=rng.uniform(0, 20, n), optic_w=rng.uniform(0, 20, n),
        switch_w_per_chip=rng.uniform(0, 300, n))


def sample(rng, specs, tp_opts, pp_opts, kind, n):
    """``n`` random designs around ``specs``: batched (system, phase, plan) with float32 leaves."""
    system, model, phase, plan = specs
    heads, layers, experts = int(model.heads), int(model.layers), int(model.experts)
    train = kind == "train"
    bcast = lambda t: jax.tree_util.tree_map(lambda x: np.broadcast_to(x, (n,)), t)
    system, phase, plan = bcast(system), bcast(phase), bcast(plan)

    # plan: valid integer degrees, relaxed to nearby reals for half the designs
    tp = _choice(rng, [t for t in tp_opts if heads % t == 0], n)
    pp = _choice(rng, pp_opts, n)
    vpp = _choice(rng, (1, 2, 4), n)
    vpp = np.where(layers % (pp * vpp) == 0, vpp, 1.0)
    cp = _choice(rng, (1, 2, 4), n) if train else np.ones(n)
    dp = _choice(rng, (1, 2, 4, 8, 16, 32, 64, 128), n)
    mb = _choice(rng, (1, 2, 4, 8), n)
    if experts:
        ep = np.minimum(_choice(rng, (1, 2, 4, 8, 16, 32, 64, 128, 256), n), experts)
        ep = np.gcd(ep.astype(np.int64), (dp * tp * cp).astype(np.int64)).astype(np.float64)  # divides dp*tp*cp
        red = np.where(rng.random(n) < 0.3, experts // 8, 0).astype(np.float64)
    else:
        ep, red = np.ones(n), np.zeros(n)
    relax = rng.random(n) < 0.5
    rel = lambda x: np.where(relax, np.maximum(1.0, x * rng.uniform(0.6, 1.4, n)), x)
    dp, tp, pp, vpp, mb = rel(dp), rel(tp), rel(pp), rel(vpp), rel(mb)
    ep = np.minimum(rel(ep), experts + red) if experts else ep       # never more ranks than expert slots
    cp = rel(cp) if train else cp
    flag = lambda: np.where(rng.random(n) < 0.5, rng.integers(0, 2, n), rng.uniform(0, 1, n))
    plan = plan.replace(dp=dp, tp=tp, pp=pp, ep=ep, cp=cp, microbatch=mb, vpp=vpp,
                        zero=_stage_or_relaxed(rng, 3, n), recompute=_stage_or_relaxed(rng, 2, n),
                        sp=flag(), flash_attention=flag(), dp_overlap=rng.uniform(0, 1, n),
                        tp_overlap=rng.uniform(0, 1, n), ep_overlap=rng.uniform(0, 1, n), redundant_experts=red)

    # system
    c = system.chip
    fs = _logu(rng, -1, 1, n)
    hbm_bytes = c.hbm_bytes * _logu(rng, -1, 1.5, n)
    up, out = _fabric(rng, system.scale_up, n), _fabric(rng, system.scale_out, n)
    hbm_bw = c.hbm_bw * _logu(rng, -3, 3, n)
    hbm_j = rng.uniform(0, 1e-10, n)
    io = hbm_j * hbm_bw + 2.0 * (up.j_per_byte * up.bw + out.j_per_byte * out.bw)
    idle = rng.uniform(0, 500, n)
    dyn = np.maximum(rng.uniform(10, 2000, n), 0.25 * (idle + io))
    chip = c.replace(
        flops_bf16=c.flops_bf16 * fs, flops_fp8=c.flops_fp8 * fs, flops_int8=c.flops_int8 * fs,
        hbm_bytes=hbm_bytes, hbm_bw=hbm_bw, tdp_w=idle + io + dyn, idle_w=idle, hbm_j_per_byte=hbm_j,
        dies=_choice(rng, (1, 2, 4), n), eff_matmul_max=rng.uniform(0.05, 1, n),
        eff_matmul_half_flop=rng.uniform(0, 1e11, n), eff_attention_max=rng.uniform(0.05, 1, n),
        eff_hbm=rng.uniform(0.05, 1, n), vector_flops=c.flops_bf16 * fs * rng.uniform(0.005, 1, n),
        op_overhead_s=rng.uniform(0, 1e-4, n), reserved_bytes=hbm_bytes * rng.uniform(0, 0.5, n))
    system = system.replace(chip=chip, scale_up=up, scale_out=out, num_chips=dp * tp * pp * cp,
                            host_w_per_chip=rng.uniform(0, 1000, n), pue=rng.uniform(1, 2, n))

    # phase
    limit = lambda lo, hi: np.where(rng.random(n) < 0.5, np.inf, rng.uniform(lo, hi, n))
    upd = dict(expert_imbalance=rng.uniform(1, 4, n), power_budget_w=limit(1e3, 1e9))
    dpi = np.round(dp)
    if train:
        upd.update(seq_len=_choice(rng, (128, 512, 2048, 4096, 8192), n),
                   global_batch=np.maximum(dpi * np.round(mb), 1) * rng.integers(1, 65, n))
    elif kind == "prefill":
        upd.update(seq_len=rng.integers(1, 32769, n).astype(np.float64), batch=dpi * rng.integers(1, 65, n),
                   ttft_slo_s=limit(1e-4, 100))
    else:
        upd.update(context_len=rng.integers(1, 131073, n).astype(np.float64), batch=dpi * rng.integers(1, 513, n),
                   mtp_tokens_per_step=rng.uniform(1, 3, n), tpot_slo_s=limit(1e-4, 10))
    phase = phase.replace(**upd)
    f32 = lambda t: jax.tree_util.tree_map(lambda x: np.asarray(x, dtype=np.float32), t)
    return f32(system), f32(phase), f32(plan)


def _take(tree, k):
    return jax.tree_util.tree_map(lambda x: x[:k], tree)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10^4 designs per phase (default 10^6)")
    ap.add_argument("--designs", type=int, default=None, help="designs per phase")
    ap.add_argument("--batch", type=int, default=50_000, help="designs per jit(vmap) call")
    ap.add_argument("--grad-designs", type=int, default=None, help="designs per phase for gradients (default 10^4)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    n_phase = args.designs or (10_000 if args.quick else 1_000_000)
    n_grad = args.grad_designs if args.grad_designs is not None else min(10_000, n_phase)
    per_combo = -(-n_phase // len(COMBOS))
    batch = min(args.batch, per_combo)
    grad_per_combo = -(-n_grad // len(COMBOS))
    rng = np.random.default_rng(args.seed)

    print(f"{'phase':8s} {'preset':18s} {'designs':>9s} {'nonfin_out':>10s} {'grads':>7s} {'nonfin_g':>8s} "
          f"{'hfu>1':>8s} {'P>Pmax':>7s} {'time':>8s}", flush=True)
    t0 = time.time()
    rows, total, bad_out, bad_grad, total_grad = [], 0, 0, 0, 0
    for kind in PHASES:
        for name, (ov, tp_opts, pp_opts) in COMBOS.items():
            t1 = time.time()
            specs = base_specs(ov, kind)
            model = specs[1]
            ev = jax.jit(jax.vmap(lambda s, p, pl, model=model: evaluate(s, model, p, pl)))

            def tpj(s, p, pl, model=model):
                return evaluate(s, model, p, pl).tokens_per_joule
            gr = jax.jit(jax.vmap(jax.grad(tpj)))

            done = n_bad = n_hfu = n_pmax = 0
            field_bad = dict.fromkeys(OUTPUTS, 0)
            while done < per_combo:
                k = min(batch, per_combo - done)
                s, p, pl = sample(rng, specs, tp_opts, pp_opts, kind, batch)   # fixed shape: no retrace
                m = ev(s, p, pl)
                fin = {f: np.isfinite(np.asarray(getattr(m, f))[:k]) for f in OUTPUTS}
                for f in OUTPUTS:
                    field_bad[f] += int((~fin[f]).sum())
                n_bad += int((~np.logical_and.reduce([fin[f] for f in OUTPUTS])).sum())
                # result integrity (informational): HFU above 1, power above the TDP-based maximum
                n_hfu += int((np.asarray(m.hfu)[:k] > 1.0 + 1e-5).sum())
                n_pmax += int((np.asarray(m.power_w)[:k] > np.asarray(s.power_max_w)[:k] * (1 + 1e-5)).sum())
                done += k
            g_bad = g_done = 0
            gbatch = min(batch, grad_per_combo)
            while g_done < grad_per_combo:
                k = min(gbatch, grad_per_combo - g_done)
                s, p, pl = sample(rng, specs, tp_opts, pp_opts, kind, gbatch)
                g = gr(s, p, pl)
                ok = np.logical_and.reduce([np.isfinite(np.asarray(x)[:k]) for x in jax.tree_util.tree_leaves(g)])
                g_bad += int((~ok).sum())
                g_done += k
            rows.append((kind, name, done, n_bad, g_done, g_bad, time.time() - t1, n_hfu, n_pmax,
                         ",".join(f"{f}:{v}" for f, v in field_bad.items() if v)))
            total, bad_out, total_grad, bad_grad = total + done, bad_out + n_bad, total_grad + g_done, bad_grad + g_bad
            kind_, name_, n, b, gn, gb, sec, nh, npm, detail = rows[-1]
            print(f"{kind_:8s} {name_:18s} {n:>9d} {b:>10d} {gn:>7d} {gb:>8d} {nh:>8d} {npm:>7d} {sec:7.1f}s {detail}",
                  flush=True)
    seconds = time.time() - t0
    print(f"{'total':8s} {'':18s} {total:>9d} {bad_out:>10d} {total_grad:>7d} {bad_grad:>8d} "
          f"{sum(r[7] for r in rows):>8d} {sum(r[8] for r in rows):>7d} {seconds:7.1f}s")
    print(json.dumps({"designs": total, "nonfinite_outputs": bad_out, "nonfinite_grads": bad_grad,
                      "seconds": round(seconds, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
