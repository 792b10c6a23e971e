"""Searchers: agree with the exhaustive grid on small spaces, return only real feasible designs,
are deterministic per seed; the validity mask agrees with the config validator."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf

from dse.build import build
from dse.config import compose_config
from dse.errors import ConfigError
from dse.search.blackbox import random_search
from dse.search.gradient import gradient_search
from dse.search.grid import grid_indices, grid_search
from dse.space import Problem, space_from_config

SMALL_TRAIN = {
    "name": "small_train", "objective": "tokens_per_joule",
    "base": ["hardware=dgx_a100", "workload=megatron_22b", "phase=train", "phase.global_batch=256",
             "hardware.num_chips=64", "plan.tp=8"],
    "variables": [{"field": "hardware.num_chips", "values": [32, 64, 128]},
                  {"field": "plan.tp", "values": [1, 2, 4, 8]}, {"field": "plan.pp", "values": [1, 2, 4]},
                  {"field": "plan.recompute", "values": ["none", "selective", "full"]},
                  {"field": "hardware.scale_out.gb_s", "kind": "continuous", "low": 12.5, "high": 50, "num": 3}],
    "couple": {"hardware.scale_out.gb_s": ["hardware.scale_out.optics_per_chip"]},
}
SMALL_DECODE = {
    "name": "small_decode", "objective": "tokens_per_joule",
    "base": ["hardware=cloudmatrix384", "workload=deepseek_v3", "phase=decode", "phase.dtype=int8",
             "phase.tpot_slo_ms=50", "hardware.num_chips=64", "plan.ep=64", "phase.batch=4096"],
    "variables": [{"field": "hardware.num_chips", "values": [32, 64, 96]},
                  {"field": "plan.ep_share", "values": [0.5, 1.0]},
                  {"field": "phase.batch_per_chip", "values": [16, 32, 64, 96]},
                  {"field": "hardware.scale_up.gb_s", "kind": "continuous", "low": 100, "high": 400, "num": 3}],
}


def problem(d):
    return Problem.from_space(space_from_config(OmegaConf.create(d)))


@pytest.fixture(scope="module")
def small_train():
    return problem(SMALL_TRAIN)


@pytest.fixture(scope="module")
def small_decode():
    return problem(SMALL_DECODE)


@pytest.mark.parametrize("which", ["small_train", "small_decode"])
def test_gradient_and_random_agree_with_grid_on_small_spaces(which, request):
    pb = request.getfixturevalue(which)
    g = grid_search(pb)
    assert g.best is not None and g.metrics["feasible"]
    r = gradient_search(pb, seed=0)                  # no budget: polish converges
    assert r.objective == pytest.approx(g.objective, rel=1e-6)
    full = random_search(pb, budget=50 * pb.space.size, seed=0)   # covers the grid w.h.p.
    assert full.objective == pytest.approx(g.objective, rel=1e-6)


def test_grid_optimum_is_the_max_over_all_feasible(small_train):
    from dse.search.common import exact_scores
    pb = small_train
    x = pb.index_to_design(grid_indices(pb, 0, pb.space.size))
    s, ok, merit = exact_scores(pb)(x)
    assert np.all(np.isfinite(s) == ok) and np.all(merit[ok] > merit[~ok].max(initial=-np.inf))
    assert grid_search(pb).objective == pytest.approx(float(s.max()), rel=1e-6)


def test_validity_agrees_with_the_config_validator(small_train, small_decode):
    """A design the search calls valid must build through from_config, and vice versa."""
    rng = np.random.default_rng(1)
    for pb in (small_train, small_decode):
        sizes = [len(v.values) for v in pb.space.variables]
        for _ in range(12):
            idx = np.array([[rng.integers(0, n) for n in sizes]])
            x = pb.index_to_design(idx)[0]
            s, m, p, pl = pb.apply(x)
            valid = bool(pb.validity(s, p, pl))
            try:
                build(compose_config(pb.overrides(x)))
                built = True
            except ConfigError:
                built = False
            assert valid == built, (pb.design_dict(x), valid, built)


def test_results_are_real_feasible_designs(small_decode):
    r = gradient_search(small_decode, seed=3, budget=40)
    assert r.best is not None
    s, m, p, pl = build(compose_config(r.overrides))          # validates every field
    assert r.metrics["feasible"] and r.metrics["tpot_s"] <= 0.050
    for degree in (pl.dp, pl.tp, pl.pp, pl.ep, s.num_chips, p.batch):
        assert float(degree).is_integer()


def test_deterministic_for_a_seed(small_train):
    a = gradient_search(small_train, seed=7, budget=60)
    b = gradient_search(small_train, seed=7, budget=60)
    assert a.best == b.best and a.objective == b.objective and a.evaluations == b.evaluations


def test_infeasible_space_returns_no_design():
    d = dict(SMALL_DECODE, name="impossible", base=SMALL_DECODE["base"] + ["phase.tpot_slo_ms=0.001"])
    pb = problem(d)
    assert grid_search(pb).best is None
    assert gradient_search(pb, seed=0, budget=30).best is None


def test_grid_shards_over_two_host_devices(tmp_path):
    code = ("import json; from tests.test_search import SMALL_TRAIN, problem; from dse.search.grid import grid_search;"
            "import jax; r = grid_search(problem(SMALL_TRAIN), chunk=64); print(json.dumps([len(jax.local_devices()), r.objective]))")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=os.getcwd(), timeout=300)
    assert out.returncode == 0, out.stderr
    ndev, obj = json.loads(out.stdout.strip().splitlines()[-1])
    assert ndev == 2
    assert obj == pytest.approx(grid_search(problem(SMALL_TRAIN)).objective, rel=1e-6)


def test_search_cli(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", WANDB_MODE="disabled")
    r = subprocess.run([sys.executable, "-m", "dse", "task=search", "space=r1_decode_supernode", "search=grid",
                        f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["feasible"] and out["design"] and out["tokens_per_joule"] == pytest.approx(out["objective"])
    assert out["tpot_s"] <= 0.050 and out["power_w"] <= 300e3
    assert "hardware.scale_up.gb_s" in out["sensitivities"]
    assert json.loads((tmp_path / "search.json").read_text())["objective"] == out["objective"]
