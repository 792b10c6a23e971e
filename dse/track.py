"""Weights & Biases run lifecycle for dse tasks: never waits on a network, never breaks a result.

``start_run(cfg, job_name)`` returns a :class:`Tracker`. The mode comes from ``cfg.tracking.mode``
(``offline`` | ``online`` | ``disabled`` | null); null falls back to ``$WANDB_MODE``, else ``offline``.

* ``disabled``: nothing is imported, written or contacted (the tracker costs microseconds).
* ``offline``: an offline run under ``<hydra run dir>/wandb/`` (``wandb sync`` uploads it later).
* ``online``: a 2 s TCP probe of the W&B server first; when it is unreachable, or ``wandb.init``
  fails (no API key, timeout), the run falls back to offline and one line says so.

Every call into wandb is guarded: if wandb raises, one warning line goes to stderr and the tracker
continues disabled. Results on disk (``metrics.json`` etc.) are written by the tasks themselves and
never depend on tracking. wandb's console capture is off, so the task's JSON stays the last line
of stdout.

Usage::

    with start_run(cfg, "search") as tr:
        for step, m in enumerate(steps):
            tr.log({"tokens_per_joule": m.tpj, "loss": m.loss}, step=step)
        tr.summary(best_metrics)
        tr.log_table("designs", rows)
        tr.log_image("pareto", "pareto.png")
"""
from __future__ import annotations

import json
import math
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional
from urllib.parse import urlparse

MODES = ("offline", "online", "disabled")
_ENV_ALIASES = {"dryrun": "offline", "run": "online", "offline": "offline", "online": "online",
                "disabled": "disabled"}
