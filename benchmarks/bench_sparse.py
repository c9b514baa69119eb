"""Which sparse convolution for the hit-level network: protoseg's plain-PyTorch submanifold U-Net against
the same network built from spconv 2.3 (the CPU wheel the issue measured), with the same weights.

    python benchmarks/bench_sparse.py EVENTS.h5 [--events 20] [--threads 2]

Both networks get the same weights (spconv's [out, kh, kw, in] kernels are protoseg's [kh·kw·in, out]
matrices transposed), their outputs are compared on every event (the largest difference is reported:
it proves the two compute the same function), then a training step (forward, backward, AdamW) and an
inference pass are timed on each event, the two implementations interleaved so that machine load hits
both alike. spconv's CPU backward asks for a CUDA stream: ``get_current_stream`` is patched to return 0,
as the issue found. With more than one thread spconv 2.3.8's CPU kernels return wrong results that change
from run to run (measured here: the output difference at 1 thread and at --threads), so spconv is timed
at 1 thread (correct) and at --threads (for reference only). Results: ``benchmarks/results/sparse_backends.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from protoseg.events import open_events
from protoseg.fileio import write_json
from protoseg.hits.sites import HitGrid, event_sites
from protoseg.images.labels import hit_labels
from protoseg.models import build_model, tune_cpu_allocator
from protoseg.models.sparse_unet import SparseUNet

RESULTS = Path(__file__).resolve().parent / "results" / "sparse_backends.json"


def _patch_spconv_cpu() -> None:
    import spconv.pytorch.cppcore as cppcore
    import spconv.pytorch.ops as ops

    cppcore.get_current_stream = lambda: 0
    ops.get_current_stream = lambda: 0


class SpconvUNet(nn.Module):
    """protoseg's SparseUNet rebuilt from spconv layers (same structure, same parameter shapes up to layout)."""

    def __init__(self, reference: SparseUNet) -> None:
        super().__init__()
        import spconv.pytorch as spconv

        self.spconv = spconv
        self.levels = reference.levels
        channels = [reference.stem.out_features] + [d.conv.weight.shape[1] for d in reference.downs]
        self.channels = channels
        self.stem, self.stem_norm, self.classifier = reference.stem, reference.stem_norm, reference.classifier

        def subm(conv, cin, cout, key):
            layer = spconv.SubMConv2d(cin, cout, 3, padding=1, bias=False, indice_key=key)
            with torch.no_grad():
                layer.weight.copy_(conv.weight.view(3, 3, cin, cout).permute(3, 0, 1, 2))
            return layer

        def blocks(source, key):
            out = nn.ModuleList()
            for block in source:
                convs = nn.ModuleList()
                for conv in block.convs:
                    cin, cout = conv.weight.shape[0] // 9, conv.weight.shape[1]
                    convs.append(subm(conv, cin, cout, key))
                holder = nn.Module()
                holder.convs, holder.norms, holder.project = convs, block.norms, block.project
                out.append(holder)
            return out

        self.encoders = nn.ModuleList([blocks([b], f"subm{i}")[0] for i, b in enumerate(reference.encoders)])
        self.decoders = nn.ModuleList([blocks([b], f"subm{i}")[0] for i, b in enumerate(reference.decoders)])
        self.downs, self.ups = nn.ModuleList(), nn.ModuleList()
        for i, (down, up) in enumerate(zip(reference.downs, reference.ups)):
            cin, cout = channels[i], channels[i + 1]
            conv = spconv.SparseConv2d(cin, cout, 2, stride=2, bias=False, indice_key=f"down{i}")
            inverse = spconv.SparseInverseConv2d(cout, cin, 2, bias=False, indice_key=f"down{i}")
            with torch.no_grad():
                conv.weight.copy_(down.conv.weight.view(2, 2, cin, cout).permute(3, 0, 1, 2))
                # the transpose: [in=cout, 4, out=cin] → spconv's inverse kernel [out=cin, kh, kw, in=cout]
                inverse.weight.copy_(up.conv.weight.view(cout, 2, 2, cin).permute(3, 1, 2, 0))
            self.downs.append(nn.ModuleList([conv, down.norm]))
            self.ups.append(nn.ModuleList([inverse, up.norm]))

    def _block(self, block, x):
        shortcut = block.project(x.features)
        for conv, norm in zip(block.convs, block.norms):
            x = conv(x)
            x = x.replace_feature(torch.relu(norm(x.features)))
        return x.replace_feature(x.features + shortcut)

    def forward(self, coords: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        shape = [int(coords[:, 1].max()) + 1, int(coords[:, 2].max()) + 1]
        shape = [s + (-s) % (2 ** (self.levels - 1)) for s in shape]  # divisible at every level
        x = self.spconv.SparseConvTensor(torch.relu(self.stem_norm(self.stem(features))), coords.int(), shape, int(coords[:, 0].max()) + 1)
        skips = []
        for level in range(self.levels):
            x = self._block(self.encoders[level], x)
            if level < self.levels - 1:
                skips.append(x)
                conv, norm = self.downs[level]
                x = conv(x)
                x = x.replace_feature(torch.relu(norm(x.features)))
        for level in range(self.levels - 2, -1, -1):
            inverse, norm = self.ups[level]
            x = inverse(x)
            x = x.replace_feature(torch.relu(norm(x.features)))
            x = x.replace_feature(torch.cat([skips[level].features, x.features], dim=1))
            x = self._block(self.decoders[level], x)
        return self.classifier(x.features)


def _events(path: Path, n: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    out = []
    with open_events(path) as events:
        for i in range(min(n, len(events))):
            hits = events.read(i).hits
            sites = event_sites(hits, HitGrid(6), hit_label=hit_labels(hits))
            coords = torch.from_numpy(np.concatenate([np.zeros((sites.n_sites, 1), np.int64), sites.coords], 1))
            out.append((coords, torch.from_numpy(sites.features), torch.from_numpy(sites.label.astype(np.int64))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("events", type=Path)
    parser.add_argument("--events", dest="n_events", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune_cpu_allocator()
    _patch_spconv_cpu()
    torch.manual_seed(0)
    ours = build_model("sparse_unet")
    theirs = SpconvUNet(ours)
    data = _events(args.events, args.n_events)

    # Same function: eval mode (running BN statistics), every event. spconv 2.3.8's CPU kernels give wrong,
    # run-to-run different results with more than one thread (a race): measured at 1 and at --threads.
    ours.eval(), theirs.eval()
    diffs = {}
    with torch.no_grad():
        for threads in sorted({1, args.threads}):
            torch.set_num_threads(threads)
            diffs[f"spconv_{threads}_threads"] = max(float((ours(c, f) - theirs(c, f)).abs().max()) for c, f, _ in data)

    # protoseg with --threads; spconv with 1 thread (its only correct setting) and with --threads (wrong results, timed for reference)
    runs = {"protoseg": (ours, args.threads), "spconv_1_thread": (theirs, 1), f"spconv_{args.threads}_threads": (theirs, args.threads)}
    times: dict[str, dict[str, list[float]]] = {name: {"train": [], "infer": []} for name in runs}
    optimizers = {name: torch.optim.AdamW(net.parameters(), lr=1e-4) for name, (net, _) in runs.items()}
    for rep in range(2):  # the first pass warms the allocator and spconv's kernels; the second is measured
        for coords, features, labels in data:
            for name, (net, threads) in runs.items():
                torch.set_num_threads(threads)
                net.train()
                start = time.perf_counter()
                loss = nn.functional.cross_entropy(net(coords, features), labels)
                optimizers[name].zero_grad()
                loss.backward()
                optimizers[name].step()
                train_s = time.perf_counter() - start
                net.eval()
                with torch.no_grad():
                    start = time.perf_counter()
                    net(coords, features)
                    infer_s = time.perf_counter() - start
                if rep == 1:
                    times[name]["train"].append(train_s)
                    times[name]["infer"].append(infer_s)
    import spconv

    result = {
        "events": str(args.events), "n_events": len(data), "threads": args.threads,
        "sites_per_event_median": int(statistics.median(len(c) for c, _, _ in data)),
        "parameters": sum(p.numel() for p in ours.parameters()),
        "max_abs_output_difference": diffs,
        "torch": torch.__version__, "spconv": spconv.__version__, "machine": platform.processor() or platform.machine(),
        "load_average_at_start": list(__import__("os").getloadavg()),
        "median_s": {name: {k: statistics.median(v) for k, v in t.items()} for name, t in times.items()},
    }
    write_json(RESULTS, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
