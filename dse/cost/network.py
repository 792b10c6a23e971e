"""Alpha-beta collectives on network tiers.

A collective over a group of ``n`` chips costs ``alpha`` (startup latency per algorithm step) plus
``beta`` (bytes each chip must move through its link, divided by the achievable per-direction
bandwidth). The formulas (bytes are the full buffer per chip, ``bw`` per direction):

* ring all-reduce:      2 (n-1) alpha + 2 (n-1)/n * bytes / bw
* all-gather, reduce-scatter: (n-1) alpha +  (n-1)/n * bytes / bw   (bytes = full gathered buffer)
* all-to-all (switched / full mesh): alpha * steps + (n-1)/n * bytes / bw
* p2p:                  alpha + bytes / bw

A group lands on the scale-up tier when it fits in one scale-up domain; otherwise it is
*hierarchical*: a reduce-scatter inside each domain, the collective across domains on the
scale-out tier over ``1/k`` of the data (``k`` chips per domain each drive their own NIC), then an
all-gather inside the domain. Group sizes are traced floats, so they can be relaxed by a search;
``n = 1`` costs exactly zero.
"""
from __future__ import annotations

import jax.numpy as jnp

from dse.specs import Fabric, System


def _safe_n(n):
    return jnp.maximum(n, 1.0)


def _frac(n):
    """(n-1)/n, the share of a buffer that crosses the network in ring algorithms."""
    n = _safe_n(n)
    return (n - 1.0) / n


def _latency_steps(n, topology: str):
    """Algorithm steps that pay alpha for a ring-style collective on ``topology``."""
    n = _safe_n(n)
    if topology == "switched" or topology == "full_mesh":
        # tree/recursive-halving latency on a non-blocking fabric
        return jnp.log2(n)
    if topology == "torus":
        return 3.0 * (jnp.cbrt(n) - 1.0)  # one ring per dimension of a 3D torus
    return n - 1.0


def allgather_time(bytes_total, n, fabric: Fabric):
    """All-gather of a buffer of ``bytes_total`` (full size, per chip) over ``n`` chips, s."""
    bw = fabric.bw * fabric.efficiency
    return fabric.latency_s * _latency_steps(n, fabric.topology) + _frac(n) * bytes_total / bw


def reduce_scatter_time(bytes_total, n, fabric: Fabric):
    """Reduce-scatter of a ``bytes_total`` buffer over ``n`` chips, s (same cost as all-gather)."""
    return allgather_time(bytes_total, n, fabric)


def allreduce_time(bytes_total, n, fabric: Fabric):
    """Ring all-reduce (reduce-scatter + all-gather) of ``bytes_total`` per chip, s."""
    return 2.0 * allgather_time(bytes_total, n, fabric)


def alltoall_time(bytes_sent, n, fabric: Fabric, messages=None):
    """All-to-all where each chip holds ``bytes_sent`` destined evenly to all ``n`` peers, s.

    A share 1/n stays local. Each chip injects ``messages`` separate messages (default: one per
    peer, n - 1), each costing ``fabric.msg_s`` of injection time: this is what makes a wide
    expert-parallel dispatch of many small token messages slower than its bytes suggest. On a
    torus the traffic crosses on average n^(1/3)/4 hops per dimension, which divides the usable
    bandwidth.
    """
    peers = jnp.maximum(_safe_n(n) - 1.0, 0.0)
    msgs = peers if messages is None else jnp.minimum(peers, messages)
    bw = fabric.bw * fabric.efficiency
    if fabric.topology == "torus":
        bw = bw / jnp.maximum(jnp.cbrt(_safe_n(n)) / 4.0, 1.0)
    elif fabric.topology == "ring":
        bw = bw / jnp.maximum(_safe_n(n) / 4.0, 1.0)
    start = jnp.where(n > 1.0, fabric.latency_s, 0.0)
    return start + msgs * fabric.msg_s + _frac(n) * bytes_sent / bw


def p2p_time(bytes_msg, fabric: Fabric):
    """One point-to-point message of ``bytes_msg`` bytes, s."""
    return fabric.latency_s + bytes_msg / (fabric.bw * fabric.efficiency)


