"""Bad input through the real CLI: every malformed configuration exits 2 with ONE stderr line that
names the field, the offending value and what is allowed -- never a traceback, never a silent run.

Each case is ``(args, field, value, hint)``: ``args`` are the overrides after ``task=evaluate``;
the one stderr line must contain ``field``, ``value`` (as typed, or as Python prints the parsed
number, e.g. ``-5`` -> ``-5.0``, ``1e30`` -> ``1e+30``; compared case-insensitively) and ``hint``.

Cases built with ``fixed(...)`` were real library holes found by this corpus (a ``+key`` typo
accepted, zero efficiencies, float32 overflow of SI values, unbounded MTP and expert imbalance,
redundant experts on a dense model); the library now rejects them, and these cases keep it so.

The CLI runs are independent subprocesses (~1 s each); a module fixture starts them all at once
on a small thread pool so the file takes well under a minute.
"""
from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

# the default hardware (gb200_nvl72) has 72 chips, which does not divide the default train
# global_batch (1536): every case starts from 64 chips so that only the injected fault fails.
BASE = ["hardware.num_chips=64"]


def run_dse(tmp_path, *args, env=None):
    e = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    e.update(JAX_PLATFORMS="cpu", WANDB_MODE="disabled", **(env or {}))
    return subprocess.run([sys.executable, "-m", "dse", *args, f"hydra.run.dir={tmp_path}"],
                          capture_output=True, text=True, env=e, timeout=300)


def fixed(args, field, value, hint, reason):
    # these holes were fixed in the library; kept as ordinary cases (reason kept for the record)
    return pytest.param(args, field, value, hint,
                        id=" ".join(args))


FLOAT32_REASON = ("in-range number overflows/underflows float32 in dse.specs._f (value x unit scale): "
                  "accepted silently (non-finite metrics, RuntimeWarning on stderr) or blamed on another field")
ZERO_EFF_REASON = ("dse.errors.require_fraction accepts 0 for chip efficiencies; 0 divides a roofline term "
                   "by zero and evaluate returns null (inf) step time with exit 0")
PLUS_REASON = ("Hydra '+key=value' appends a key to the structured config: a misspelt key is silently "
               "accepted (exit 0); dse.cli._precheck does not check appended keys against the schema")

