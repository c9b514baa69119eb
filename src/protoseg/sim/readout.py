"""Readout: electron clouds → charge per wire and tick → ADC waveforms with noise, for 1440 × 6000 samples.

The collection planes of both drift volumes are read as one 1440-wire frame (global wire numbers
overlay the two volumes, as the 2018 images did). Steps, all vectorised over the whole frame:

1. Diffusion spreads each cloud over 3 wires × 13 ticks (Gaussian integrated over each wire's pitch
   and each tick), summed into the frame with ``np.bincount``: charge in 1000 e⁻ per tick.
2. The collection response (field ⊗ electronics, ADC per 1000 e⁻ per 0.5 µs sample, shared/data)
   is applied by one real FFT along ticks. The kernel is aligned so that its peak falls on the
   arrival tick (LArSoft calibrates hit times the same way).
3. Noise is drawn in the frequency domain as Wire-Cell's EmpiricalNoiseModel + AddNoise do: each
   frequency bin gets a complex Gaussian with σ = mean amplitude × sqrt(2/π) per component (so that
   |X| is Rayleigh with the tabulated mean), the amplitude being the collection-plane spectrum of
   the wire length, interpolated linearly in frequency and combined in quadrature with the white
   ``const`` term. Coherent noise: one more waveform of the same spectral shape per 48-channel
   front-end board, added to all its channels. Signal and noise share one inverse FFT.
4. Dead channels read a flat pedestal; noisy channels get their noise scaled up.
5. Pedestal, rounding and the 12-bit ADC range.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources

import numpy as np
import scipy.fft
from scipy.special import erf

from protoseg.detector import GEOMETRY, READOUT, Readout
from protoseg.errors import InputError
from protoseg.sim.drift import FRAME_MARGIN_TICKS, DriftedCharge

__all__ = [
    "ReadoutConfig",
    "ChannelStatus",
    "load_collection_response",
    "load_noise_spectrum",
    "response_kernel_fft",
    "noise_sigma_per_bin_adc",
    "choose_bad_channels",
    "charge_frame",
    "ReadoutModel",
    "validate_readout_config",
    "TICK_HALF_WINDOW",
    "FRAME_MARGIN_TICKS",
    "irfft_noise_rms",
    "wire_sharing",
    "truth_rows",
]

RESPONSE_FILE = "collection-response-adc-per-ke-0p5us.txt"
NOISE_FILE = "protodune-noise-spectra-v1.json"
COLLECTION_PLANE = 2

# Ticks each side of a cloud's centre that diffusion may reach: 6 ticks is 3.5 σ of the largest
# longitudinal spread (full drift: σ_L = 0.136 cm = 1.73 ticks).
TICK_HALF_WINDOW = 6
# The frame is simulated on 6144 = 2^11 * 3 ticks, FRAME_MARGIN_TICKS = 72 beyond each end of the
# 6000-tick window, so that charge arriving just outside the window still leaves its partial pulse
# inside it (as in the experiment) and no pulse wraps around the circular FFT; the readout keeps
# the middle 6000.

# Wire-Cell's system of units (mm, ns, MeV, e+): one volt is 1e-6 of its voltage unit.
_WIRECELL_VOLT = 1.0e-6


@dataclass(frozen=True)
class ReadoutConfig:
    """Electronics, noise and channel-status settings; defaults from shared/PHYSICS.md."""

    gain_scale: float = 1.0  # multiplies the shipped response (14 mV/fC, post-gain 1.1365)
    noise: bool = True
    incoherent_noise_scale: float = 1.0  # multiplies the Wire-Cell collection spectrum (≈ 3.7 ADC RMS)
    # Coherent noise per front-end board (48 consecutive collection channels). The RMS is a model
    # choice, not a measurement: it brings the raw collection noise to ≈ 4.0 ADC, of which the
    # coherent-noise removal in hit finding takes out most.
    coherent_noise_rms_adc: float = 1.5
    channels_per_board: int = 48
    # 2018 channel status (channelstatus_pdsp_2018.fcl): 8 dead and 9 noisy of the 1440 beam-side
    # collection channels. Which channels is drawn once per run from the seed (the list itself is
    # not reproduced); the chosen ones are recorded in the file's config.
    n_dead_channels: int = 8
    n_noisy_channels: int = 9
    noisy_channel_noise_scale: float = 3.0  # model choice: noise of a "noisy" channel relative to a good one
    pedestal_adc: float = 900.0  # collection baseline 507.7 mV over the 0.2–1.6 V, 12-bit range (params.jsonnet)
    adc_bits: int = 12
    adc_full_scale_volt: float = 1.4  # 0.2–1.6 V
    wire_length_cm: float = GEOMETRY.y_max_cm - GEOMETRY.y_min_cm  # vertical collection wires


def validate_readout_config(config: ReadoutConfig) -> None:
    """Raise InputError for impossible readout settings."""
    for name in ("gain_scale", "adc_full_scale_volt", "wire_length_cm"):
        value = getattr(config, name)
        if not (np.isfinite(value) and value > 0):
            raise InputError(f"readout.{name} must be a positive number, got {value}")
    for name in ("incoherent_noise_scale", "coherent_noise_rms_adc", "noisy_channel_noise_scale", "pedestal_adc"):
        value = getattr(config, name)
        if not (np.isfinite(value) and value >= 0):
            raise InputError(f"readout.{name} must be a non-negative number, got {value}")
    if not 1 <= config.adc_bits <= 16:
        raise InputError(f"readout.adc_bits must be between 1 and 16, got {config.adc_bits}")
    if config.pedestal_adc >= 2**config.adc_bits:
        raise InputError(f"readout.pedestal_adc {config.pedestal_adc} is outside the {config.adc_bits}-bit ADC range")
    if config.channels_per_board < 1 or READOUT.n_wires % config.channels_per_board:
        raise InputError(f"readout.channels_per_board must divide {READOUT.n_wires}, got {config.channels_per_board}")
    if config.n_dead_channels < 0 or config.n_noisy_channels < 0 or (
        config.n_dead_channels + config.n_noisy_channels > READOUT.n_wires
    ):
        raise InputError("readout: n_dead_channels and n_noisy_channels must be >= 0 and together at most the channel count")


@dataclass(frozen=True)
class ChannelStatus:
    """Global wires that read nothing (dead) and that are noisier than the rest (noisy)."""

    dead: tuple[int, ...] = ()
    noisy: tuple[int, ...] = ()


def choose_bad_channels(seed_sequence: np.random.SeedSequence, config: ReadoutConfig, n_wires: int) -> ChannelStatus:
    """Draw the run's dead and noisy channels (distinct, sorted) from their own seed sequence."""
    rng = np.random.default_rng(seed_sequence)
    chosen = rng.choice(n_wires, size=config.n_dead_channels + config.n_noisy_channels, replace=False)
    return ChannelStatus(
        dead=tuple(sorted(int(c) for c in chosen[: config.n_dead_channels])),
        noisy=tuple(sorted(int(c) for c in chosen[config.n_dead_channels :])),
    )


