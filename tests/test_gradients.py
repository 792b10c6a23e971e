"""Gradients match central finite differences (x64); vmap equals per-design evaluation; physics is monotone."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import enable_x64

from dse.perf import evaluate

POINTS = {
    "a100_gpt3_train": ["hardware=dgx_a100", "workload=gpt3_175b", "phase=train", "hardware.num_chips=512",
                        "plan.tp=8", "plan.pp=8", "phase.global_batch=512"],
    "cm384_r1_decode": ["hardware=cloudmatrix384", "workload=deepseek_v3", "phase=decode", "hardware.num_chips=160",
                        "plan.dp=160", "plan.ep=160", "phase.batch=15360", "phase.dtype=int8", "phase.mtp_tokens_per_step=1.7"],
    "nvl72_llama_prefill": ["hardware=gb200_nvl72", "workload=llama3_70b", "phase=prefill", "plan.tp=8",
                            "phase.batch=72"],
    "h800_mixtral_train": ["hardware=hgx_h800", "workload=mixtral_8x7b", "phase=train", "hardware.num_chips=64",
                           "plan.tp=2", "plan.ep=8", "phase.global_batch=256", "phase.seq_len=4096"],
}


def _f64(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)


def _numeric_fields(obj):
    return [k for k, v in vars(obj).items() if isinstance(v, jax.Array) or hasattr(v, "dtype")]


@pytest.mark.parametrize("point", sorted(POINTS))
def test_grad_matches_finite_differences(point, specs):
    s, m, p, pl = specs(*POINTS[point])
    with enable_x64(True):
        s, m, p, pl = _f64(s), _f64(m), _f64(p), _f64(pl)
        fields = [("chip", f) for f in _numeric_fields(s.chip)] + \
                 [(tier, f) for tier in ("scale_up", "scale_out") for f in _numeric_fields(getattr(s, tier))]

        def tps(system):
            return evaluate(system, m, p, pl).tokens_per_s

        g = jax.jit(jax.grad(tps))(s)
        f = jax.jit(tps)
        checked = 0
        for part, name in fields:
            x0 = float(getattr(getattr(s, part), name))
            if x0 == 0.0:
                continue
            h = 1e-7 * abs(x0)
            def at(v):
                return float(f(s.replace(**{part: getattr(s, part).replace(**{name: jnp.asarray(v, jnp.float64)})})))
            y0 = at(x0)
            right, left = (at(x0 + h) - y0) / h, (y0 - at(x0 - h)) / h
            ad = float(getattr(getattr(g, part), name))
            assert np.isfinite(ad), (part, name)
            scale = max(abs(left), abs(right), abs(ad), 1e-9 * abs(y0) / abs(x0))
            close = lambda a, b: abs(a - b) <= 2e-3 * scale
            if close(left, right):          # smooth here: AD must match the central difference
                assert close(ad, (left + right) / 2), (part, name, ad, left, right)
            else:                           # a kink (e.g. a group exactly filling a domain): one side
                assert close(ad, left) or close(ad, right), (part, name, ad, left, right)
            checked += 1
        assert checked >= 15


def test_vmap_over_1e5_plans_equals_per_plan(specs):
    s, m, p, pl = specs("hardware=dgx_a100", "workload=gpt3_175b", "phase=train", "hardware.num_chips=4096",
                        "plan.tp=8", "plan.pp=8", "phase.global_batch=2048")
    rng = np.random.default_rng(0)
    n = 100_000
    tp = rng.choice([1.0, 2.0, 4.0, 8.0], n)
    pp = rng.choice([1.0, 2.0, 4.0, 8.0, 16.0], n)
    mb = rng.choice([1.0, 2.0, 4.0], n)
    rc = rng.choice([0.0, 1.0, 2.0], n)
    dp = 4096.0 / (tp * pp)
    plans = pl.replace(tp=jnp.asarray(tp, jnp.float32), pp=jnp.asarray(pp, jnp.float32), dp=jnp.asarray(dp, jnp.float32),
                       microbatch=jnp.asarray(mb, jnp.float32), recompute=jnp.asarray(rc, jnp.float32))
    axes = jax.tree.map(lambda x: 0 if np.ndim(x) else None, plans)
    batched = jax.jit(jax.vmap(lambda q: evaluate(s, m, p, q).tokens_per_s, in_axes=(axes,)))(plans)
    assert batched.shape == (n,) and bool(jnp.all(jnp.isfinite(batched)))
    one = jax.jit(lambda q: evaluate(s, m, p, q).tokens_per_s)
    for i in rng.choice(n, 20, replace=False):
        q = jax.tree.map(lambda x: x[i] if np.ndim(x) else x, plans)
        assert float(one(q)) == pytest.approx(float(batched[i]), rel=1e-5)


@pytest.mark.parametrize("point", sorted(POINTS))
def test_more_link_bandwidth_is_never_slower(point, specs):
    s, m, p, pl = specs(*POINTS[point])
    f = jax.jit(lambda sys: evaluate(sys, m, p, pl).step_time_s)
    for tier in ("scale_up", "scale_out"):
        times = [float(f(s.replace(**{tier: getattr(s, tier).replace(bw=getattr(s, tier).bw * k)})))
                 for k in (0.25, 0.5, 1.0, 2.0, 4.0, 16.0)]
        assert all(b <= a * (1 + 1e-6) for a, b in zip(times, times[1:])), (tier, times)
    times = [float(f(s.replace(chip=s.chip.replace(hbm_bw=s.chip.hbm_bw * k)))) for k in (0.5, 1.0, 2.0)]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(times, times[1:]))


def test_more_microbatches_never_larger_bubble(specs):
    s, m, p, pl = specs("hardware=dgx_a100", "workload=gpt3_175b", "phase=train", "hardware.num_chips=512",
                        "plan.tp=8", "plan.pp=8", "phase.global_batch=512", "plan.microbatch=8")
    bubble = jax.jit(lambda q: evaluate(s, m, p, q).breakdown["pp_bubble"] / evaluate(s, m, p, q).step_time_s)
    fracs = [float(bubble(pl.replace(microbatch=jnp.float32(mb)))) for mb in (8, 4, 2, 1)]   # m = 8, 16, 32, 64
    assert all(b <= a + 1e-7 for a, b in zip(fracs, fracs[1:])), fracs
    vpp = [float(bubble(pl.replace(vpp=jnp.float32(v)))) for v in (1, 2, 3, 4)]
    assert all(b <= a + 1e-7 for a, b in zip(vpp, vpp[1:])), vpp


def test_bubble_formula_exact(specs):
    """Interleaved 1F1B: bubble = (pp-1)/vpp x mean stage time, so it scales exactly as 1/vpp when
    the stage time does not depend on vpp (communication made free)."""
    s, m, p, pl = specs("hardware=dgx_a100", "workload=gpt3_175b", "phase=train", "hardware.num_chips=64",
                        "plan.tp=8", "plan.pp=8", "phase.global_batch=64")
    free = lambda f: f.replace(bw=f.bw * 1e9, latency_s=f.latency_s * 0, msg_s=f.msg_s * 0)
    s = s.replace(scale_up=free(s.scale_up), scale_out=free(s.scale_out))
    b = [float(evaluate(s, m, p, pl.replace(vpp=jnp.float32(v))).breakdown["pp_bubble"]) for v in (1, 2, 3, 4)]
    assert b[0] / b[1] == pytest.approx(2.0, rel=1e-4)
    assert b[0] / b[2] == pytest.approx(3.0, rel=1e-4)
    assert b[0] / b[3] == pytest.approx(4.0, rel=1e-4)
    met = evaluate(s, m, p, pl)
    stage_mean = (float(met.step_time_s) - b[0] - float(met.breakdown["dp_comm"]) - float(met.breakdown["optimizer"])) / 64
    # step = m x t_stage_max + bubble, and t_stage_max >= t_stage_mean: bubble <= (pp-1) x stage
    assert b[0] <= 7 * stage_mean * (1 + 1e-6)
    assert b[0] >= 7 * stage_mean * 0.95
