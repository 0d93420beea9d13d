"""Tissue motion: the inverse deformation from the current frame back to end-diastole.

Scatterers are fixed in tissue (material) coordinates, taken as the heart-plane coordinates at ED. For
each point (u, z) of the current frame this module returns the material point (U, Z) it came from:

- along the axis, the LV is scaled by L0 / L(m) with the apex fixed; beyond the mitral plane the base
  displacement decays over ``DECAY_Z_MM``, and sideways away from the LV over ``DECAY_U_MM``;
- across the axis, a piecewise-linear radial map sends the current cavity [0, h] onto [0, h0] and the
  current wall [h, h_epi] onto [h0, h0_epi] (so the wall thickens); outside the epicardium the
  displacement decays over ``DECAY_U_MM``. Beyond the LV (past the mitral plane or the apical cap) there
  is no radial motion.
"""

from __future__ import annotations

import numpy as np

from gdkvm.data.phantom.profiles import CAV_C, CAV_H, EPI_H, ProfileTable, ZIndex

DECAY_Z_MM = 25.0
DECAY_U_MM = 12.0
_EPS = np.float32(1e-3)


def material_coords(u: np.ndarray, z: np.ndarray, cur: ProfileTable, ref: ProfileTable,
                    zindex: ZIndex | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Map current heart-plane points (u, z) to their ED positions (U, Z); arrays of equal shape, mm.

    ``zindex``: precomputed positions of z on the tables' axis (optional speed-up).
    """
    u = np.asarray(u, dtype=np.float32)
    z = np.asarray(z, dtype=np.float32)
    length, length0 = float(cur.length_mm), float(ref.length_mm)
    c, h, he = cur.sample(zindex if zindex is not None else z, (CAV_C, CAV_H, EPI_H))
    rho = u - c
    ar = np.abs(rho)
    outside = np.clip(ar - he, 0.0, None)
    decay_u = np.exp(outside * (-1.0 / DECAY_U_MM))
    upto_base = z <= length
    in_lv = upto_base & (z >= 0)
    beyond = np.clip(z - length, 0.0, None)
    shift_z = in_lv * (z * (length0 / length - 1.0)) + (~upto_base) * (
        (length0 - length) * np.exp(beyond * (-1.0 / DECAY_Z_MM)))
    big_z = z + shift_z * decay_u
    c0, h0, he0 = ref.sample(big_z, (CAV_C, CAV_H, EPI_H))
    in_cav = ar <= h
    in_wall = ~in_cav & (ar <= he)
    r_out = ar + (he0 - he) * decay_u
    r_cav = ar * (h0 / (h + _EPS))
    r_wall = h0 + (ar - h) * ((he0 - h0) / (he - h + _EPS))
    radius = r_out + in_cav * (r_cav - r_out) + in_wall * (r_wall - r_out)
    big_u = u + upto_base * (c0 + np.copysign(radius, rho) - u)
    return big_u, big_z
