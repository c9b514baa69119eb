"""Signal processing and hit finding on the digitised collection frame, then truth matching.

As the experiment does it (Wire-Cell noise filter + signal processing, then a hit finder), in
vectorised numpy over the whole 1440 × 6000 frame:

1. Pedestal per channel (median), coherent-noise removal: per 48-channel board and tick, the mean
   of the channels without signal there (|x| < 4 σ_raw) is subtracted from all channels of the board.
2. Deconvolution with the collection response and Wire-Cell's wide Gaussian filter (σ = 0.12 MHz)
   in the frequency domain. The output is scaled so that a charge of 1000 e⁻ integrates to the
   response area, 41.7 ADC·tick (the pulser calibration): hit integrals are on the raw,
   pulser-calibrated scale (a MIP ≈ 1050 ADC·tick per wire), not the ~4–5× lower scale of the
   2018 hits. ``integral_adc_tick_per_ke`` changes that scale and is recorded with every file.
3. Regions of interest: samples above ``roi_extend_sigma`` × the channel's noise, widened by
   ``roi_pad_ticks``, kept when they reach ``roi_threshold_sigma``.
4. Hits: each ROI is split at the deepest minimum between neighbouring peaks when that dip is at
   least ``split_prominence_sigma`` × noise below both; each part is a hit with its peak tick
   (parabolic interpolation), integral (sum), rms (charge-weighted spread, ticks) and peak height.
5. Truth: each hit takes the particle that put the most charge into its tick window on its wire.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy.ndimage import maximum_filter1d

from protoseg.detector import READOUT, Readout
from protoseg.errors import InputError
from protoseg.sim.drift import FRAME_MARGIN_TICKS
from protoseg.sim.readout import load_collection_response, response_kernel_fft
from protoseg.sim.truth import ORIGIN_BEAM, ORIGIN_NOISE

__all__ = [
    "HitFindingConfig",
    "SignalProcessor",
    "find_hits",
    "TruthCharge",
    "match_truth",
    "validate_hitfinding_config",
]

# The noise σ that sets the thresholds uses every 8th sample of the deconvolved frame (750 per
# channel); the pedestal and the raw σ of the coherent-noise removal every 16th.
_PEDESTAL_STRIDE = 8
_CNR_SIGNAL_CUT_SIGMA = 4.0
_CNR_BLOCK_TICKS = 8
_CNR_PROTECT_BLOCKS = 3


@dataclass(frozen=True)
class HitFindingConfig:
    """Signal-processing and hit-finding settings."""

    coherent_noise_removal: bool = True
    filter_sigma_mhz: float = 0.12  # Wire-Cell collection-plane "Gaus_wide" filter (pdsp sp-filters)
    roi_threshold_sigma: float = 5.0
    roi_extend_sigma: float = 2.0
    roi_pad_ticks: int = 3
    split_prominence_sigma: float = 3.0
    # GausHitFinder's long-pulse handling (LArSoft hitfindermodules: LongPulseWidth 16 ticks): a
    # hit longer than max_hit_ticks (twice a single pulse) is cut into pieces of about 16 ticks.
    max_hit_ticks: int = 40
    long_pulse_width_ticks: int = 16
    # Lower bound on the per-channel noise σ the thresholds use (ADC of the deconvolved frame; the
    # default noise gives ≈ 3.4): without noise, rounding alone would otherwise make hits.
    noise_floor_adc: float = 1.0
    # Hit scale: ADC·tick per 1000 e⁻ = the collection response's area (shared/data), i.e. the
    # pulser calibration 41.65 of params.jsonnet.
    integral_adc_tick_per_ke: float = float(np.round(load_collection_response().sum(), 2))


def validate_hitfinding_config(config: HitFindingConfig) -> None:
    """Raise InputError for impossible hit-finding settings."""
    for name in ("filter_sigma_mhz", "roi_threshold_sigma", "integral_adc_tick_per_ke"):
        value = getattr(config, name)
        if not (np.isfinite(value) and value > 0):
            raise InputError(f"hits.{name} must be a positive number, got {value}")
    for name in ("roi_extend_sigma", "split_prominence_sigma", "noise_floor_adc"):
        value = getattr(config, name)
        if not (np.isfinite(value) and value >= 0):
            raise InputError(f"hits.{name} must be a non-negative number, got {value}")
    if config.roi_extend_sigma > config.roi_threshold_sigma:
        raise InputError("hits.roi_extend_sigma must not exceed hits.roi_threshold_sigma")
    if not 1 <= config.long_pulse_width_ticks <= config.max_hit_ticks:
        raise InputError("hits.long_pulse_width_ticks must be between 1 and hits.max_hit_ticks")
    if not 0 <= config.roi_pad_ticks <= 100:
        raise InputError(f"hits.roi_pad_ticks must be between 0 and 100, got {config.roi_pad_ticks}")


def _lower_half_sigma(values: np.ndarray) -> np.ndarray:
    """Noise σ per row from the lower half of the distribution (median − 16th percentile), which
    collection signals (positive) do not bias."""
    p16, p50 = np.percentile(values, [15.865525, 50.0], axis=1)
    return (p50 - p16).astype(np.float32)


class SignalProcessor:
    """Noise filter and deconvolution of one readout frame (build once per worker: it holds the filter)."""

    def __init__(self, config: HitFindingConfig, channels_per_board: int, readout: Readout = READOUT) -> None:
        self.config = config
        self.channels_per_board = channels_per_board
        self.readout = readout
        # Zero-padded to 6144 ticks so the filter (a few ticks wide) cannot wrap one end onto the other.
        n_ticks = self.fft_ticks = readout.n_ticks + 2 * FRAME_MARGIN_TICKS
        response = response_kernel_fft(n_ticks)  # the nominal response: what the experiment deconvolves with
        freqs_mhz = scipy.fft.rfftfreq(n_ticks, d=readout.tick_us)
        gauss = np.exp(-0.5 * (freqs_mhz / config.filter_sigma_mhz) ** 2)
        # Tikhonov-guarded inverse: the Gaussian has killed every frequency where |R| is tiny.
        eps = 1e-6 * np.abs(response[0])
        inverse = np.conj(response) / (np.abs(response) ** 2 + eps**2)
        scale = config.integral_adc_tick_per_ke
        self.filter = (scale * gauss * inverse).astype(np.complex64)

    def _remove_coherent_noise(self, raw: np.ndarray, sigma_raw: np.ndarray, alive: np.ndarray) -> None:
        """Subtract, per board and tick, the mean of the board's channels without signal (in place).

        Samples near a signal (the response reaches ~20 ticks before and 10 after its peak) stay
        out of the mean, else isochronous tracks would subtract themselves: the protection works
        on blocks of 8 ticks, a block with a sample above 4 σ_raw and 3 blocks each side.
        """
        n_wires, n_ticks = raw.shape
        block = _CNR_BLOCK_TICKS if n_ticks % _CNR_BLOCK_TICKS == 0 else 1
        n_blocks = n_ticks // block
        signal = (raw > (_CNR_SIGNAL_CUT_SIGMA * sigma_raw)[:, None]).reshape(n_wires, n_blocks, block).any(axis=2)
        signal = maximum_filter1d(signal, size=2 * _CNR_PROTECT_BLOCKS + 1, axis=1, mode="constant")
        quiet = (~signal & alive[:, None]).astype(np.float32)
        n_boards = n_wires // self.channels_per_board
        boards = raw.reshape(n_boards, self.channels_per_board, n_blocks, block)
        quiet_b = quiet.reshape(n_boards, self.channels_per_board, n_blocks)
        total = np.einsum("bcnk,bcn->bnk", boards, quiet_b)
        count = quiet_b.sum(axis=1)[:, :, None]
        coherent = np.where(count > 0, total / np.maximum(count, 1.0), 0.0).astype(np.float32)
        boards -= coherent[:, None, :, :]
        raw[~alive] = 0.0

    def process(self, adc: np.ndarray, alive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the deconvolved frame (float32 [n_wires, n_ticks], ADC·tick per tick on the hit
        scale) and each channel's noise σ in it (0 for dead channels)."""
        n_wires, n_ticks = adc.shape
        raw = adc.astype(np.float32)
        p16, pedestal = np.percentile(raw[:, :: 2 * _PEDESTAL_STRIDE], [15.865525, 50.0], axis=1)
        raw -= pedestal.astype(np.float32)[:, None]
        raw[~alive] = 0.0
        if self.config.coherent_noise_removal:
            self._remove_coherent_noise(raw, (pedestal - p16).astype(np.float32), alive)
        spectrum = scipy.fft.rfft(raw, n=self.fft_ticks, axis=1, workers=1)
        spectrum *= self.filter[None, :]
        deconvolved = scipy.fft.irfft(spectrum, n=self.fft_ticks, axis=1, workers=1)[:, :n_ticks]
        deconvolved = np.ascontiguousarray(deconvolved, dtype=np.float32)
        sigma = _lower_half_sigma(deconvolved[:, ::_PEDESTAL_STRIDE])
        sigma[~alive] = 0.0
        return deconvolved, sigma


