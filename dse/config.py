"""Compose the Hydra config from Python (tests, validation, notebooks) exactly as the CLI does."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def compose_config(overrides: Sequence[str] = ()):
    """The composed config for ``overrides`` (e.g. ``["hardware=gb200_nvl72", "plan.tp=4"]``)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from dse.schema import register_schemas

    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return compose(config_name="config", overrides=list(overrides))
