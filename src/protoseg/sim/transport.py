"""Transport of particles through the liquid argon of the TPC: the particle table and the energy deposits.

Everything inside the active-volume box (``ACTIVE_BOX_MIN_CM`` .. ``ACTIVE_BOX_MAX_CM``) is liquid
argon; a particle that leaves the box is no longer followed (end_process "escape"). Particles are
moved in bulk: one *pass* advances every charged particle of a batch by up to half of its nominal
range (electrons and short ranges: all of it; never much past the box), with all its steps built
at once in flat arrays, and passes repeat until every particle has ended:

* nominal kinetic energies along the path come from the CSDA range table (T at residual range);
* each step's continuous loss is sampled (Landau / Gaussian, ``physics.sample_step_loss``) and
  δ-ray electrons above the threshold are made explicitly; the particle's actual energy is its
  start energy minus the cumulative sum of both; where it runs out the particle stops (the last
  step ends at the residual range of what was left), otherwise the next pass starts from the
  actual energy, which feeds the fluctuations back into the stopping power: range straggling
  follows (≈ 1% of the range for protons, Bohr's value);
* multiple scattering: Highland variance per step (``physics.highland_path_function``), kicks
  accumulated as a random walk in the tangent plane of the pass's start direction and mapped onto
  the sphere; positions are the cumulative sum of direction × step;
* the first of: energy exhausted, box left, hadronic interaction (cumulative number of interaction
  lengths against an exponential budget), decay (cumulative proper time against an exponential
  budget) ends the particle, and its daughters go to the next round.

Photons and electrons above the shower cut are handled in ``showers``; decays, captures and
hadronic final states in ``interactions``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protoseg.detector import ARGON, GEOMETRY
from protoseg.sim import physics as ph
from protoseg.sim.directions import random_perpendicular_basis, rotate_from_axis
from protoseg.sim.interactions import inelastic_length_cm
from protoseg.sim.truth import PARTICLE_COLUMNS, Deposits

__all__ = ["ACTIVE_BOX_MIN_CM", "ACTIVE_BOX_MAX_CM", "ParticleStore", "Movers", "ray_box", "inside_box",
           "charged_pass", "line_deposits"]

ACTIVE_BOX_MIN_CM = np.array([-GEOMETRY.drift_length_cm, GEOMETRY.y_min_cm, 0.0])
ACTIVE_BOX_MAX_CM = np.array([GEOMETRY.drift_length_cm, GEOMETRY.y_max_cm, GEOMETRY.apa_z_ranges_cm[-1][1]])
_BOX_TOLERANCE_CM = 1e-6
MIN_KINETIC_MEV = 0.01  # below this a charged particle is stopped where it is (range < 1 µm)


# ---------------------------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------------------------
def ray_box(pos: np.ndarray, direction: np.ndarray, lo: np.ndarray = ACTIVE_BOX_MIN_CM,
            hi: np.ndarray = ACTIVE_BOX_MAX_CM) -> tuple[np.ndarray, np.ndarray]:
    """Distances (cm) along each ray to where it enters and leaves the box (slab method).

    A ray that misses the box has enter > exit. Distances can be negative (box behind the start).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / direction
        t1 = (lo - pos) * inv
        t2 = (hi - pos) * inv
    t_lo = np.where(np.isnan(t1), -np.inf, np.minimum(t1, t2))
    t_hi = np.where(np.isnan(t1), np.inf, np.maximum(t1, t2))
    # Rays parallel to a slab: inside it -> unbounded, outside -> missed.
    parallel = direction == 0.0
    outside_slab = parallel & ((pos < lo) | (pos > hi))
    t_lo = np.where(parallel, np.where(outside_slab, np.inf, -np.inf), t_lo)
    t_hi = np.where(parallel, np.where(outside_slab, -np.inf, np.inf), t_hi)
    return t_lo.max(axis=1), t_hi.min(axis=1)


def inside_box(pos: np.ndarray, tolerance_cm: float = _BOX_TOLERANCE_CM) -> np.ndarray:
    return np.all((pos >= ACTIVE_BOX_MIN_CM - tolerance_cm) & (pos <= ACTIVE_BOX_MAX_CM + tolerance_cm), axis=-1)


