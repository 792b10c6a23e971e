"""Tables and figures for sweeps, and ``task=report`` over a Hydra multirun directory.

* :func:`write_table` - rows -> ``<name>.csv`` (always) and ``<name>.parquet`` (when pyarrow imports).
* :func:`pareto_front` - non-dominated indices (maximise y, minimise x); pure, no plotting.
* :func:`plot_pareto`, :func:`plot_breakdown`, :func:`plot_sensitivities` - matplotlib (Agg) figures
  with units on every axis.
* ``task=report`` - ``python -m dse task=report ++sweep_dir=multirun/2025-01-01/12-00-00
  [++out_dir=DIR]``: one row per job (its overrides as columns + headline metrics) ->
  ``report.csv`` (+ ``report.parquet``), ``pareto.png``, ``breakdown_time.png``,
  ``breakdown_power.png``, ``report.md`` in ``sweep_dir`` (or ``out_dir``); the JSON summary is
  the last stdout line and ``report.json`` in the Hydra run dir.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from dse.cli import emit, task, write_json_atomic

HEADLINE = ("tokens_per_s", "tokens_per_s_per_chip", "power_w", "tokens_per_joule", "step_time_s", "tpot_s",
            "ttft_s", "mfu", "memory_per_chip_bytes", "feasible")
SWEEP_DIR_ALLOWED = "a Hydra multirun directory containing job folders with metrics.json"
_RESULT_FILES = ("metrics.json", "search.json")
_SKIP_DIRS = {".hydra", ".submitit", "wandb", "__pycache__"}


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------
def _num(v) -> Optional[float]:
    """A finite float or None (bools are not numbers here)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _flat(d: Mapping, prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(_flat(v, key))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(list(v), default=str)
        else:
            out[key] = v
    return out


def _columns(rows: Sequence[Mapping]) -> List[str]:
    cols: List[str] = []
    seen = set()
    for r in rows:
        for k in r:
            if k not in seen:
                seen.add(k)
                cols.append(k)
    return cols


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


# ------------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------------
def write_table(rows: Sequence[Mapping], out_dir, name: str) -> List[Path]:
    """Write ``rows`` to ``out_dir/name.csv`` and, when pyarrow imports, ``out_dir/name.parquet``.

    Columns are the union of the rows' keys in first-seen order; nested dicts become ``a.b``
    columns and lists JSON text. Missing values and non-finite floats are empty cells (null in
    Parquet). Floats are written with full precision (``repr``), so a CSV round-trip is exact.
    Returns the paths written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    flat = [_flat(r) for r in rows]
    cols = _columns(flat)

    def cell(v):
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return None
        return v

    csv_path = out_dir / f"{name}.csv"
    tmp = csv_path.with_name(f".{csv_path.name}.tmp{os.getpid()}")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in flat:
            w.writerow(["" if cell(r.get(c)) is None else (repr(r[c]) if isinstance(r[c], float) else r[c])
                        for c in cols])
    os.replace(tmp, csv_path)
    written = [csv_path]

    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return written
    try:
        data = {}
        for c in cols:
            vals = [cell(r.get(c)) for r in flat]
            present = [v for v in vals if v is not None]
            if all(isinstance(v, bool) for v in present):
                data[c] = pa.array(vals, type=pa.bool_())
            elif all(isinstance(v, int) and not isinstance(v, bool) for v in present) and present:
                data[c] = pa.array(vals, type=pa.int64())
            elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present) and present:
                data[c] = pa.array([None if v is None else float(v) for v in vals], type=pa.float64())
            else:
                data[c] = pa.array([None if v is None else str(v) for v in vals], type=pa.string())
        pq_path = out_dir / f"{name}.parquet"
        tmp = pq_path.with_name(f".{pq_path.name}.tmp{os.getpid()}")
        pq.write_table(pa.table(data), tmp)
        os.replace(tmp, pq_path)
        written.append(pq_path)
    except Exception as e:  # noqa: BLE001 - the CSV is the contract; Parquet is a convenience
        print(f"warning: parquet not written ({type(e).__name__}: {e}); {csv_path.name} has the table",
              file=__import__("sys").stderr)
    return written


# ------------------------------------------------------------------------------------------------
# Pareto front
# ------------------------------------------------------------------------------------------------
def pareto_front(points: Iterable[Tuple[float, float]]) -> List[int]:
    """Indices of the non-dominated points, maximising y and minimising x, sorted by x then index.

    Point j dominates i when ``x_j <= x_i`` and ``y_j >= y_i`` with at least one strict. Exact
    duplicates do not dominate each other, so all copies of a front point are returned. Points with
    a missing or non-finite coordinate are ignored.
    """
    pts = []
    for i, p in enumerate(points):
        x, y = _num(p[0]), _num(p[1])
        if x is not None and y is not None:
            pts.append((x, -y, i))
    pts.sort()
    front: List[int] = []
    best = -math.inf       # highest y among points with strictly smaller x
    k = 0
    while k < len(pts):
        x = pts[k][0]
        group = []
        while k < len(pts) and pts[k][0] == x:
            group.append(pts[k])
            k += 1
        gmax = -group[0][1]
        if gmax > best:
            front.extend(i for (_, ny, i) in group if -ny == gmax)
            best = gmax
    return front


# ------------------------------------------------------------------------------------------------
# plots
# ------------------------------------------------------------------------------------------------
_RC = {"font.size": 11, "axes.titlesize": 13, "axes.labelsize": 12, "legend.fontsize": 9,
       "xtick.labelsize": 10, "ytick.labelsize": 10, "axes.grid": True, "grid.alpha": 0.3}


def _figure(w: float, h: float):
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state, no display needed
    return Figure(figsize=(w, h), dpi=120, layout="constrained")


def _save(fig, out_path) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.stem}.tmp{os.getpid()}{out_path.suffix}")
    fig.savefig(tmp, format=out_path.suffix.lstrip(".") or "png")
    os.replace(tmp, out_path)
    return out_path


def system_of(row: Mapping) -> str:
    """The hardware name of a row: ``system`` (str or metrics' ``system.name``), ``design.hardware``."""
    s = row.get("system")
    if isinstance(s, str) and s:
        return s
    if isinstance(s, Mapping) and s.get("name"):
        return str(s["name"])
    d = row.get("design")
    if isinstance(d, Mapping) and d.get("hardware"):
        return str(d["hardware"])
    return str(row.get("hardware") or "design")


def label_of(row: Mapping, i: int = 0) -> str:
    return str(row.get("label") or row.get("job") or f"{system_of(row)} #{i}")


def _is_feasible(row: Mapping) -> bool:
    f = row.get("feasible")
    return True if f is None else bool(f) if not isinstance(f, str) else f.lower() == "true"


def _log_if_wide(ax, axis: str, vals: Sequence[float]) -> None:
    vals = [v for v in vals if v and v > 0]
    if len(vals) >= 2 and max(vals) / min(vals) > 50:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def plot_pareto(rows: Sequence[Mapping], out_path, title: Optional[str] = None) -> Path:
    """Throughput (tokens/s, y) against power (kW, x) for every design, coloured per system.

    Infeasible designs are drawn hollow. The Pareto front (max tokens/s for min power) is computed
    over the feasible designs (all designs when none is feasible), drawn as a step line (the best
    throughput reachable under a power budget) and its points ringed and labelled.
    """
    import matplotlib

    pts = []
    for i, r in enumerate(rows):
        y, x = _num(r.get("tokens_per_s")), _num(r.get("power_w"))
        if x is not None and y is not None and x > 0:
            pts.append((x / 1e3, y, i))
    with matplotlib.rc_context(_RC):
        fig = _figure(9, 6)
        ax = fig.add_subplot()
        systems = sorted({system_of(rows[i]) for *_, i in pts})
        cmap = matplotlib.colormaps["tab10" if len(systems) <= 10 else "tab20"]
        color = {s: cmap(k % cmap.N) for k, s in enumerate(systems)}
        for s in systems:
            for feas in (True, False):
                sel = [(x, y) for x, y, i in pts if system_of(rows[i]) == s and _is_feasible(rows[i]) == feas]
                if sel:
                    ax.scatter([p[0] for p in sel], [p[1] for p in sel], s=46, zorder=3,
                               color=color[s] if feas else "none", edgecolors=color[s], linewidths=1.5,
                               label=s if feas else None)
            if not any(system_of(rows[i]) == s and _is_feasible(rows[i]) for *_, i in pts):
                ax.scatter([], [], s=46, color=color[s], label=s)  # legend entry for all-infeasible systems
        if any(not _is_feasible(rows[i]) for *_, i in pts):
            ax.scatter([], [], s=46, color="none", edgecolors="grey", linewidths=1.5,
                       label="hollow: infeasible (memory / SLO / power)")
        feas_pts = [p for p in pts if _is_feasible(rows[p[2]])]
        basis = feas_pts or pts
        front = [basis[j] for j in pareto_front([(x, y) for x, y, _ in basis])]
        if front:
            fx, fy = [p[0] for p in front], [p[1] for p in front]
            xmax = max(p[0] for p in pts)
            ax.plot(fx + [xmax * 1.05], fy + [fy[-1]], drawstyle="steps-post", color="black", lw=1.4,
                    zorder=2, label="Pareto front" + (" (feasible designs)" if feas_pts else ""))
            ax.scatter(fx, fy, s=150, facecolors="none", edgecolors="black", linewidths=1.6, zorder=4)
            for x, y, i in front:
                ax.annotate(label_of(rows[i], i), (x, y), textcoords="offset points", xytext=(7, -12),
                            fontsize=9, zorder=5)
        if pts:
            _log_if_wide(ax, "x", [p[0] for p in pts])
            _log_if_wide(ax, "y", [p[1] for p in pts])
            from matplotlib.ticker import EngFormatter
            if ax.get_yscale() == "linear":
                ax.yaxis.set_major_formatter(EngFormatter(sep=""))
        else:
            ax.text(0.5, 0.5, "no design with finite throughput and power", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set_xlabel("System power (kW)")
        ax.set_ylabel("Throughput (tokens/s, whole system)")
        ax.set_title(title or "Throughput vs power (Pareto front: max tokens/s for min kW)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", frameon=True)
        return _save(fig, out_path)


_BREAKDOWN = {"time": ("breakdown", 1.0, "Step time (s)", "Step-time breakdown per design"),
              "power": ("power_breakdown", 1e-3, "Power (kW)", "Power breakdown per design")}


def _components(row: Mapping, key: str) -> Dict[str, float]:
    d = row.get(key)
    if isinstance(d, Mapping):
        return {str(k): _num(v) or 0.0 for k, v in d.items()}
    pre = key + "."
    return {k[len(pre):]: _num(v) or 0.0 for k, v in row.items() if k.startswith(pre)}


def plot_breakdown(rows: Sequence[Mapping], out_path, kind: str = "time", title: Optional[str] = None) -> Path:
    """Stacked horizontal bars, one per design: ``kind="time"`` stacks ``breakdown`` (seconds),
    ``kind="power"`` stacks ``power_breakdown`` (W in the rows, drawn in kW).

    A row carries the components as a dict (``row["breakdown"]``) or flattened (``breakdown.compute``).
    Components that are zero in every row are left out.
    """
    import matplotlib

    if kind not in _BREAKDOWN:
        raise ValueError(f"kind={kind!r}; allowed: {' | '.join(_BREAKDOWN)}")
    key, scale, xlabel, default_title = _BREAKDOWN[kind]
    comps = [_components(r, key) for r in rows]
    names: List[str] = []
    for c in comps:
        names.extend(k for k in c if k not in names)
    names = [n for n in names if any(abs(c.get(n, 0.0)) > 0 for c in comps)]
    labels = [label_of(r, i) for i, r in enumerate(rows)]
    with matplotlib.rc_context(_RC):
        fig = _figure(10, max(2.6, 1.2 + 0.42 * len(rows)))
        ax = fig.add_subplot()
        cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
        ys = list(range(len(rows)))
        left = [0.0] * len(rows)
        for k, n in enumerate(names):
            w = [c.get(n, 0.0) * scale for c in comps]
            ax.barh(ys, w, left=left, height=0.7, color=cmap(k % cmap.N), label=n.removesuffix("_w"),
                    edgecolor="white", linewidth=0.5)
            left = [a + b for a, b in zip(left, w)]
        ax.set_yticks(ys, labels)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Design")
        ax.grid(axis="y", visible=False)
        ax.set_title(title or default_title)
        if names:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="component", frameon=False)
        else:
            ax.text(0.5, 0.5, f"no {key} in the rows", ha="center", va="center", transform=ax.transAxes)
        return _save(fig, out_path)


def plot_sensitivities(sens: Mapping[str, float], out_path, unit_label: str, title: Optional[str] = None) -> Path:
    """Horizontal bars of ``sens`` (name -> value), largest magnitude on top; ``unit_label`` is the
    x-axis label and should carry the unit, e.g. ``"d(tokens/J) / d(ln x)  (tokens/J)"``."""
    import matplotlib

    items = [(k, _num(v)) for k, v in sens.items()]
    items = sorted([(k, v) for k, v in items if v is not None], key=lambda kv: -abs(kv[1]))
    with matplotlib.rc_context(_RC):
        fig = _figure(9, max(2.6, 1.2 + 0.38 * len(items)))
        ax = fig.add_subplot()
        ys = list(range(len(items)))
        vals = [v for _, v in items]
        ax.barh(ys, vals, height=0.7, color=["tab:blue" if v >= 0 else "tab:red" for v in vals])
        ax.set_yticks(ys, [k for k, _ in items])
        ax.set_ylim(len(items) - 0.5, -0.5)
        ax.axvline(0.0, color="black", lw=0.8)
        for y, v in zip(ys, vals):
            ax.annotate(f"{v:.3g}", (v, y), xytext=(4 if v >= 0 else -4, 0), textcoords="offset points",
                        ha="left" if v >= 0 else "right", va="center", fontsize=9)
        if vals:
            lo, hi = min(0.0, *vals), max(0.0, *vals)
            pad = 0.15 * ((hi - lo) or 1.0)
            ax.set_xlim(lo - (pad if lo < 0 else 0), hi + (pad if hi > 0 else 0))
        ax.set_xlabel(unit_label)
        ax.set_ylabel("Parameter")
        ax.grid(axis="y", visible=False)
        ax.set_title(title or "Sensitivities")
        return _save(fig, out_path)


# ------------------------------------------------------------------------------------------------
# sweep collection
# ------------------------------------------------------------------------------------------------
def _parse_value(s: str):
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none"):
        return None
    return s


def read_overrides(job_dir) -> Dict[str, Any]:
    """``<job>/.hydra/overrides.yaml`` -> {key: value} (``+``/``++``/``~`` prefixes dropped)."""
    p = Path(job_dir) / ".hydra" / "overrides.yaml"
    if not p.is_file():
        return {}
    import yaml
    try:
        items = yaml.safe_load(p.read_text()) or []
    except yaml.YAMLError:
        return {}
    out: Dict[str, Any] = {}
    for it in items:
        if not isinstance(it, str) or "=" not in it:
            continue
        k, v = it.split("=", 1)
        out[k.lstrip("+~")] = _parse_value(v)
    return out


def find_jobs(sweep_dir) -> Tuple[List[Path], List[Path]]:
    """(job dirs with metrics.json or search.json, job dirs with a Hydra config but no result)."""
    root = Path(sweep_dir)
    done, failed = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted((d for d in dirnames if d not in _SKIP_DIRS), key=_natural_key)
        here = Path(dirpath)
        if any(f in filenames for f in _RESULT_FILES):
            done.append(here)
        elif (here / ".hydra" / "overrides.yaml").is_file():
            failed.append(here)
    key = lambda p: _natural_key(str(p.relative_to(root)))  # noqa: E731
    return sorted(done, key=key), sorted(failed, key=key)


def _metrics_of(job: Path) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(metrics dict, search dict) of a job; the search's best design stands in when no metrics.json."""
    def load(name):
        p = job / name
        if not p.is_file():
            return {}
        try:
            obj = json.loads(p.read_text())
            return obj if isinstance(obj, dict) else {}
        except (OSError, json.JSONDecodeError):
            return {}

    metrics, search = load("metrics.json"), load("search.json")
    if not metrics and search:
        for k in ("best_metrics", "best", "metrics"):
            if isinstance(search.get(k), dict) and any(h in search[k] for h in HEADLINE):
                metrics = search[k]
                break
        else:
            metrics = {k: v for k, v in search.items() if k in HEADLINE or k in ("breakdown", "power_breakdown",
                                                                                 "design", "system")}
    return metrics, search


def collect(sweep_dir) -> Tuple[List[Dict[str, Any]], List[Path]]:
    """One record per finished job: ``job``, overrides, design, headline metrics, breakdown dicts."""
    root = Path(sweep_dir)
    jobs, failed = find_jobs(root)
    records = []
    for job in jobs:
        metrics, search = _metrics_of(job)
        ov = read_overrides(job)
        design = metrics.get("design") if isinstance(metrics.get("design"), dict) else {}
        system = metrics.get("system") if isinstance(metrics.get("system"), dict) else {}
        rec: Dict[str, Any] = {"job": str(job.relative_to(root)) or "."}
        rec.update(ov)
        rec["system"] = design.get("hardware") or system.get("name") or ov.get("hardware")
        rec["workload"] = design.get("workload") or ov.get("workload")
        rec["phase"] = design.get("phase") or ov.get("phase")
        rec["dtype"] = design.get("dtype")
        rec["num_chips"] = system.get("num_chips")
        for k in HEADLINE:
            rec[k] = metrics.get(k)
        if search.get("objective") is not None:
            rec["objective"] = search.get("objective")
        rec["infeasible_reasons"] = "; ".join(metrics.get("infeasible_reasons") or [])
        rec["breakdown"] = dict(metrics.get("breakdown") or {})
        rec["power_breakdown"] = dict(metrics.get("power_breakdown") or {})
        records.append(rec)
    _add_labels(records)
    return records, failed


def _add_labels(records: List[Dict[str, Any]]) -> None:
    """``label``: the system plus the overrides that vary across the sweep (short key=value)."""
    fixed = {"job", "system", "workload", "phase", "dtype", "num_chips", "breakdown", "power_breakdown",
             "infeasible_reasons", "objective", *HEADLINE}
    keys = _columns([{k: None for k in r if k not in fixed} for r in records])
    varying = [k for k in keys if len({json.dumps(r.get(k), default=str) for r in records}) > 1]
    for r in records:
        parts = [str(r.get("system") or "design")]
        for k in varying:
            if k == "hardware":
                continue
            v = r.get(k)
            parts.append(f"{k.split('.')[-1]}={v}" if v is not None else f"{k.split('.')[-1]}=-")
        label = " ".join(parts)
        r["label"] = label
    counts: Dict[str, int] = {}
    for r in records:
        counts[r["label"]] = counts.get(r["label"], 0) + 1
    for r in records:
        if counts[r["label"]] > 1:
            r["label"] = f"{r['label']} [{r['job']}]"


def table_rows(records: Sequence[Mapping]) -> List[Dict[str, Any]]:
    """Records -> flat table rows: breakdowns become ``breakdown.<component>_s`` / ``power.<component>``."""
    rows = []
    for r in records:
        row = {k: v for k, v in r.items() if k not in ("breakdown", "power_breakdown")}
        for k, v in (r.get("breakdown") or {}).items():
            row[f"time.{k}_s"] = v
        for k, v in (r.get("power_breakdown") or {}).items():
            row[f"power.{k.removesuffix('_w')}_w"] = v
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------
# report.md
# ------------------------------------------------------------------------------------------------
def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _markdown(sweep_dir: Path, records: List[Dict[str, Any]], failed: List[Path], front: List[int],
              files: List[str], top: int = 15) -> str:
    best = _best(records)
    ranked = sorted(records, key=lambda r: -(_num(r.get("tokens_per_joule")) or -math.inf))
    cols = [("design", "label"), ("feasible", "feasible"), ("tokens/J", "tokens_per_joule"),
            ("tokens/s", "tokens_per_s"), ("tokens/s/chip", "tokens_per_s_per_chip"), ("power kW", "power_w"),
            ("step s", "step_time_s"), ("TPOT ms", "tpot_s"), ("TTFT s", "ttft_s"), ("MFU", "mfu"),
            ("mem/chip GB", "memory_per_chip_bytes")]
    scale = {"power_w": 1e-3, "tpot_s": 1e3, "memory_per_chip_bytes": 1e-9}

    def val(r, k):
        v = r.get(k)
        if k in scale and _num(v) is not None:
            v = _num(v) * scale[k]
        return _fmt(v)

    lines = [f"# Sweep report: `{sweep_dir}`", "",
             f"- jobs with results: **{len(records)}**" + (f"; without results (failed or running): {len(failed)}"
                                                            if failed else ""),
             f"- feasible designs: {sum(1 for r in records if _is_feasible(r))}"]
    if best:
        lines.append(f"- best tokens per joule (feasible): **{best['label']}** - "
                     f"{_fmt(best.get('tokens_per_joule'))} tokens/J, {_fmt(best.get('tokens_per_s'))} tokens/s, "
                     f"{_fmt((_num(best.get('power_w')) or 0) / 1e3)} kW (job `{best['job']}`)")
    if front:
        lines.append("- Pareto front (max tokens/s for min power, feasible designs): "
                     + ", ".join(f"`{records[i]['label']}`" for i in front))
    lines += ["", f"## Designs by tokens per joule (top {min(top, len(ranked))} of {len(ranked)})", "",
              "| " + " | ".join(c for c, _ in cols) + " |", "|" + "---|" * len(cols)]
    for r in ranked[:top]:
        lines.append("| " + " | ".join(val(r, k) for _, k in cols) + " |")
    if failed:
        lines += ["", "## Jobs without results", ""] + [f"- `{p.relative_to(sweep_dir)}`" for p in failed[:50]]
    lines += ["", "## Files", ""] + [f"- [{f}]({f})" for f in files]
    lines += ["", "![Pareto](pareto.png)", "", "![Time breakdown](breakdown_time.png)", "",
              "![Power breakdown](breakdown_power.png)", ""]
    return "\n".join(lines)


def _best(records: Sequence[Mapping]) -> Optional[Mapping]:
    cand = [r for r in records if _num(r.get("tokens_per_joule")) is not None]
    feas = [r for r in cand if _is_feasible(r)]
    pool = feas or cand
    return max(pool, key=lambda r: _num(r["tokens_per_joule"])) if pool else None


def _front_of(records: Sequence[Mapping]) -> List[int]:
    idx = [i for i, r in enumerate(records) if _is_feasible(r)] or list(range(len(records)))
    f = pareto_front([(records[i].get("power_w"), records[i].get("tokens_per_s")) for i in idx])
    return [idx[j] for j in f]


# ------------------------------------------------------------------------------------------------
# task=report
# ------------------------------------------------------------------------------------------------
def _resolve_dir(p) -> Path:
    path = Path(str(p)).expanduser()
    if not path.is_absolute():
        try:
            from hydra.core.hydra_config import HydraConfig
            path = Path(HydraConfig.get().runtime.cwd) / path
        except Exception:  # noqa: BLE001
            path = Path.cwd() / path
    return path


def build_report(sweep_dir, out_dir=None) -> Dict[str, Any]:
    """Collect ``sweep_dir`` and write the table, figures and ``report.md``; returns the summary."""
    from dse.errors import ConfigError

    if sweep_dir is None or str(sweep_dir).strip() in ("", "None", "null"):
        raise ConfigError("sweep_dir", sweep_dir, SWEEP_DIR_ALLOWED + " (pass ++sweep_dir=PATH)")
    root = _resolve_dir(sweep_dir)
    if not root.is_dir():
        raise ConfigError("sweep_dir", str(sweep_dir), SWEEP_DIR_ALLOWED + " (no such directory)")
    records, failed = collect(root)
    if not records:
        raise ConfigError("sweep_dir", str(sweep_dir), SWEEP_DIR_ALLOWED + " (none found)")
    out = _resolve_dir(out_dir) if out_dir else root
    out.mkdir(parents=True, exist_ok=True)

    written = write_table(table_rows(records), out, "report")
    plot_pareto(records, out / "pareto.png")
    plot_breakdown(records, out / "breakdown_time.png", kind="time")
    plot_breakdown(records, out / "breakdown_power.png", kind="power")
    files = [p.name for p in written] + ["pareto.png", "breakdown_time.png", "breakdown_power.png", "report.md",
                                         "report.json"]
    front = _front_of(records)
    md = _markdown(root, records, failed, front, [f for f in files if f != "report.md"])
    tmp = out / f".report.md.tmp{os.getpid()}"
    tmp.write_text(md)
    os.replace(tmp, out / "report.md")

    best = _best(records)
    best_row = None
    if best is not None:
        best_row = {k: v for k, v in best.items() if k not in ("breakdown", "power_breakdown")}
    summary = {"sweep_dir": str(root), "out_dir": str(out), "num_jobs": len(records),
               "num_failed": len(failed), "num_feasible": sum(1 for r in records if _is_feasible(r)),
               "best_tokens_per_joule": best_row, "pareto": [records[i]["label"] for i in front],
               "files": [str(out / f) for f in files]}
    return {"summary": summary, "records": records}


@task("report")
def report_task(cfg) -> dict:
    """``task=report ++sweep_dir=DIR [++out_dir=DIR]``: aggregate a multirun into tables and figures."""
    from dse.track import start_run

    res = build_report(cfg.get("sweep_dir"), cfg.get("out_dir"))
    summary = res["summary"]
    out = Path(summary["out_dir"])
    with start_run(cfg, "report") as tr:
        tr.log_table("report", table_rows(res["records"]))
        for name in ("pareto", "breakdown_time", "breakdown_power"):
            tr.log_image(name, out / f"{name}.png")
        tr.summary({k: summary[k] for k in ("num_jobs", "num_failed", "num_feasible")}
                   | {"best/" + k: v for k, v in (summary["best_tokens_per_joule"] or {}).items()
                      if k in HEADLINE})
    write_json_atomic(out / "report.json", summary)
    emit(summary, "report.json")
    return summary
