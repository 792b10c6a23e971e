"""Reports (Pareto front, tables, figures, task=report over a real multirun) and wandb tracking
(disabled, offline, online falling back to offline, wandb failures never touching results)."""
import csv
import json
import math
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dse import report, track
from dse.errors import ConfigError

PNG = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------------
# Pareto front
# ------------------------------------------------------------------------------------------------
def _brute_front(points):
    ok = [i for i, (x, y) in enumerate(points) if x is not None and y is not None
          and math.isfinite(x) and math.isfinite(y)]
    out = []
    for i in ok:
        xi, yi = points[i]
        dominated = any(points[j][0] <= xi and points[j][1] >= yi and (points[j][0] < xi or points[j][1] > yi)
                        for j in ok if j != i)
        if not dominated:
            out.append(i)
    return sorted(out, key=lambda i: (points[i][0], i))


def test_pareto_front_hand_made():
    pts = [
        (10, 100),          # 0 front
        (20, 150),          # 1 front
        (20, 140),          # 2 dominated by 1 (same power, fewer tokens/s)
        (15, 100),          # 3 dominated by 0 (more power, same tokens/s)
        (30, 150),          # 4 dominated by 1 (more power, same tokens/s)
        (20, 150),          # 5 exact duplicate of 1: duplicates do not dominate each other
        (5, 50),            # 6 front (least power)
        (40, 300),          # 7 front (most tokens/s)
        (None, 10),         # 8 ignored (missing)
        (50, float("nan")),  # 9 ignored (non-finite)
        (35, 200),          # 10 front
        (45, 300),          # 11 dominated by 7
        (5, 40),            # 12 dominated by 6 (same power)
    ]
    assert report.pareto_front(pts) == [6, 0, 1, 5, 10, 7]
    assert report.pareto_front(pts) == _brute_front([(None if p[0] is None else float(p[0]), p[1]) for p in pts])
    assert report.pareto_front([]) == []
    assert report.pareto_front([(1.0, 2.0)]) == [0]


def test_pareto_front_matches_definition_on_random_ties():
    rng = random.Random(0)
    for _ in range(200):
        pts = [(float(rng.randint(0, 6)), float(rng.randint(0, 6))) for _ in range(rng.randint(1, 25))]
        assert report.pareto_front(pts) == _brute_front(pts)


# ------------------------------------------------------------------------------------------------
# tables and figures
# ------------------------------------------------------------------------------------------------
def test_write_table_csv_roundtrip(tmp_path):
    rows = [
        {"job": "0", "hardware": "gb200_nvl72", "plan.tp": 8, "tokens_per_joule": 1 / 3, "power_w": 89654.5234375,
         "feasible": True, "ttft_s": None, "note": "a, \"quoted\" text", "breakdown": {"compute": 1e-300, "tp_comm": 2.5}},
        {"job": "1", "hardware": "hgx_h800", "plan.tp": 4, "tokens_per_joule": 0.876095175743103,
         "power_w": float("nan"), "feasible": False, "extra": 7},
    ]
    written = report.write_table(rows, tmp_path / "out", "t")
    assert written[0] == tmp_path / "out" / "t.csv"
    with open(written[0], newline="") as f:
        back = list(csv.DictReader(f))
    assert len(back) == 2
    assert list(back[0]) == ["job", "hardware", "plan.tp", "tokens_per_joule", "power_w", "feasible", "ttft_s", "note",
                             "breakdown.compute", "breakdown.tp_comm", "extra"]
    assert float(back[0]["tokens_per_joule"]) == 1 / 3                 # exact: floats written with repr
    assert float(back[1]["tokens_per_joule"]) == 0.876095175743103
    assert float(back[0]["breakdown.compute"]) == 1e-300
    assert back[0]["power_w"] == "89654.5234375" and back[1]["power_w"] == ""   # NaN -> empty cell
    assert back[0]["ttft_s"] == "" and back[1]["ttft_s"] == "" and back[0]["extra"] == ""
    assert back[0]["note"] == "a, \"quoted\" text"
    assert back[0]["feasible"] == "True" and back[1]["plan.tp"] == "4"
    try:
        import pyarrow.parquet as pq
    except ImportError:
        assert len(written) == 1
        return
    assert written[1] == tmp_path / "out" / "t.parquet"
    tab = pq.read_table(written[1]).to_pylist()
    assert tab[0]["tokens_per_joule"] == 1 / 3 and tab[1]["power_w"] is None and tab[1]["feasible"] is False
    assert tab[0]["plan.tp"] == 8 and tab[0]["breakdown.tp_comm"] == 2.5