# ---------------------------------------------------------------------------------------------
# The particle table, grown as the event develops
# ---------------------------------------------------------------------------------------------
class ParticleStore:
    """Columns of PARTICLE_COLUMNS for one event; rows are appended in bulk and ends filled in later."""

    _FLOAT_COLUMNS = [name for name, dt in PARTICLE_COLUMNS.items() if dt.kind == "f"]

    def __init__(self, capacity: int = 1024) -> None:
        self._n = 0
        self._columns: dict[str, np.ndarray] = {}
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        new = {}
        for name, dtype in PARTICLE_COLUMNS.items():
            dt = np.dtype(np.float64) if dtype.kind == "f" else dtype
            column = np.zeros(capacity, dtype=dt)
            if name in self._columns:
                column[: self._n] = self._columns[name][: self._n]
            elif dtype.kind == "O":
                column[:] = ""
            new[name] = column
        self._columns = new

    def __len__(self) -> int:
        return self._n

    def add(self, parent_id: np.ndarray, pdg: np.ndarray, origin: np.ndarray, process: str | np.ndarray,
            pos_cm: np.ndarray, t_us: np.ndarray, momentum_mev: np.ndarray) -> np.ndarray:
        """Append particles; returns their track ids (= row numbers). ``momentum_mev`` is (n, 3)."""
        n = int(np.asarray(pdg).shape[0])
        if self._n + n > self._columns["track_id"].shape[0]:
            self._allocate(max(2 * (self._n + n), 1024))
        rows = slice(self._n, self._n + n)
        ids = np.arange(self._n, self._n + n, dtype=np.int64)
        c = self._columns
        c["track_id"][rows] = ids
        c["parent_id"][rows] = parent_id
        c["pdg"][rows] = pdg
        c["origin"][rows] = origin
        c["process"][rows] = process
        c["end_process"][rows] = "escape"
        for axis, name in enumerate("xyz"):
            c[f"start_{name}"][rows] = pos_cm[:, axis]
            c[f"end_{name}"][rows] = pos_cm[:, axis]
            c[f"start_p{name}"][rows] = momentum_mev[:, axis] * 1e-3
        c["start_t"][rows] = t_us
        self._n += n
        return ids

    def origin_of(self, track_id: np.ndarray) -> np.ndarray:
        return self._columns["origin"][track_id]

    def finish(self, track_id: np.ndarray, end_pos_cm: np.ndarray, end_process: str | np.ndarray) -> None:
        c = self._columns
        for axis, name in enumerate("xyz"):
            c[f"end_{name}"][track_id] = end_pos_cm[:, axis]
        c["end_process"][track_id] = end_process

    def move_end(self, track_id: np.ndarray, end_pos_cm: np.ndarray) -> None:
        for axis, name in enumerate("xyz"):
            self._columns[f"end_{name}"][track_id] = end_pos_cm[:, axis]

    def add_length(self, track_id: np.ndarray, length_cm: np.ndarray) -> None:
        np.add.at(self._columns["track_length"], track_id, length_cm)

    def table(self, deposits: Deposits) -> dict[str, np.ndarray]:
        """The final columns, with energy_deposited summed from the deposits."""
        out = {name: self._columns[name][: self._n].astype(dtype) for name, dtype in PARTICLE_COLUMNS.items()}
        edep = np.bincount(deposits.track_id, weights=deposits.energy_mev, minlength=self._n)[: self._n]
        out["energy_deposited"] = edep.astype(PARTICLE_COLUMNS["energy_deposited"])
        return out


# ---------------------------------------------------------------------------------------------
# Particles in flight
# ---------------------------------------------------------------------------------------------
@dataclass
class Movers:
    """A batch of particles to move: one row per particle (arrays of equal length)."""

    track_id: np.ndarray  # int64, row in the ParticleStore
    pdg: np.ndarray  # int32
    pos: np.ndarray  # (n, 3) cm
    dir: np.ndarray  # (n, 3) unit
    kinetic_mev: np.ndarray
    t_us: np.ndarray
    path_cm: np.ndarray  # path already travelled by this track (for the Highland path function)
    interaction_budget: np.ndarray  # interaction lengths left before a hadronic interaction (Exp(1))
    decay_budget_ns: np.ndarray  # proper time left before decay (Exp(τ))

    def __len__(self) -> int:
        return int(self.track_id.shape[0])

    def take(self, index: np.ndarray) -> Movers:
        return Movers(*(getattr(self, name)[index] for name in self.__dataclass_fields__))

    @classmethod
    def concatenate(cls, parts: list[Movers]) -> Movers:
        parts = [p for p in parts if p is not None and len(p)]
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in cls.__dataclass_fields__))

    @classmethod
    def empty(cls) -> Movers:
        z = np.zeros(0)
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros((0, 3)), np.zeros((0, 3)), z, z, z, z, z)


