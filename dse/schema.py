"""Typed schemas of the Hydra config groups.

Each config group (``hardware``, ``workload``, ``phase``, ``plan``) has a dataclass schema that is
registered in Hydra's ConfigStore. Preset YAML files extend the schema through their defaults list,
so a misspelt key or a wrong type fails at compose time with the key's name. Units in the YAML are
the friendly ones named in each field (TFLOP/s, GB, GB/s, us, W); ``dse.specs`` converts them to SI.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class Topology(Enum):
    switched = "switched"
    full_mesh = "full_mesh"
    torus = "torus"
    ring = "ring"


class Attention(Enum):
    mha = "mha"
    gqa = "gqa"
    mla = "mla"


class PhaseKind(Enum):
    train = "train"
    prefill = "prefill"
    decode = "decode"


class Dtype(Enum):
    bf16 = "bf16"
    fp8 = "fp8"
    int8 = "int8"


class Recompute(Enum):
    none = "none"
    selective = "selective"
    full = "full"


@dataclass
class EfficiencyConfig:
    """Achievable-efficiency calibration of one chip (one set per chip, with provenance)."""
    matmul_max: float = 0.80          # fraction of peak a large matmul reaches
    matmul_half_gflop: float = 2.0    # matmul size (GFLOP) at which it reaches half of matmul_max
    attention_max: float = 0.60       # fraction of peak the attention core (scores/context) reaches
    hbm: float = 0.85                 # fraction of HBM bandwidth a streaming kernel reaches
    vector_flops_frac: float = 0.05   # vector-unit FLOP/s as a fraction of matrix peak (bf16)
    op_overhead_us: float = 2.0       # fixed launch/sync cost per kernel
    source: str = ""


@dataclass
class ChipConfig:
    name: str = MISSING
    bf16_tflops: float = MISSING      # dense
    fp8_tflops: Optional[float] = None   # dense; null = no FP8 support
    int8_tops: Optional[float] = None    # dense; null = no INT8 support
    hbm_gb: float = MISSING           # 1 GB = 1e9 B
    hbm_tb_s: float = MISSING         # TB/s
    tdp_w: float = MISSING            # max power of the package (incl. its HBM)
    idle_w: float = MISSING
    hbm_pj_per_bit: float = 4.0       # HBM access energy (part of tdp_w)
    dies: int = 1                     # separately addressed devices (ranks) per package
    reserved_gb: float = 2.0          # HBM taken by runtime, framework and communication buffers
    efficiency: EfficiencyConfig = field(default_factory=EfficiencyConfig)
    source: str = ""


@dataclass
class FabricConfig:
    """One network tier as seen from one chip. Bandwidths are per direction."""
    name: str = MISSING
    topology: Topology = Topology.switched
    domain_size: int = MISSING        # chips reachable on this tier without leaving it
    gb_s: float = MISSING             # per chip, per direction, GB/s
    latency_us: float = MISSING       # one-way startup latency of a message (alpha)
    msg_us: float = 0.4               # injection cost per message in an all-to-all (1 / message rate)
    efficiency: float = 0.8           # achievable fraction of gb_s for large collectives
    pj_per_bit: float = 5.0           # electrical/serdes energy per bit moved (dynamic)
    optics_per_chip: float = 0.0      # optical transceivers attributed to one chip
    optic_w: float = 0.0              # power of one transceiver
    switch_w_per_chip: float = 0.0    # switch ASIC power attributed to one chip
    source: str = ""


@dataclass
class HardwareConfig:
    name: str = MISSING
    num_chips: int = MISSING
    chip: ChipConfig = field(default_factory=ChipConfig)
    scale_up: FabricConfig = field(default_factory=FabricConfig)
    scale_out: FabricConfig = field(default_factory=FabricConfig)
    host_w_per_chip: float = 0.0      # CPUs, DRAM, NICs, fans... per chip
    pue: float = 1.0                  # facility overhead (cooling, conversion)
    power_boundary: str = MISSING     # what the total power covers
    source: str = MISSING
    notes: str = ""


@dataclass
class WorkloadConfig:
    name: str = MISSING
    layers: int = MISSING
    hidden: int = MISSING
    heads: int = MISSING
    kv_heads: Optional[int] = None    # null = heads (MHA)
    head_dim: Optional[int] = None    # null = hidden / heads
    ffn: int = MISSING                # dense FFN width
    gated_ffn: bool = False           # SwiGLU (3 matrices) vs GeLU (2)
    vocab: int = MISSING
    attention: Attention = Attention.mha
    # MLA (DeepSeek) dimensions
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_dim: int = 0
    qk_rope_dim: int = 0
    v_head_dim: int = 0
    # MoE
    experts: int = 0                  # routed experts per MoE layer (0 = dense model)
    top_k: int = 0
    shared_experts: int = 0
    expert_ffn: int = 0
    dense_layers: int = 0             # first-k dense layers of an MoE model
    mtp_depth: int = 0                # multi-token-prediction modules
    source: str = MISSING


@dataclass
class PhaseConfig:
    kind: PhaseKind = MISSING
    dtype: Dtype = Dtype.bf16
    global_batch: int = 512           # train: sequences per step
    seq_len: int = 2048               # train: sequence length; prefill: prompt length
    batch: int = 64                   # inference: sequences in flight in the whole system
    context_len: int = 4096           # decode: KV length
    mtp_tokens_per_step: float = 1.0  # decode: accepted tokens per sequence per step
    kv_dtype: Optional[Dtype] = None  # null = dtype
    tpot_slo_ms: Optional[float] = None
    ttft_slo_ms: Optional[float] = None
    expert_imbalance: float = 1.0     # hottest expert rank load / mean (>= 1)
    power_budget_kw: Optional[float] = None


@dataclass
class PlanConfig:
    dp: Optional[int] = None          # null = num_chips / (tp * pp * cp)
    tp: int = 1
    pp: int = 1
    ep: int = 1
    cp: int = 1
    microbatch: int = 1               # sequences per microbatch
    vpp: int = 1                      # virtual stages per pipeline rank
    zero: int = 1                     # 0-3
    recompute: Recompute = Recompute.none
    sp: bool = False
    flash_attention: bool = True      # fused attention (no s^2 HBM traffic, causal skip)
    dp_overlap: float = 0.8           # fraction of DP gradient comm hidden by backward
    tp_overlap: float = 0.0           # fraction of TP comm hidden by compute
    ep_overlap: float = 0.0           # fraction of EP all-to-all hidden (two-microbatch overlap)
    redundant_experts: int = 0        # extra expert replicas (EPLB) across the EP group


def register_schemas() -> None:
    cs = ConfigStore.instance()
    cs.store(group="hardware", name="schema", node=HardwareConfig)
    cs.store(group="workload", name="schema", node=WorkloadConfig)
    cs.store(group="phase", name="schema", node=PhaseConfig)
    cs.store(group="plan", name="schema", node=PlanConfig)
