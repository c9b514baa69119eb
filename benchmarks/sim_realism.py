"""Realism numbers of the simulation, for the README: noise, MIP S/N, 2018 selection and class balance.

Usage (run under the heavy-job lock, it simulates events):
    flock /tmp/protoseg-heavy.lock python benchmarks/sim_realism.py [--events 60] [--seed 2018] [--file EVENTS.h5]

Prints:
* noise: raw collection RMS (incoherent + coherent), after coherent-noise removal, and in the
  deconvolved frame; S/N of a MIP (4 GeV/c muon gun near the anode, perpendicular to the wires):
  raw peak over raw RMS, and hit peak over the deconvolved noise;
* per event: beam and not-beam hits; the fraction passing the 2018 selection (≥ 2000 beam and ≥ 2000
  not-beam hits), with protoseg's labels (beam label rule "all") and with the 2018 rule
  (protoseg.images.apply_beam_label_rule: EM daughters credited to their parent, hits of particles
  that are not generator primaries dropped);
* after 320 × 320 max-pooled images of the selected events, under both rules: the pixel class
  balance (1 beam : x not-beam : y background; 2018: 1 : ≈ 14 : ≈ 142), the median per-image
  weights, and the number of
  cosmic and halo particles (primaries, their hits counted through ancestry) with ≥ 10 and with
  ≥ 100 hits per image;
* the median number of beam pixels per selected image, by beam particle, under both rules;
* where the beam starts in the image: tick bin and wire bin of the beam primary's lowest-wire hit.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def primary_ancestor(particles: dict[str, np.ndarray]) -> np.ndarray:
    """Row of each particle's primary ancestor (loop over generations, not over particles)."""
    track_id = particles["track_id"].astype(np.int64)
    parent_id = particles["parent_id"].astype(np.int64)
    order = np.argsort(track_id)
    parent_row = np.full(track_id.size, -1, np.int64)
    has_parent = parent_id >= 0
    pos = np.searchsorted(track_id[order], parent_id[has_parent])
    pos = np.minimum(pos, track_id.size - 1)
    found = track_id[order][pos] == parent_id[has_parent]
    rows = np.flatnonzero(has_parent)
    parent_row[rows[found]] = order[pos[found]]
    ancestor = np.arange(track_id.size)
    for _ in range(64):
        up = parent_row[ancestor]
        moving = up >= 0
        if not moving.any():
            break
        ancestor = np.where(moving, up, ancestor)
    return ancestor


def noise_and_signal_to_noise(seed: int) -> dict:
    from protoseg.sim.drift import DriftConfig
    from protoseg.sim.generator import SourceConfig
    from protoseg.sim.hitfinding import HitFindingConfig, SignalProcessor
    from protoseg.sim.readout import ChannelStatus, ReadoutConfig, ReadoutModel
    from protoseg.sim.simulate import EventSimulator, SimulationConfig
    from protoseg.sim.generator import generate_truth

    readout = ReadoutConfig(n_dead_channels=0, n_noisy_channels=0)
    model = ReadoutModel(readout, ChannelStatus())
    rng = np.random.default_rng(seed)
    adc = model.digitize(np.zeros((1440, 6000), np.float32), rng)
    raw = adc.astype(np.float64) - 900.0
    processor = SignalProcessor(HitFindingConfig(), readout.channels_per_board)
    deconvolved, sigma = processor.process(adc, model.alive)
    no_cnr = SignalProcessor(HitFindingConfig(coherent_noise_removal=False), readout.channels_per_board)
    deconvolved_raw, sigma_no_cnr = no_cnr.process(adc, model.alive)
    # After coherent-noise removal, in ADC: process without the deconvolution is not exposed, so
    # compare the deconvolved noise with and without it.
    out = {
        "raw_noise_rms_adc": float(raw.std(axis=1).mean()),
        "incoherent_noise_rms_adc_expected": model.incoherent_rms_adc,
        "deconvolved_noise_sigma": float(np.median(sigma)),
        "deconvolved_noise_sigma_without_cnr": float(np.median(sigma_no_cnr)),
    }
    # MIP: a 4 GeV/c muon 10 cm from the beam-side anode, along z (perpendicular to the wires).
    config = SimulationConfig(
        sources=SourceConfig(beam=False, halo=False, cosmics=False, gun_pdg=13, gun_momentum_gev=4.0,
                             gun_position_cm=(-349.4, 300.0, 20.0), gun_direction=(0.0, 0.0, 1.0)),
        readout=readout,
        drift=DriftConfig(space_charge=False),
    )
    simulator = EventSimulator(config, seed)
    truth = generate_truth(np.random.default_rng(seed), config.sources, config.transport)
    hits = simulator.detector_response(truth, np.random.default_rng(seed + 1))
    muon = hits["track_id"] == truth.particles["track_id"][0]
    muon_hits_on_clean_wires = muon & (hits["wire"] > 50) & (hits["wire"] < 400)
    wires = np.unique(hits["wire"][muon_hits_on_clean_wires])
    quiet_model = ReadoutModel(ReadoutConfig(noise=False, n_dead_channels=0, n_noisy_channels=0), ChannelStatus())
    from protoseg.sim.drift import drift_deposits
    from protoseg.sim.readout import charge_frame

    clean = quiet_model.digitize(charge_frame(drift_deposits(truth.deposits, config.drift)), rng).astype(np.float64) - 900
    raw_peak = np.median(clean[wires].max(axis=1))
    out.update(
        {
            "mip_raw_peak_adc": float(raw_peak),
            "mip_signal_to_noise_raw": float(raw_peak / out["raw_noise_rms_adc"]),
            "mip_signal_to_noise_raw_incoherent": float(raw_peak / model.incoherent_rms_adc),
            "mip_hit_integral_median": float(np.median(hits["integral"][muon_hits_on_clean_wires])),
            "mip_hit_peak_median": float(np.median(hits["peak"][muon_hits_on_clean_wires])),
            "mip_signal_to_noise_deconvolved": float(np.median(hits["peak"][muon_hits_on_clean_wires]) / np.median(sigma)),
        }
    )
    return out