def empty_deposits() -> Deposits:
    return Deposits.concatenate([])


def line_deposits(start: np.ndarray, end: np.ndarray, energy_mev: np.ndarray, track_id: np.ndarray,
                  t_us: np.ndarray, step_cm: float, rng: np.random.Generator | None = None,
                  kinetic_mev: np.ndarray | None = None) -> Deposits:
    """Split straight segments of electrons into steps of at most ``step_cm``.

    Without ``rng`` the energy is shared evenly; with it (and each segment's electron kinetic
    energy) each step's loss is sampled around its mean as in ``charged_pass`` (mean kept, so
    energy is conserved on average over a shower, not step by step).
    """
    length = np.linalg.norm(end - start, axis=1)
    n_steps = np.maximum(np.ceil(length / step_cm).astype(np.int64), 1)
    seg = np.repeat(np.arange(length.shape[0]), n_steps)
    first = np.cumsum(n_steps) - n_steps
    k = np.arange(seg.shape[0]) - first[seg]
    frac = (k + 0.5) / n_steps[seg]
    pos = start[seg] + (end - start)[seg] * frac[:, None]
    energy = energy_mev[seg] / n_steps[seg]
    step = length[seg] / n_steps[seg]
    if rng is not None and kinetic_mev is not None and seg.size:
        kinetic = np.maximum(kinetic_mev[seg], 1e-3)
        mass = np.full(seg.size, ph.ELECTRON_MASS_MEV)
        p = ph.momentum_from_kinetic(kinetic, ph.ELECTRON_MASS_MEV)
        beta2 = (p / (kinetic + ph.ELECTRON_MASS_MEV)) ** 2
        xi = ph.landau_xi_mev(beta2, np.maximum(step, 1e-6))
        mpv = _mpv_steps(kinetic, mass, step, xi, beta2)
        energy = ph.sample_step_loss(rng, energy, xi, mpv, 0.5 * kinetic, beta2)
    return Deposits(pos[:, 0], pos[:, 1], pos[:, 2], t_us[seg], energy, step, track_id[seg].astype(np.int32))


def point_deposits(pos: np.ndarray, energy_mev: np.ndarray, track_id: np.ndarray, t_us: np.ndarray) -> Deposits:
    """Energy left at points (sub-threshold electrons, photon absorption).

    The step length is the CSDA range of an electron of that energy, so that energy / step is the
    electron's mean dE/dx (what recombination needs).
    """
    keep = inside_box(pos) & (energy_mev > 0.0)
    pos = pos[keep]
    energy = energy_mev[keep]
    step = np.maximum(ph.range_table(11).range_cm_of(energy), 1e-3)
    return Deposits(pos[:, 0], pos[:, 1], pos[:, 2], t_us[keep], energy, step, track_id[keep].astype(np.int32))


# ---------------------------------------------------------------------------------------------
# One transport pass for charged particles
# ---------------------------------------------------------------------------------------------
@dataclass
class PassResult:
    deposits: Deposits
    continuing: Movers  # still moving: next pass
    stopped: Movers  # came to rest inside the box (at-rest processes): kinetic 0, final pos/dir/t
    interacted: Movers  # hadronic inelastic here: kinetic energy just before
    decayed: Movers  # decayed in flight here
    escaped: Movers  # left the box: final position on its surface
    track_id: np.ndarray  # every particle of the pass ...
    travelled_cm: np.ndarray  # ... and the path it made in argon in this pass
    delta_parent: np.ndarray  # δ rays: parent track ids
    delta_kinetic_mev: np.ndarray
    delta_pos: np.ndarray
    delta_dir: np.ndarray
    delta_t_us: np.ndarray


def _segmented_cumsum(values: np.ndarray, first: np.ndarray, counts: np.ndarray) -> np.ndarray:
    c = np.cumsum(values)
    before = np.concatenate([[0.0], c])[first]
    return c - np.repeat(before, counts)