def _split(n, per_domain):
    """(chips of the group inside one scale-up domain, number of domains the group spans).

    Clipped with ``where`` rather than min/max so that at a tie (a group exactly filling its
    domain) the derivative is the one-sided one of the branch taken, not an average of two.
    """
    n = _safe_n(n)
    k = jnp.where(per_domain >= n, n, jnp.where(per_domain <= 1.0, 1.0, per_domain))
    return k, n / k


def group_allreduce_time(bytes_total, n, system: System, per_domain=None):
    """All-reduce over a group of ``n`` chips, ``per_domain`` of them in each scale-up domain
    (default: as many as fit). Flat if it fits one domain, else hierarchical: reduce-scatter
    inside, all-reduce across domains on scale-out over 1/k of the data, all-gather inside."""
    k, d = _split(n, system.scale_up_size if per_domain is None else per_domain)
    intra = 2.0 * allgather_time(bytes_total, k, system.scale_up)
    return intra + allreduce_time(bytes_total / k, d, system.scale_out)


def group_allgather_time(bytes_total, n, system: System, per_domain=None):
    """All-gather of a ``bytes_total`` buffer over ``n`` chips (hierarchical across domains)."""
    k, d = _split(n, system.scale_up_size if per_domain is None else per_domain)
    return allgather_time(bytes_total, k, system.scale_up) + allgather_time(bytes_total / k, d, system.scale_out)


def group_reduce_scatter_time(bytes_total, n, system: System, per_domain=None):
    """Reduce-scatter over ``n`` chips; the mirror image of :func:`group_allgather_time`."""
    return group_allgather_time(bytes_total, n, system, per_domain)


def dedup_factor(d, fanout):
    """Cross-domain bytes of a hierarchical dispatch relative to a flat one.

    A token routed to ``fanout`` experts spread uniformly over ``d`` domains crosses the scale-out
    tier once per *distinct* remote domain, (d-1)(1-(1-1/d)^fanout) copies on average, and is
    forwarded to its experts inside each domain on scale-up (DeepEP / node-limited routing),
    instead of fanout (d-1)/d copies. ``fanout`` = 1 gives 1.
    """
    d = jnp.maximum(d, 1.0)
    flat = fanout * (d - 1.0) / d
    active = (d > 1.0) & (flat > 0.0)
    base = jnp.where(active, 1.0 - 1.0 / d, 0.5)          # safe operands: finite gradients everywhere
    hier = (d - 1.0) * (1.0 - base ** jnp.where(active, fanout, 1.0))
    return jnp.where(active, hier / jnp.where(active, flat, 1.0), 1.0)


def group_alltoall_time(bytes_sent, n, system: System, per_domain=None, messages=None, fanout=1.0):
    """All-to-all over ``n`` chips spanning ``d`` domains of ``k`` chips.

    A share 1/d of each chip's bytes stays inside its domain (flat all-to-all on scale-up); the
    rest, (d-1)/d, leaves through the chip's own scale-out link, reduced by
    :func:`dedup_factor` when each token goes to ``fanout`` destinations. ``messages``: distinct
    messages a chip sends at most (e.g. token copies), split between the tiers like the bytes.
    """
    k, d = _split(n, system.scale_up_size if per_domain is None else per_domain)
    r = dedup_factor(d, fanout)
    m_local = None if messages is None else messages / d
    m_remote = None if messages is None else messages * (d - 1.0) / d * r
    local = alltoall_time(bytes_sent / d, k, system.scale_up, m_local)
    remote = jnp.where(d > 1.0, alltoall_time(bytes_sent * r, d, system.scale_out, m_remote), 0.0)
    return local + remote


def alltoall_bytes_by_tier(bytes_sent, n, system: System, per_domain=None, fanout=1.0):
    """(bytes each chip sends on scale-up, on scale-out) in :func:`group_alltoall_time`."""
    k, d = _split(n, system.scale_up_size if per_domain is None else per_domain)
    return bytes_sent / d * _frac(k), bytes_sent * _frac(d) * dedup_factor(d, fanout)


def group_p2p_time(bytes_msg, crosses_domain, system: System):
    """p2p between pipeline neighbours: a share ``crosses_domain`` (0..1) of the boundaries is
    on scale-out, the rest on scale-up."""
    return ((1.0 - crosses_domain) * p2p_time(bytes_msg, system.scale_up)
            + crosses_domain * p2p_time(bytes_msg, system.scale_out))
