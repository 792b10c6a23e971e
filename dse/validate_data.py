"""Validation cases: published measurements turned into (specs, measured value) pairs."""
from __future__ import annotations

from pathlib import Path
from typing import List, NamedTuple

import yaml

from dse.build import build
from dse.config import compose_config

MEASUREMENTS = Path(__file__).resolve().parent / "data" / "measurements.yaml"
SEQ, VOCAB = 2048, 51200


class Case(NamedTuple):
    table: str
    name: str
    overrides: List[str]
    measured: float
    unit: str


def load_measurements() -> dict:
    return yaml.safe_load(MEASUREMENTS.read_text())


def megatron_eq3_flops(batch, layers, hidden, seq=SEQ, vocab=VOCAB):
    """FLOPs per iteration with full recompute (Narayanan et al. 2021, eq. 3)."""
    return 96.0 * batch * seq * layers * hidden ** 2 * (1 + seq / (6.0 * hidden) + vocab / (16.0 * layers * hidden))


def megatron_cases() -> List[Case]:
    t = load_measurements()["megatron_sc21_table1"]
    out = []
    for wl, (pb, heads, hidden, layers, tp, pp, gpus, batch, tflops) in zip(t["workloads"], t["rows"]):
        ov = ["hardware=dgx_a100", f"workload={wl}", "phase=train", f"hardware.num_chips={gpus}",
              f"plan.tp={tp}", f"plan.pp={pp}", f"plan.dp={gpus // (tp * pp)}", f"phase.global_batch={batch}",
              f"phase.seq_len={SEQ}", "plan.recompute=full", "plan.sp=false", "plan.flash_attention=false",
              "plan.zero=0", "plan.microbatch=1", "plan.vpp=1", "plan.dp_overlap=0"]
        out.append(Case("megatron_sc21_table1", wl, ov, float(tflops), "TFLOP/s per GPU"))
    return out


def korthikanti_cases() -> List[Case]:
    k = load_measurements()["korthikanti_2022"]
    out = []
    for wl, tp, pp, gpus, batch, mb, vpp, full_s, seqsel_s in k["rows"]:
        for label, rc, sp, meas in (("full", "full", "false", full_s), ("seq+sel", "selective", "true", seqsel_s)):
            ov = ["hardware=dgx_a100", f"workload={wl}", "phase=train", f"hardware.num_chips={gpus}",
                  f"plan.tp={tp}", f"plan.pp={pp}", "plan.dp=1", f"phase.global_batch={batch}",
                  f"phase.seq_len={SEQ}", f"plan.recompute={rc}", f"plan.sp={sp}", "plan.flash_attention=false",
                  "plan.zero=0", f"plan.microbatch={mb}", f"plan.vpp={vpp}", "plan.dp_overlap=0"]
            out.append(Case("korthikanti_table5", f"{wl} {label}", ov, float(meas), "s per iteration"))
    return out


def build_case(case: Case):
    return build(compose_config(case.overrides))


def _serving_overrides(c: dict, hardware: str, dtype: str) -> List[str]:
    """Overrides of one DeepSeek serving measurement: DP attention over all chips, EP as given."""
    n = c["num_chips"]
    ov = [f"hardware={hardware}", "workload=deepseek_v3", f"phase={c['phase']}", f"hardware.num_chips={n}",
          f"plan.tp={c.get('tp', 1)}", f"plan.dp={c.get('dp', n)}", f"plan.ep={c['ep']}", f"phase.batch={c['batch']}",
          f"phase.dtype={dtype}"]
    if c["phase"] == "decode":
        return ov + [f"phase.context_len={c['context_len']}", f"phase.mtp_tokens_per_step={c['mtp_tokens_per_step']}"]
    return ov + [f"phase.seq_len={c['seq_len']}"]


def cloudmatrix_cases() -> List[Case]:
    """CloudMatrix-Infer serving points (tokens/s per NPU), with the issue's exact overrides."""
    return [Case("cloudmatrix384_serving", c["name"], _serving_overrides(c, "cloudmatrix384", "int8"),
                 float(c["tokens_s_per_chip"]), "tokens/s per NPU")
            for c in load_measurements()["cloudmatrix384_serving"]]


def gpu_serving_cases() -> List[Case]:
    """Out-of-sample DeepSeek FP8 serving points on H800/H100 (cm384_paper Tables 2-3)."""
    return [Case("gpu_deepseek_serving", c["name"], _serving_overrides(c, c["hardware"], "fp8"),
                 float(c["tokens_s_per_chip"]), "tokens/s per GPU")
            for c in load_measurements()["gpu_deepseek_serving"]]