def _first_true(flag: np.ndarray, first: np.ndarray, sentinel: int) -> np.ndarray:
    idx = np.where(flag, np.arange(flag.shape[0]), sentinel)
    return np.minimum.reduceat(idx, first)


def charged_pass(rng: np.random.Generator, movers: Movers, config) -> PassResult:
    """Advance each charged particle of ``movers`` by one pass (see the module docstring)."""
    n = len(movers)
    pdg = movers.pdg
    abs_pdg = np.abs(pdg)
    mass = _mass_of(pdg)
    is_electron = abs_pdg == 11
    step_cm = config.step_cm

    # Nominal range and the length of this pass.
    range0 = np.empty(n)
    for species in np.unique(pdg):
        sel = pdg == species
        range0[sel] = ph.range_table(int(species)).range_cm_of(movers.kinetic_mev[sel])
    _, exit_cm = ray_box(movers.pos, movers.dir)
    # The last half of the range is left to a further pass that starts from the actual (fluctuated)
    # energy, so that the Bragg peak and the stopping point follow the energy actually left.
    # Electrons go in one pass: their range is blurred by scattering far more than by straggling.
    short = (range0 <= 3.0 * step_cm) | is_electron
    nominal_cm = np.where(short, range0, range0 - np.maximum(0.5 * range0, 2.0 * step_cm))
    pass_cm = np.minimum(nominal_cm, np.maximum(exit_cm, 0.0) * 1.1 + 5.0)
    pass_cm = np.minimum(pass_cm, config.max_pass_cm)
    pass_cm = np.maximum(pass_cm, 1e-6)

    counts = np.ceil(pass_cm / step_cm - 1e-9).astype(np.int64)
    counts = np.maximum(counts, 1)
    first = np.cumsum(counts) - counts
    seg = np.repeat(np.arange(n), counts)
    n_steps = seg.shape[0]
    k = np.arange(n_steps) - first[seg]
    s_start = k * step_cm
    s_end = np.minimum(s_start + step_cm, pass_cm[seg])
    step = s_end - s_start
    s_mid = 0.5 * (s_start + s_end)

    # Nominal energies at the step boundaries and middle from the range table.
    t_start = np.empty(n_steps)
    t_end = np.empty(n_steps)
    t_mid = np.empty(n_steps)
    pdg_steps = pdg[seg]
    for species in np.unique(pdg):
        sel = pdg_steps == species
        table = ph.range_table(int(species))
        r0 = range0[seg[sel]]
        t_start[sel] = table.kinetic_mev_of(r0 - s_start[sel])
        t_end[sel] = table.kinetic_mev_of(r0 - s_end[sel])
        t_mid[sel] = table.kinetic_mev_of(r0 - s_mid[sel])
    # The first step starts at the actual kinetic energy (range-table round trip is not exact).
    t_start[first] = movers.kinetic_mev
    mean_loss = np.maximum(t_start - t_end, 0.0)
    mass_steps = mass[seg]
    t_mid = np.maximum(t_mid, 1e-6)
    p_mid = ph.momentum_from_kinetic(t_mid, mass_steps)
    e_mid = t_mid + mass_steps
    beta_mid = p_mid / e_mid
    beta2 = beta_mid * beta_mid

    # Continuous loss with fluctuations, and δ rays.
    electron_steps = is_electron[seg]
    delta_parent_step = np.zeros(0, np.int64)
    delta_t = np.zeros(0)
    if config.fluctuations:
        tmax = np.where(electron_steps, np.where(pdg_steps > 0, 0.5 * t_mid, t_mid),
                        _tmax_steps(t_mid, mass_steps))
        heavy = ~electron_steps
        t_cut = config.delta_ray_threshold_mev if config.delta_rays else np.inf
        t_up = np.where(heavy, np.minimum(tmax, t_cut), tmax)
        restricted_fraction = np.ones(n_steps)
        if heavy.any() and config.delta_rays:
            restricted_fraction[heavy] = _restricted_fraction(t_mid[heavy], pdg_steps[heavy], t_cut)
        continuous_mean = mean_loss * restricted_fraction
        xi = ph.landau_xi_mev(beta2, step)
        mpv = _mpv_steps(t_mid, mass_steps, step, xi, beta2)
        continuous = ph.sample_step_loss(rng, continuous_mean, xi, mpv, t_up, beta2)
        if config.delta_rays and heavy.any():
            delta_parent_step, delta_t = _sample_delta_rays(rng, xi, tmax, beta2, t_cut, heavy)
    else:
        continuous = mean_loss

    delta_sum = np.bincount(delta_parent_step, weights=delta_t, minlength=n_steps) if delta_t.size else np.zeros(n_steps)
    total_loss = continuous + delta_sum
    t_act_end = movers.kinetic_mev[seg] - _segmented_cumsum(total_loss, first, counts)
    t_act_start = t_act_end + total_loss

    # Multiple scattering: random walk of small-angle kicks in the tangent plane of the start direction.
    e1, e2 = random_perpendicular_basis(movers.dir)
    if config.msc:
        path0 = movers.path_cm[seg]
        g = ph.highland_path_function(path0 + s_end) - ph.highland_path_function(path0 + s_start)
        theta0 = 13.6 / (beta_mid * p_mid) * np.sqrt(np.maximum(g, 0.0))
        kicks = rng.standard_normal((n_steps, 2)) * theta0[:, None]
        walk_x = _segmented_cumsum(kicks[:, 0], first, counts)
        walk_y = _segmented_cumsum(kicks[:, 1], first, counts)
        # direction during step k is the one after the kicks of steps < k
        walk_x_before = walk_x - kicks[:, 0]
        walk_y_before = walk_y - kicks[:, 1]
        angle = np.hypot(walk_x_before, walk_y_before)
        safe = np.where(angle > 0.0, angle, 1.0)
        sin_over = np.where(angle > 0.0, np.sin(angle) / safe, 1.0)
        d_step = (np.cos(angle)[:, None] * movers.dir[seg]
                  + (sin_over * walk_x_before)[:, None] * e1[seg] + (sin_over * walk_y_before)[:, None] * e2[seg])
        angle_after = np.hypot(walk_x, walk_y)
        safe_after = np.where(angle_after > 0.0, angle_after, 1.0)
        sin_over_after = np.where(angle_after > 0.0, np.sin(angle_after) / safe_after, 1.0)
        d_after = (np.cos(angle_after)[:, None] * movers.dir[seg]
                   + (sin_over_after * walk_x)[:, None] * e1[seg] + (sin_over_after * walk_y)[:, None] * e2[seg])
    else:
        d_step = movers.dir[seg]
        d_after = d_step
    disp = d_step * step[:, None]
    pos_end = movers.pos[seg] + np.stack([_segmented_cumsum(disp[:, a], first, counts) for a in range(3)], axis=1)
    pos_mid = pos_end - 0.5 * disp
    dt_us = step / (ph.SPEED_OF_LIGHT_CM_PER_US * np.maximum(beta_mid, 1e-4))
    t_end_us = movers.t_us[seg] + _segmented_cumsum(dt_us, first, counts)

    # What ends each particle, and where.
    last = first + counts - 1
    sentinel = n_steps
    k_stop = _first_true(t_act_end <= MIN_KINETIC_MEV, first, sentinel)
    k_escape = _first_true(~inside_box(pos_end), first, sentinel)
    k_interact = np.full(n, sentinel)
    k_decay = np.full(n, sentinel)
    hadron = (abs_pdg == 211) | (abs_pdg == 321) | (abs_pdg == 2212)
    if config.hadronic and hadron.any():

        hadron_steps = hadron[seg]
        lengths = np.full(n_steps, np.inf)
        lengths[hadron_steps] = inelastic_length_cm(pdg_steps[hadron_steps], t_mid[hadron_steps])
        cum_lengths = _segmented_cumsum(step / lengths, first, counts)
        k_interact = _first_true(hadron_steps & (cum_lengths >= movers.interaction_budget[seg]), first, sentinel)
    unstable = np.isfinite(movers.decay_budget_ns)
    if config.decays and unstable.any():
        unstable_steps = unstable[seg]
        proper_ns = step / (ph.SPEED_OF_LIGHT_CM_PER_US * 1e-3) / np.maximum(p_mid / mass_steps, 1e-6)
        cum_proper = _segmented_cumsum(np.where(unstable_steps, proper_ns, 0.0), first, counts)
        k_decay = _first_true(unstable_steps & (cum_proper >= movers.decay_budget_ns[seg]), first, sentinel)

    k_end = np.minimum.reduce([k_stop, k_escape, k_interact, k_decay, last])
    reason = np.full(n, 4)  # 0 stop, 1 escape, 2 interact, 3 decay, 4 continue
    reason[k_decay == k_end] = 3
    reason[k_interact == k_end] = 2
    reason[k_stop == k_end] = 0
    reason[k_escape == k_end] = 1  # a step that ends outside the box leaves it, whatever else happens there
    kept = np.arange(n_steps) <= k_end[seg]  # k_end holds flat step indices
    end_step_flag = np.zeros(n_steps, bool)
    end_step_flag[k_end] = True
    stop_step = end_step_flag & (reason[seg] == 0)
    escape_step = end_step_flag & (reason[seg] == 1)

    # Where the energy runs out inside a step, the step ends at the residual range of the energy it started with.
    stop_index = np.flatnonzero(stop_step)
    if stop_index.size:
        residual = np.empty(stop_index.size)
        for species in np.unique(pdg_steps[stop_index]):
            sel = pdg_steps[stop_index] == species
            residual[sel] = ph.range_table(int(species)).range_cm_of(np.maximum(t_act_start[stop_index[sel]], 0.0))
        new_step = np.minimum(step[stop_index], residual)
        shift = (step[stop_index] - new_step)[:, None] * d_step[stop_index]
        pos_end[stop_index] -= shift
        step[stop_index] = new_step
        pos_mid[stop_index] = pos_end[stop_index] - 0.5 * d_step[stop_index] * new_step[:, None]
    deposit_energy = np.where(stop_step, np.maximum(t_act_start, 0.0), continuous)
    # A step that crosses the box boundary keeps its deposit only if its middle is inside.
    keep_deposit = kept & ~(escape_step & ~inside_box(pos_mid))
    deposits = Deposits(pos_mid[keep_deposit, 0], pos_mid[keep_deposit, 1], pos_mid[keep_deposit, 2],
                        (t_end_us - 0.5 * dt_us)[keep_deposit], deposit_energy[keep_deposit],
                        step[keep_deposit], movers.track_id[seg[keep_deposit]].astype(np.int32))

    # δ rays of kept steps, except on the step where the particle ran out of energy.
    if delta_t.size:
        keep_delta = kept[delta_parent_step] & ~stop_step[delta_parent_step]
        dstep = delta_parent_step[keep_delta]
        d_kin = delta_t[keep_delta]
        frac = rng.random(dstep.shape[0])
        d_pos = pos_end[dstep] - disp[dstep] * (1.0 - frac)[:, None]
        d_inside = inside_box(d_pos)
        dstep, d_kin, d_pos = dstep[d_inside], d_kin[d_inside], d_pos[d_inside]
        tmax_d = _tmax_steps(t_mid[dstep], mass_steps[dstep])
        p_max = np.sqrt(tmax_d * (tmax_d + 2.0 * ph.ELECTRON_MASS_MEV))
        p_delta = np.sqrt(d_kin * (d_kin + 2.0 * ph.ELECTRON_MASS_MEV))
        cos_theta = np.clip(d_kin / p_delta * p_max / tmax_d, -1.0, 1.0)
        d_dir = rotate_from_axis(d_step[dstep], cos_theta, rng.uniform(0.0, 2.0 * np.pi, dstep.shape[0]))
        delta_fields = (movers.track_id[seg[dstep]], d_kin, d_pos, d_dir, t_end_us[dstep] - dt_us[dstep] * (1.0 - frac[d_inside]))
    else:
        delta_fields = (np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0))

    # Final state of each particle after this pass.
    travelled = _segmented_cumsum(np.where(kept, step, 0.0), first, counts)[k_end]
    travelled = np.where(reason == 1, np.where(inside_box(pos_mid[k_end]), travelled, travelled - step[k_end]), travelled)
    travelled = np.maximum(travelled, 0.0)  # rounding of a first step that leaves at once
    end_pos = pos_end[k_end]
    end_dir = d_after[k_end]
    end_t = t_end_us[k_end]
    end_kinetic = np.where(reason == 0, 0.0, np.maximum(t_act_end[k_end], 0.0))
    used_lengths = np.zeros(n)
    if config.hadronic and hadron.any():
        used_lengths = cum_lengths[k_end]
    used_proper = np.zeros(n)
    if config.decays and unstable.any():
        used_proper = cum_proper[k_end]
    after = Movers(movers.track_id, movers.pdg, end_pos, end_dir, end_kinetic, end_t,
                   movers.path_cm + travelled, movers.interaction_budget - used_lengths,
                   movers.decay_budget_ns - used_proper)
    after_escape = after.take(reason == 1)
    # Escaping particles end where their last kept step ends, clipped onto the box.
    after_escape.pos = np.clip(after_escape.pos, ACTIVE_BOX_MIN_CM, ACTIVE_BOX_MAX_CM)
    return PassResult(deposits, after.take(reason == 4), after.take(reason == 0), after.take(reason == 2),
                      after.take(reason == 3), after_escape, movers.track_id, travelled, *delta_fields)