def _fake_row(hw, x_kw, y, feasible=True, **kw):
    return {"system": hw, "power_w": x_kw * 1e3, "tokens_per_s": y, "feasible": feasible,
            "breakdown": {"compute": y / 1e5, "tp_comm": 1.0}, "power_breakdown": {"chips_w": x_kw * 600, "hosts_w": x_kw * 400},
            **kw}


def test_plots_write_pngs(tmp_path):
    rows = [_fake_row("a", 10, 1e4, label="a small"), _fake_row("a", 20, 3e4), _fake_row("b", 15, 5e4, feasible=False),
            _fake_row("b", 30, 2e4), {"system": "c", "power_w": None, "tokens_per_s": 5.0}]
    for p in (report.plot_pareto(rows, tmp_path / "p.png"),
              report.plot_breakdown(rows, tmp_path / "t.png", kind="time"),
              report.plot_breakdown(rows, tmp_path / "w.png", kind="power"),
              report.plot_sensitivities({"chip.bf16_tflops": 0.4, "chip.tdp_w": -0.3}, tmp_path / "s.png",
                                        "d ln(tokens/J) / d ln(x)  (dimensionless)"),
              report.plot_pareto([], tmp_path / "empty.png")):
        assert p.read_bytes()[:8] == PNG
    with pytest.raises(ValueError):
        report.plot_breakdown(rows, tmp_path / "x.png", kind="memory")


def _fake_job(root: Path, name: str, overrides, metrics=None, search=None):
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics))
    if search is not None:
        (d / "search.json").write_text(json.dumps(search))


def test_collect_labels_search_and_failed_jobs(tmp_path):
    m = lambda hw, tpj, feas=True: {"tokens_per_s": 1e5 * tpj, "power_w": 1e5, "tokens_per_joule": tpj,  # noqa: E731
                                    "feasible": feas, "breakdown": {"compute": 1.0},
                                    "design": {"hardware": hw, "workload": "llama3_70b", "phase": "train"},
                                    "system": {"name": hw, "num_chips": 64}}
    _fake_job(tmp_path, "0", ["hardware=gb200_nvl72", "plan.tp=4"], m("gb200_nvl72", 2.0))
    _fake_job(tmp_path, "1", ["hardware=gb200_nvl72", "plan.tp=8"], m("gb200_nvl72", 3.0, feas=False))
    _fake_job(tmp_path, "10", ["hardware=hgx_h800", "plan.tp=8"], search={"objective": 1.5, "best": m("hgx_h800", 1.5)})
    _fake_job(tmp_path, "2", ["hardware=hgx_h800", "plan.tp=4"])   # crashed: no result file
    records, failed = report.collect(tmp_path)
    assert [r["job"] for r in records] == ["0", "1", "10"]        # natural order
    assert [p.name for p in failed] == ["2"]
    assert [r["label"] for r in records] == ["gb200_nvl72 tp=4", "gb200_nvl72 tp=8", "hgx_h800 tp=8"]
    assert records[2]["tokens_per_joule"] == 1.5 and records[2]["objective"] == 1.5 and records[0]["plan.tp"] == 4
    res = report.build_report(tmp_path, tmp_path / "rep")
    s = res["summary"]
    assert s["num_jobs"] == 3 and s["num_failed"] == 1 and s["num_feasible"] == 2
    assert s["best_tokens_per_joule"]["job"] == "0"              # best *feasible* design
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Jobs without results" in md and "- `2`" in md and "**gb200_nvl72 tp=4**" in md


def test_report_rejects_bad_sweep_dir(tmp_path):
    for bad in (None, tmp_path / "missing", tmp_path):
        with pytest.raises(ConfigError) as e:
            report.build_report(bad)
        assert e.value.field == "sweep_dir" and "multirun" in e.value.allowed


# ------------------------------------------------------------------------------------------------
# tracking
# ------------------------------------------------------------------------------------------------
def _cfg(mode):
    return OmegaConf.create({"task": "evaluate", "seed": 0, "plan": {"tp": 8},
                             "tracking": {"mode": mode, "project": "dse-test", "entity": None, "tags": ["test"]}})


