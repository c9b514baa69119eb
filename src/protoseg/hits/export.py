"""The hit-level network as one graph from hits to probabilities, for LArSoft (TorchScript).

:class:`HitsToProbabilities` takes an event's collection hits as one float32 tensor [n, 4] with the
columns (wire 0..1439, peak tick 0..5999, integral ADC·tick, rms ticks), builds the sites and their
features inside the graph (the same operations as ``protoseg.hits.sites.event_sites``, in torch, in
float64 where numpy uses float64), runs the network and returns each hit's class probabilities
[n, C]. A LArSoft module fills the [n, 4] tensor from its ``recob::Hit``s (``WireID().Wire`` + 480 ×
APA, ``PeakTime()``, ``Integral()``, ``RMS()``) and reads one row per hit back: nothing of protoseg's
Python is needed on the C++ side.
"""

from typing import List, Tuple

import torch
from torch import nn

__all__ = ["HIT_COLUMNS_EXPORTED", "HitsToProbabilities", "sites_from_hits"]

HIT_COLUMNS_EXPORTED = ("wire", "tick", "integral", "rms")


def sites_from_hits(hits: torch.Tensor, ticks_per_row: int, features: List[str]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(coords int64 [S, 3] with event 0, features float32 [S, F], site of each hit int64 [n]) of hits [n, 4]."""
    n_wires = 1440  # protoseg.detector.READOUT: collection wires of the image
    n_ticks = 6000  # and ticks of the readout window
    wire = hits[:, 0].to(torch.long)
    tick = hits[:, 1].to(torch.float64)
    integral = hits[:, 2].to(torch.float64)
    n_rows = (n_ticks + ticks_per_row - 1) // ticks_per_row
    row = torch.clamp(torch.floor(tick / ticks_per_row).to(torch.long), max=n_rows - 1)
    keys, site = torch.unique(row * n_wires + wire, sorted=True, return_inverse=True)
    n_sites = keys.shape[0]
    # The largest hit of each site, as numpy's lexsort((integral, site)): stable sorts, last of each site.
    by_integral = torch.argsort(integral, stable=True)
    order = by_integral[torch.argsort(site[by_integral], stable=True)]
    sorted_site = site[order]
    last = torch.ones_like(sorted_site, dtype=torch.bool)
    last[:-1] = sorted_site[1:] != sorted_site[:-1]
    lead = order[last]
    site_row = keys // n_wires
    site_wire = keys % n_wires
    columns: List[torch.Tensor] = []
    for name in features:
        if name == "log_charge":
            charge = torch.zeros(n_sites, dtype=torch.float64).index_add_(0, site, integral)
            columns.append(torch.log1p(charge / 100.0))
        elif name == "rms":
            columns.append(hits[:, 3].to(torch.float64)[lead] / 5.0)
        elif name == "tick_in_row":
            columns.append(tick[lead] / ticks_per_row - site_row.to(torch.float64) - 0.5)
        elif name == "wire":
            columns.append(site_wire.to(torch.float64) / n_wires)
        elif name == "tick":
            columns.append(tick[lead] / n_ticks)
        else:
            raise RuntimeError("unknown site feature " + name)
    coords = torch.stack([torch.zeros_like(site_row), site_row, site_wire], dim=1)
    return coords, torch.stack(columns, dim=1).to(torch.float32), site


class HitsToProbabilities(nn.Module):
    """Hits [n, 4] float32 (wire, tick, integral, rms) → class probabilities [n, C] float32."""

    def __init__(self, network: nn.Module, ticks_per_row: int, features: List[str]) -> None:
        super().__init__()
        self.network = network
        self.ticks_per_row = int(ticks_per_row)
        self.features = [str(f) for f in features]

    def forward(self, hits: torch.Tensor) -> torch.Tensor:
        if hits.dim() != 2 or hits.shape[1] != 4:
            raise RuntimeError("hits must be [n, 4]: wire, tick, integral, rms")
        if hits.shape[0] == 0:
            return torch.zeros((0, self.network.classifier.out_features), dtype=torch.float32)
        coords, features, site = sites_from_hits(hits, self.ticks_per_row, self.features)
        return torch.softmax(self.network(coords, features), dim=1)[site]
