"""Specs: the frozen pytrees every cost function takes.

A *spec* is a ``flax.struct.dataclass`` whose numeric fields are JAX arrays in SI units (bytes,
bytes/s per direction, FLOP/s, seconds, watts, joules) and whose few static fields are tags of
structure (a topology kind, an attention kind, a phase kind, a dtype). Because every number is a
leaf, ``jax.vmap`` and ``jax.grad`` reach any of them: a chip's HBM bandwidth, a plan's TP degree
or a batch size are all equally design variables.

``from_config`` is the one place where configuration values (friendly units, see
``dse.schema``) become arrays. It validates every value and raises
:class:`dse.errors.ConfigError` naming the field, the value and what is allowed.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import jax.numpy as jnp
from flax import struct

from dse.errors import ConfigError, require_fraction, require_int, require_positive

GB = 1e9
TERA = 1e12
US = 1e-6
DTYPE_BYTES = {"bf16": 2.0, "fp8": 1.0, "int8": 1.0}
RECOMPUTE_LEVEL = {"none": 0.0, "selective": 1.0, "full": 2.0}
TOPOLOGIES = ("switched", "full_mesh", "torus", "ring")
ATTENTIONS = ("mha", "gqa", "mla")
PHASES = ("train", "prefill", "decode")


SI_RANGE = (1e-20, 1e25)   # every positive SI number must sit well inside float32 (no overflow downstream)


def _f(x) -> jnp.ndarray:
    return jnp.asarray(x, dtype=jnp.result_type(float))


def _si(field: str, value: float, scale: float, unit: str = "") -> jnp.ndarray:
    """``value`` (config units, already validated >= 0) times ``scale`` as an array; a non-zero SI
    value outside SI_RANGE is a ConfigError (it would overflow float32 downstream)."""
    v = value * scale
    if v != 0.0 and not SI_RANGE[0] <= v <= SI_RANGE[1]:
        lo, hi = SI_RANGE[0] / scale, SI_RANGE[1] / scale
        raise ConfigError(field, value, f"a number in [{lo:.3g}, {hi:.3g}]{(' ' + unit) if unit else ''}")
    return _f(v)


def _eff(field: str, value) -> float:
    """An achievable-efficiency fraction in (0, 1]."""
    v = require_fraction(field, value)
    if v == 0.0:
        raise ConfigError(field, value, "a fraction in (0, 1]")
    return v


def _get(cfg: Mapping, key: str, default=None):
    if hasattr(cfg, "get"):
        v = cfg.get(key, default)
    else:
        v = getattr(cfg, key, default)
    return v.value if hasattr(v, "value") and not isinstance(v, (int, float, str)) else v


def _tag(cfg: Mapping, key: str, allowed, prefix: str) -> str:
    v = _get(cfg, key)
    v = getattr(v, "name", v)
    if v not in allowed:
        raise ConfigError(f"{prefix}.{key}", v, " | ".join(allowed))
    return str(v)


@struct.dataclass
class Chip:
    """One accelerator package. FLOP/s dense; bandwidth per direction; power in W."""
    flops_bf16: jnp.ndarray
    flops_fp8: jnp.ndarray        # 0 = not supported
    flops_int8: jnp.ndarray       # 0 = not supported
    hbm_bytes: jnp.ndarray
    hbm_bw: jnp.ndarray           # bytes/s
    tdp_w: jnp.ndarray
    idle_w: jnp.ndarray
    hbm_j_per_byte: jnp.ndarray
    dies: jnp.ndarray
    eff_matmul_max: jnp.ndarray
    eff_matmul_half_flop: jnp.ndarray
    eff_attention_max: jnp.ndarray
    eff_hbm: jnp.ndarray
    vector_flops: jnp.ndarray     # FLOP/s of the vector units
    op_overhead_s: jnp.ndarray
    reserved_bytes: jnp.ndarray   # HBM taken by runtime, framework and communication buffers

    def peak_flops(self, dtype: str) -> jnp.ndarray:
        return {"bf16": self.flops_bf16, "fp8": self.flops_fp8, "int8": self.flops_int8}[dtype]

    @classmethod
    def from_config(cls, cfg: Mapping, prefix: str = "hardware.chip") -> "Chip":
        p = lambda k: f"{prefix}.{k}"
        bf16 = require_positive(p("bf16_tflops"), _get(cfg, "bf16_tflops"))
        fp8 = _get(cfg, "fp8_tflops")
        int8 = _get(cfg, "int8_tops")
        fp8 = 0.0 if fp8 is None else require_positive(p("fp8_tflops"), fp8)
        int8 = 0.0 if int8 is None else require_positive(p("int8_tops"), int8)
        tdp = require_positive(p("tdp_w"), _get(cfg, "tdp_w"))
        idle = require_positive(p("idle_w"), _get(cfg, "idle_w"), allow_zero=True)
        if idle >= tdp:
            raise ConfigError(p("idle_w"), idle, f"a power below tdp_w ({tdp} W)")
        e = _get(cfg, "efficiency") or {}
        pe = lambda k: f"{prefix}.efficiency.{k}"
        return cls(
            flops_bf16=_si(p("bf16_tflops"), bf16, TERA, "TFLOP/s"), flops_fp8=_si(p("fp8_tflops"), fp8, TERA, "TFLOP/s"),
            flops_int8=_si(p("int8_tops"), int8, TERA, "TOP/s"),
            hbm_bytes=_si(p("hbm_gb"), require_positive(p("hbm_gb"), _get(cfg, "hbm_gb")), GB, "GB"),
            hbm_bw=_si(p("hbm_tb_s"), require_positive(p("hbm_tb_s"), _get(cfg, "hbm_tb_s")), TERA, "TB/s"),
            tdp_w=_si(p("tdp_w"), tdp, 1.0, "W"), idle_w=_si(p("idle_w"), idle, 1.0, "W"),
            hbm_j_per_byte=_f(require_positive(p("hbm_pj_per_bit"), _get(cfg, "hbm_pj_per_bit", 4.0), True) * 8e-12),
            dies=_f(require_int(p("dies"), _get(cfg, "dies", 1), 1, 16)),
            eff_matmul_max=_f(_eff(pe("matmul_max"), _get(e, "matmul_max", 0.8))),
            eff_matmul_half_flop=_f(require_positive(pe("matmul_half_gflop"), _get(e, "matmul_half_gflop", 2.0), True) * 1e9),
            eff_attention_max=_f(_eff(pe("attention_max"), _get(e, "attention_max", 0.6))),
            eff_hbm=_f(_eff(pe("hbm"), _get(e, "hbm", 0.85))),
            vector_flops=_f(_eff(pe("vector_flops_frac"), _get(e, "vector_flops_frac", 0.05)) * bf16 * TERA),
            op_overhead_s=_f(require_positive(pe("op_overhead_us"), _get(e, "op_overhead_us", 2.0), True) * US),
            reserved_bytes=_f(require_positive(p("reserved_gb"), _get(cfg, "reserved_gb", 2.0), True) * GB),
        )


@struct.dataclass
class Fabric:
    """One network tier seen from one chip. ``bw`` is bytes/s per chip per direction."""
    bw: jnp.ndarray
    latency_s: jnp.ndarray
    msg_s: jnp.ndarray            # injection cost of one message in an all-to-all
    domain_size: jnp.ndarray
    efficiency: jnp.ndarray
    j_per_byte: jnp.ndarray
    optics_per_chip: jnp.ndarray
    optic_w: jnp.ndarray
    switch_w_per_chip: jnp.ndarray
    topology: str = struct.field(pytree_node=False, default="switched")

    @property
    def static_w_per_chip(self) -> jnp.ndarray:
        """Always-on power of this tier attributed to one chip (optics + switch ASICs)."""
        return self.optics_per_chip * self.optic_w + self.switch_w_per_chip

    @classmethod
    def from_config(cls, cfg: Mapping, prefix: str) -> "Fabric":
        p = lambda k: f"{prefix}.{k}"
        eff = require_fraction(p("efficiency"), _get(cfg, "efficiency", 0.8))
        if eff == 0:
            raise ConfigError(p("efficiency"), eff, "a fraction in (0, 1]")
        return cls(
            bw=_si(p("gb_s"), require_positive(p("gb_s"), _get(cfg, "gb_s")), GB, "GB/s"),
            latency_s=_si(p("latency_us"), require_positive(p("latency_us"), _get(cfg, "latency_us"), True), US, "us"),
            msg_s=_si(p("msg_us"), require_positive(p("msg_us"), _get(cfg, "msg_us", 0.4), True), US, "us"),
            domain_size=_f(require_int(p("domain_size"), _get(cfg, "domain_size"), 1)),
            efficiency=_f(eff),
            j_per_byte=_f(require_positive(p("pj_per_bit"), _get(cfg, "pj_per_bit", 5.0), True) * 8e-12),
            optics_per_chip=_f(require_positive(p("optics_per_chip"), _get(cfg, "optics_per_chip", 0.0), True)),
            optic_w=_f(require_positive(p("optic_w"), _get(cfg, "optic_w", 0.0), True)),
            switch_w_per_chip=_f(require_positive(p("switch_w_per_chip"), _get(cfg, "switch_w_per_chip", 0.0), True)),
            topology=_tag(cfg, "topology", TOPOLOGIES, prefix),
        )


@struct.dataclass
class System:
    """Chips on a scale-up tier and a scale-out tier, with host and facility overheads."""
    chip: Chip
    scale_up: Fabric
    scale_out: Fabric
    num_chips: jnp.ndarray
    host_w_per_chip: jnp.ndarray
    pue: jnp.ndarray
    name: str = struct.field(pytree_node=False, default="system")

    @property
    def scale_up_size(self) -> jnp.ndarray:
        """Chips in one scale-up domain (never more than the system has)."""
        return jnp.minimum(self.scale_up.domain_size, self.num_chips)

    @property
    def power_max_w(self) -> jnp.ndarray:
        """Whole-system power with every chip at TDP (the preset's stated boundary)."""
        per_chip = (self.chip.tdp_w + self.host_w_per_chip
                    + self.scale_up.static_w_per_chip + self.scale_out.static_w_per_chip)
        return self.num_chips * per_chip * self.pue

    @classmethod
    def from_config(cls, cfg: Mapping) -> "System":
        chip = Chip.from_config(_get(cfg, "chip"), "hardware.chip")
        up = Fabric.from_config(_get(cfg, "scale_up"), "hardware.scale_up")
        out = Fabric.from_config(_get(cfg, "scale_out"), "hardware.scale_out")
        dyn = float(chip.tdp_w - chip.idle_w)
        io = float(chip.hbm_j_per_byte * chip.hbm_bw + 2 * (up.j_per_byte * up.bw + out.j_per_byte * out.bw))
        if io >= dyn:
            raise ConfigError("hardware.chip.tdp_w", float(chip.tdp_w),
                              f"a TDP above idle_w + HBM and link power at full bandwidth ({float(chip.idle_w) + io:.0f} W)")
        pue = require_positive("hardware.pue", _get(cfg, "pue", 1.0))
        if pue < 1.0:
            raise ConfigError("hardware.pue", pue, "a number >= 1")
        return cls(
            chip=chip, scale_up=up, scale_out=out,
            num_chips=_f(require_int("hardware.num_chips", _get(cfg, "num_chips"), 1, 10_000_000)),
            host_w_per_chip=_f(require_positive("hardware.host_w_per_chip", _get(cfg, "host_w_per_chip", 0.0), True)),
            pue=_f(pue), name=str(_get(cfg, "name", "system")),
        )


@struct.dataclass
class Model:
    """Transformer shape. Dense models have ``experts == 0``; MLA dims are 0 unless attention=='mla'."""
    layers: jnp.ndarray
    hidden: jnp.ndarray
    heads: jnp.ndarray
    kv_heads: jnp.ndarray
    head_dim: jnp.ndarray
    ffn: jnp.ndarray
    ffn_mats: jnp.ndarray         # 3 for gated (SwiGLU), 2 otherwise
    vocab: jnp.ndarray
    q_lora_rank: jnp.ndarray
    kv_lora_rank: jnp.ndarray
    qk_nope_dim: jnp.ndarray
    qk_rope_dim: jnp.ndarray
    v_head_dim: jnp.ndarray
    experts: jnp.ndarray
    top_k: jnp.ndarray
    shared_experts: jnp.ndarray
    expert_ffn: jnp.ndarray
    dense_layers: jnp.ndarray
    mtp_depth: jnp.ndarray
    attention: str = struct.field(pytree_node=False, default="mha")
    name: str = struct.field(pytree_node=False, default="model")

    @property
    def moe_layers(self) -> jnp.ndarray:
        return jnp.where(self.experts > 0, self.layers - self.dense_layers, 0.0)

    @classmethod
    def from_config(cls, cfg: Mapping) -> "Model":
        p = lambda k: f"workload.{k}"
        i = lambda k, lo=1: require_int(p(k), _get(cfg, k), lo)
        layers, hidden, heads = i("layers"), i("hidden"), i("heads")
        kv_heads = _get(cfg, "kv_heads")
        kv_heads = heads if kv_heads is None else require_int(p("kv_heads"), kv_heads, 1)
        if heads % kv_heads:
            raise ConfigError(p("kv_heads"), kv_heads, f"a divisor of workload.heads={heads}")
        head_dim = _get(cfg, "head_dim")
        if head_dim is None:
            if hidden % heads:
                raise ConfigError(p("heads"), heads, f"a divisor of workload.hidden={hidden} (or set workload.head_dim)")
            head_dim = hidden // heads
        head_dim = require_int(p("head_dim"), head_dim, 1)
        attention = _tag(cfg, "attention", ATTENTIONS, "workload")
        mla = {k: i(k, 0) for k in ("q_lora_rank", "kv_lora_rank", "qk_nope_dim", "qk_rope_dim", "v_head_dim")}
        if attention == "mla":
            for k in ("kv_lora_rank", "qk_nope_dim", "qk_rope_dim", "v_head_dim"):
                if mla[k] < 1:
                    raise ConfigError(p(k), mla[k], "an integer >= 1 when workload.attention=mla")
        experts, top_k = i("experts", 0), i("top_k", 0)
        shared, expert_ffn, dense = i("shared_experts", 0), i("expert_ffn", 0), i("dense_layers", 0)
        if experts > 0:
            if not 1 <= top_k <= experts:
                raise ConfigError(p("top_k"), top_k, f"an integer in [1, workload.experts={experts}]")
            if expert_ffn < 1:
                raise ConfigError(p("expert_ffn"), expert_ffn, "an integer >= 1 for an MoE model (experts > 0)")
            if dense >= layers:
                raise ConfigError(p("dense_layers"), dense, f"an integer in [0, workload.layers={layers})")
        elif top_k or shared:
            raise ConfigError(p("experts"), experts, "an integer >= 1 when top_k or shared_experts is set")
        return cls(
            layers=_f(layers), hidden=_f(hidden), heads=_f(heads), kv_heads=_f(kv_heads),
            head_dim=_f(head_dim), ffn=_f(i("ffn")), ffn_mats=_f(3.0 if _get(cfg, "gated_ffn", False) else 2.0),
            vocab=_f(i("vocab")), **{k: _f(v) for k, v in mla.items()},
            experts=_f(experts), top_k=_f(top_k), shared_experts=_f(shared), expert_ffn=_f(expert_ffn),
            dense_layers=_f(dense if experts > 0 else 0), mtp_depth=_f(i("mtp_depth", 0)),
            attention=attention, name=str(_get(cfg, "name", "model")),
        )


@struct.dataclass
class Phase:
    """What is run: training step, prefill of a batch of prompts, or decode steps."""
    global_batch: jnp.ndarray     # train: sequences per step
    seq_len: jnp.ndarray          # train: sequence length; prefill: prompt length
    batch: jnp.ndarray            # inference: sequences in flight in the whole system
    context_len: jnp.ndarray      # decode: KV length
    mtp_tokens_per_step: jnp.ndarray
    act_bytes: jnp.ndarray        # bytes per activation element fed to matmuls
    weight_bytes: jnp.ndarray     # bytes per weight element as stored for compute
    kv_bytes: jnp.ndarray         # bytes per KV-cache element
    tpot_slo_s: jnp.ndarray       # inf = none
    ttft_slo_s: jnp.ndarray       # inf = none
    expert_imbalance: jnp.ndarray
    power_budget_w: jnp.ndarray   # inf = none
    kind: str = struct.field(pytree_node=False, default="train")
    dtype: str = struct.field(pytree_node=False, default="bf16")

    @classmethod
    def from_config(cls, cfg: Mapping) -> "Phase":
        p = lambda k: f"phase.{k}"
        kind = _tag(cfg, "kind", PHASES, "phase")
        dtype = _tag(cfg, "dtype", tuple(DTYPE_BYTES), "phase")
        kv = _get(cfg, "kv_dtype")
        kv = dtype if kv is None else _tag(cfg, "kv_dtype", tuple(DTYPE_BYTES), "phase")
        mtp = require_positive(p("mtp_tokens_per_step"), _get(cfg, "mtp_tokens_per_step", 1.0))
        if not 1.0 <= mtp <= 16.0:
            raise ConfigError(p("mtp_tokens_per_step"), mtp, "a number in [1, 16] (accepted tokens per decode step)")
        imb = require_positive(p("expert_imbalance"), _get(cfg, "expert_imbalance", 1.0))
        if imb < 1.0:
            raise ConfigError(p("expert_imbalance"), imb, "a number >= 1 (hottest / mean expert load)")

        def opt(key, scale):
            v = _get(cfg, key)
            return math.inf if v is None else require_positive(p(key), v) * scale

        return cls(
            global_batch=_f(require_int(p("global_batch"), _get(cfg, "global_batch", 1), 1)),
            seq_len=_f(require_int(p("seq_len"), _get(cfg, "seq_len", 2048), 1)),
            batch=_f(require_int(p("batch"), _get(cfg, "batch", 1), 1)),
            context_len=_f(require_int(p("context_len"), _get(cfg, "context_len", 4096), 1)),
            mtp_tokens_per_step=_f(mtp),
            act_bytes=_f(DTYPE_BYTES[dtype]),
            # training keeps bf16 weights (fp8 only for the matmul inputs); inference stores dtype
            weight_bytes=_f(2.0 if kind == "train" else DTYPE_BYTES[dtype]),
            kv_bytes=_f(DTYPE_BYTES[kv]),
            tpot_slo_s=_f(opt("tpot_slo_ms", 1e-3)), ttft_slo_s=_f(opt("ttft_slo_ms", 1e-3)),
            expert_imbalance=_f(imb), power_budget_w=_f(opt("power_budget_kw", 1e3)),
            kind=kind, dtype=dtype,
        )


@struct.dataclass
class Plan:
    """Parallelism and execution plan. Degrees are floats so a search can relax them."""
    dp: jnp.ndarray
    tp: jnp.ndarray
    pp: jnp.ndarray
    ep: jnp.ndarray
    cp: jnp.ndarray
    microbatch: jnp.ndarray       # sequences per microbatch
    vpp: jnp.ndarray              # virtual stages per pipeline rank
    zero: jnp.ndarray             # 0..3 (piecewise-linear between stages when relaxed)
    recompute: jnp.ndarray        # 0 none, 1 selective, 2 full
    sp: jnp.ndarray               # 0/1 sequence parallelism
    flash_attention: jnp.ndarray  # 0/1
    dp_overlap: jnp.ndarray
    tp_overlap: jnp.ndarray
    ep_overlap: jnp.ndarray
    redundant_experts: jnp.ndarray

    @classmethod
    def from_config(cls, cfg: Mapping, system: System, model: Model, phase: Phase) -> "Plan":
        p = lambda k: f"plan.{k}"
        n = int(system.num_chips)
        tp, pp, ep, cp = (require_int(p(k), _get(cfg, k, 1), 1) for k in ("tp", "pp", "ep", "cp"))
        vpp = require_int(p("vpp"), _get(cfg, "vpp", 1), 1)
        mb = require_int(p("microbatch"), _get(cfg, "microbatch", 1), 1)
        zero = require_int(p("zero"), _get(cfg, "zero", 0), 0, 3)
        rc = _tag(cfg, "recompute", tuple(RECOMPUTE_LEVEL), "plan")
        dp = _get(cfg, "dp")
        if dp is None:
            if n % (tp * pp * cp):
                raise ConfigError("plan.tp*pp*cp", tp * pp * cp, f"a divisor of hardware.num_chips={n}")
            dp = n // (tp * pp * cp)
        dp = require_int(p("dp"), dp, 1)
        heads, kv_heads, layers = int(model.heads), int(model.kv_heads), int(model.layers)
        experts = int(model.experts)
        if dp * tp * pp * cp != n:
            raise ConfigError("plan.dp*tp*pp*cp", f"{dp}*{tp}*{pp}*{cp}={dp * tp * pp * cp}",
                              f"a product equal to hardware.num_chips={n}")
        if heads % tp:
            raise ConfigError(p("tp"), tp, f"a divisor of workload.heads={heads}")
        if kv_heads % tp and tp % kv_heads:
            raise ConfigError(p("tp"), tp, f"a divisor or multiple of workload.kv_heads={kv_heads}")
        if layers % (pp * vpp):
            raise ConfigError("plan.pp*vpp", pp * vpp, f"a divisor of workload.layers={layers}")
        if experts == 0 and ep != 1:
            raise ConfigError(p("ep"), ep, "1 for a dense model (workload.experts=0)")
        red = require_int(p("redundant_experts"), _get(cfg, "redundant_experts", 0), 0)
        if experts and ep > experts + red:
            raise ConfigError(p("ep"), ep, f"at most workload.experts + plan.redundant_experts = {experts + red}")
        if (dp * tp * cp) % ep:
            raise ConfigError(p("ep"), ep, f"a divisor of plan.dp*tp*cp={dp * tp * cp}")
        if phase.kind == "train":
            gb = int(phase.global_batch)
            if gb % (dp * mb):
                raise ConfigError("phase.global_batch", gb, f"a multiple of plan.dp*plan.microbatch={dp * mb}")
            if int(phase.seq_len) % cp:
                raise ConfigError(p("cp"), cp, f"a divisor of phase.seq_len={int(phase.seq_len)}")
        else:
            if cp != 1:
                raise ConfigError(p("cp"), cp, "1 for inference phases")
            if int(phase.batch) < dp:
                raise ConfigError("phase.batch", int(phase.batch), f"at least plan.dp={dp} (one sequence per replica)")
        if experts == 0 and red:
            raise ConfigError(p("redundant_experts"), red, "0 for a dense model (workload.experts=0)")
        imb = float(f"{float(phase.expert_imbalance):.6g}")
        if experts and imb > ep:
            raise ConfigError("phase.expert_imbalance", imb, f"a number in [1, plan.ep={ep}] (the hottest rank takes at most all tokens)")
        return cls(
            dp=_f(dp), tp=_f(tp), pp=_f(pp), ep=_f(ep), cp=_f(cp), microbatch=_f(mb), vpp=_f(vpp),
            zero=_f(zero), recompute=_f(RECOMPUTE_LEVEL[rc]), sp=_f(1.0 if _get(cfg, "sp", False) else 0.0),
            flash_attention=_f(1.0 if _get(cfg, "flash_attention", True) else 0.0),
            dp_overlap=_f(require_fraction(p("dp_overlap"), _get(cfg, "dp_overlap", 0.0))),
            tp_overlap=_f(require_fraction(p("tp_overlap"), _get(cfg, "tp_overlap", 0.0))),
            ep_overlap=_f(require_fraction(p("ep_overlap"), _get(cfg, "ep_overlap", 0.0))),
            redundant_experts=_f(red),
        )