@pytest.fixture
def hydra_dir(tmp_path):
    """Pretend to be inside a Hydra job whose run dir is tmp_path/run (what dse.cli.output_dir() reads)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from dse.config import CONF_DIR
    from dse.schema import register_schemas

    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose(config_name="config", return_hydra_config=True)
    run = tmp_path / "run"
    run.mkdir()
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run)
    HydraConfig.instance().set_config(cfg)
    yield run
    HydraConfig.instance().cfg = None
    GlobalHydra.instance().clear()


def _no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_tracker_disabled_costs_nothing(tmp_path, monkeypatch, capsys):
    _no_network(monkeypatch)
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    with track.start_run(_cfg("disabled"), "evaluate") as tr:
        tr.log({"a": 1.0}, step=0)
        tr.summary({"b": {"c": 2}})
        tr.log_table("rows", [{"x": 1}])
        tr.log_image("img", tmp_path / "nothing.png")
    assert time.perf_counter() - t0 < 0.1
    assert not tr.enabled and tr.mode == "disabled" and tr.run_dir is None
    assert list(tmp_path.iterdir()) == []
    assert capsys.readouterr() == ("", "")


def test_tracker_mode_resolution(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert track.resolve_mode(_cfg(None)) == "disabled"
    assert track.resolve_mode(_cfg("offline")) == "offline"          # config wins over the environment
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert track.resolve_mode(_cfg(None)) == "offline"
    monkeypatch.delenv("WANDB_MODE")
    assert track.resolve_mode(_cfg(None)) == "offline"
    assert track.resolve_mode(OmegaConf.create({})) == "offline"
    with pytest.raises(ConfigError) as e:
        track.resolve_mode(_cfg("sometimes"))
    assert e.value.field == "tracking.mode"


def test_tracker_offline_creates_run_under_hydra_dir(hydra_dir, tmp_path, capsys):
    img = report.plot_sensitivities({"a": 1.0, "b": -0.5}, tmp_path / "s.png", "d tokens/J / d x  (tokens/J)")
    t0 = time.perf_counter()
    with track.start_run(_cfg("offline"), "search") as tr:
        assert tr.mode == "offline" and tr.enabled
        import numpy as np
        for step in range(3):
            tr.log({"tokens_per_joule": np.float32(1.0 + step), "breakdown": {"compute": 0.5}}, step=step)
        tr.summary({"best": {"tokens_per_joule": 3.0}, "feasible": True})
        tr.log_table("designs", [{"job": "0", "tokens_per_joule": 1.5, "breakdown": {"compute": 1.0}},
                                 {"job": "1", "tokens_per_joule": None, "note": "oom"}])
        tr.log_image("sens", img)
        run_dir = tr.run_dir
    assert time.perf_counter() - t0 < 10
    assert run_dir is not None and run_dir.parent == hydra_dir / "wandb"
    assert run_dir.name.startswith("offline-run-") and list(run_dir.glob("run-*.wandb"))
    assert not tr.enabled                                           # finished
    assert capsys.readouterr().out == ""                            # the task's JSON stays the last stdout line


def test_tracker_online_falls_back_to_offline(hydra_dir, monkeypatch, capsys):
    monkeypatch.setattr(track, "network_ok", lambda *a, **k: False)
    t0 = time.perf_counter()
    tr = track.start_run(_cfg("online"), "evaluate")
    try:
        assert tr.mode == "offline" and tr.requested_mode == "online" and tr.enabled
        assert tr.run_dir.name.startswith("offline-run-")
    finally:
        tr.finish()
    assert time.perf_counter() - t0 < 10
    err = [line for line in capsys.readouterr().err.splitlines() if "dse.track" in line or "warning" in line]
    assert len(err) == 1 and "unreachable" in err[0] and "offline" in err[0]


def test_tracker_online_init_error_falls_back(hydra_dir, monkeypatch, capsys):
    monkeypatch.setattr(track, "network_ok", lambda *a, **k: True)
    real, modes = track._init, []

    def flaky(mode, kwargs, timeout):
        modes.append(mode)
        if mode == "online":
            raise RuntimeError("No API key configured")
        return real(mode, kwargs, timeout)
    monkeypatch.setattr(track, "_init", flaky)
    with track.start_run(_cfg("online"), "evaluate") as tr:
        assert tr.mode == "offline"
    assert modes == ["online", "offline"]
    assert "logging offline" in capsys.readouterr().err


def test_network_probe(monkeypatch):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    try:
        assert track.network_ok("127.0.0.1", port, timeout=1.0)
    finally:
        srv.close()
    t0 = time.perf_counter()
    assert not track.network_ok("127.0.0.1", port, timeout=1.0)     # closed port: refused at once
    assert time.perf_counter() - t0 < 1.6
    assert track.server_host("https://api.wandb.ai") == ("api.wandb.ai", 443)
    assert track.server_host("http://localhost:8080") == ("localhost", 8080)


def test_wandb_failure_warns_once_and_disables(hydra_dir, monkeypatch, capsys):
    class BrokenRun:
        dir = "x"

        def log(self, *a, **k):
            raise RuntimeError("disk full\nsecond line")

        def finish(self, **k):
            raise AssertionError("finish must not be called on a broken run")

    tr = track.Tracker(BrokenRun(), "offline")
    tr.log({"a": 1.0})
    tr.log({"a": 2.0})
    tr.summary({"b": 1})
    tr.finish()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: wandb log failed") and "disk full second line" in err[0]
    assert not tr.enabled and tr.mode == "disabled"

    def boom(*a, **k):
        raise RuntimeError("wandb-core did not start")
    monkeypatch.setattr(track, "_init", boom)
    tr = track.start_run(_cfg("offline"), "evaluate")
    assert not tr.enabled
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tracking disabled" in err[0]


# ------------------------------------------------------------------------------------------------
# a real multirun through the CLI, then task=report over it
# ------------------------------------------------------------------------------------------------
def _dse(*args, cwd=None):
    env = dict(os.environ, JAX_PLATFORMS="cpu", WANDB_MODE="disabled", HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, "-m", "dse", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=cwd)


@pytest.mark.slow
def test_joblib_multirun_then_report(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    r = _dse("-m", "task=evaluate", "hardware=gb200_nvl72,hgx_h800", "workload=llama3_70b", "phase=train",
             "hardware.num_chips=64", "plan.tp=4,8", "hydra/launcher=joblib", f"hydra.sweep.dir={sweep}")
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = sorted((p for p in sweep.iterdir() if p.is_dir()), key=lambda p: int(p.name))
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    tpj = {p.name: json.loads((p / "metrics.json").read_text())["tokens_per_joule"] for p in jobs}

    # `++` works whether or not conf/config.yaml declares `sweep_dir`
    r = _dse("task=report", f"++sweep_dir={sweep}", f"hydra.run.dir={tmp_path / 'report_run'}")
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["num_jobs"] == 4 and out["num_failed"] == 0
    assert json.loads((tmp_path / "report_run" / "report.json").read_text()) == out
    names = {"report.csv", "pareto.png", "breakdown_time.png", "breakdown_power.png", "report.md", "report.json"}
    assert names <= {Path(f).name for f in out["files"]}
    for f in out["files"]:
        assert Path(f).parent == sweep and Path(f).stat().st_size > 0
        if f.endswith(".png"):
            assert Path(f).read_bytes()[:8] == PNG
    with open(sweep / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert {row["job"]: float(row["tokens_per_joule"]) for row in rows} == tpj
    assert {row["plan.tp"] for row in rows} == {"4", "8"} and {row["system"] for row in rows} == {"gb200_nvl72", "hgx_h800"}
    best = out["best_tokens_per_joule"]
    feasible = {row["job"]: float(row["tokens_per_joule"]) for row in rows if row["feasible"] == "True"}
    assert best["job"] == max(feasible, key=feasible.get) and best["tokens_per_joule"] == tpj[best["job"]]
    assert best["label"] in (sweep / "report.md").read_text()
    if any(n.endswith(".parquet") for n in out["files"]):
        import pyarrow.parquet as pq
        assert pq.read_table(sweep / "report.parquet").num_rows == 4

    r = _dse("task=report", f"++sweep_dir={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path / 'r2'}")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0 and "sweep_dir" in r.stderr and "multirun" in r.stderr
