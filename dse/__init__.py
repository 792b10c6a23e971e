"""dse: a differentiable design-space explorer for AI datacenter systems (JAX)."""
__version__ = "0.1.0"