@lru_cache(maxsize=1)
def load_collection_response() -> np.ndarray:
    """The shipped collection response: ADC per 1000 e⁻ per 0.5 µs sample (float64, 220 samples)."""
    text = resources.files("protoseg").joinpath("data", RESPONSE_FILE).read_text()
    return np.array([float(v) for v in text.split()], dtype=np.float64)


@lru_cache(maxsize=1)
def _noise_entries() -> list[dict]:
    return json.loads(resources.files("protoseg").joinpath("data", NOISE_FILE).read_text())


def load_noise_spectrum(wire_length_cm: float, plane: int = COLLECTION_PLANE) -> dict:
    """The Wire-Cell noise spectrum of ``plane`` for a wire of this length (linear in wire length,
    flat outside the tabulated lengths, as EmpiricalNoiseModel::interpolate does)."""
    entries = sorted((e for e in _noise_entries() if e["plane"] == plane), key=lambda e: e["wirelen"])
    wire_length_mm = wire_length_cm * 10.0
    lengths = np.array([e["wirelen"] for e in entries])
    hi = int(np.clip(np.searchsorted(lengths, wire_length_mm), 1, len(entries) - 1))
    lo = hi - 1
    mu = float(np.clip((wire_length_mm - lengths[lo]) / (lengths[hi] - lengths[lo]), 0.0, 1.0))
    amps = (1 - mu) * np.asarray(entries[lo]["amps"]) + mu * np.asarray(entries[hi]["amps"])
    const = (1 - mu) * entries[lo]["const"] + mu * entries[hi]["const"]
    return {**entries[lo], "amps": amps, "const": const, "wirelen": wire_length_mm}


