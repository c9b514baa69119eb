"""A submanifold sparse U-Net over the hits of an event, in plain PyTorch (no sparse library).

An event is a set of active sites (``protoseg.hits.sites``): ~18 k of the 1.44 M cells of the
1000-row × 1440-wire grid. A *submanifold* convolution (Graham & van der Maaten 2017, the layer of
SparseConvNet, MinkowskiEngine, spconv and SPINE's U-ResNet) computes outputs only at the active sites
and reads only active neighbours, so the network spends its arithmetic on hits, not on empty
pixels, and never grows the active set. Here it is written with gathers and matrix products:

* ``SubmanifoldConv``: 3×3. The 9 neighbours of each site are looked up once per level in a dense
  index grid (the "rulebook"), gathered into [S, 9·C] and multiplied by the [9·C, C'] weight.
* ``DownConv``: 2×2, stride 2. A coarse site exists where any of its 4 fine sites is active; its
  input is the [4·C] gather of those children (absent ones read zero).
* ``UpConv``: the transpose, back onto exactly the fine sites of the level above.

Optionally (``attention_blocks``), :class:`GlobalAttention` blocks at the coarsest level let every coarse
site of an event attend to every other (~260 sites of ~30 cm × 30 cm per event), so that a hit's class
can depend on the whole event (where the beam interaction is, where its far hadronic descendants went)
and not only on the convolutions' receptive field. They start as the identity, so that a trained network
can take them on and be fine-tuned.

Everything, rulebooks included, is tensor operations in ``forward``, so the same module runs on CPU
and GPU, trains with autograd, and exports to TorchScript for LArSoft (``protoseg export``).
spconv 2.3's CPU submanifold convolution, the alternative the issue measured, was compared at equal
architecture in ``benchmarks/bench_sparse.py``.

Input: ``coords`` int64 [S, 3] (event index in the batch, row, wire) and ``features`` float32 [S, F];
output: logits [S, num_classes].
"""

from typing import List, Tuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["SparseUNet", "SubmanifoldConv", "DownConv", "UpConv", "GlobalAttention", "build_rulebooks"]


def _neighbour_table(coords: torch.Tensor, n_batch: int, height: int, width: int) -> torch.Tensor:
    """Index of each site's 3×3 neighbours, int64 [S, 9] (S where the neighbour is not active).

    A dense grid padded by one cell holds each active site's index; neighbours are read at fixed offsets.
    """
    n_sites = coords.shape[0]
    padded_w = width + 2
    padded_hw = (height + 2) * padded_w
    grid = torch.full((n_batch * padded_hw,), n_sites, dtype=torch.long, device=coords.device)
    key = coords[:, 0] * padded_hw + (coords[:, 1] + 1) * padded_w + (coords[:, 2] + 1)
    grid[key] = torch.arange(n_sites, device=coords.device)
    rows = torch.tensor([-1, -1, -1, 0, 0, 0, 1, 1, 1], device=coords.device)
    cols = torch.tensor([-1, 0, 1, -1, 0, 1, -1, 0, 1], device=coords.device)
    offsets = rows * padded_w + cols
    return grid[key[:, None] + offsets[None, :]]