CASES = [
    # ---- unknown presets --------------------------------------------------------------------
    (["hardware=no_such_box"], "hardware", "no_such_box", "cloudmatrix384"),
    (["workload=gpt5"], "workload", "gpt5", "llama3_70b"),
    (["phase=pretrain"], "phase", "pretrain", "decode"),
    (["plan=fancy"], "plan", "fancy", "default"),
    # ---- misspelt keys at several depths ----------------------------------------------------
    (["plan.tpp=8"], "plan.tpp", "8", "microbatch"),
    (["hardware.chip.hbm_gbb=80"], "hardware.chip.hbm_gbb", "80", "hbm_gb"),
    (["hardware.scale_up.gbs=900"], "hardware.scale_up.gbs", "900", "gb_s"),
    (["hardware.chip.efficiency.hbmm=0.9"], "hardware.chip.efficiency.hbmm", "0.9", "matmul_max"),
    (["phase.seqlen=4096"], "phase.seqlen", "4096", "seq_len"),
    (["workload.layer=80"], "workload.layer", "80", "layers"),
    fixed(["+plan.tpp=8"], "plan.tpp", "8", "microbatch", PLUS_REASON),
    fixed(["+hardware.chip.hbm_gbb=80"], "hardware.chip.hbm_gbb", "80", "hbm_gb", PLUS_REASON),
    # ---- wrong types ------------------------------------------------------------------------
    (["plan.tp=abc"], "plan.tp", "abc", "Integer"),
    (["hardware.chip.hbm_tb_s=fast"], "hardware.chip.hbm_tb_s", "fast", "Float"),
    (["phase.global_batch=1.5"], "phase.global_batch", "1.5", "Integer"),
    (["phase.seq_len=abc"], "phase.seq_len", "abc", "Integer"),
    (["plan.tp=[2,4]"], "plan.tp", "[2, 4]", "Integer"),
    (["hardware.num_chips=[72]"], "hardware.num_chips", "[72]", "Integer"),
    (["hardware.scale_up.domain_size=2.5"], "hardware.scale_up.domain_size", "2.5", "Integer"),
    (["hardware.chip.bf16_tflops=true"], "hardware.chip.bf16_tflops", "true", "Float"),
    (["plan.sp=maybe"], "plan.sp", "maybe", "bool"),
    (["hardware.chip.efficiency=0.5"], "hardware.chip.efficiency", "0.5", "EfficiencyConfig"),
    (["hardware.chip.hbm_gb=${oops}"], "hardware.chip.hbm_gb", "oops", "not found"),
    # ---- negative or zero bandwidths, capacities, counts, latencies, TDP ---------------------
    (["hardware.scale_up.gb_s=-5"], "hardware.scale_up.gb_s", "-5", "> 0"),
    (["hardware.scale_out.gb_s=0"], "hardware.scale_out.gb_s", "0", "> 0"),
    (["hardware.chip.hbm_tb_s=-1"], "hardware.chip.hbm_tb_s", "-1", "> 0"),
    (["hardware.chip.hbm_gb=0"], "hardware.chip.hbm_gb", "0", "> 0"),
    (["hardware.num_chips=0"], "hardware.num_chips", "0", "[1,"),
    (["hardware.num_chips=-8"], "hardware.num_chips", "-8", "[1,"),
    (["hardware.scale_up.latency_us=-1"], "hardware.scale_up.latency_us", "-1", ">= 0"),
    (["hardware.chip.tdp_w=0"], "hardware.chip.tdp_w", "0", "> 0"),
    (["hardware.chip.tdp_w=-100"], "hardware.chip.tdp_w", "-100", "> 0"),
    (["hardware.scale_up.domain_size=0"], "hardware.scale_up.domain_size", "0", ">= 1"),
    (["hardware.host_w_per_chip=-5"], "hardware.host_w_per_chip", "-5", ">= 0"),
    (["hardware.scale_out.optic_w=-1"], "hardware.scale_out.optic_w", "-1", ">= 0"),
    (["workload.layers=-80"], "workload.layers", "-80", ">= 1"),
    (["plan.microbatch=0"], "plan.microbatch", "0", ">= 1"),
    (["hardware.chip.dies=17"], "hardware.chip.dies", "17", "[1, 16]"),
    # ---- NaN and inf ------------------------------------------------------------------------
    (["hardware.chip.hbm_tb_s=nan"], "hardware.chip.hbm_tb_s", "nan", "finite"),
    (["hardware.scale_out.gb_s=inf"], "hardware.scale_out.gb_s", "inf", "finite"),
    (["hardware.chip.bf16_tflops=inf"], "hardware.chip.bf16_tflops", "inf", "finite"),
    (["hardware.scale_up.latency_us=nan"], "hardware.scale_up.latency_us", "nan", "finite"),
    (["hardware.pue=inf"], "hardware.pue", "inf", "finite"),
    (["hardware.chip.tdp_w=1e400"], "hardware.chip.tdp_w", "inf", "finite"),
    (["phase.power_budget_kw=nan"], "phase.power_budget_kw", "nan", "finite"),
    # ---- numbers that are valid in friendly units but leave float32 once scaled to SI -------
    fixed(["hardware.chip.hbm_tb_s=1e30"], "hardware.chip.hbm_tb_s", "1e30", "allowed", FLOAT32_REASON),
    fixed(["hardware.chip.bf16_tflops=1e30"], "hardware.chip.bf16_tflops", "1e30", "allowed", FLOAT32_REASON),
    fixed(["hardware.chip.tdp_w=1e40"], "hardware.chip.tdp_w", "1e40", "allowed", FLOAT32_REASON),
    fixed(["hardware.chip.hbm_gb=1e40"], "hardware.chip.hbm_gb", "1e40", "allowed", FLOAT32_REASON),
    fixed(["hardware.chip.hbm_tb_s=1e-40"], "hardware.chip.hbm_tb_s", "1e-40", "allowed", FLOAT32_REASON),
    # ---- power and efficiency bounds --------------------------------------------------------
    (["hardware.chip.idle_w=1200"], "hardware.chip.idle_w", "1200", "below tdp_w"),
    (["hardware.chip.idle_w=5000"], "hardware.chip.idle_w", "5000", "below tdp_w"),
    (["hardware.chip.idle_w=-1"], "hardware.chip.idle_w", "-1", ">= 0"),
    (["hardware.pue=0.9"], "hardware.pue", "0.9", ">= 1"),
    (["hardware.chip.efficiency.matmul_max=1.5"], "hardware.chip.efficiency.matmul_max", "1.5", "[0, 1]"),
    (["hardware.chip.efficiency.hbm=2"], "hardware.chip.efficiency.hbm", "2", "[0, 1]"),
    (["hardware.scale_up.efficiency=1.2"], "hardware.scale_up.efficiency", "1.2", "[0, 1]"),
    (["hardware.scale_out.efficiency=0"], "hardware.scale_out.efficiency", "0", "(0, 1]"),
    (["plan.dp_overlap=1.5"], "plan.dp_overlap", "1.5", "[0, 1]"),
    (["plan.tp_overlap=-0.1"], "plan.tp_overlap", "-0.1", ">= 0"),
    fixed(["hardware.chip.efficiency.matmul_max=0"], "hardware.chip.efficiency.matmul_max", "0", "(0, 1]",
          ZERO_EFF_REASON),
    fixed(["hardware.chip.efficiency.attention_max=0"], "hardware.chip.efficiency.attention_max", "0", "(0, 1]",
          ZERO_EFF_REASON),
    fixed(["hardware.chip.efficiency.hbm=0"], "hardware.chip.efficiency.hbm", "0", "(0, 1]", ZERO_EFF_REASON),
    fixed(["hardware.chip.efficiency.vector_flops_frac=0"], "hardware.chip.efficiency.vector_flops_frac", "0",
          "(0, 1]", ZERO_EFF_REASON),
    # ---- parallel degrees -------------------------------------------------------------------
    (["workload=llama3_70b", "hardware.num_chips=72", "plan.tp=3", "plan.dp=24"], "plan.tp", "3",
     "divisor of workload.heads=64"),
    (["workload=llama3_70b", "hardware.num_chips=72", "plan.pp=3", "plan.dp=24"], "plan.pp*vpp", "3",
     "divisor of workload.layers=80"),
    (["workload=llama3_70b", "hardware.num_chips=72", "plan.pp=2", "plan.vpp=3", "plan.dp=36"], "plan.pp*vpp", "6",
     "divisor of workload.layers=80"),
    (["workload=gpt3_175b", "plan.tp=0"], "plan.tp", "0", ">= 1"),
    (["workload=llama3_70b", "plan.ep=8"], "plan.ep", "8", "dense model"),
    (["workload=mixtral_8x7b", "plan.ep=16"], "plan.ep", "16", "at most workload.experts"),
    (["hardware=cloudmatrix384", "workload=deepseek_v3", "phase=decode", "plan.ep=512", "phase.batch=4096"],
     "plan.ep", "512", "at most workload.experts"),
    (["hardware.num_chips=72", "plan.tp=8", "plan.dp=8"], "plan.dp*tp*pp*cp", "8*8*1*1=64",
     "hardware.num_chips=72"),
    (["hardware.num_chips=72", "plan.tp=5"], "plan.tp*pp*cp", "5", "divisor of hardware.num_chips=72"),
    (["phase.global_batch=100"], "phase.global_batch", "100", "multiple of plan.dp*plan.microbatch=64"),
    (["phase.global_batch=96", "plan.microbatch=4"], "phase.global_batch", "96",
     "multiple of plan.dp*plan.microbatch=256"),
    (["hardware.num_chips=48", "plan.cp=3"], "plan.cp", "3", "divisor of phase.seq_len=2048"),
    (["phase=decode", "hardware.num_chips=72", "phase.batch=8"], "phase.batch", "8", "at least plan.dp=72"),
    (["phase=prefill", "hardware.num_chips=72", "phase.batch=16"], "phase.batch", "16", "at least plan.dp=72"),
    (["phase=decode", "plan.cp=2", "plan.dp=32"], "plan.cp", "2", "1 for inference"),
    (["phase=prefill", "plan.cp=2", "plan.dp=32"], "plan.cp", "2", "1 for inference"),
    (["plan.zero=4"], "plan.zero", "4", "[0, 3]"),
    (["plan.zero=-1"], "plan.zero", "-1", "[0, 3]"),
    (["plan.recompute=bogus"], "plan.recompute", "bogus", "selective"),
    fixed(["plan.redundant_experts=100"], "plan.redundant_experts", "100", "dense model",
          "dse.specs.Plan.from_config accepts redundant expert replicas for a dense model (experts=0): "
          "silently ignored, exit 0"),
    # ---- phase ------------------------------------------------------------------------------
    (["phase=decode", "phase.mtp_tokens_per_step=0.5"], "phase.mtp_tokens_per_step", "0.5", "[1, 16]"),
    (["phase=decode", "phase.mtp_tokens_per_step=0"], "phase.mtp_tokens_per_step", "0", "> 0"),
    (["workload=mixtral_8x7b", "phase.expert_imbalance=0.5"], "phase.expert_imbalance", "0.5", ">= 1"),
    (["phase=decode", "phase.tpot_slo_ms=0"], "phase.tpot_slo_ms", "0", "> 0"),
    (["phase=prefill", "phase.ttft_slo_ms=-5"], "phase.ttft_slo_ms", "-5", "> 0"),
    (["phase.power_budget_kw=0"], "phase.power_budget_kw", "0", "> 0"),
    (["phase.dtype=fp4"], "phase.dtype", "fp4", "bf16, fp8, int8"),
    (["phase.kv_dtype=fp4"], "phase.kv_dtype", "fp4", "bf16, fp8, int8"),
    (["phase.batch=0", "phase=decode"], "phase.batch", "0", ">= 1"),
    (["phase.context_len=-1", "phase=decode"], "phase.context_len", "-1", ">= 1"),
    (["hardware=dgx_a100", "phase.dtype=fp8"], "phase.dtype", "fp8", "bf16 | int8"),
    (["hardware=cloudmatrix384", "workload=deepseek_v3", "phase=decode", "phase.dtype=fp8", "plan.ep=64",
      "phase.batch=4096"], "phase.dtype", "fp8", "bf16 | int8"),
    (["hardware.chip.int8_tops=null", "phase.dtype=int8"], "phase.dtype", "int8", "bf16 | fp8"),
    fixed(["phase=decode", "phase.mtp_tokens_per_step=1e30"], "phase.mtp_tokens_per_step", "1e30", "allowed",
          "dse.specs.Phase.from_config has no upper bound on mtp_tokens_per_step: 1e30 overflows float32 in "
          "decode (null metrics, exit 0)"),
    fixed(["workload=mixtral_8x7b", "phase.expert_imbalance=1e30"], "phase.expert_imbalance", "1e30", "allowed",
          "dse.specs.Phase.from_config has no upper bound on expert_imbalance (at most plan.ep is physical): "
          "1e30 overflows float32 (null metrics, exit 0)"),
    # ---- workload ---------------------------------------------------------------------------
    (["workload=mixtral_8x7b", "workload.top_k=9"], "workload.top_k", "9", "[1, workload.experts=8]"),
    (["workload=mixtral_8x7b", "workload.top_k=0"], "workload.top_k", "0", "[1, workload.experts=8]"),
    (["workload.kv_heads=7"], "workload.kv_heads", "7", "divisor of workload.heads="),
    (["workload.heads=0"], "workload.heads", "0", ">= 1"),
    (["workload=deepseek_v3", "workload.kv_lora_rank=0", "plan.ep=8"], "workload.kv_lora_rank", "0",
     "attention=mla"),
    (["workload=mixtral_8x7b", "workload.expert_ffn=0"], "workload.expert_ffn", "0", ">= 1"),
    (["workload=mixtral_8x7b", "workload.dense_layers=32"], "workload.dense_layers", "32", "[0, workload.layers=32)"),
    (["hardware.scale_up.topology=hypercube"], "hardware.scale_up.topology", "hypercube", "torus"),
    # ---- task -------------------------------------------------------------------------------
    (["task=nonsense"], "task", "nonsense", "evaluate"),
]


