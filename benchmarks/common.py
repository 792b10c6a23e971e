"""Shared helpers for the benchmarks: load a space preset as a Problem."""
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from dse.space import Problem, space_from_config

SPACES = Path(__file__).resolve().parent.parent / "conf" / "space"


def load_problem(name: str) -> Problem:
    return Problem.from_space(space_from_config(OmegaConf.create(yaml.safe_load((SPACES / f"{name}.yaml").read_text()))))