def _coarsen(coords: torch.Tensor, n_batch: int, height: int, width: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 2×2 coarser level: its coords [S', 3], each fine site's parent [S] and place in the parent (0..3) [S]."""
    coarse_h = (height + 1) // 2
    coarse_w = (width + 1) // 2
    key = (coords[:, 0] * coarse_h + coords[:, 1] // 2) * coarse_w + coords[:, 2] // 2
    unique_keys, parent = torch.unique(key, sorted=True, return_inverse=True)
    coarse = torch.stack([unique_keys // (coarse_h * coarse_w), (unique_keys // coarse_w) % coarse_h, unique_keys % coarse_w], dim=1)
    place = (coords[:, 1] % 2) * 2 + coords[:, 2] % 2
    return coarse, parent, place


def build_rulebooks(coords: torch.Tensor, levels: int) -> Tuple[List[torch.Tensor], List[torch.Tensor], List[torch.Tensor], List[torch.Tensor]]:
    """Per level: the 3×3 neighbour table; per level change: the child table [S', 4] and each fine site's
    slot ``parent·4 + place`` in it; per level: the coordinates of its sites (finest first, the input's).
    Coordinates are (batch, row, wire), non-negative."""
    n_batch = int(coords[:, 0].max()) + 1 if coords.shape[0] > 0 else 1
    height = int(coords[:, 1].max()) + 1 if coords.shape[0] > 0 else 1
    width = int(coords[:, 2].max()) + 1 if coords.shape[0] > 0 else 1
    neighbours: List[torch.Tensor] = []
    children: List[torch.Tensor] = []
    slots: List[torch.Tensor] = []
    level_coords: List[torch.Tensor] = [coords]
    for level in range(levels):
        neighbours.append(_neighbour_table(coords, n_batch, height, width))
        if level == levels - 1:
            break
        coarse, parent, place = _coarsen(coords, n_batch, height, width)
        slot = parent * 4 + place
        table = torch.full((coarse.shape[0] * 4,), coords.shape[0], dtype=torch.long, device=coords.device)
        table[slot] = torch.arange(coords.shape[0], device=coords.device)
        children.append(table.view(-1, 4))
        slots.append(slot)
        coords = coarse
        level_coords.append(coarse)
        height = (height + 1) // 2
        width = (width + 1) // 2
    return neighbours, children, slots, level_coords


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` [S, K] of ``x`` [N, C] with row N reading zero: [S, K·C]."""
    padded = torch.cat([x, x.new_zeros(1, x.shape[1])], dim=0)
    return torch.index_select(padded, 0, index.reshape(-1)).reshape(index.shape[0], -1)


# Backward passes written as gathers. Autograd's backward of a gather is a scatter-add (index_add), which
# is serial per row on the CPU; each of these convolutions has a transpose that is itself a gather:
# site j is site i's neighbour at offset k exactly when i is j's neighbour at the mirrored offset 8 - k,
# and a stride-2 convolution and its transpose swap the child table and the slots. The gathered input of
# a convolution is not stored for backward but gathered again (9x less memory for the 3x3 ones).

class _SubmanifoldFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, neighbours):
        ctx.save_for_backward(x, weight, neighbours)
        return _gather(x, neighbours) @ weight

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, neighbours = ctx.saved_tensors
        cin, cout = x.shape[1], weight.shape[1]
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            mirrored = weight.view(9, cin, cout).flip(0).transpose(1, 2).reshape(9 * cout, cin)
            grad_x = _gather(grad_out, neighbours) @ mirrored
        if ctx.needs_input_grad[1]:
            grad_weight = _gather(x, neighbours).t() @ grad_out
        return grad_x, grad_weight, None


class _DownFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, children, slots):
        ctx.save_for_backward(x, weight, children, slots)
        return _gather(x, children) @ weight

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, children, slots = ctx.saved_tensors
        cin, cout = x.shape[1], weight.shape[1]
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            # each fine site's gradient comes from its parent, through the weight of its place
            per_place = grad_out @ weight.view(4, cin, cout).permute(2, 0, 1).reshape(cout, 4 * cin)
            grad_x = torch.index_select(per_place.view(-1, cin), 0, slots)
        if ctx.needs_input_grad[1]:
            grad_weight = _gather(x, children).t() @ grad_out
        return grad_x, grad_weight, None, None


class _UpFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, children, slots):
        ctx.save_for_backward(x, weight, children)
        return torch.index_select((x @ weight).view(x.shape[0] * 4, -1), 0, slots)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, children = ctx.saved_tensors
        grad_spread = _gather(grad_out, children)  # [parents, 4 · out]: absent children read zero
        grad_x = grad_spread @ weight.t() if ctx.needs_input_grad[0] else None
        grad_weight = x.t() @ grad_spread if ctx.needs_input_grad[1] else None
        return grad_x, grad_weight, None, None


class SubmanifoldConv(nn.Module):
    """3×3 submanifold convolution without bias (a BatchNorm follows): outputs only at the input sites."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(9 * in_channels, out_channels))
        nn.init.kaiming_normal_(self.weight.view(9, in_channels, out_channels).permute(2, 1, 0), nonlinearity="relu")

    def forward(self, x: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and torch.is_grad_enabled():
            return self._differentiable(x, neighbours)
        return _gather(x, neighbours) @ self.weight

    @torch.jit.unused
    def _differentiable(self, x: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        return _SubmanifoldFunction.apply(x, self.weight, neighbours)


class DownConv(nn.Module):
    """2×2 stride-2 convolution onto the coarser level's sites (any active child makes a coarse site)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(4 * in_channels, out_channels))
        nn.init.kaiming_normal_(self.weight.view(4, in_channels, out_channels).permute(2, 1, 0), nonlinearity="relu")

    def forward(self, x: torch.Tensor, children: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and torch.is_grad_enabled():
            return self._differentiable(x, children, slots)
        return _gather(x, children) @ self.weight

    @torch.jit.unused
    def _differentiable(self, x: torch.Tensor, children: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        return _DownFunction.apply(x, self.weight, children, slots)


class UpConv(nn.Module):
    """Transpose of :class:`DownConv`: each fine site receives its parent's features through the weight of its place."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.weight = nn.Parameter(torch.empty(in_channels, 4 * out_channels))
        nn.init.kaiming_normal_(self.weight.view(in_channels, 4, out_channels).permute(2, 0, 1), nonlinearity="relu")

    def forward(self, x: torch.Tensor, children: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and torch.is_grad_enabled():
            return self._differentiable(x, children, slots)
        return torch.index_select((x @ self.weight).view(-1, self.out_channels), 0, slots)

    @torch.jit.unused
    def _differentiable(self, x: torch.Tensor, children: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        return _UpFunction.apply(x, self.weight, children, slots)


class _ConvBlock(nn.Module):
    """``reps`` × (submanifold conv → BatchNorm → ReLU) with a residual connection around the block."""

    def __init__(self, in_channels: int, out_channels: int, reps: int, recompute: bool = False) -> None:
        super().__init__()
        self.recompute = recompute
        self.convs = nn.ModuleList([SubmanifoldConv(in_channels if i == 0 else out_channels, out_channels) for i in range(reps)])
        self.norms = nn.ModuleList([nn.BatchNorm1d(out_channels) for _ in range(reps)])
        self.project = nn.Linear(in_channels, out_channels, bias=False) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        if self.recompute and self.training:
            return self._recomputed(x, neighbours)
        return self._run(x, neighbours)

    @torch.jit.unused
    def _recomputed(self, x: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        return checkpoint(self._run, x, neighbours, use_reentrant=False)

    def _run(self, x: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        shortcut = self.project(x)
        for conv, norm in zip(self.convs, self.norms):
            x = torch.relu(norm(conv(x, neighbours)))
        return x + shortcut


class _Resample(nn.Module):
    """A down or up convolution followed by BatchNorm and ReLU."""

    def __init__(self, conv: nn.Module, channels: int) -> None:
        super().__init__()
        self.conv = conv
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor, children: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(x, children, slots)))


class GlobalAttention(nn.Module):
    """A pre-norm transformer block over the sites of one level: each site attends to every site of its
    own event (a batch's events never see each other), then a 2× feed-forward layer; both residual.

    Where a site is enters through Fourier features of its (row, wire) on the full grid (``grid_rows`` ×
    ``grid_wires`` fine cells; ``stride`` fine cells per site of this level). The two output layers start at
    zero: a new block is the identity, so it can be added to a trained network and fine-tuned.
    """

    def __init__(self, channels: int, heads: int, stride: int, grid_rows: int, grid_wires: int, frequencies: int = 6) -> None:
        super().__init__()
        if heads < 1 or channels % heads != 0:
            raise ValueError(f"attention heads ({heads}) must divide the level's maps ({channels})")
        self.heads = int(heads)
        self.stride = int(stride)
        self.grid_rows = int(grid_rows)
        self.grid_wires = int(grid_wires)
        # 1, 2, 4, ... periods over the grid: the finest resolves a 64th of it, about one coarse site
        self.register_buffer("angular_frequencies", torch.pi * 2.0 ** torch.arange(frequencies, dtype=torch.float32), persistent=False)
        self.norm_attention = nn.LayerNorm(channels)
        self.position = nn.Linear(4 * frequencies, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)
        self.norm_feedforward = nn.LayerNorm(channels)
        self.expand = nn.Linear(channels, 2 * channels)
        self.contract = nn.Linear(2 * channels, channels)
        for layer in (self.out, self.contract):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        n_sites, channels = x.shape
        # centre of each site on the full grid, in [0, 1]
        row = (coords[:, 1].to(torch.float32) + 0.5) * self.stride / self.grid_rows
        wire = (coords[:, 2].to(torch.float32) + 0.5) * self.stride / self.grid_wires
        angles = torch.stack([row, wire], dim=1)[:, :, None] * self.angular_frequencies
        encoding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=2).reshape(n_sites, -1)
        h = self.norm_attention(x) + self.position(encoding)
        q, k, v = self.qkv(h).view(n_sites, 3, self.heads, channels // self.heads).permute(1, 2, 0, 3).unbind(0)
        same_event = coords[:, 0][:, None] == coords[:, 0][None, :]
        attended = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=same_event)
        x = x + self.out(attended.transpose(0, 1).reshape(n_sites, channels))
        return x + self.contract(torch.relu(self.expand(self.norm_feedforward(x))))


class SparseUNet(nn.Module):
    """Submanifold sparse U-Net: ``len(channels)`` levels, each halving the grid, with skip connections.

    Args:
        in_features: site features (``protoseg.hits.sites.FEATURES``). num_classes: output classes.
        channels: feature maps per level, finest first (e.g. 16, 32, ..., 112: seven levels).
        reps: convolutions per block (one block per level on the way down, one on the way up).
        memory_efficient: in training, recompute each block's convolutions in backward instead of storing
            their gathered inputs (torch.utils.checkpoint): less memory for events with many hits, same gradients.
        attention_blocks: :class:`GlobalAttention` blocks after the coarsest level's convolutions (0: none),
            with ``attention_heads`` heads; ``grid_rows`` × ``grid_wires`` is the full grid (for their positions).
        decoder_attention_blocks: :class:`GlobalAttention` blocks after the decoder of the second-coarsest
            level (sites of 32 × 32 cells, ~15 cm at the default grid; 0: none), with ``attention_heads`` heads:
            where the coarsest blocks see the event in ~30 cm squares that mix tracks, these see it at half that.
        fine_decoder_attention_blocks: the same after the decoder of the third-coarsest level (sites of 16 × 16
            cells, ~7.7 cm; ~1500 per event at the default grid; 0: none).
    """

    def __init__(self, in_features: int, num_classes: int, channels: Tuple[int, ...] = (16, 32, 48, 64, 80, 96, 112),
                 reps: int = 2, memory_efficient: bool = False, attention_blocks: int = 0, attention_heads: int = 4,
                 grid_rows: int = 1000, grid_wires: int = 1440, decoder_attention_blocks: int = 0,
                 fine_decoder_attention_blocks: int = 0) -> None:
        super().__init__()
        self.memory_efficient = bool(memory_efficient)
        if len(channels) < 1 or any(c < 1 for c in channels) or reps < 1 or in_features < 1 or num_classes < 1:
            raise ValueError(f"sparse U-Net needs >= 1 level of positive channels and reps >= 1; got channels={channels}, reps={reps}")
        self.levels = len(channels)
        self.stem = nn.Linear(in_features, channels[0], bias=False)
        self.stem_norm = nn.BatchNorm1d(channels[0])
        self.encoders = nn.ModuleList([_ConvBlock(channels[i], channels[i], reps, memory_efficient) for i in range(self.levels)])
        self.downs = nn.ModuleList([_Resample(DownConv(channels[i], channels[i + 1]), channels[i + 1]) for i in range(self.levels - 1)])
        self.ups = nn.ModuleList([_Resample(UpConv(channels[i + 1], channels[i]), channels[i]) for i in range(self.levels - 1)])
        self.decoders = nn.ModuleList([_ConvBlock(2 * channels[i], channels[i], reps, memory_efficient) for i in range(self.levels - 1)])
        self.classifier = nn.Linear(channels[0], num_classes)

        # GlobalAttention blocks at one level: each site there is 2**level fine cells on a side
        def blocks_at(level: int, count: int, option: str, min_levels: int) -> nn.ModuleList:
            if count < 0 or (count and self.levels < min_levels):
                raise ValueError(f"{option} must be >= 0, and needs >= {min_levels} levels; got {count}")
            return nn.ModuleList([GlobalAttention(channels[level], attention_heads, 2 ** level, grid_rows, grid_wires) for _ in range(count)])

        self.attention = blocks_at(self.levels - 1, attention_blocks, "attention_blocks", 1)
        self.decoder_attention_level = max(self.levels - 2, 0)
        self.decoder_attention = blocks_at(self.decoder_attention_level, decoder_attention_blocks, "decoder_attention_blocks", 2)
        self.fine_decoder_attention_level = max(self.levels - 3, 0)
        self.fine_decoder_attention = blocks_at(self.fine_decoder_attention_level, fine_decoder_attention_blocks,
                                                "fine_decoder_attention_blocks", 3)

    def forward(self, coords: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        neighbours, children, slots, level_coords = build_rulebooks(coords, self.levels)
        x = torch.relu(self.stem_norm(self.stem(features)))
        skips: List[torch.Tensor] = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x, neighbours[level])
            if level == self.levels - 1:
                for block in self.attention:
                    x = block(x, level_coords[level])
            else:
                skips.append(x)
                for i, down in enumerate(self.downs):  # TorchScript indexes a ModuleList only in a loop
                    if i == level:
                        x = down(x, children[level], slots[level])
        for level in range(self.levels - 2, -1, -1):
            for i, up in enumerate(self.ups):
                if i == level:
                    x = up(x, children[level], slots[level])
            for i, decoder in enumerate(self.decoders):
                if i == level:
                    x = decoder(torch.cat([skips[level], x], dim=1), neighbours[level])
            if level == self.decoder_attention_level:
                for block in self.decoder_attention:
                    x = block(x, level_coords[level])
            if level == self.fine_decoder_attention_level:
                for block in self.fine_decoder_attention:
                    x = block(x, level_coords[level])
        return self.classifier(x)