_MASS_BY_ABS_PDG = {abs(k): v.mass_mev for k, v in ph.PARTICLES.items()}


def _mass_of(pdg: np.ndarray) -> np.ndarray:
    out = np.empty(pdg.shape[0])
    for species in np.unique(np.abs(pdg)):
        out[np.abs(pdg) == species] = _MASS_BY_ABS_PDG[int(species)]
    return out


def _tmax_steps(t_mid: np.ndarray, mass: np.ndarray) -> np.ndarray:
    p = ph.momentum_from_kinetic(t_mid, mass)
    bg = p / mass
    gamma = np.sqrt(1.0 + bg * bg)
    ratio = ph.ELECTRON_MASS_MEV / mass
    return 2.0 * ph.ELECTRON_MASS_MEV * bg * bg / (1.0 + 2.0 * gamma * ratio + ratio * ratio)


def _restricted_fraction(t_mid: np.ndarray, pdg: np.ndarray, t_cut: float) -> np.ndarray:
    """Restricted / full collision stopping power (the share of the mean loss that is continuous)."""
    out = np.empty(t_mid.shape[0])
    for species in np.unique(np.abs(pdg)):
        sel = np.abs(pdg) == species
        mass = _MASS_BY_ABS_PDG[int(species)]
        full = ph.bethe_dedx(t_mid[sel], mass)
        restricted = ph.bethe_dedx(t_mid[sel], mass, t_cut_mev=t_cut)
        ratio = np.where(full > 0.0, restricted / np.maximum(full, 1e-30), 1.0)
        if species == 13:  # the radiative term of muons is deposited continuously
            rad = 3.0e-6 * ARGON.density_g_per_cm3 * (t_mid[sel] + mass)
            ratio = (restricted + rad) / (full + rad)
        out[sel] = ratio
    return out