def _args(case_args):
    args = list(case_args)
    if not any(a.startswith("task=") for a in args):
        args = ["task=evaluate", *args]
    return [*BASE, *args]


def _case_id(p):
    return p.id if hasattr(p, "id") else " ".join(p[0])


def _case_args(p):
    return p.values[0] if hasattr(p, "values") else p[0]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Run every case's CLI once, a few at a time, keyed by case id."""
    ids = [_case_id(p) for p in CASES]
    assert len(set(ids)) == len(ids), "duplicate case ids"

    def one(i):
        d = tmp_path_factory.mktemp(f"bad{i}")
        return ids[i], run_dse(d, *_args(_case_args(CASES[i])))

    with ThreadPoolExecutor(max_workers=max(2, min(8, (os.cpu_count() or 2)))) as ex:
        return dict(ex.map(one, range(len(CASES))))


def _value_forms(value: str):
    forms = {value.lower()}
    try:
        f = float(value)
        forms.add(repr(f).lower())
        if f.is_integer() and abs(f) < 1e16:
            forms.add(str(int(f)))
    except ValueError:
        pass
    return forms


def test_corpus_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("args,field,value,hint", CASES, ids=[_case_id(p) for p in CASES])
def test_bad_input_exits_2_with_one_line(results, args, field, value, hint):
    r = results[" ".join(args)]
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert field in line, (field, line)
    assert any(v in line.lower() for v in _value_forms(value)), (value, line)
    assert hint in line, (hint, line)


def test_full_error_env_shows_trace(tmp_path):
    """HYDRA_FULL_ERROR=1 turns the one-line message back into the full trace (documented escape hatch)."""
    r = run_dse(tmp_path, *BASE, "task=evaluate", "hardware.chip.hbm_gb=0", env={"HYDRA_FULL_ERROR": "1"})
    assert r.returncode != 0
    assert "Traceback" in r.stderr and "hardware.chip.hbm_gb" in r.stderr