DEFAULT_HOST = "api.wandb.ai"
PROBE_TIMEOUT_S = 2.0
INIT_TIMEOUT_S = 10.0      # wandb.init (online: server handshake); offline init takes ~1 s
FINISH_TIMEOUT_S = 30.0    # give up uploading at finish; unsent data stays on disk for `wandb sync`


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def _info(msg: str) -> None:
    print(f"dse.track: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# mode and connectivity
# ------------------------------------------------------------------------------------------------
def resolve_mode(cfg=None) -> str:
    """``cfg.tracking.mode`` if set, else ``$WANDB_MODE`` (``dryrun``/``run`` aliases), else offline."""
    from dse.errors import ConfigError

    tracking = _tracking(cfg)
    mode = tracking.get("mode")
    if mode is not None:
        m = str(mode).strip().lower()
        if m not in MODES:
            raise ConfigError("tracking.mode", mode, "offline | online | disabled | null ($WANDB_MODE, else offline)")
        return m
    env = os.environ.get("WANDB_MODE")
    if env:
        m = _ENV_ALIASES.get(env.strip().lower())
        if m is None:
            _warn(f"WANDB_MODE={env!r} is not one of offline | online | disabled; tracking offline")
            return "offline"
        return m
    return "offline"


def server_host(base_url: Optional[str] = None) -> tuple:
    """(host, port) of the W&B server: ``$WANDB_BASE_URL``, else wandb's default, else api.wandb.ai."""
    url = base_url or os.environ.get("WANDB_BASE_URL")
    if not url:
        try:
            from wandb.sdk.lib import urls
            url = urls.DEFAULT_BASE_URL
        except Exception:  # noqa: BLE001
            url = f"https://{DEFAULT_HOST}"
    u = urlparse(url if "://" in url else f"https://{url}")
    return u.hostname or DEFAULT_HOST, u.port or (80 if u.scheme == "http" else 443)


def network_ok(host: Optional[str] = None, port: int = 443, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when a TCP connection to ``host:port`` opens within ``timeout`` seconds (DNS included).

    Runs in a daemon thread so a hanging resolver cannot block longer than ``timeout`` (+0.5 s).
    """
    if host is None:
        host, port = server_host()
    result = {"ok": False}

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result["ok"] = True
        except OSError:
            pass

    t = threading.Thread(target=probe, name="dse-wandb-probe", daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return result["ok"]


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _tracking(cfg) -> Mapping:
    if cfg is None:
        return {}
    try:
        t = cfg.get("tracking") if hasattr(cfg, "get") else getattr(cfg, "tracking", None)
    except Exception:  # noqa: BLE001
        t = None
    return t if t is not None else {}


def _config_dict(cfg) -> Dict[str, Any]:
    if cfg is None:
        return {}
    try:
        from omegaconf import OmegaConf
        if OmegaConf.is_config(cfg):
            try:
                return OmegaConf.to_container(cfg, resolve=True)
            except Exception:  # noqa: BLE001 - unresolvable interpolations: keep them as text
                return OmegaConf.to_container(cfg, resolve=False)
    except ImportError:
        pass
    return dict(cfg) if isinstance(cfg, Mapping) else {}


def _hydra_info() -> Dict[str, Any]:
    try:
        from hydra.core.hydra_config import HydraConfig
        hc = HydraConfig.get()
        info = {"overrides": list(hc.overrides.task), "mode": str(hc.mode)}
        if "MULTIRUN" in info["mode"]:
            info["sweep_dir"] = str(hc.sweep.dir)
            info["job_num"] = hc.job.num
        return info
    except Exception:  # noqa: BLE001 - not under Hydra
        return {}


def _scalar(v):
    """numpy / jax scalars -> Python numbers; everything else unchanged."""
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    try:
        import numpy as np
        a = np.asarray(v)
        if a.shape == () and a.dtype.kind in "biuf":
            return a.item()
        if a.dtype.kind in "biuf" and a.size <= 64:
            return a.tolist()
    except Exception:  # noqa: BLE001
        pass
    return v


def flatten(d: Mapping, prefix: str = "", sep: str = "/") -> Dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a/b": 1}``; numpy/jax scalars become Python numbers; None dropped."""
    out: Dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten(v, key, sep))
        else:
            v = _scalar(v)
            if v is not None:
                out[key] = v
    return out


def _cell(v):
    v = _scalar(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, default=str)
    return v


def _settings_kwargs(timeout: float, online: bool) -> Dict[str, Any]:
    """wandb.Settings kwargs, keeping only the fields this wandb version knows."""
    want = dict(init_timeout=timeout, console="off", silent=True, quiet=True,
                x_disable_stats=True, x_disable_meta=True, x_disable_machine_info=True,
                disable_git=True, disable_code=True, disable_job_creation=True, save_code=False)
    if online:
        want["finish_timeout"] = FINISH_TIMEOUT_S
    try:
        import wandb
        known = set(getattr(wandb.Settings, "model_fields", {}) or {})
    except Exception:  # noqa: BLE001
        known = set()
    return {k: v for k, v in want.items() if not known or k in known}


# ------------------------------------------------------------------------------------------------
# the tracker
# ------------------------------------------------------------------------------------------------
class Tracker:
    """A wandb run (or nothing). Every method is a no-op when disabled and never raises."""

    def __init__(self, run=None, mode: str = "disabled", requested_mode: Optional[str] = None,
                 dir: Optional[Path] = None):
        self.run = run
        self.mode = mode if run is not None else "disabled"
        self.requested_mode = requested_mode or mode
        self.dir = Path(dir) if dir is not None else None
        self._finished = run is None
        try:
            self._run_dir = Path(run.dir).parent if run is not None else None
        except Exception:  # noqa: BLE001
            self._run_dir = None

    # -- state --------------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        """True while a run is open (False when disabled, after a wandb failure, after finish)."""
        return self.run is not None

    @property
    def run_dir(self) -> Optional[Path]:
        """The wandb run directory (``.../wandb/offline-run-*``; kept after finish), None when disabled."""
        return self._run_dir

    def _fail(self, what: str, e: BaseException) -> None:
        msg = " ".join(str(e).split())[:200]
        _warn(f"wandb {what} failed ({type(e).__name__}: {msg}); tracking disabled, results unaffected")
        self.run, self.mode, self._finished = None, "disabled", True

    # -- logging ------------------------------------------------------------------------------
    def log(self, metrics: Mapping, step: Optional[int] = None) -> None:
        """Per-step metrics (nested dicts become ``a/b`` keys)."""
        if self.run is None:
            return
        try:
            self.run.log(flatten(metrics), step=None if step is None else int(step))
        except Exception as e:  # noqa: BLE001
            self._fail("log", e)

    def summary(self, metrics: Mapping) -> None:
        """Final metrics: written to the run summary (nested dicts become ``a/b`` keys)."""
        if self.run is None:
            return
        try:
            self.run.summary.update(flatten(metrics))
        except Exception as e:  # noqa: BLE001
            self._fail("summary", e)

    def log_table(self, name: str, rows: List[Mapping]) -> None:
        """A table: columns are the union of the rows' keys (nested dicts flattened to ``a.b``)."""
        if self.run is None or not rows:
            return
        try:
            import wandb
            flat = [flatten(r, sep=".") for r in rows]
            cols: List[str] = []
            for r in flat:
                cols.extend(k for k in r if k not in cols)
            data = [[_cell(r.get(c)) for c in cols] for r in flat]
            self.run.log({name: wandb.Table(columns=cols, data=data, allow_mixed_types=True)})
        except Exception as e:  # noqa: BLE001
            self._fail("log_table", e)

    def log_image(self, name: str, path) -> None:
        """An image file (PNG) logged under ``name``."""
        if self.run is None:
            return
        try:
            import wandb
            self.run.log({name: wandb.Image(str(path))})
        except Exception as e:  # noqa: BLE001
            self._fail("log_image", e)

    def finish(self, exit_code: int = 0) -> None:
        if self.run is None or self._finished:
            return
        run, self._finished, self.run = self.run, True, None
        try:
            run.finish(exit_code=exit_code)
        except Exception as e:  # noqa: BLE001
            self._fail("finish", e)

    # -- context manager ----------------------------------------------------------------------
    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.finish(exit_code=0 if exc_type is None else 1)
        return False

    def __repr__(self) -> str:
        return f"Tracker(mode={self.mode!r}, requested={self.requested_mode!r}, dir={str(self.dir)!r})"


def _init(mode: str, kwargs: Dict[str, Any], timeout: float):
    import wandb
    settings = wandb.Settings(**_settings_kwargs(timeout, online=mode == "online"))
    try:
        return wandb.init(mode=mode, settings=settings, reinit="create_new", **kwargs)
    except TypeError:  # older wandb without reinit="create_new"
        return wandb.init(mode=mode, settings=settings, reinit=True, **kwargs)


def start_run(cfg, job_name: str, out_dir=None, probe=None) -> Tracker:
    """Start tracking ``job_name`` for the composed config ``cfg`` (see the module docstring).

    ``out_dir``: where ``wandb/`` goes (default: the Hydra run dir, ``dse.cli.output_dir()``).
    ``probe``: connectivity check ``() -> bool`` for online mode (default: :func:`network_ok`).
    """
    mode = resolve_mode(cfg)
    if mode == "disabled":
        return Tracker(None, "disabled")

    tracking = _tracking(cfg)
    if out_dir is None:
        from dse.cli import output_dir
        out_dir = output_dir()
    out_dir = Path(out_dir)
    requested = mode
    if mode == "online" and not (probe or network_ok)():
        host, port = server_host()
        _info(f"wandb online requested but {host}:{port} is unreachable; logging offline "
              f"(upload later with `wandb sync {out_dir / 'wandb'}`)")
        mode = "offline"

    config = _config_dict(cfg)
    hinfo = _hydra_info()
    if hinfo:
        config["hydra"] = hinfo
    tags = [str(t) for t in (tracking.get("tags") or [])]
    name = job_name if "job_num" not in hinfo else f"{job_name}-{hinfo['job_num']}"
    group = tracking.get("group") or (Path(hinfo["sweep_dir"]).name if "sweep_dir" in hinfo else None)
    kwargs = dict(dir=str(out_dir), config=config, project=tracking.get("project") or "dse",
                  entity=tracking.get("entity"), tags=tags, name=name, job_type=job_name, group=group)
    timeout = float(tracking.get("init_timeout_s") or INIT_TIMEOUT_S)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        run = _init(mode, kwargs, timeout)
    except Exception as e:  # noqa: BLE001 - wandb may raise anything (UsageError, CommError, ...)
        if mode != "online":
            _warn(f"wandb init ({mode}) failed ({type(e).__name__}: {' '.join(str(e).split())[:200]}); "
                  "tracking disabled, results unaffected")
            return Tracker(None, "disabled", requested)
        _info(f"wandb online init failed ({type(e).__name__}: {' '.join(str(e).split())[:160]}); logging offline")
        mode = "offline"
        try:
            run = _init(mode, kwargs, timeout)
        except Exception as e2:  # noqa: BLE001
            _warn(f"wandb init (offline) failed ({type(e2).__name__}: {' '.join(str(e2).split())[:200]}); "
                  "tracking disabled, results unaffected")
            return Tracker(None, "disabled", requested)
    if run is None:
        return Tracker(None, "disabled", requested)
    return Tracker(run, mode, requested, out_dir)


__all__ = ["Tracker", "start_run", "resolve_mode", "network_ok", "server_host", "flatten", "MODES"]

