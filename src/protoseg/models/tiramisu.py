"""FC-DenseNet ("The One Hundred Layers Tiramisu", Jégou et al. 2017) for event segmentation.

Architecture (variant ``"jegou2017"``, the paper): a first 3×3 conv with ``first_filters`` filters;
down path of dense blocks, each followed by a transition down (BN → ReLU → 1×1 conv → dropout →
2×2 max pool); a bottleneck dense block; up path of transition ups (3×3 transposed conv, stride 2)
whose output is concatenated with the skip connection and fed to a dense block; a 1×1 classifier.
A dense layer is BN → ReLU → 3×3 conv (``growth_rate`` filters) → dropout. Only the new feature
maps of a block go up the decoder (the last block's full output feeds the classifier).

Variant ``"protodune2018"`` (the 2018 ProtoDUNE study, Keras): layer order ReLU → BN → conv, and
the transition down is ReLU → BN → 1×1 conv with stride 2 → dropout (no max pool).

The model takes any H, W: the input is zero-padded at the bottom/right to a multiple of
2**len(down_blocks) and the logits are cropped back, so the output is [N, num_classes, H, W].

Options that tell the network what a ProtoDUNE-SP image is (all off by default, the paper's network):

* ``hit_mask_input``: a plane that is 1 where a pixel holds charge and 0 elsewhere is computed from
  the input and fed to the first convolution with it, so that a faint hit is as visible as a big one.
* ``position_input``: two planes holding each pixel's relative tick and wire position, (i + 0.5) / H
  and (j + 0.5) / W. An image always spans the whole readout (ticks 0-6000, wires 0-1440), so these
  are absolute detector coordinates: the beam enters at a fixed place (wire 0, the trigger tick) and
  a convolutional network cannot otherwise know where it is looking (it is translation invariant).
  Such a model must be trained on whole images (a crop would shift the coordinates).
* ``empty_is_background``: a pixel without charge in any input plane holds no hit, so it is background
  by construction; its logits are set to (0, -1e4, ..., -1e4). Its prediction is then exact, its loss
  and gradient are zero, and all of the network's capacity goes to the few percent of pixels with a hit.

``norm_statistics`` (not an input option, but the same kind of choice): ``"running"`` (default, the
paper's BatchNorm: batch statistics in training, running averages at inference) or ``"per_image"``:
every BN normalises each image with that image's own statistics, in training and at inference
(:class:`~protoseg.models.dense_block.PerImageBatchNorm2d`; same parameters and state_dict). A network
trained with batch 1 has only ever seen per-image statistics; measured on the shipped default
(trained so), per-image statistics at inference raise beam IoU from 0.714 to 0.751 on 167 fresh images.

The derived planes are computed inside the network, so exported TorchScript / ONNX models and the C++ loader
take the same [N, in_channels, H, W] input as before.

Three execution paths share one set of modules (and so one state_dict):

* plain: torchvision-style autograd, a growing ``torch.cat`` per layer (channels-last). Used for
  training when ``memory_efficient=False``, when a gradient is wanted in eval mode, with
  SyncBatchNorm, and whenever the model is scripted, traced, compiled or exported.
* buffered inference (no gradient needed: call it under ``torch.inference_mode()``): each dense
  block preallocates one channels-last buffer [N, C_total, H, W]; layers read the channel prefix and
  write their new maps into their slice, so there is no per-layer concatenation copy; BN → ReLU
  goes into one reused workspace.
* memory-efficient training (``memory_efficient=True``): the same shared buffer, with a hand-written
  backward that recomputes each layer's BN → ReLU output instead of storing it (the idea of
  torchvision's ``memory_efficient`` DenseNet and of Pleiss et al. 2017, "Memory-Efficient
  Implementation of DenseNets"); transitions down are recomputed too (torch.utils.checkpoint). The
  batch statistics of a channel are the same for every layer that reads it, so they are computed
  once, when the channel is written. Outputs, gradients and BN running statistics equal the plain
  path's (tests/test_models.py); it is also the fastest CPU training path (benchmarks/).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from protoseg.errors import InputError
from protoseg.models.dense_block import (NORM_STATISTICS, DenseBlock, PerImageBatchNorm2d, TransitionDown, Workspace,
                                         export_or_compile, norm_class, run_block)

__all__ = ["FCDenseNet", "VARIANTS", "count_parameters", "tune_cpu_allocator"]

VARIANTS = ("jegou2017", "protodune2018")


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process heap instead of returning it to the OS (glibc only).

    PyTorch's CPU tensors come from malloc; glibc serves blocks over a few MB with fresh mmap pages
    and unmaps them on free, so every large temporary costs a page fault per 4 kB when first written.
    For a dense network that is most of a CPU training step (the straightforward FC-DenseNet103 step
    at batch 2 halves in time with this setting; see benchmarks/). The price: the process keeps its
    peak memory until it exits. Process-wide; call it once at program start. Returns True if applied.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


class FCDenseNet(nn.Module):
    """FC-DenseNet; see the module docstring. Build it with ``protoseg.models.build_model``.

    Args: in_channels (image planes), num_classes, down_blocks (layers per down block),
    bottleneck_layers, up_blocks (layers per up block; default reversed down_blocks), growth_rate
    (maps per layer), first_filters (first conv), dropout (probability), variant (see VARIANTS),
    memory_efficient (training path, see module docstring), hit_mask_input, position_input and
    empty_is_background (see the module docstring; class 0 is background), norm_statistics
    ("running" or "per_image", see the module docstring).
    Input [N, in_channels, H, W] float, any H and W; output logits [N, num_classes, H, W].
    """

    __jit_ignored_attributes__ = ["config"]  # a plain JSON dict, not model state

    def __init__(self, in_channels: int = 1, num_classes: int = 3, down_blocks: Sequence[int] = (4, 5, 7, 10, 12),
                 bottleneck_layers: int = 15, up_blocks: Sequence[int] | None = None, growth_rate: int = 16,
                 first_filters: int = 48, dropout: float = 0.2, variant: str = "jegou2017",
                 memory_efficient: bool = False, hit_mask_input: bool = False, position_input: bool = False,
                 empty_is_background: bool = False, norm_statistics: str = "running") -> None:
        super().__init__()
        up_blocks = tuple(reversed(tuple(down_blocks))) if up_blocks is None else tuple(up_blocks)
        down_blocks = tuple(down_blocks)
        if variant not in VARIANTS:
            raise InputError(f"unknown FC-DenseNet variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        if len(down_blocks) == 0 or len(up_blocks) != len(down_blocks):
            raise InputError(f"up_blocks {up_blocks} must have as many entries as down_blocks {down_blocks} (at least one)")
        for value, what in [(in_channels, "in_channels"), (num_classes, "num_classes"), (growth_rate, "growth_rate"),
                            (first_filters, "first_filters"), (bottleneck_layers, "bottleneck_layers"),
                            *[(n, "a block size") for n in down_blocks + up_blocks]]:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{what} must be a positive integer, got {value!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {dropout!r}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.memory_efficient = bool(memory_efficient)
        self.pad_multiple = 2 ** len(down_blocks)
        relu_first = variant == "protodune2018"
        for value, what in [(hit_mask_input, "hit_mask_input"), (position_input, "position_input"),
                            (empty_is_background, "empty_is_background")]:
            if not isinstance(value, bool):
                raise InputError(f"{what} must be true or false, got {value!r}")
        if norm_statistics not in NORM_STATISTICS:
            raise InputError(f"norm_statistics must be one of {', '.join(NORM_STATISTICS)}, got {norm_statistics!r}")
        self.norm_statistics = norm_statistics
        self.per_image_norm = norm_statistics == "per_image"
        norm = norm_class(norm_statistics)
        self.hit_mask_input = hit_mask_input
        self.position_input = position_input
        self.empty_is_background = empty_is_background
        # Logits of a pixel without charge: background certain (a finite margin, so fp16 / bf16 hold it).
        empty_logits = torch.full((num_classes,), -1.0e4)
        empty_logits[0] = 0.0
        self.register_buffer("empty_logits", empty_logits, persistent=False)
        derived = int(hit_mask_input) + 2 * int(position_input)

        self.first_conv = nn.Conv2d(in_channels + derived, first_filters, kernel_size=3, padding=1, bias=True)
        channels = first_filters
        skip_channels = []
        self.down_blocks = nn.ModuleList()
        self.transitions_down = nn.ModuleList()
        for n in down_blocks:
            block = DenseBlock(channels, growth_rate, n, dropout, relu_first, norm)
            channels = block.out_channels
            skip_channels.append(channels)
            self.down_blocks.append(block)
            self.transitions_down.append(TransitionDown(channels, dropout, variant, norm))
        self.bottleneck = DenseBlock(channels, growth_rate, bottleneck_layers, dropout, relu_first, norm)
        new_channels = growth_rate * bottleneck_layers
        self.transitions_up = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for n, skip in zip(up_blocks, reversed(skip_channels)):
            # padding=1, output_padding=1: exactly doubles the size, so no crop is needed.
            self.transitions_up.append(nn.ConvTranspose2d(new_channels, new_channels, kernel_size=3, stride=2,
                                                          padding=1, output_padding=1, bias=True))
            block = DenseBlock(new_channels + skip, growth_rate, n, dropout, relu_first, norm)
            self.up_blocks.append(block)
            new_channels = growth_rate * n
        self.classifier = nn.Conv2d(self.up_blocks[-1].out_channels, num_classes, kernel_size=1, bias=True)

        self.config = {}  # name and options; filled in by protoseg.models.build_model
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")  # he_uniform, as both papers
                nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._forward_plain(x)
        return self._forward_eager(x)

    @torch.jit.unused
    def _forward_eager(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing():
            self._check_input(x)
        if export_or_compile() or not self._buffered_path_supported():
            return self._forward_plain(x)
        if self.per_image_norm and self.training and x.shape[0] > 1:
            # The shared-buffer training path computes batch statistics: per image only for batch 1.
            return self._forward_plain(x)
        if self.training and self.memory_efficient:
            return self._forward_buffered(x)
        if not (torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters()))):
            return self._forward_buffered(x)
        return self._forward_plain(x)

    @torch.jit.unused
    def _buffered_path_supported(self) -> bool:
        """The shared-buffer paths compute plain per-process BN; anything else (SyncBatchNorm under
        DDP, replaced norms) takes the plain path."""
        blocks = [*self.down_blocks, self.bottleneck, *self.up_blocks]
        return all(type(layer.norm) in (nn.BatchNorm2d, PerImageBatchNorm2d) and layer.norm.track_running_stats
                   and layer.norm.momentum is not None for block in blocks for layer in block.layers)

    @torch.jit.unused
    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise InputError(f"{type(self).__name__} expects input [N, {self.in_channels}, H, W] "
                             f"(in_channels={self.in_channels}), got shape {list(x.shape)}")
        if not x.is_floating_point():
            raise InputError(f"{type(self).__name__} expects a floating-point input, got {x.dtype}")

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The input with the derived planes (hit mask, position) appended, as the first conv expects."""
        if not (self.hit_mask_input or self.position_input):
            return x
        planes = [x]
        if self.hit_mask_input:
            planes.append((x.abs().amax(1, keepdim=True) > 0).to(x.dtype))
        if self.position_input:
            n, h, w = x.shape[0], x.shape[2], x.shape[3]
            tick = (torch.arange(h, dtype=x.dtype, device=x.device) + 0.5) / h
            wire = (torch.arange(w, dtype=x.dtype, device=x.device) + 0.5) / w
            planes.append(tick.view(1, 1, h, 1).expand(n, 1, h, w))
            planes.append(wire.view(1, 1, 1, w).expand(n, 1, h, w))
        return torch.cat(planes, 1)

    def _finish(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits of empty pixels set to background (``empty_is_background``); ``x`` is the raw input."""
        if not self.empty_is_background:
            return logits
        has_charge = x.abs().amax(1, keepdim=True) > 0
        return torch.where(has_charge, logits, self.empty_logits.to(logits.dtype).view(1, -1, 1, 1))

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        # Pad by the largest amount ever needed, then slice to the next multiple: constant pad widths
        # and a slice whose end follows the input size trace and export with dynamic H and W.
        m = self.pad_multiple
        h, w = x.shape[2], x.shape[3]
        x = F.pad(x, [0, m - 1, 0, m - 1])
        return x[:, :, : (h + m - 1) // m * m, : (w + m - 1) // m * m]

    def _forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        # channels-last: oneDNN's 3×3 convolutions run ~3× faster on this layout than on NCHW. (A
        # 1-plane input is both layouts at once, so the first conv's output is converted explicitly.)
        out = self.first_conv(self._pad(self._prepare(x))).contiguous(memory_format=torch.channels_last)
        skips: list[torch.Tensor] = []
        for block, down in zip(self.down_blocks, self.transitions_down):
            out = block(out)
            skips.append(out)
            out = down(out)
        out = self.bottleneck(out)[:, self.bottleneck.in_channels:]
        n_up = len(self.up_blocks)
        for i, (up, block) in enumerate(zip(self.transitions_up, self.up_blocks)):
            out = block(torch.cat([up(out), skips[n_up - 1 - i]], 1))
            if i < n_up - 1:
                out = out[:, block.in_channels:]
        return self._finish(self.classifier(out)[:, :, :h, :w].contiguous(), x)

    @torch.jit.unused
    def _forward_buffered(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        m = self.pad_multiple
        raw = x
        x = F.pad(self._prepare(x), [0, -w % m, 0, -h % m])
        # Explicit channels-last strides even for a 1-plane input (where .contiguous() keeps NCHW
        # strides), so oneDNN returns the first conv's output channels-last too.
        x = torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last).copy_(x)
        workspace = Workspace()
        out = self.first_conv(x)
        skips = []
        # Training: a transition down would store its BN, ReLU, conv, dropout and pooling outputs
        # (several times its input); recompute them in backward instead.
        recompute = self.training and torch.is_grad_enabled()
        for block, down in zip(self.down_blocks, self.transitions_down):
            out = run_block(block, [out], workspace)
            skips.append(out)
            out = down.recomputed(out) if recompute else down(out)
        out = run_block(self.bottleneck, [out], workspace)[:, self.bottleneck.in_channels:]
        n_up = len(self.up_blocks)
        for i, (up, block) in enumerate(zip(self.transitions_up, self.up_blocks)):
            # A contiguous channels-last input keeps oneDNN's transposed conv output channels-last.
            upsampled = up(out.contiguous(memory_format=torch.channels_last))
            out = run_block(block, [upsampled, skips[n_up - 1 - i]], workspace)
            if i < n_up - 1:
                out = out[:, block.in_channels:]
        workspace.release()  # backward allocates its own when it needs one
        return self._finish(self.classifier(out)[:, :, :h, :w].contiguous(), raw)


def count_parameters(model: nn.Module, include_bn_statistics: bool = False) -> int:
    """Trainable parameters; with ``include_bn_statistics`` also BN running means and variances."""
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if include_bn_statistics:
        n += sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    return n
