"""Truth of one simulated event: sources → transport in liquid argon → particle table and deposits.

``generate_truth(rng, SourceConfig(), TransportConfig())`` is the entry point of the detector
simulation. Every default is the PHYSICS.md value or a documented model choice, and
``dataclasses.asdict`` of both configs is what the events file records.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from protoseg.detector import ARGON, GEOMETRY, READOUT
from protoseg.errors import InputError
from protoseg.sim import interactions as inter
from protoseg.sim import physics as ph
from protoseg.sim import showers
from protoseg.sim.sources import Primaries, make_gun, sample_beam, sample_cosmics, sample_halo
from protoseg.sim.transport import (ACTIVE_BOX_MAX_CM, ACTIVE_BOX_MIN_CM, Movers, ParticleStore, charged_pass,
                                    line_deposits, point_deposits, ray_box)
from protoseg.sim.truth import ORIGIN_BEAM, ORIGIN_COSMIC, ORIGIN_HALO, Deposits, EventTruth

__all__ = ["SourceConfig", "TransportConfig", "validate_config", "generate_truth", "gun_momentum_gev_for_kinetic",
           "GUN_PDG_CODES", "COSMIC_TIME_MIN_US", "COSMIC_TIME_MAX_US"]

# A cosmic at time t lands at tick trigger_tick + (t + drift time)/tick: it leaves charge in the
# window when -pre-trigger - full drift <= t <= post-trigger. 10 µs margins cover diffusion and shaping.
_FULL_DRIFT_US = GEOMETRY.drift_length_cm / ARGON.drift_velocity_cm_per_us
COSMIC_TIME_MIN_US = -READOUT.trigger_tick * READOUT.tick_us - _FULL_DRIFT_US - 10.0
COSMIC_TIME_MAX_US = (READOUT.n_ticks - READOUT.trigger_tick) * READOUT.tick_us + 10.0

GUN_PDG_CODES = (11, -11, 13, -13, 211, -211, 321, -321, 2212, 22, 111)


@dataclass(frozen=True)
class SourceConfig:
    """What an event is made of. Momenta GeV/c, positions cm, times µs relative to the beam trigger."""

    beam: bool = True
    beam_momentum_gev: float = 7.0
    beam_momentum_spread: float = 0.06  # fractional Gaussian sigma; H4-VLE 5-7% (protodune-tdr h4beamline)
    # fractions of pi+, e+, p, K+, mu+ at the cryostat (protodune-tdr beam/h4beamline.tex)
    beam_composition: tuple[float, float, float, float, float] = (0.626, 0.206, 0.107, 0.051, 0.010)
    beam_entry_cm: tuple[float, float, float] = (-27.9, 424.4, 3.8)  # protoduneana EventSelection.fcl
    beam_direction: tuple[float, float, float] = (-0.19, -0.245, 0.951)  # same; normalised when used
    # Model choices: spot and divergence at the TPC face, of the size seen in ProtoDUNE-SP beam data.
    beam_position_sigma_cm: float = 3.0
    beam_angle_sigma_rad: float = 0.015
    halo: bool = True
    # "A few per m² per spill" (protodune-tdr): 0.1 per m² in the ±3 ms around a trigger over the
    # 43 m² upstream face gives ~4 halo muons per event (model choice; see README).
    halo_muons_per_m2: float = 0.1
    halo_time_window_us: float = 3000.0  # uniform in [-window, +window] (dunetpc ProtoDUNEBeam)
    halo_momentum_min_gev: float = 2.0  # model choice: muons from π decays carry part of the beam momentum
    halo_momentum_max_gev: float = 7.0
    halo_angle_sigma_rad: float = 0.02
    halo_mu_plus_fraction: float = 0.9  # the positive beam's halo is mostly μ⁺ (model choice)
    cosmics: bool = True
    # I0 of I0 cos²θ: PDG's vertical intensity above 1 GeV/c, here normalising every generated muon
    # (p above cosmic_min_momentum_gev), which gives PHYSICS.md's ≈ 10 kHz through the TPC.
    cosmic_intensity_per_m2_s_sr: float = 70.0
    cosmic_min_momentum_gev: float = 0.3  # at the TPC; spectrum mean 4.8 GeV (PDG: ≈ 4 GeV)
    cosmic_charge_ratio: float = 1.27  # mu+/mu- (PDG)
    cosmic_time_min_us: float = COSMIC_TIME_MIN_US
    cosmic_time_max_us: float = COSMIC_TIME_MAX_US
    gun_pdg: int | None = None
    gun_momentum_gev: float | None = None
    gun_kinetic_mev: float | None = None  # alternative to gun_momentum_gev (exactly one of the two)
    gun_position_cm: tuple[float, float, float] | None = None  # default: beam_entry_cm
    gun_direction: tuple[float, float, float] | None = None  # default: beam_direction


@dataclass(frozen=True)
class TransportConfig:
    """How particles are moved through the argon. Lengths cm, energies MeV."""

    step_cm: float = 0.4  # below the 0.479 cm wire pitch
    delta_ray_threshold_mev: float = 1.0  # δ rays above it are made explicitly (PHYSICS.md: ~0.1/cm)
    em_cut_mev: float = 5.0  # e± above it radiate explicit bremsstrahlung photons
    brem_photon_min_mev: float = 1.0  # smallest explicit bremsstrahlung photon
    photon_cut_mev: float = 0.1  # photons below it are absorbed at their next interaction point
    record_min_energy_mev: float = 1.0  # secondary e± below it deposit on the spot, credited to the parent
    mu_capture_fraction: float = 0.75  # μ⁻ stopping in argon (PHYSICS.md)
    max_pass_cm: float = 1500.0
    hadronic: bool = True
    decays: bool = True
    msc: bool = True
    fluctuations: bool = True
    delta_rays: bool = True
    showers: bool = True  # False: e± above em_cut are ranged out like the others, without brem


def gun_momentum_gev_for_kinetic(pdg: int, kinetic_mev: float) -> float:
    """The ``--momentum`` (GeV/c) that gives a particle the kinetic energy ``kinetic_mev``."""
    return float(ph.momentum_from_kinetic(kinetic_mev, ph.PARTICLES[pdg].mass_mev)) * 1e-3


def _finite(name: str, value: float, positive: bool = False, non_negative: bool = False) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise InputError(f"{name} must be positive, got {value!r}")
    if non_negative and value < 0:
        raise InputError(f"{name} must not be negative, got {value!r}")


def _vector(name: str, value, nonzero: bool = False) -> np.ndarray:
    try:
        v = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be three numbers, got {value!r}") from None
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        raise InputError(f"{name} must be three finite numbers, got {value!r}")
    if nonzero and not np.any(v != 0.0):
        raise InputError(f"{name} must not be the zero vector")
    return v


def validate_config(sources: SourceConfig, transport: TransportConfig) -> None:
    """Refuse impossible settings with one clear line (InputError)."""
    s, t = sources, transport
    _finite("beam momentum", s.beam_momentum_gev, positive=True)
    _finite("beam momentum spread", s.beam_momentum_spread, non_negative=True)
    if s.beam_momentum_spread >= 0.5:
        raise InputError(f"beam momentum spread is a fractional sigma; {s.beam_momentum_spread} is not below 0.5")
    comp = np.asarray(s.beam_composition, dtype=float)
    if comp.shape != (5,) or not np.all(np.isfinite(comp)) or np.any(comp < 0) or comp.sum() <= 0:
        raise InputError(f"beam composition must be 5 non-negative fractions (pi+, e+, p, K+, mu+), got {s.beam_composition!r}")
    entry = _vector("beam entry point", s.beam_entry_cm)
    _vector("beam direction", s.beam_direction, nonzero=True)
    if s.beam and not np.all((entry >= ACTIVE_BOX_MIN_CM) & (entry <= ACTIVE_BOX_MAX_CM)):
        raise InputError(f"beam entry point ({entry[0]:g}, {entry[1]:g}, {entry[2]:g}) cm is outside the TPC active volume")
    for name in ("beam_position_sigma_cm", "beam_angle_sigma_rad", "halo_muons_per_m2", "halo_time_window_us",
                 "halo_angle_sigma_rad", "cosmic_intensity_per_m2_s_sr", "cosmic_charge_ratio"):
        _finite(name.replace("_", " "), getattr(s, name), non_negative=True)
    _finite("halo momentum min", s.halo_momentum_min_gev, positive=True)
    _finite("halo momentum max", s.halo_momentum_max_gev, positive=True)
    if s.halo_momentum_max_gev < s.halo_momentum_min_gev:
        raise InputError("halo momentum max is below halo momentum min")
    if not 0.0 <= s.halo_mu_plus_fraction <= 1.0:
        raise InputError(f"halo mu+ fraction must be within [0, 1], got {s.halo_mu_plus_fraction}")
    _finite("cosmic min momentum", s.cosmic_min_momentum_gev, positive=True)
    _finite("cosmic time min", s.cosmic_time_min_us)
    _finite("cosmic time max", s.cosmic_time_max_us)
    if s.cosmic_time_max_us <= s.cosmic_time_min_us:
        raise InputError(f"cosmic time window [{s.cosmic_time_min_us}, {s.cosmic_time_max_us}] us is empty")
    if s.gun_pdg is not None:
        if s.gun_pdg not in GUN_PDG_CODES:
            raise InputError(f"gun PDG code {s.gun_pdg} is not one the transport follows; use one of "
                             + ", ".join(str(c) for c in GUN_PDG_CODES))
        if (s.gun_momentum_gev is None) == (s.gun_kinetic_mev is None):
            raise InputError("the gun needs exactly one of a momentum (GeV/c) or a kinetic energy (MeV)")
        if s.gun_momentum_gev is not None:
            _finite("gun momentum", s.gun_momentum_gev, positive=True)
        else:
            _finite("gun kinetic energy", s.gun_kinetic_mev, positive=True)
        pos = _vector("gun position", s.gun_position_cm if s.gun_position_cm is not None else s.beam_entry_cm)
        d = _vector("gun direction", s.gun_direction if s.gun_direction is not None else s.beam_direction, nonzero=True)
        inside = np.all((pos >= ACTIVE_BOX_MIN_CM) & (pos <= ACTIVE_BOX_MAX_CM))
        if not inside:
            t_in, t_out = ray_box(pos[None, :], (d / np.linalg.norm(d))[None, :])
            if not (t_out[0] > max(t_in[0], 0.0)):
                lo, hi = ACTIVE_BOX_MIN_CM, ACTIVE_BOX_MAX_CM
                raise InputError(f"gun at ({pos[0]:g}, {pos[1]:g}, {pos[2]:g}) cm is outside the TPC active volume "
                                 f"(x {lo[0]}..{hi[0]}, y {lo[1]}..{hi[1]}, z {lo[2]}..{hi[2]} cm) "
                                 "and aimed so that it never enters it")
        if s.beam:
            # Row 0 of an event is its one beam-origin primary: the gun replaces the beam.
            raise InputError("a gun replaces the beam: set sources.beam=false with a gun")
    elif s.gun_momentum_gev is not None or s.gun_kinetic_mev is not None:
        raise InputError("a gun momentum or energy was given without a gun PDG code")
    _finite("step length", t.step_cm, positive=True)
    if t.step_cm > 5.0:
        raise InputError(f"step length {t.step_cm} cm is longer than 5 cm: dE/dx and scattering would be too coarse")
    for name in ("delta_ray_threshold_mev", "em_cut_mev", "brem_photon_min_mev", "photon_cut_mev", "max_pass_cm"):
        _finite(name.replace("_", " "), getattr(t, name), positive=True)
    _finite("record min energy", t.record_min_energy_mev, non_negative=True)
    if not 0.0 <= t.mu_capture_fraction <= 1.0:
        raise InputError(f"mu capture fraction must be within [0, 1], got {t.mu_capture_fraction}")


# ---------------------------------------------------------------------------------------------
# The event's particle stack
# ---------------------------------------------------------------------------------------------
_LIFETIME_NS = {k: v.lifetime_ns for k, v in ph.PARTICLES.items()}


class _Stack:
    """Particles waiting to be moved, the growing particle table, and the deposits so far."""

    def __init__(self, rng: np.random.Generator, config: TransportConfig) -> None:
        self.rng = rng
        self.config = config
        self.store = ParticleStore()
        self.pending: list[Movers] = []
        self.deposits: list[Deposits] = []

    # -- adding particles ------------------------------------------------------------------
    def push(self, parent: np.ndarray, pdg: np.ndarray, kinetic: np.ndarray, pos: np.ndarray, direction: np.ndarray,
             t_us: np.ndarray, process, origin: np.ndarray | None = None) -> np.ndarray:
        """Add particles to the table and to the pending list; returns their track ids (-1 if not recorded)."""
        n = pdg.shape[0]
        ids = np.full(n, -1, np.int64)
        if n == 0:
            return ids
        parent = np.asarray(parent, np.int64)
        pdg = np.asarray(pdg, np.int32)
        kinetic = np.maximum(np.asarray(kinetic, float), 0.0)
        process = np.broadcast_to(np.asarray(process, dtype=object), (n,))
        if origin is None:
            origin = self.store.origin_of(parent)
        cfg = self.config
        is_e = np.abs(pdg) == 11
        small = (parent >= 0) & ((is_e & (kinetic < cfg.record_min_energy_mev))
                                 | ((pdg == 22) & (kinetic < cfg.photon_cut_mev)))
        if small.any():
            self.deposits.append(point_deposits(pos[small], kinetic[small], parent[small], t_us[small]))
            plus = small & (pdg == -11)
            if plus.any():  # the positron annihilates where it stops
                self._annihilate(parent[plus], pos[plus], t_us[plus])
        rec = ~small
        mass = np.array([ph.PARTICLES[int(p)].mass_mev for p in pdg[rec]])
        momentum = ph.momentum_from_kinetic(kinetic[rec], mass)[:, None] * direction[rec]
        new_ids = self.store.add(parent[rec], pdg[rec], origin[rec] if np.ndim(origin) else np.full(int(rec.sum()), origin),
                                 process[rec], pos[rec], t_us[rec], momentum)
        ids[rec] = new_ids
        rpdg = pdg[rec]
        neutron = rpdg == 2112
        if neutron.any():  # neutrons leave little charge in this model: recorded, not tracked
            self.store.finish(new_ids[neutron], pos[rec][neutron], "not-tracked")
        pi0 = rpdg == 111
        if pi0.any():
            self._decay_pi0(new_ids[pi0], kinetic[rec][pi0], pos[rec][pi0], direction[rec][pi0], t_us[rec][pi0])
        move = ~(neutron | pi0)
        if move.any():
            m_pdg = rpdg[move]
            m = int(move.sum())
            lifetime = np.array([_LIFETIME_NS[int(p)] for p in m_pdg])
            stable = ~np.isfinite(lifetime)
            decay_budget = np.where(stable, np.inf, self.rng.exponential(1.0, m) * np.where(stable, 1.0, lifetime))
            self.pending.append(Movers(new_ids[move], m_pdg, pos[rec][move].copy(), direction[rec][move].copy(),
                                       kinetic[rec][move], t_us[rec][move].astype(float), np.zeros(m),
                                       self.rng.exponential(1.0, m), decay_budget))
        return ids

    def _annihilate(self, parent: np.ndarray, pos: np.ndarray, t_us: np.ndarray) -> None:
        n = parent.shape[0]
        d = _isotropic(self.rng, n)
        self.push(np.repeat(parent, 2), np.full(2 * n, 22), np.full(2 * n, ph.ELECTRON_MASS_MEV),
                  np.repeat(pos, 2, axis=0), np.stack([d, -d], axis=1).reshape(-1, 3), np.repeat(t_us, 2), "annihil")

    def _decay_pi0(self, ids: np.ndarray, kinetic: np.ndarray, pos: np.ndarray, direction: np.ndarray, t_us: np.ndarray) -> None:
        n = ids.shape[0]
        half = 0.5 * ph.PI0_MASS_MEV
        d_rest = _isotropic(self.rng, n)
        gamma = (kinetic + ph.PI0_MASS_MEV) / ph.PI0_MASS_MEV
        beta = np.sqrt(np.maximum(1.0 - 1.0 / gamma ** 2, 0.0))
        momenta = []
        for sign in (1.0, -1.0):
            p_rest = sign * half * d_rest
            p_par = np.sum(p_rest * direction, axis=1)
            p_lab = p_rest + ((gamma - 1.0) * p_par + gamma * beta * half)[:, None] * direction
            momenta.append(p_lab)
        p = np.concatenate(momenta)
        e = np.linalg.norm(p, axis=1)
        self.store.finish(ids, pos, "decay")
        self.push(np.tile(ids, 2), np.full(2 * n, 22), e, np.tile(pos, (2, 1)), p / np.maximum(e, 1e-12)[:, None],
                  np.tile(t_us, 2), "decay")

    def push_products(self, products: inter.Products, parents: Movers) -> None:
        if not len(products):
            return
        i = products.parent_index
        self.push(parents.track_id[i], products.pdg, products.kinetic_mev, parents.pos[i], products.direction,
                  parents.t_us[i] + products.delay_ns * 1e-3, products.process)

    # -- moving particles -----------------------------------------------------------------
    def run(self) -> None:
        cfg = self.config
        while self.pending:
            batch = Movers.concatenate(self.pending)
            self.pending = []
            photon = batch.pdg == 22
            if photon.any():
                # the electrons the photons make are moved in this same round
                self._photons(batch.take(photon))
                batch = Movers.concatenate([batch.take(~photon)] + self.pending)
                self.pending = []
                photon = batch.pdg == 22  # annihilation photons of sub-threshold positrons: next round
                self.pending.append(batch.take(photon))
            hot = (np.abs(batch.pdg) == 11) & (batch.kinetic_mev > cfg.em_cut_mev) & cfg.showers
            charged = [batch.take(~photon & ~hot)]
            if hot.any():
                charged.append(self._electrons(batch.take(hot)))
            self._charged(Movers.concatenate(charged))

    def _photons(self, photons: Movers) -> None:
        out = showers.photon_interactions(self.rng, photons.pos, photons.dir, photons.kinetic_mev, photons.t_us,
                                          self.config.photon_cut_mev)
        ids = photons.track_id
        idx, pdg, kin, pos, direction, t, process = out["leptons"]
        self.push(ids[idx], pdg, kin, pos, direction, t, process)
        a_idx, a_e, a_pos, a_t = out["absorbed"]
        if a_idx.size:
            self.deposits.append(point_deposits(a_pos, a_e, ids[a_idx], a_t))
        self.store.add_length(ids, out["path"])
        self.store.finish(ids, np.clip(out["pos"], ACTIVE_BOX_MIN_CM, ACTIVE_BOX_MAX_CM), out["end_process"])

    def _electrons(self, electrons: Movers) -> Movers:
        cfg = self.config
        out = showers.electron_segments(self.rng, electrons.pos, electrons.dir, electrons.kinetic_mev, electrons.t_us,
                                        electrons.pdg < 0, cfg.em_cut_mev, cfg.brem_photon_min_mev, cfg.msc)
        ids = electrons.track_id
        start, end, lost, idx, t, kinetic = out["segments"]
        if idx.size:
            self.deposits.append(line_deposits(start, end, lost, ids[idx], t, cfg.step_cm,
                                               self.rng if cfg.fluctuations else None, kinetic))
        p_idx, k, p_pos, p_dir, p_t = out["photons"]
        self.push(ids[p_idx], np.full(p_idx.size, 22), k, p_pos, p_dir, p_t, "brem")
        self.store.add_length(ids, out["path"])
        escaped = out["escaped"]
        if escaped.any():
            self.store.finish(ids[escaped], np.clip(out["pos"][escaped], ACTIVE_BOX_MIN_CM, ACTIVE_BOX_MAX_CM), "escape")
        keep = ~escaped
        return Movers(ids[keep], electrons.pdg[keep], out["pos"][keep], out["dir"][keep], out["kinetic"][keep],
                      out["t"][keep], electrons.path_cm[keep] + out["path"][keep], electrons.interaction_budget[keep],
                      electrons.decay_budget_ns[keep])

    def _charged(self, movers: Movers) -> None:
        cfg = self.config
        rng = self.rng
        current = movers
        while len(current):
            res = charged_pass(rng, current, cfg)
            self.deposits.append(res.deposits)
            self.store.add_length(res.track_id, res.travelled_cm)
            if len(res.continuing):
                self.store.move_end(res.continuing.track_id, res.continuing.pos)
            if len(res.escaped):
                self.store.finish(res.escaped.track_id, res.escaped.pos, "escape")
            if len(res.stopped):
                products, end = inter.at_rest(rng, res.stopped.pdg, cfg.mu_capture_fraction, cfg.decays)
                self.store.finish(res.stopped.track_id, res.stopped.pos, end)
                self.push_products(products, res.stopped)
            if len(res.interacted):
                self.store.finish(res.interacted.track_id, res.interacted.pos, "inelastic")
                self.push_products(inter.inelastic(rng, res.interacted.pdg, res.interacted.kinetic_mev,
                                                   res.interacted.dir), res.interacted)
            if len(res.decayed):
                self.store.finish(res.decayed.track_id, res.decayed.pos, "decay")
                self.push_products(inter.decay_in_flight(rng, res.decayed.pdg, res.decayed.kinetic_mev,
                                                         res.decayed.dir), res.decayed)
            if res.delta_parent.size:
                self.push(res.delta_parent, np.full(res.delta_parent.size, 11), res.delta_kinetic_mev, res.delta_pos,
                          res.delta_dir, res.delta_t_us, "delta")
            current = res.continuing


def _isotropic(rng: np.random.Generator, n: int) -> np.ndarray:
    from protoseg.sim.directions import isotropic_directions

    return isotropic_directions(rng, n)


def generate_truth(rng: np.random.Generator, sources: SourceConfig = SourceConfig(),
                   transport: TransportConfig = TransportConfig()) -> EventTruth:
    """Sample the primaries of one event and transport everything; all randomness from ``rng``."""
    validate_config(sources, transport)
    stack = _Stack(rng, transport)
    parts: list[Primaries] = []
    if sources.beam:
        parts.append(sample_beam(rng, sources, ORIGIN_BEAM))
    if sources.gun_pdg is not None:
        parts.append(make_gun(sources, ORIGIN_BEAM))
    n_primary_beam = sum(len(p) for p in parts)
    halo = sample_halo(rng, sources, ORIGIN_HALO) if sources.halo else Primaries.concatenate([])
    cosmics = sample_cosmics(rng, sources, ORIGIN_COSMIC) if sources.cosmics else Primaries.concatenate([])
    primaries = Primaries.concatenate(parts + [halo, cosmics])
    n = len(primaries)
    stack.push(np.full(n, -1), primaries.pdg, primaries.kinetic_mev, primaries.pos, primaries.dir, primaries.t_us,
               "primary", primaries.origin)
    stack.run()
    deposits = Deposits.concatenate([d for d in stack.deposits if len(d)])
    deposits = Deposits(*(np.asarray(getattr(deposits, f), dtype=np.float32 if f != "track_id" else np.int32)
                          for f in Deposits.__dataclass_fields__))
    particles = stack.store.table(deposits)
    beam_pdg = int(particles["pdg"][0]) if n_primary_beam else 0
    beam_momentum = (float(np.sqrt(particles["start_px"][0].astype(float) ** 2 + particles["start_py"][0].astype(float) ** 2
                                   + particles["start_pz"][0].astype(float) ** 2)) if n_primary_beam else float("nan"))
    info = {
        "n_beam_primaries": n_primary_beam,
        "n_halo": len(halo),
        "n_cosmics": len(cosmics),
        "n_particles": int(particles["track_id"].shape[0]),
        "n_deposits": len(deposits),
        "cosmic_time_window_us": [sources.cosmic_time_min_us, sources.cosmic_time_max_us],
    }
    return EventTruth(particles=particles, deposits=deposits, beam_pdg=beam_pdg, beam_momentum_gev=beam_momentum, info=info)
