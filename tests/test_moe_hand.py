"""A small MoE decode case checked against an exact hand calculation.

Model: 2 MoE layers, hidden 1024, 8 heads (MHA, head_dim 128), 4 experts, top-2, expert FFN 512
(non-gated: 2 matrices), vocab 1000. System: 4 H100s in one NVLink domain, dp = ep = 4, batch 8
(2 sequences per chip), context 100, bf16 (2 B), one token per step.
"""
import pytest

from dse.perf import evaluate

OV = ["hardware=hgx_h100", "hardware.num_chips=4", "workload=mixtral_8x7b", "workload.layers=2",
      "workload.hidden=1024", "workload.heads=8", "workload.kv_heads=8", "workload.head_dim=128",
      "workload.experts=4", "workload.top_k=2", "workload.shared_experts=0", "workload.expert_ffn=512",
      "workload.ffn=512", "workload.gated_ffn=false", "workload.dense_layers=0", "workload.vocab=1000",
      "phase=decode", "phase.batch=8", "phase.context_len=100", "phase.dtype=bf16",
      "plan.dp=4", "plan.ep=4", "plan.tp=1"]


@pytest.fixture
def case(specs):
    return specs(*OV)


def test_kv_cache_bytes(case):
    s, m, p, pl = case
    per_token = 2 * 2 * 8 * 128 * 2                     # layers x (K, V) x kv_heads x head_dim x 2 B = 8192
    met = evaluate(s, m, p, pl)
    assert float(met.memory_breakdown["kv_cache"]) == 2 * 100 * per_token   # 2 sequences x 100 tokens


def test_alltoall_bytes(case):
    s, m, p, pl = case
    # per chip per MoE layer: 2 tokens x top-2 copies x 1024 x 2 B, dispatch and combine
    sent = 2 * (2 * 2 * 1024 * 2) * 2                    # x 2 layers = 32768 B
    crossing = sent * 3 / 4                              # 1/4 of the copies stay on the chip (ep = 4)
    met = evaluate(s, m, p, pl)
    assert float(met.comm_bytes["scale_up"]) == pytest.approx(crossing, rel=1e-6)
    assert float(met.comm_bytes["scale_out"]) == 0.0


def test_flops(case):
    s, m, p, pl = case
    per_token_layer = (2 * 1024 * 3 * 1024        # Q, K, V projections
                       + 2 * 1024 * 1024          # output projection
                       + 4 * 8 * 100 * 128        # scores + context over 100 cached tokens
                       + 2 * 1024 * 4             # router
                       + 2 * 2 * 1024 * 512 * 2)  # top-2 experts, 2 matrices each
    lm_head = 2 * 1024 * 1000
    flops_per_chip = 2 * (2 * per_token_layer) + 2 * lm_head   # 2 layers x 2 tokens, head for 2 tokens
    met = evaluate(s, m, p, pl)
    measured = float(met.hfu * met.step_time_s * s.chip.flops_bf16)
    assert measured == pytest.approx(flops_per_chip, rel=1e-5)
