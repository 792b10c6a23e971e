"""Power cost: from activity to watts, and energy per token.

Per chip, power is idle plus dynamic parts that follow activity:

    P_chip = idle + P_compute_max * u_compute + e_hbm * hbm_bytes/s + sum_tiers e_link * link_bytes/s

with ``u_compute`` the fraction of peak FLOP/s used, ``e_hbm`` the HBM access energy per byte and
``e_link`` the serdes energy per byte (sent and received). ``P_compute_max`` is what is left of the
TDP once idle, HBM and links at full bandwidth are paid, so a chip flat out on everything draws
exactly its TDP. Optics and switch ASICs are always on (per-chip shares in each tier), hosts draw a
fixed per-chip share, and the facility multiplies everything by PUE. Each hardware preset states the
boundary that its total covers.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from dse.specs import System


class PowerBreakdown(NamedTuple):
    chips_w: jnp.ndarray        # compute dynamic + idle, all chips
    hbm_w: jnp.ndarray
    links_w: jnp.ndarray        # serdes energy of bytes moved
    optics_w: jnp.ndarray
    switches_w: jnp.ndarray
    hosts_w: jnp.ndarray
    facility_w: jnp.ndarray     # (PUE - 1) x IT power

    @property
    def total_w(self):
        return (self.chips_w + self.hbm_w + self.links_w + self.optics_w + self.switches_w
                + self.hosts_w + self.facility_w)


def compute_dynamic_max_w(system: System):
    """Dynamic power of the matrix/vector units at 100 % utilisation, W per chip."""
    c = system.chip
    io = c.hbm_j_per_byte * c.hbm_bw + 2.0 * (system.scale_up.j_per_byte * system.scale_up.bw
                                              + system.scale_out.j_per_byte * system.scale_out.bw)
    return jnp.maximum(c.tdp_w - c.idle_w - io, 0.0)


def system_power(system: System, compute_util, hbm_bytes_per_s, up_bytes_per_s, out_bytes_per_s):
    """Whole-system power at a given per-chip activity (each argument per chip, averaged over a
    step; link bytes are bytes *sent* per chip per second, each also received by a peer)."""
    c, n = system.chip, system.num_chips
    u = jnp.clip(compute_util, 0.0, 1.0)
    hbm = jnp.minimum(hbm_bytes_per_s, c.hbm_bw) * c.hbm_j_per_byte
    links = 2.0 * (jnp.minimum(up_bytes_per_s, system.scale_up.bw) * system.scale_up.j_per_byte
                   + jnp.minimum(out_bytes_per_s, system.scale_out.bw) * system.scale_out.j_per_byte)
    optics = system.scale_up.optics_per_chip * system.scale_up.optic_w + system.scale_out.optics_per_chip * system.scale_out.optic_w
    switches = system.scale_up.switch_w_per_chip + system.scale_out.switch_w_per_chip
    it = PowerBreakdown(
        chips_w=n * (c.idle_w + compute_dynamic_max_w(system) * u), hbm_w=n * hbm, links_w=n * links,
        optics_w=n * optics, switches_w=n * switches, hosts_w=n * system.host_w_per_chip,
        facility_w=jnp.zeros_like(n))
    return it._replace(facility_w=(system.pue - 1.0) * it.total_w)
