"""Evaluation throughput of jit(vmap(evaluate)) on this machine.

For the full training model (GPT-3 175B on A100s: chip count, TP, PP, microbatch, vpp,
recompute, ZeRO, scale-out bandwidth all varying) and the full MoE decode model (DeepSeek-R1 on a
CloudMatrix-like supernode: chips, UB bandwidth, TP, EP, batch varying), designs drawn at random
from the space grids are evaluated in batches of 10^3 .. 10^7 (chunks of 2^16). Compile time is
measured separately (first call); each timing is the median of repeats after a warm-up, with
``time.perf_counter`` around ``block_until_ready()``.

Run: ``python benchmarks/throughput.py [--quick]``. Last line: one JSON object.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_problem  # noqa: E402

from dse.perf import evaluate  # noqa: E402

CHUNK = 1 << 16


def bench(name, sizes, repeats, rng):
    problem = load_problem(name)
    dims = [len(v.values) for v in problem.space.variables]
    f = jax.jit(jax.vmap(lambda x: evaluate(*problem.apply(x)).tokens_per_joule))
    pool = problem.index_to_design(np.stack([rng.integers(0, n, CHUNK) for n in dims], axis=1))
    t = time.perf_counter(); f(pool).block_until_ready(); compile_s = time.perf_counter() - t
    small = {}
    rows = []
    for n in sizes:
        if n < CHUNK:
            if n not in small:
                small[n] = jax.jit(jax.vmap(lambda x: evaluate(*problem.apply(x)).tokens_per_joule))
                small[n](pool[:n]).block_until_ready()
            g, x, chunks = small[n], pool[:n], 1
        else:
            g, x, chunks = f, pool, n // CHUNK
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(chunks):
                out = g(x)
            out.block_until_ready()
            ts.append(time.perf_counter() - t)
        med = float(np.median(ts))
        rows.append({"designs": n, "median_s": med, "designs_per_s": n / med})
    return compile_s, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    sizes = [10 ** 3, 10 ** 4, 10 ** 5] if a.quick else [10 ** 3, 10 ** 4, 10 ** 5, 10 ** 6, 10 ** 7]
    sizes = [max(CHUNK, (n // CHUNK) * CHUNK) if n >= CHUNK else n for n in sizes]
    rng = np.random.default_rng(0)
    out = {}
    for label, space in (("train", "gpt3_a100"), ("decode", "r1_decode_supernode")):
        compile_s, rows = bench(space, sizes, 3 if a.quick else 5, rng)
        print(f"{label} ({space}): compile {compile_s:.2f} s")
        for r in rows:
            print(f"  {r['designs']:>10,d} designs  median {r['median_s'] * 1e3:9.2f} ms  {r['designs_per_s']:>14,.0f} designs/s")
        out[f"{label}_designs_per_s"] = max(r["designs_per_s"] for r in rows if r["designs"] >= min(CHUNK, sizes[-1]))
        out[f"{label}_compile_s"] = compile_s
    out["compile_s"] = out["train_compile_s"] + out["decode_compile_s"]
    out["devices"] = [str(d) for d in jax.local_devices()]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
