"""Every preset composes, validates and matches the published numbers it cites."""
from pathlib import Path

import pytest

from dse.config import CONF_DIR
from dse.specs import Model, System

HARDWARE = sorted(p.stem for p in (Path(CONF_DIR) / "hardware").glob("*.yaml"))
WORKLOADS = sorted(p.stem for p in (Path(CONF_DIR) / "workload").glob("*.yaml"))


def test_preset_lists_are_complete():
    assert {"cloudmatrix384", "gb200_nvl72", "hgx_h100", "hgx_h800", "dgx_a100", "hgx_b200", "tpu_v5p"} <= set(HARDWARE)
    assert {"gpt3_175b", "megatron_22b", "turing_530b", "llama3_8b", "llama3_70b", "llama3_405b", "deepseek_v3",
            "mixtral_8x7b", "megatron_1p7b", "megatron_1t"} <= set(WORKLOADS)


@pytest.mark.parametrize("name", HARDWARE)
def test_hardware_preset_builds_and_cites(name, specs):
    from dse.config import compose_config
    cfg = compose_config([f"hardware={name}"])
    assert cfg.hardware.source and cfg.hardware.power_boundary
    s = System.from_config(cfg.hardware)
    assert float(s.chip.flops_bf16) > 0 and float(s.power_max_w) > 0


@pytest.mark.parametrize("name", WORKLOADS)
def test_workload_preset_builds(name):
    from dse.config import compose_config
    cfg = compose_config([f"workload={name}"])
    assert cfg.workload.source
    Model.from_config(cfg.workload)


def _system(name, *ov):
    from dse.config import compose_config
    return System.from_config(compose_config([f"hardware={name}", *ov]).hardware)


def test_cloudmatrix384_headline_numbers():
    s = _system("cloudmatrix384")
    assert float(s.num_chips) == 384
    assert float(s.chip.flops_bf16 * s.num_chips) == pytest.approx(384 * 752e12, rel=1e-6)   # 288.8 PF (paper)
    assert float(s.chip.flops_bf16 * s.num_chips) / 1e15 == pytest.approx(288.8, abs=0.05)
    s780 = _system("cloudmatrix384", "hardware.chip.bf16_tflops=780")
    assert float(s780.chip.flops_bf16 * s780.num_chips) / 1e15 == pytest.approx(299.5, abs=0.05)  # "300 PFLOPS"
    assert float(s.chip.hbm_bytes * s.num_chips) / 1e12 == pytest.approx(49.152)
    assert float(s.chip.hbm_bw * s.num_chips) / 1e12 == pytest.approx(1228.8)
    assert float(s.scale_up.bw) == pytest.approx(392e9)            # UB per NPU per direction
    assert float(s.scale_out.bw) == pytest.approx(50e9)            # 400 Gb/s RDMA
    optics = float((s.scale_up.optics_per_chip + s.scale_out.optics_per_chip) * s.num_chips)
    assert optics == pytest.approx(6912)
    assert float(s.power_max_w) == pytest.approx(559e3, rel=1e-4)


def test_gb200_nvl72_headline_numbers():
    s = _system("gb200_nvl72")
    assert float(s.chip.flops_bf16 * s.num_chips) / 1e15 == pytest.approx(180.0)
    assert float(s.chip.hbm_bw * s.num_chips) / 1e12 == pytest.approx(576.0)
    assert float(s.scale_up.bw) == pytest.approx(900e9)            # NVLink 5: 1.8 TB/s bidirectional
    assert float(s.power_max_w) == pytest.approx(145e3, rel=1e-4)


def test_semianalysis_ratios_from_preset_inputs():
    cm = _system("cloudmatrix384", "hardware.chip.bf16_tflops=780")
    nv = _system("gb200_nvl72")
    flops = lambda s: float(s.chip.flops_bf16 * s.num_chips)
    hbm_bw = lambda s: float(s.chip.hbm_bw * s.num_chips)
    assert round(flops(cm) / flops(nv), 1) == 1.7
    assert round(hbm_bw(cm) / hbm_bw(nv), 1) == 2.1
    assert round(float(cm.power_max_w / nv.power_max_w), 1) == 3.9
    w_per_flop = lambda s: float(s.power_max_w) / flops(s)
    assert round(w_per_flop(cm) / w_per_flop(nv), 1) == 2.3


@pytest.mark.parametrize("name,bf16,hbm_gb,up_gb_s", [
    ("hgx_h100", 989.4, 80, 450), ("hgx_h800", 989.4, 80, 200), ("dgx_a100", 312, 80, 300),
    ("hgx_b200", 2250, 180, 900), ("tpu_v5p", 459, 95, 600)])
def test_chip_specs_match_reference(name, bf16, hbm_gb, up_gb_s):
    s = _system(name)
    assert float(s.chip.flops_bf16) == pytest.approx(bf16 * 1e12)
    assert float(s.chip.hbm_bytes) == pytest.approx(hbm_gb * 1e9)
    assert float(s.scale_up.bw) == pytest.approx(up_gb_s * 1e9)


def test_dgx_h100_node_power_boundary():
    s = _system("hgx_h100", "hardware.num_chips=8")
    assert float(s.power_max_w) == pytest.approx(10.2e3, rel=1e-3)   # DGX H100 datasheet, max


def test_deepseek_v3_shape(specs):
    from dse.cost.memory import kv_bytes_per_token, total_params, active_params_per_token
    s, m, p, pl = specs("workload=deepseek_v3", "phase=decode", "hardware.num_chips=8", "plan.ep=8", "phase.batch=64")
    assert float(kv_bytes_per_token(m, p)) == 70272          # 61 x (512 + 64) x 2 B (ISCA'25)
    assert float(total_params(m)) / 1e9 == pytest.approx(671, rel=0.01)
    assert float(active_params_per_token(m)) / 1e9 == pytest.approx(37, rel=0.03)


def test_llama3_405b_kv_cache(specs):
    from dse.cost.memory import kv_bytes_per_token
    s, m, p, pl = specs("workload=llama3_405b", "phase=decode", "hardware.num_chips=8", "phase.batch=64")
    assert float(kv_bytes_per_token(m, p)) == 516096         # 2 x 126 x 8 x 128 x 2 B