def _mpv_steps(t_mid: np.ndarray, mass: np.ndarray, step: np.ndarray, xi: np.ndarray, beta2: np.ndarray) -> np.ndarray:
    bg2 = beta2 / (1.0 - beta2)
    i_mev = ARGON.mean_excitation_ev * 1e-6
    bg = np.sqrt(bg2)
    return xi * (np.log(2.0 * ph.ELECTRON_MASS_MEV * bg2 / i_mev) + np.log(np.maximum(xi, 1e-30) / i_mev)
                 + ph.PDG_LANDAU_J - beta2 - ph.density_effect(bg))


def _sample_delta_rays(rng: np.random.Generator, xi: np.ndarray, tmax: np.ndarray, beta2: np.ndarray,
                       t_cut: float, eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """δ rays above ``t_cut`` per step: d²N/dT dx ∝ (1/T²)(1 − β² T/Tmax) (PDG eq. 34.8, spin 0 form).

    Counts are Poisson with the 1/T² rate; the (1 − β²T/Tmax) factor is applied by thinning.
    """
    possible = eligible & (tmax > t_cut)
    rate = np.where(possible, xi * (1.0 / t_cut - 1.0 / np.where(possible, tmax, 1.0)), 0.0)
    counts = rng.poisson(rate)
    step_index = np.repeat(np.arange(xi.shape[0]), counts)
    if step_index.size == 0:
        return step_index.astype(np.int64), np.zeros(0)
    u = rng.random(step_index.shape[0])
    inv = 1.0 / t_cut - u * (1.0 / t_cut - 1.0 / tmax[step_index])
    kinetic = 1.0 / inv
    accept = rng.random(step_index.shape[0]) < 1.0 - beta2[step_index] * kinetic / tmax[step_index]
    return step_index[accept].astype(np.int64), kinetic[accept]