def event_statistics(path: Path) -> dict:
    from protoseg.events import open_events
    from protoseg.images import apply_beam_label_rule, class_balance, event_to_image

    rows = []
    labels = []
    labels_2018 = []
    with open_events(path) as events:
        for i in range(len(events)):
            event = events.read(i)
            hits, particles = event.hits, event.particles
            n_beam = int((hits["label"] == 1).sum())
            n_notbeam = int((hits["label"] == 2).sum())
            selected = n_beam >= 2000 and n_notbeam >= 2000
            # The 2018 rule (protoseg images --beam-label-rule 2018): EM daughters credited to their
            # parent, hits of particles that are not generator primaries dropped.
            hits_2018 = apply_beam_label_rule(hits, particles, "2018")
            n_beam_2018 = int((hits_2018["label"] == 1).sum())
            selected_2018 = n_beam_2018 >= 2000 and int((hits_2018["label"] == 2).sum()) >= 2000
            ancestor = primary_ancestor(particles)
            track_row = np.searchsorted(particles["track_id"], hits["track_id"])  # track ids are sorted rows
            track_row = np.clip(track_row, 0, particles["track_id"].size - 1)
            matched = hits["track_id"] >= 0
            primary_of_hit = np.where(matched, ancestor[track_row], -1)
            notbeam_primaries, counts = np.unique(primary_of_hit[hits["label"] == 2], return_counts=True)
            big = notbeam_primaries[counts >= 10]
            long_tracks = notbeam_primaries[counts >= 100]
            beam_rows = hits["track_id"] == particles["track_id"][0]
            start = None
            if beam_rows.any():
                first = np.argmin(np.where(beam_rows, hits["wire"], 10**6))
                start = (float(hits["tick"][first]) * 320 / 6000, float(hits["wire"][first]) * 320 / 1440)
            rows.append({
                "event": event.event_id, "beam_pdg": event.beam_pdg, "beam_hits": n_beam, "notbeam_hits": n_notbeam,
                "noise_hits": int((hits["label"] == 0).sum()), "selected": selected, "selected_2018_rule": selected_2018,
                "beam_hits_2018_rule": n_beam_2018,
                "cosmic_tracks": int((particles["origin"][big] == 2).sum()), "halo_tracks": int((particles["origin"][big] == 3).sum()),
                "notbeam_tracks_100_hits": int(long_tracks.size),
                "cosmic_primaries_generated": int(((particles["parent_id"] < 0) & (particles["origin"] == 2)).sum()),
                "beam_start_tick_bin": None if start is None else start[0], "beam_start_wire_bin": None if start is None else start[1],
            })
            if selected:
                _, label = event_to_image(hits, size=(320, 320), pooling="max", label_scheme="beam3")
                labels.append(label)
                rows[-1]["beam_pixels"] = int((label == 1).sum())
            if selected_2018:
                _, label = event_to_image(hits_2018, size=(320, 320), pooling="max", label_scheme="beam3")
                labels_2018.append(label)
                rows[-1]["beam_pixels_2018_rule"] = int((label == 1).sum())
    balance = class_balance(np.stack(labels), 3) if labels else None
    balance_2018 = class_balance(np.stack(labels_2018), 3) if labels_2018 else None
    return {"events": rows, "balance": balance, "balance_2018": balance_2018}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60)
    parser.add_argument("--seed", type=int, default=2018)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--file", help="use this events file instead of simulating")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)

    from protoseg.sim.simulate import simulate_events

    report: dict = {"noise": noise_and_signal_to_noise(args.seed)}
    print(json.dumps(report["noise"], indent=1))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.file) if args.file else Path(tmp) / "events.h5"
        if not args.file:
            start = time.perf_counter()
            simulate_events(path, args.events, args.seed, workers=args.workers, progress=True)
            report["seconds_per_event_wall"] = (time.perf_counter() - start) / args.events
        stats = event_statistics(path)
    rows = stats["events"]
    selected = [r for r in rows if r["selected"]]
    report["n_events"] = len(rows)
    report["selected_fraction"] = len(selected) / len(rows)
    report["selected_fraction_2018_rule"] = sum(r["selected_2018_rule"] for r in rows) / len(rows)
    report["beam_hits_median"] = float(np.median([r["beam_hits"] for r in rows]))
    report["notbeam_hits_median"] = float(np.median([r["notbeam_hits"] for r in rows]))
    report["noise_hits_median"] = float(np.median([r["noise_hits"] for r in rows]))
    report["beam_pdg_selected"] = {str(k): int(v) for k, v in zip(*np.unique([r["beam_pdg"] for r in selected], return_counts=True))} if selected else {}
    report["beam_pdg_all"] = {str(k): int(v) for k, v in zip(*np.unique([r["beam_pdg"] for r in rows], return_counts=True))}
    cosmic = [r["cosmic_tracks"] + r["halo_tracks"] for r in (selected or rows)]
    report["notbeam_tracks_per_image_median"] = float(np.median(cosmic))
    report["notbeam_tracks_per_image_range"] = [int(np.min(cosmic)), int(np.max(cosmic))]
    report["notbeam_tracks_with_100_hits_median"] = float(np.median([r["notbeam_tracks_100_hits"] for r in (selected or rows)]))
    report["cosmic_primaries_generated_median"] = float(np.median([r["cosmic_primaries_generated"] for r in rows]))
    starts = [(r["beam_start_tick_bin"], r["beam_start_wire_bin"]) for r in rows if r["beam_start_tick_bin"] is not None]
    report["beam_start_tick_bin_median"] = float(np.median([s[0] for s in starts]))
    report["beam_start_wire_bin_median"] = float(np.median([s[1] for s in starts]))
    report["beam_hits_2018_rule_median"] = float(np.median([r["beam_hits_2018_rule"] for r in rows]))
    selected_2018 = [r for r in rows if r["selected_2018_rule"]]
    report["beam_pdg_selected_2018_rule"] = {str(k): int(v) for k, v in zip(*np.unique([r["beam_pdg"] for r in selected_2018], return_counts=True))} if selected_2018 else {}
    # Beam pixels per selected image, by beam particle (2018, five test events: 520-680).
    for key in ("beam_pixels", "beam_pixels_2018_rule"):
        by_pdg: dict[str, list[int]] = {}
        for r in rows:
            if key in r:
                by_pdg.setdefault(str(r["beam_pdg"]), []).append(r[key])
        report[key + "_median_by_beam_pdg"] = {k: float(np.median(v)) for k, v in sorted(by_pdg.items())}
    for key, suffix in (("balance", ""), ("balance_2018", "_2018_rule")):
        b = stats[key]
        if b is None:
            continue
        counts = np.array(b["pixel_counts"], dtype=float)
        report["class_balance_1_beam" + suffix] = {"not_beam": counts[2] / counts[1], "background": counts[0] / counts[1]}
        report["median_weights_bg_over_class" + suffix] = b["median_weights"]
        report["pixel_fractions" + suffix] = b["pixel_fractions"]
        report["n_images" + suffix] = b["n_images"]
    printable = {k: v for k, v in report.items() if k != "noise"}
    print(json.dumps(printable, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
