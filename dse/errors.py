"""The one error type users see: a bad configuration value, named by its field."""
from __future__ import annotations


class ConfigError(ValueError):
    """Invalid configuration: carries the dotted field name, the value and what is allowed."""

    def __init__(self, field: str, value, allowed: str):
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"invalid config: {field}={value!r}; allowed: {allowed}")


def require_positive(field: str, value, allow_zero: bool = False) -> float:
    """Return ``value`` as float if it is a finite number > 0 (>= 0 with ``allow_zero``)."""
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(field, value, "a number")
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(field, value, "a finite number")
    if v < 0 or (v == 0 and not allow_zero):
        raise ConfigError(field, value, "a number >= 0" if allow_zero else "a number > 0")
    return v


def require_int(field: str, value, lo: int = 1, hi: int | None = None) -> int:
    """Return ``value`` as int if it is an integer in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
        raise ConfigError(field, value, "an integer")
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        raise ConfigError(field, value, f"an integer in [{lo}, {hi}]" if hi is not None else f"an integer >= {lo}")
    return v


def require_fraction(field: str, value) -> float:
    """Return ``value`` as float if it lies in [0, 1]."""
    v = require_positive(field, value, allow_zero=True)
    if v > 1:
        raise ConfigError(field, value, "a fraction in [0, 1]")
    return v
