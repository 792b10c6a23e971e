"""Fit the Ascend 910C's end-to-end GEMM and vector efficiency once, on its three serving points.

Provenance of ``conf/hardware/cloudmatrix384.yaml: chip.efficiency.{matmul_max, vector_flops_frac}``.
The attention-core and HBM efficiencies come from the paper's MLA operator measurements (65.4 %
compute, 84.1 % HBM) and the UB all-to-all from its dispatch/combine operators; they are not
fitted. Data: CloudMatrix-Infer on DeepSeek-R1 INT8 (cm384_paper via digests): decode at 96 and 8
sequences per NPU, prefill of 4K prompts (default EPLB). Loss: mean squared log error of tokens/s
per chip. Run: ``python experiments/calibrate_910c.py``.
"""
import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize

from dse.build import build
from dse.config import compose_config
from dse.perf import evaluate
from dse.validate_data import cloudmatrix_cases

cases = cloudmatrix_cases()
built = [build(compose_config(c.overrides)) for c in cases]
meas = np.array([c.measured for c in cases])


def predict(x):
    mm, vec = x
    out = []
    for s, m, p, pl in built:
        c = s.chip.replace(eff_matmul_max=mm, vector_flops=vec * s.chip.flops_bf16)
        out.append(float(evaluate(s.replace(chip=c), m, p, pl).tokens_per_s_per_chip))
    return np.array(out)


def loss(x):
    if np.any(np.asarray(x) <= 0) or x[0] > 1 or x[1] > 1:
        return 1e9
    return float(np.mean(np.log(predict(x) / meas) ** 2))


if __name__ == "__main__":
    res = minimize(loss, np.array([0.8, 0.0668]), method="Nelder-Mead", options=dict(maxiter=200, xatol=1e-4))
    p = predict(res.x)
    for c, v in zip(cases, p):
        print(f"{c.name:12s} measured {c.measured:7.0f} predicted {v:7.0f} error {100 * (v / c.measured - 1):+6.1f}%")
    print({"matmul_max": round(float(res.x[0]), 4), "vector_flops_frac": round(float(res.x[1]), 4)})
