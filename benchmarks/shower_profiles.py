"""EM showers of the simulation against GFlash and the PDG: longitudinal and radial energy profiles in argon.

For 1, 3 and 7 GeV e⁻, e⁺ and γ guns along +z from the middle of the detector (truth deposits, no
readout), the energy-weighted
* longitudinal profile (1/E) dE/dt, t in X0 = 14.0 cm, and the depths holding 50 / 90 / 95% of the energy;
* lateral containment: the fraction within r of the shower axis, r in PDG Molière radii (9.04 cm);
against the GFlash average-shower parameterisation (protoseg.sim.gflash: Grindhammer & Peters,
hep-ex/0001020, with Geant4's constants) and the PDG's rule of thumb (≈ 90% within 1 R_M, 95%
within 2 R_M, 99% within 3.5 R_M; PDG review "Passage of particles through matter", EM cascades).

Usage (≈ 4 showers per setting, a few minutes on one core):
    python benchmarks/shower_profiles.py [--showers 4] [--seed 11] [--json benchmarks/results/shower_profiles.json]
        [--plot docs/shower-profiles.png]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

RADII_RM = (0.5, 1.0, 2.0, 3.5, 5.0)
PDG_CONTAINMENT = {"1.0": 0.90, "2.0": 0.95, "3.5": 0.99}
START_CM = (-150.0, 300.0, 50.0)
DEPTH_EDGES_X0 = np.arange(0.0, 30.01, 0.5)
RADIAL_EDGES_RM = np.linspace(0.0, 6.0, 61)
SPECIES = {"e-": 11, "e+": -11, "gamma": 22}


def simulate_showers(pdg: int, energy_mev: float, n: int, seed: int) -> dict:
    """Mean profiles of ``n`` showers of kinetic energy ``energy_mev`` (deposited energy as weight)."""
    from protoseg.detector import ARGON
    from protoseg.sim.generator import SourceConfig, TransportConfig, generate_truth

    start = np.asarray(START_CM)
    sources = SourceConfig(beam=False, halo=False, cosmics=False, gun_pdg=pdg, gun_kinetic_mev=energy_mev,
                           gun_position_cm=START_CM, gun_direction=(0.0, 0.0, 1.0))
    contained, depth_q, longitudinal, radial, visible = [], [], [], [], []
    t0 = time.perf_counter()
    for k in range(n):
        d = generate_truth(np.random.default_rng([seed, abs(pdg), int(energy_mev), k]), sources, TransportConfig()).deposits
        e = d.energy_mev.astype(float)
        total = e.sum()
        r_rm = np.hypot(d.x_cm - start[0], d.y_cm - start[1]) / ARGON.moliere_radius_cm
        t_x0 = (d.z_cm - start[2]) / ARGON.radiation_length_cm
        contained.append([e[r_rm < f].sum() / total for f in RADII_RM])
        order = np.argsort(t_x0)
        cumulative = np.cumsum(e[order]) / total
        depth_q.append([t_x0[order][min(np.searchsorted(cumulative, q), order.size - 1)] for q in (0.5, 0.9, 0.95)])
        longitudinal.append(np.histogram(t_x0, DEPTH_EDGES_X0, weights=e)[0] / total / np.diff(DEPTH_EDGES_X0))
        radial.append(np.histogram(r_rm, RADIAL_EDGES_RM, weights=e)[0] / total / np.diff(RADIAL_EDGES_RM))
        visible.append(total / energy_mev)
    contained = np.asarray(contained)
    return {
        "showers": n,
        "cpu_s_per_shower": round((time.perf_counter() - t0) / n, 2),
        "deposited_fraction": round(float(np.mean(visible)), 4),
        "containment": {str(f): round(float(c), 4) for f, c in zip(RADII_RM, contained.mean(axis=0))},
        "containment_sem": {str(f): round(float(c), 4) for f, c in
                            zip(RADII_RM, contained.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else 0 * contained[0])},
        "depth_x0_50_90_95": np.round(np.mean(depth_q, axis=0), 2).tolist(),
        "longitudinal_per_x0": np.round(np.mean(longitudinal, axis=0), 5).tolist(),
        "radial_per_rm": np.round(np.mean(radial, axis=0), 5).tolist(),
    }


def gflash_reference(energy_mev: float, photon: bool) -> dict:
    from protoseg.detector import ARGON
    from protoseg.sim import gflash

    centres = 0.5 * (DEPTH_EDGES_X0[1:] + DEPTH_EDGES_X0[:-1])
    r_cm = np.asarray(RADII_RM) * ARGON.moliere_radius_cm
    cum = gflash.radial_containment(RADIAL_EDGES_RM * ARGON.moliere_radius_cm, energy_mev, photon)
    t_max, alpha, beta = gflash.longitudinal_parameters(energy_mev)
    return {
        "t_max_x0": round(float(t_max) + (9.0 / 7.0 if photon else 0.0), 3), "alpha": round(float(alpha), 3),
        "beta_per_x0": round(float(beta), 4),
        "containment": {str(f): round(float(c), 4) for f, c in zip(RADII_RM, gflash.radial_containment(r_cm, energy_mev, photon))},
        "depth_x0_50_90_95": np.round(gflash.depth_quantiles_x0(energy_mev, photon=photon), 2).tolist(),
        "longitudinal_per_x0": np.round(gflash.longitudinal_profile(centres, energy_mev, photon), 5).tolist(),
        "radial_per_rm": np.round(np.diff(cum) / np.diff(RADIAL_EDGES_RM), 5).tolist(),
    }


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    energies = list(out["simulation"])
    fig, axes = plt.subplots(2, len(energies), figsize=(4.2 * len(energies), 7.5), squeeze=False)
    depth = 0.5 * (DEPTH_EDGES_X0[1:] + DEPTH_EDGES_X0[:-1])
    radius = RADIAL_EDGES_RM
    colours = {"e-": "C0", "e+": "C2", "gamma": "C3"}
    for j, energy in enumerate(energies):
        top, bottom = axes[0, j], axes[1, j]
        for species, res in out["simulation"][energy].items():
            top.plot(depth, res["longitudinal_per_x0"], "o", ms=3, color=colours[species], label=f"protoseg {species}")
            cum = np.concatenate([[0.0], np.cumsum(np.asarray(res["radial_per_rm"]) * np.diff(radius))])
            bottom.plot(radius, cum, "-", color=colours[species], lw=1.2, label=f"protoseg {species}")
        for photon, style in ((False, "k-"), (True, "k--")):
            ref = out["gflash"][energy]["gamma" if photon else "e"]
            top.plot(depth, ref["longitudinal_per_x0"], style, lw=1, label="GFlash " + ("γ" if photon else "e"))
        ref = out["gflash"][energy]["e"]
        cum_ref = np.concatenate([[0.0], np.cumsum(np.asarray(ref["radial_per_rm"]) * np.diff(radius))])
        bottom.plot(radius, cum_ref, "k-", lw=1, label="GFlash e")
        bottom.plot([float(k) for k in PDG_CONTAINMENT], list(PDG_CONTAINMENT.values()), "ks", mfc="none", label="PDG")
        top.set_title(f"{float(energy) / 1000:g} GeV")
        top.set_xlabel("depth t (X0 = 14 cm)")
        top.set_ylabel("(1/E) dE/dt")
        bottom.set_xlabel("r (R_M = 9.04 cm)")
        bottom.set_ylabel("energy fraction within r")
        bottom.set_ylim(0.5, 1.005)
        bottom.grid(alpha=0.3)
        if j == 0:
            top.legend(fontsize=7)
            bottom.legend(fontsize=7, loc="lower right")
    fig.suptitle("EM showers in liquid argon: protoseg against GFlash (Grindhammer & Peters) and the PDG", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--showers", type=int, default=4, help="showers per particle and energy (default 4)")
    parser.add_argument("--energies-gev", type=float, nargs="+", default=[1.0, 3.0, 7.0])
    parser.add_argument("--species", nargs="+", default=list(SPECIES), choices=list(SPECIES))
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", default="benchmarks/results/shower_profiles.json")
    parser.add_argument("--plot", default="docs/shower-profiles.png")
    args = parser.parse_args(argv)
    out: dict = {"showers_per_setting": args.showers, "seed": args.seed, "radii_rm": list(RADII_RM),
                 "moliere_radius_cm": 9.04, "radiation_length_cm": 14.0, "pdg_containment": PDG_CONTAINMENT,
                 "depth_edges_x0": DEPTH_EDGES_X0.tolist(), "radial_edges_rm": RADIAL_EDGES_RM.tolist(),
                 "simulation": {}, "gflash": {}}
    for energy_gev in args.energies_gev:
        key = f"{energy_gev * 1000:g}"
        out["gflash"][key] = {"e": gflash_reference(energy_gev * 1000, False), "gamma": gflash_reference(energy_gev * 1000, True)}
        out["simulation"][key] = {}
        for species in args.species:
            res = simulate_showers(SPECIES[species], energy_gev * 1000, args.showers, args.seed)
            out["simulation"][key][species] = res
            ref = out["gflash"][key]["gamma" if species == "gamma" else "e"]
            print(f"{energy_gev:g} GeV {species}: containment {res['containment']} (GFlash {ref['containment']}); "
                  f"depth 50/90/95% {res['depth_x0_50_90_95']} X0 (GFlash {ref['depth_x0_50_90_95']}); "
                  f"{res['cpu_s_per_shower']} s/shower", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    if args.plot:
        plot(out, Path(args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
