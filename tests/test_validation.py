"""Predictions vs published measurements, with the issue's error bars (one calibration per chip)."""
import numpy as np
import pytest

from dse.validate import run_validation, summarise


@pytest.fixture(scope="module")
def rows():
    return run_validation()


def _errors(rows, table):
    return np.abs([r["error_pct"] for r in rows if r["table"] == table])


def test_korthikanti_table5_iteration_times(rows):
    e = _errors(rows, "korthikanti_table5")
    assert e.size == 8
    assert e.mean() <= 5.0 and e.max() <= 10.0
    assert e.mean() <= 3.65          # at least as good as the best existing tool (tuned on these 8 points)


def test_megatron_table1_throughput(rows):
    e = _errors(rows, "megatron_sc21_table1")
    assert e.size == 10
    assert e.mean() <= 8.0 and e.max() <= 15.0


def test_korthikanti_fig1_memory(rows):
    e = _errors(rows, "korthikanti_fig1_memory")
    assert e.size == 12 and e.max() <= 10.0


def test_cloudmatrix_infer_serving(rows):
    cm = [r for r in rows if r["table"] == "cloudmatrix384_serving"]
    assert len(cm) == 5
    for r in cm:
        assert abs(r["error_pct"]) <= r["tol_pct"], r


def test_gpu_serving_out_of_sample(rows):
    """Not calibrated on: H800 (DeepSeek profile) and H100 (SGLang) DeepSeek serving, within 30 %."""
    g = [r for r in rows if r["table"] == "gpu_deepseek_serving"]
    assert len(g) == 4
    for r in g:
        assert abs(r["error_pct"]) <= 30.0, r


def test_summary_shape(rows):
    s = summarise(rows)
    assert set(s) == {"megatron_sc21_table1", "korthikanti_table5", "korthikanti_fig1_memory", "cloudmatrix384_serving",
                      "gpu_deepseek_serving"}


def test_gpt3_175b_on_1024_a100_matches_text(specs):
    """Narayanan et al.: GPT-3 175B on 1024 A100s at batch 1536 runs at ~140 TFLOP/s per GPU."""
    from dse.perf import evaluate
    from dse.validate_data import megatron_eq3_flops
    s, m, p, pl = specs("hardware=dgx_a100", "workload=gpt3_175b", "phase=train", "hardware.num_chips=1024",
                        "plan.tp=8", "plan.pp=8", "plan.dp=16", "phase.global_batch=1536", "plan.recompute=full",
                        "plan.flash_attention=false", "plan.zero=0", "plan.vpp=1", "plan.dp_overlap=0")
    step = float(evaluate(s, m, p, pl).step_time_s)
    tflops = megatron_eq3_flops(1536, 96, 12288) / step / 1024 / 1e12
    assert tflops == pytest.approx(140, rel=0.10)