def noise_sigma_per_bin_adc(config: ReadoutConfig, n_ticks: int, tick_us: float) -> np.ndarray:
    """σ of the real and of the imaginary part of each rfft bin of the noise (ADC, numpy's unnormalised
    forward convention), so that ``irfft`` of the sampled spectrum is the noise waveform in ADC."""
    spectrum = load_noise_spectrum(config.wire_length_cm)
    period_ns = tick_us * 1.0e3
    freqs_per_ns = np.arange(n_ticks // 2 + 1) / (n_ticks * period_ns)
    # EmpiricalNoiseModel::resample: amplitudes scale with sqrt(N T / (N0 T0)) for another frame.
    scale = np.sqrt(n_ticks / spectrum["nsamples"] * spectrum["period"] / period_ns)
    amplitude = np.interp(freqs_per_ns, np.asarray(spectrum["freqs"]), spectrum["amps"]) * scale
    amplitude = np.sqrt(amplitude**2 + (spectrum["const"] * scale) ** 2)
    adc_per_volt = 2**config.adc_bits / config.adc_full_scale_volt
    return amplitude / _WIRECELL_VOLT * adc_per_volt * np.sqrt(2.0 / np.pi) * config.incoherent_noise_scale


def response_kernel_fft(n_ticks: int, gain_scale: float = 1.0) -> np.ndarray:
    """rfft of the collection response laid on ``n_ticks`` samples with its peak at sample 0
    (the samples before the peak wrap to the end), complex128."""
    response = load_collection_response() * gain_scale
    if response.size > n_ticks:
        raise InputError(f"readout window of {n_ticks} ticks is shorter than the {response.size}-sample response")
    kernel = np.zeros(n_ticks)
    kernel[: response.size] = response
    kernel = np.roll(kernel, -int(np.argmax(response)))
    return scipy.fft.rfft(kernel)


def wire_sharing(charge: DriftedCharge) -> np.ndarray:
    """Fraction of each cloud on its wire's neighbours -1, 0, +1 (float32 [n, 3]): the transverse
    Gaussian integrated over each wire's pitch; the cloud centre sits at wire_offset (0..1)."""
    wire_edges = np.arange(-1, 3, dtype=np.float32)[None, :] - charge.wire_offset[:, None]
    sigma_w = np.maximum(charge.sigma_wire, 1e-4)[:, None]
    return (0.5 * np.diff(erf(wire_edges / (np.float32(np.sqrt(2.0)) * sigma_w)), axis=1)).astype(np.float32)


def _neighbour_wire_ok(charge: DriftedCharge, readout: Readout) -> np.ndarray:
    """[n, 3] True where the neighbour wire exists in the cloud's APA (not across a gap)."""
    local_wire = (charge.wire % readout.n_wires_per_apa)[:, None] + np.arange(-1, 2)[None, :]
    return (local_wire >= 0) & (local_wire < readout.n_wires_per_apa)


def truth_rows(charge: DriftedCharge, readout: Readout = READOUT, min_fraction: float = 0.01) -> tuple[np.ndarray, ...]:
    """Truth charge per (wire, tick, cloud): each cloud on its wire and the neighbours that get at
    least ``min_fraction`` of it, at its nearest tick. Returns (wire, tick, cloud index, electrons)."""
    share = wire_sharing(charge)
    ok = _neighbour_wire_ok(charge, readout) & (share >= min_fraction)
    cloud, neighbour = np.nonzero(ok)
    wire = charge.wire[cloud].astype(np.int64) + neighbour - 1
    # Clouds arriving just outside the window are credited to its first or last tick (their partial pulses).
    tick = np.clip(np.rint(charge.tick[cloud]).astype(np.int64), 0, readout.n_ticks - 1)
    electrons = charge.electrons[cloud].astype(np.float64) * share[cloud, neighbour]
    return wire, tick, cloud, electrons


def charge_frame(charge: DriftedCharge, readout: Readout = READOUT) -> np.ndarray:
    """Spread each cloud over its wire ±1 and tick ±6 by diffusion; return 1000 e⁻ per (wire, tick),
    float32 [n_wires, n_ticks + 2 × FRAME_MARGIN_TICKS]: column c is tick c − FRAME_MARGIN_TICKS.
    Sample k collects the arrival times [k - 0.5, k + 0.5). Charge diffusing past an APA edge (into
    a gap) is lost."""
    n_wires, n_ticks = readout.n_wires, readout.n_ticks + 2 * FRAME_MARGIN_TICKS
    if len(charge) == 0:
        return np.zeros((n_wires, n_ticks), dtype=np.float32)
    sqrt2 = np.float32(np.sqrt(2.0))
    wire_weights = wire_sharing(charge)  # [n, 3]
    # Tick weights around the nearest sample.
    centre_tick = np.rint(charge.tick).astype(np.int64)
    tick_offsets = np.arange(-TICK_HALF_WINDOW, TICK_HALF_WINDOW + 1)
    tick_edges = (centre_tick[:, None] - charge.tick[:, None]).astype(np.float32) + (
        np.arange(-TICK_HALF_WINDOW, TICK_HALF_WINDOW + 2, dtype=np.float32) - 0.5
    )[None, :]
    sigma_t = np.maximum(charge.sigma_tick, 1e-4)[:, None]
    tick_weights = 0.5 * np.diff(erf(tick_edges / (sqrt2 * sigma_t)), axis=1)  # [n, 13]

    ke = charge.electrons * np.float32(1e-3)
    weights = (ke[:, None, None] * wire_weights[:, :, None]) * tick_weights[:, None, :]  # [n, 3, 13]
    wire_ok = _neighbour_wire_ok(charge, readout)
    ticks = centre_tick[:, None] + (tick_offsets + FRAME_MARGIN_TICKS)[None, :]
    tick_ok = (ticks >= 0) & (ticks < n_ticks)
    flat = (charge.wire.astype(np.int64)[:, None, None] + np.arange(-1, 2)[None, :, None]) * n_ticks + ticks[:, None, :]
    ok = wire_ok[:, :, None] & tick_ok[:, None, :]
    frame = np.bincount(flat[ok], weights=weights[ok], minlength=n_wires * n_ticks)
    return frame.astype(np.float32).reshape(n_wires, n_ticks)


class ReadoutModel:
    """The precomputed response and noise spectra of one readout configuration (build once per worker)."""

    def __init__(self, config: ReadoutConfig, status: ChannelStatus, readout: Readout = READOUT) -> None:
        self.config = config
        self.status = status
        self.readout = readout
        n_ticks = readout.n_ticks + 2 * FRAME_MARGIN_TICKS  # the simulated frame
        self.response_fft = response_kernel_fft(n_ticks, config.gain_scale).astype(np.complex64)
        self.noise_sigma = noise_sigma_per_bin_adc(config, n_ticks, readout.tick_us).astype(np.float32)
        # The coherent component has the same spectral shape, scaled to its own RMS.
        incoherent_rms = irfft_noise_rms(self.noise_sigma.astype(np.float64), n_ticks)
        self.incoherent_rms_adc = incoherent_rms
        shape = noise_sigma_per_bin_adc(replace(config, incoherent_noise_scale=1.0), n_ticks, readout.tick_us)
        self.coherent_sigma = (shape * (config.coherent_noise_rms_adc / irfft_noise_rms(shape, n_ticks))).astype(np.float32)
        channel_noise_scale = np.ones(readout.n_wires, dtype=np.float32)
        channel_noise_scale[list(status.noisy)] = config.noisy_channel_noise_scale
        channel_noise_scale[list(status.dead)] = 0.0
        self.channel_noise_scale = channel_noise_scale
        self.noise_sigma_per_channel = channel_noise_scale[:, None] * self.noise_sigma[None, :]  # [n_wires, n_bins]
        self.alive = np.ones(readout.n_wires, dtype=bool)
        self.alive[list(status.dead)] = False

    def digitize(self, charge_ke: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """ADC waveforms, uint16 [n_wires, n_ticks], of a charge frame from ``charge_frame`` (1000 e⁻
        per tick, with the margins; a frame of exactly n_ticks columns is taken as without them)."""
        margin = FRAME_MARGIN_TICKS
        if charge_ke.shape[1] == self.readout.n_ticks:
            charge_ke = np.pad(charge_ke, ((0, 0), (margin, margin)))
        n_wires, n_ticks = charge_ke.shape
        spectrum = scipy.fft.rfft(charge_ke, axis=1, workers=1)
        spectrum *= self.response_fft[None, :]
        if self.config.noise:
            n_bins = spectrum.shape[1]
            noise = rng.standard_normal((n_wires, 2 * n_bins), dtype=np.float32).view(np.complex64)
            noise *= self.noise_sigma_per_channel
            if self.config.coherent_noise_rms_adc > 0:
                n_boards = n_wires // self.config.channels_per_board
                coherent = rng.standard_normal((n_boards, 2 * n_bins), dtype=np.float32).view(np.complex64)
                coherent *= self.coherent_sigma[None, :]
                # One waveform per board, added to its channels (dead ones are flattened below).
                noise.reshape(n_boards, self.config.channels_per_board, n_bins)[...] += coherent[:, None, :]
            spectrum += noise
        waveform = scipy.fft.irfft(spectrum, n=n_ticks, axis=1, workers=1)[:, margin : n_ticks - margin]
        waveform[~self.alive] = 0.0
        waveform += np.float32(self.config.pedestal_adc)
        np.rint(waveform, out=waveform)
        np.clip(waveform, 0, 2**self.config.adc_bits - 1, out=waveform)
        return waveform.astype(np.uint16)


def irfft_noise_rms(sigma_per_bin: np.ndarray, n: int) -> float:
    """Expected RMS of ``irfft(X, n)`` when Re and Im of rfft bin k are N(0, σ_k²): the interior bins
    contribute 4σ², DC and Nyquist σ² (irfft drops their imaginary parts)."""
    weights = np.full(sigma_per_bin.shape, 4.0)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0
    return float(np.sqrt(np.sum(weights * sigma_per_bin**2)) / n)
