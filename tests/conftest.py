import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("WANDB_MODE", "disabled")

import pytest  # noqa: E402

from dse.build import build  # noqa: E402
from dse.config import compose_config  # noqa: E402


@pytest.fixture
def specs():
    """Build (system, model, phase, plan) from overrides."""
    def make(*overrides):
        return build(compose_config(list(overrides)))
    return make