def _interleave(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    out = np.empty(2 * starts.size, dtype=np.int64)
    out[0::2] = starts
    out[1::2] = ends
    return out


def _to_padded(flat_index: np.ndarray, n_ticks: int) -> np.ndarray:
    """Flat index in an [n_wires, n_ticks] frame → flat index in the [n_wires, n_ticks + 2] padded frame."""
    return (flat_index // n_ticks) * (n_ticks + 2) + flat_index % n_ticks + 1


def find_hits(deconvolved: np.ndarray, sigma: np.ndarray, config: HitFindingConfig) -> dict[str, np.ndarray]:
    """Hits of a deconvolved frame: dict of wire (uint16), tick, integral, rms, peak (float32) and the
    hit's tick window start/end (int32, end exclusive), sorted by (wire, tick)."""
    n_wires, n_ticks = deconvolved.shape
    row = n_ticks + 2  # one zero sample each side of every channel keeps runs inside their channel
    frame = np.zeros((n_wires, row), dtype=np.float32)
    frame[:, 1:-1] = deconvolved
    flat = frame.ravel()
    good = sigma > 0  # dead channels have sigma 0 and no hits
    sigma = np.where(good, np.maximum(sigma, config.noise_floor_adc), 0.0).astype(np.float32)
    hi = np.where(good, config.roi_threshold_sigma * sigma, np.inf).astype(np.float32)[:, None]
    lo = np.where(good, config.roi_extend_sigma * sigma, np.inf).astype(np.float32)[:, None]

    roi = np.zeros((n_wires, row), dtype=bool)
    above = deconvolved > lo
    roi[:, 1:-1] = above
    for shift in range(1, config.roi_pad_ticks + 1):  # widen by the padding, a few whole-frame ORs
        roi[:, 1 + shift : -1] |= above[:, :-shift]
        roi[:, 1 : -1 - shift] |= above[:, shift:]
    roi_flat = roi.ravel()
    edges = np.diff(roi_flat.view(np.int8))
    starts = np.flatnonzero(edges == 1) + 1
    ends = np.flatnonzero(edges == -1) + 1
    empty = {name: np.zeros(0, dtype) for name, dtype in
             (("wire", np.uint16), ("tick", np.float32), ("integral", np.float32), ("rms", np.float32),
              ("peak", np.float32), ("start", np.int32), ("end", np.int32))}
    if starts.size == 0:
        return empty
    roi_max = np.maximum.reduceat(flat, _interleave(starts, ends))[0::2]
    accepted = roi_max > hi[starts // row, 0]
    starts, ends = starts[accepted], ends[accepted]
    if starts.size == 0:
        return empty

    # Candidate peaks (local maxima above threshold) and dips (local minima) inside ROIs.
    centre = frame[:, 1:-1]
    left, right = frame[:, :-2], frame[:, 2:]
    in_roi = roi[:, 1:-1]
    peak_mask = (centre >= left) & (centre > right) & (centre > hi) & in_roi
    dip_mask = (centre < left) & (centre <= right) & in_roi
    peaks = _to_padded(np.flatnonzero(peak_mask), n_ticks)
    dips = _to_padded(np.flatnonzero(dip_mask), n_ticks)
    peak_roi = np.searchsorted(starts, peaks, side="right") - 1
    keep = (peak_roi >= 0) & (peaks < ends[np.maximum(peak_roi, 0)])
    peaks, peak_roi = peaks[keep], peak_roi[keep]

    # For each pair of neighbouring peaks in one ROI, the deepest dip between them.
    split_points = np.zeros(0, dtype=np.int64)
    if peaks.size > 1 and dips.size:
        gap_of_dip = np.searchsorted(peaks, dips, side="right") - 1
        valid = (gap_of_dip >= 0) & (gap_of_dip < peaks.size - 1)
        dips, gap_of_dip = dips[valid], gap_of_dip[valid]
        same_roi = peak_roi[gap_of_dip] == peak_roi[np.minimum(gap_of_dip + 1, peaks.size - 1)]
        dips, gap_of_dip = dips[same_roi], gap_of_dip[same_roi]
        if dips.size:
            order = np.lexsort((flat[dips], gap_of_dip))
            dips, gap_of_dip = dips[order], gap_of_dip[order]
            first = np.ones(dips.size, dtype=bool)
            first[1:] = gap_of_dip[1:] != gap_of_dip[:-1]
            dips, gap_of_dip = dips[first], gap_of_dip[first]
            lower_peak = np.minimum(flat[peaks[gap_of_dip]], flat[peaks[gap_of_dip + 1]])
            channel_sigma = sigma[dips // row]
            deep = lower_peak - flat[dips] >= config.split_prominence_sigma * channel_sigma
            split_points = dips[deep]

    seg_starts = np.sort(np.concatenate([starts, split_points]))
    seg_roi = np.searchsorted(starts, seg_starts, side="right") - 1
    next_start = np.append(seg_starts[1:], np.iinfo(np.int64).max)
    seg_ends = np.minimum(next_start, ends[seg_roi])

    # Long pulses (tracks along the drift, showers) are cut into equal hits of about
    # long_pulse_width_ticks, as GausHitFinder does when one Gaussian cannot describe a pulse.
    lengths = seg_ends - seg_starts
    long = lengths > config.max_hit_ticks
    long_starts, long_ends = seg_starts[long], seg_ends[long]
    if long.any():
        n_pieces = np.ceil(lengths[long] / config.long_pulse_width_ticks).astype(np.int64)
        piece = np.arange(n_pieces.sum()) - np.repeat(np.cumsum(n_pieces) - n_pieces, n_pieces)
        inner = piece > 0
        cuts = np.repeat(seg_starts[long], n_pieces) + piece * np.repeat(lengths[long], n_pieces) // np.repeat(n_pieces, n_pieces)
        seg_starts = np.sort(np.concatenate([seg_starts, cuts[inner]]))
        seg_roi = np.searchsorted(starts, seg_starts, side="right") - 1
        next_start = np.append(seg_starts[1:], np.iinfo(np.int64).max)
        seg_ends = np.minimum(next_start, ends[seg_roi])

    # Sums over each segment on a compact copy of the ROI samples.
    lengths = seg_ends - seg_starts
    sample_index = np.repeat(seg_starts - np.cumsum(np.append(0, lengths[:-1])), lengths) + np.arange(lengths.sum())
    values = flat[sample_index].astype(np.float64)
    positive = np.maximum(values, 0.0)
    local_tick = (sample_index - seg_starts.repeat(lengths)).astype(np.float64)
    compact_starts = np.append(0, np.cumsum(lengths)[:-1])
    integral = np.add.reduceat(values, compact_starts)
    weight = np.add.reduceat(positive, compact_starts)
    first_moment = np.add.reduceat(positive * local_tick, compact_starts)
    second_moment = np.add.reduceat(positive * local_tick**2, compact_starts)
    safe_weight = np.where(weight > 0, weight, 1.0)
    mean_local = first_moment / safe_weight
    rms = np.sqrt(np.maximum(second_moment / safe_weight - mean_local**2, 0.0))

    # Peak: the highest sample of each segment (the first if tied), refined by a parabola through
    # its neighbours.
    segment_of_sample = np.repeat(np.arange(seg_starts.size), lengths)
    highest = np.maximum.reduceat(values, compact_starts)
    at_max = np.flatnonzero(values == highest[segment_of_sample])
    first_at_max = at_max[np.searchsorted(segment_of_sample[at_max], np.arange(seg_starts.size))]
    best_peak = sample_index[first_at_max]
    y0, y1, y2 = flat[best_peak - 1], flat[best_peak], flat[best_peak + 1]
    curvature = y0 - 2.0 * y1 + y2
    shift = np.where(curvature < 0, 0.5 * (y0 - y2) / np.where(curvature < 0, curvature, -1.0), 0.0)
    shift = np.clip(shift, -0.5, 0.5)
    peak_height = y1 - 0.25 * (y0 - y2) * shift

    wire = best_peak // row
    tick = best_peak % row - 1 + shift
    # Pieces of long pulses sit at their charge centroid (a plateau has no meaningful maximum).
    parent = np.searchsorted(long_starts, seg_starts, side="right") - 1
    piece_of_long = (parent >= 0) & (seg_starts < long_ends[np.maximum(parent, 0)]) if long_starts.size else np.zeros(seg_starts.size, bool)
    tick = np.where(piece_of_long, (seg_starts - wire * row - 1) + mean_local, tick)
    tick = np.clip(tick, 0.0, n_ticks - 1e-3)
    return {
        "wire": wire.astype(np.uint16),
        "tick": tick.astype(np.float32),
        "integral": np.maximum(integral, 0.0).astype(np.float32),
        "rms": rms.astype(np.float32),
        "peak": peak_height.astype(np.float32),
        "start": (seg_starts - wire * row - 1).astype(np.int32),
        "end": (seg_ends - wire * row - 1).astype(np.int32),
    }


@dataclass
class TruthCharge:
    """Drifted charge per (wire, tick, particle row), unaggregated: one row per electron cloud."""

    wire: np.ndarray  # int64
    tick: np.ndarray  # int64, nearest sample of the arrival time
    particle_row: np.ndarray  # int64, row in the event's particle table
    electrons: np.ndarray  # float64


def match_truth(
    hits: dict[str, np.ndarray],
    truth: TruthCharge,
    particles: dict[str, np.ndarray],
    n_ticks: int = READOUT.n_ticks,
    margin_ticks: int = 12,
) -> dict[str, np.ndarray]:
    """Per hit: label, origin, track_id, pdg of the particle with the most charge in the hit's tick
    window on its wire. A hit with no cloud centred in its window (a piece of a pulse's tail) takes
    the particle of the nearest cloud on its wire within ``margin_ticks`` (the half-width of a
    filtered pulse); hits with neither are noise (0, 0, -1, 0). Beam-origin particles (the beam
    primary and all its descendants) give label 1, cosmics and halo label 2."""
    n_hits = hits["wire"].size
    label = np.zeros(n_hits, np.uint8)
    origin = np.full(n_hits, ORIGIN_NOISE, np.uint8)
    track_id = np.full(n_hits, -1, np.int32)
    pdg = np.zeros(n_hits, np.int32)
    if n_hits and truth.wire.size:
        hit_key_start = hits["wire"].astype(np.int64) * n_ticks + hits["start"]
        order = np.argsort(hit_key_start, kind="stable")
        sorted_start = hit_key_start[order]
        sorted_end = (hits["wire"].astype(np.int64) * n_ticks + hits["end"])[order]
        truth_key = truth.wire * n_ticks + truth.tick
        slot = np.searchsorted(sorted_start, truth_key, side="right") - 1
        inside = (slot >= 0) & (truth_key < sorted_end[np.maximum(slot, 0)])
        hit_index = order[slot[inside]]
        n_particles = max(int(particles["track_id"].size), 1)
        pair = hit_index.astype(np.int64) * n_particles + truth.particle_row[inside]
        pairs, inverse = np.unique(pair, return_inverse=True)
        charge = np.bincount(inverse, weights=truth.electrons[inside])
        pair_hit, pair_row = pairs // n_particles, pairs % n_particles
        best = np.lexsort((-charge, pair_hit))
        first = np.ones(best.size, dtype=bool)
        first[1:] = pair_hit[best][1:] != pair_hit[best][:-1]
        matched_hit, matched_row = pair_hit[best][first], pair_row[best][first]
        unmatched = np.ones(n_hits, dtype=bool)
        unmatched[matched_hit] = False
        if unmatched.any():
            truth_order = np.argsort(truth_key, kind="stable")
            sorted_truth = truth_key[truth_order]
            lonely = np.flatnonzero(unmatched)
            centre = hits["wire"][lonely].astype(np.int64) * n_ticks + np.rint(hits["tick"][lonely]).astype(np.int64)
            after = np.minimum(np.searchsorted(sorted_truth, centre), sorted_truth.size - 1)
            before = np.maximum(after - 1, 0)
            nearest = np.where(np.abs(sorted_truth[after] - centre) <= np.abs(sorted_truth[before] - centre), after, before)
            close = (np.abs(sorted_truth[nearest] - centre) <= margin_ticks) & (
                sorted_truth[nearest] // n_ticks == hits["wire"][lonely].astype(np.int64))
            matched_hit = np.concatenate([matched_hit, lonely[close]])
            matched_row = np.concatenate([matched_row, truth.particle_row[truth_order[nearest[close]]]])
        particle_origin = particles["origin"][matched_row].astype(np.uint8)
        origin[matched_hit] = particle_origin
        label[matched_hit] = np.where(particle_origin == ORIGIN_BEAM, 1, 2)
        track_id[matched_hit] = particles["track_id"][matched_row]
        pdg[matched_hit] = particles["pdg"][matched_row]
    return {"label": label, "origin": origin, "track_id": track_id, "pdg": pdg}
