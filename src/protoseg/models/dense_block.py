"""The dense block of the FC-DenseNet (protoseg.models.tiramisu) and the transition down: the modules,
and the shared-buffer execution of a block (buffered inference, memory-efficient training) that the
module docstring of protoseg.models.tiramisu describes. All paths use these modules' parameters, so
they share one state_dict."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["NORM_STATISTICS", "DenseBlock", "DenseLayer", "PerImageBatchNorm2d", "TransitionDown", "Workspace", "export_or_compile",
           "norm_class", "run_block"]

NORM_STATISTICS = ("running", "per_image")


class PerImageBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that normalises each image with its own per-channel mean and variance, in training
    and at inference (instance normalisation with BN's affine parameters and state_dict).

    Trained with batch 1, BN normalises every image with its own statistics; at inference it would
    use running averages over roughly the last ten training images instead, a mismatch as large as
    the images differ (their cosmic-ray count does). Jégou et al. 2017 avoided it by using batch
    statistics at test time too. With this module the network computes at inference exactly what it
    computed in training, whatever the batch. The running averages are still updated in training (a
    record only, never used), so a state_dict moves freely between this and nn.BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting() or export_or_compile():
            return self._instance_norm(x)
        return self._forward_eager(x)

    def _instance_norm(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            momentum = 0.1 if self.momentum is None else self.momentum
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
            return F.instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias, True, momentum, self.eps)
        return F.instance_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)

    @torch.jit.unused
    def _forward_eager(self, x: torch.Tensor) -> torch.Tensor:
        # instance_norm returns NCHW whatever its input; on the channels-last maps of this network that
        # made the following max pool ~10x slower and inference 1.5x slower. batch_norm on one image is
        # the same arithmetic and keeps the memory format.
        if x.shape[0] > 1:
            if self.training:
                return self._instance_norm(x)
            return torch.cat([self._forward_eager(x[i:i + 1]) for i in range(x.shape[0])])
        if self.training:
            return super().forward(x)
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


def export_or_compile() -> bool:
    """True while TorchScript, the tracer, torch.compile/export or the ONNX exporter is running."""
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return True
    return bool(torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()
                or getattr(torch.compiler, "is_exporting", lambda: False)())


def norm_class(norm_statistics: str) -> type[nn.BatchNorm2d]:
    """The normalisation module of ``norm_statistics`` (see NORM_STATISTICS)."""
    return PerImageBatchNorm2d if norm_statistics == "per_image" else nn.BatchNorm2d


class DenseLayer(nn.Module):
    """Pre-activation dense layer: BN → ReLU → 3×3 conv → dropout (ReLU → BN first for 2018)."""

    def __init__(self, in_channels: int, growth_rate: int, dropout: float, relu_first: bool,
                 norm: type[nn.BatchNorm2d] = nn.BatchNorm2d) -> None:
        super().__init__()
        self.norm = norm(in_channels)
        self.conv = nn.Conv2d(in_channels, growth_rate, kernel_size=3, padding=1, bias=True)
        self.dropout = dropout
        self.relu_first = relu_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.relu_first:
            x = self.norm(F.relu(x))
        else:
            x = F.relu(self.norm(x))
        return _dropout(self.conv(x), self.dropout, self.training)


def _dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Element-wise dropout, as in both papers. Drawn with ``rand_like`` (3× cheaper on CPU than the
    ``bernoulli_`` of F.dropout), and shared by every path so they draw identical masks."""
    if not training or p == 0.0:
        return x
    return x * (torch.rand_like(x) >= p) * (1.0 / (1.0 - p))


class DenseBlock(nn.Module):
    """``n_layers`` dense layers; returns the input and all new maps concatenated (plain path)."""

    def __init__(self, in_channels: int, growth_rate: int, n_layers: int, dropout: float,
                 relu_first: bool, norm: type[nn.BatchNorm2d] = nn.BatchNorm2d) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.growth_rate = growth_rate
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + i * growth_rate, growth_rate, dropout, relu_first, norm) for i in range(n_layers))

    @property
    def out_channels(self) -> int:
        return self.in_channels + self.growth_rate * len(self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class TransitionDown(nn.Module):
    """BN → ReLU → 1×1 conv → dropout → 2×2 max pool (2018: ReLU → BN → 1×1 conv stride 2 → dropout)."""

    def __init__(self, channels: int, dropout: float, variant: str, norm: type[nn.BatchNorm2d] = nn.BatchNorm2d) -> None:
        super().__init__()
        self.norm = norm(channels)
        self.strided = variant == "protodune2018"
        self.conv = nn.Conv2d(channels, channels, kernel_size=1, stride=2 if self.strided else 1, bias=True)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x, True)

    def run(self, x: torch.Tensor, update_running_stats: bool) -> torch.Tensor:
        """The transition; ``update_running_stats=False`` for a backward-pass recomputation."""
        if self.strided:
            x = self.conv(self._norm(F.relu(x), update_running_stats))
            return _dropout(x, self.dropout, self.training)
        x = _dropout(self.conv(F.relu(self._norm(x, update_running_stats))), self.dropout, self.training)
        return F.max_pool2d(x, 2)

    def _norm(self, x: torch.Tensor, update_running_stats: bool) -> torch.Tensor:
        if update_running_stats or not self.training:
            return self.norm(x)
        # momentum 0 leaves the running statistics exactly as they are (the first run updated them)
        return F.batch_norm(x, self.norm.running_mean, self.norm.running_var, self.norm.weight, self.norm.bias,
                            True, 0.0, self.norm.eps)

    def recomputed(self, x: torch.Tensor) -> torch.Tensor:
        """Training forward that stores nothing but ``x``; backward reruns it (same dropout draws)."""
        calls = [0]

        def run_once_with_stats(inputs: torch.Tensor) -> torch.Tensor:
            calls[0] += 1
            return self.run(inputs, calls[0] == 1)

        return checkpoint(run_once_with_stats, x, use_reentrant=False)


# ---------------------------------------------------------------------- shared-buffer dense block
class Workspace:
    """One reusable flat float buffer for BN → ReLU outputs (fresh multi-MB allocations page-fault)."""

    def __init__(self) -> None:
        self.storage: torch.Tensor | None = None

    def nhwc(self, like: torch.Tensor, channels: int) -> torch.Tensor:
        n, _, h, w = like.shape
        size = n * h * w * channels
        if self.storage is None or self.storage.numel() < size or self.storage.dtype != like.dtype:
            self.storage = torch.empty(size, dtype=like.dtype, device=like.device)
        return self.storage[:size].view(n, h, w, channels).permute(0, 3, 1, 2)

    def release(self) -> None:
        self.storage = None


def run_block(block: DenseBlock, inputs: list[torch.Tensor], workspace: Workspace) -> torch.Tensor:
    """Run ``block`` on the channel concatenation of ``inputs`` with one preallocated buffer."""
    params = [p for layer in block.layers for p in (layer.norm.weight, layer.norm.bias, layer.conv.weight, layer.conv.bias)]
    if block.training:
        return _DenseBlockFunction.apply(block, workspace, len(inputs), *inputs, *params)
    with torch.no_grad():
        buffer = _allocate(block, inputs)
        if len(block.layers) and isinstance(block.layers[0].norm, PerImageBatchNorm2d):
            _forward_layers_per_image(block, buffer, inputs, workspace)
            return buffer
        layer_scales = []
        for layer in block.layers:
            bn = layer.norm
            scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
            layer_scales.append((scale, bn.bias - bn.running_mean * scale))
        _forward_layers(block, buffer, layer_scales, workspace, masks=None)
    return buffer


def _forward_layers_per_image(block: DenseBlock, buffer: torch.Tensor, inputs: list[torch.Tensor],
                              workspace: Workspace) -> None:
    """Inference with per-image statistics: scale/shift [N, C], each image's own (see _channel_statistics)."""
    _, _, record, layer_scales = _channel_statistics(block, buffer, inputs, per_image=True)
    _forward_layers(block, buffer, layer_scales, workspace, masks=None, on_new_channels=record)


def _channel_statistics(block: DenseBlock, buffer: torch.Tensor, inputs: list[torch.Tensor], per_image: bool):
    """Mean and 1/std of every channel of ``buffer`` ([C], or [N, C] ``per_image``), the ``record`` callback
    that fills them as channels are written, and each layer's BN as (scale, shift) functions of the number
    of channels it reads. A channel's statistics are the same for every layer that reads it, so they are
    computed once, when the channel is written; the inputs' channels are recorded here."""
    n = buffer.shape[0]
    shape = (n, block.out_channels) if per_image else (block.out_channels,)
    mean = buffer.new_empty(shape)
    invstd = buffer.new_empty(shape)
    relu_first = block.layers[0].relu_first if len(block.layers) else False
    eps = block.layers[0].norm.eps if len(block.layers) else 1e-5

    def record(start: int, values: torch.Tensor) -> None:
        bn_input = values.clamp_min(0) if relu_first else values
        stop = start + values.shape[1]
        # native_batch_norm's statistics pass is ~4× faster than var_mean on channels-last maps.
        if per_image:
            for i in range(n):
                _, mean[i, start:stop], invstd[i, start:stop] = torch.native_batch_norm(
                    bn_input[i:i + 1], None, None, None, None, True, 0.0, eps)
        else:
            _, mean[start:stop], invstd[start:stop] = torch.native_batch_norm(
                bn_input, None, None, None, None, True, 0.0, eps)

    start = 0
    for tensor in inputs:
        record(start, tensor)
        start += tensor.shape[1]
    layer_scales = []
    for layer in block.layers:
        bn = layer.norm

        def scale_of(c: int, bn=bn) -> torch.Tensor:
            return bn.weight * invstd[..., :c]

        def shift_of(c: int, bn=bn) -> torch.Tensor:
            return bn.bias - mean[..., :c] * bn.weight * invstd[..., :c]

        layer_scales.append((scale_of, shift_of))
    return mean, invstd, record, layer_scales


def _rows(x: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] → [N·H·W, C] (a view when channels-last): per-channel reductions run fastest so."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _allocate(block: DenseBlock, inputs: list[torch.Tensor]) -> torch.Tensor:
    first = inputs[0]
    n, _, h, w = first.shape
    buffer = torch.empty((n, block.out_channels, h, w), dtype=first.dtype, device=first.device,
                         memory_format=torch.channels_last)
    start = 0
    for tensor in inputs:
        buffer[:, start:start + tensor.shape[1]].copy_(tensor)
        start += tensor.shape[1]
    return buffer


def _preactivation(layer: DenseLayer, a: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
                   out: torch.Tensor) -> torch.Tensor:
    """BN (as per-channel scale/shift, [C] or per image [N, C]) and ReLU of the prefix ``a``, written into ``out``."""
    rows = scale.shape[0] if scale.dim() == 2 else 1
    scale, shift = scale.view(rows, -1, 1, 1), shift.view(rows, -1, 1, 1)
    if layer.relu_first:
        torch.clamp_min(a, 0, out=out)
        return torch.addcmul(shift, out, scale, out=out)
    return torch.addcmul(shift, a, scale, out=out).relu_()


def _forward_layers(block: DenseBlock, buffer: torch.Tensor, layer_scales, workspace: Workspace,
                    masks: list[torch.Tensor] | None, on_new_channels=None) -> None:
    channels = block.in_channels
    growth = block.growth_rate
    for layer, (scale, shift) in zip(block.layers, layer_scales):
        if callable(scale):  # batch or per-image statistics: they depend on the channels written so far
            scale, shift = scale(channels), shift(channels)
        h = _preactivation(layer, buffer[:, :channels], scale, shift, workspace.nhwc(buffer, channels))
        y = F.conv2d(h, layer.conv.weight, layer.conv.bias, padding=1)
        if masks is not None and layer.dropout > 0:
            keep = torch.rand_like(y) >= layer.dropout  # the same draws and arithmetic as _dropout
            masks.append(keep)
            y = y * keep * (1.0 / (1.0 - layer.dropout))
        buffer[:, channels:channels + growth].copy_(y)
        if on_new_channels is not None:
            on_new_channels(channels, y)  # y is contiguous: reductions over it are fast
        channels += growth


class _DenseBlockFunction(torch.autograd.Function):
    """Training-mode dense block on one shared buffer; backward recomputes BN → ReLU (see module doc).

    BN in training mode normalises each channel with its batch mean and variance. Those depend only
    on the channel's data, so they are computed once per channel, and each layer's BN is a per-channel
    scale/shift of them. The BN backward of a layer is scale·g plus terms affine in the channel's
    values with per-channel coefficients; those coefficients are summed over layers and applied once.
    """

    @staticmethod
    def forward(ctx, block: DenseBlock, workspace: Workspace, n_inputs: int, *tensors: torch.Tensor) -> torch.Tensor:
        inputs = list(tensors[:n_inputs])
        buffer = _allocate(block, inputs)
        count = buffer.shape[0] * buffer.shape[2] * buffer.shape[3]
        eps = block.layers[0].norm.eps if len(block.layers) else 1e-5
        mean, invstd, record, layer_scales = _channel_statistics(block, buffer, inputs, per_image=False)
        masks: list[torch.Tensor] = []
        _forward_layers(block, buffer, layer_scales, workspace, masks, on_new_channels=record)

        # Running statistics, as nn.BatchNorm2d updates them (unbiased variance).
        with torch.no_grad():
            var_unbiased = invstd.pow(-2).sub_(eps) * (count / max(count - 1, 1))
            c = block.in_channels
            for layer in block.layers:
                bn = layer.norm
                if bn.track_running_stats and bn.running_mean is not None:
                    bn.num_batches_tracked.add_(1)
                    momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
                    bn.running_mean.mul_(1 - momentum).add_(mean[:c], alpha=momentum)
                    bn.running_var.mul_(1 - momentum).add_(var_unbiased[:c], alpha=momentum)
                c += block.growth_rate

        ctx.block, ctx.workspace, ctx.n_inputs = block, workspace, n_inputs
        ctx.input_channels = [t.shape[1] for t in inputs]
        ctx.masks = masks
        ctx.save_for_backward(buffer, mean, invstd)
        return buffer

    @staticmethod
    def backward(ctx, grad_buffer: torch.Tensor):
        block: DenseBlock = ctx.block
        buffer, mean, invstd = ctx.saved_tensors
        growth = block.growth_rate
        total = block.out_channels
        count = buffer.shape[0] * buffer.shape[2] * buffer.shape[3]
        relu_first = block.layers[0].relu_first if len(block.layers) else False
        grad = grad_buffer.contiguous(memory_format=torch.channels_last).clone(memory_format=torch.channels_last)
        # Deferred per-channel BN-backward terms: grad_bn_input += coef_const + coef_linear * bn_input.
        coef_const = buffer.new_zeros(total)
        coef_linear = buffer.new_zeros(total)
        ones = buffer.new_ones(count)

        def finalize(start: int, stop: int) -> None:
            values = buffer[:, start:stop]
            bn_input = values.clamp_min(0) if relu_first else values
            extra = torch.addcmul(coef_const[start:stop].view(1, -1, 1, 1), bn_input,
                                  coef_linear[start:stop].view(1, -1, 1, 1))
            if relu_first:
                extra.mul_(values > 0)
            grad[:, start:stop].add_(extra)

        param_grads: list[torch.Tensor | None] = []
        masks = list(ctx.masks)
        channels = total
        for layer in reversed(block.layers):
            channels -= growth
            bn, conv = layer.norm, layer.conv
            finalize(channels, channels + growth)
            grad_y = grad[:, channels:channels + growth]
            if layer.dropout > 0:
                grad_y = grad_y * (1.0 / (1.0 - layer.dropout)) * masks.pop()
            grad_y = grad_y.contiguous(memory_format=torch.channels_last)
            scale = bn.weight * invstd[:channels]
            shift = bn.bias - mean[:channels] * scale
            a = buffer[:, :channels]
            h = _preactivation(layer, a, scale, shift, ctx.workspace.nhwc(buffer, channels))
            grad_h, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad_y, h, conv.weight, [growth], [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, True, True])
            if relu_first:
                bn_input = torch.clamp_min(a, 0, out=h)  # h is no longer needed
                grad_z = grad_h
            else:
                bn_input = a
                grad_z = torch.ops.aten.threshold_backward.grad_input(grad_h, h, 0, grad_input=grad_h)
            # Per-channel sums as ones·[pixels × channels] products (GEMV beats sum(dim=0) ~3×).
            sum_gz = ones @ _rows(grad_z)
            sum_gz_x = ones @ _rows(torch.mul(grad_z, bn_input, out=h))  # h's memory is free now
            mu, istd = mean[:channels], invstd[:channels]
            grad_gamma = istd * (sum_gz_x - mu * sum_gz)
            grad_beta = sum_gz
            # d(bn_input) = scale·gz − scale/M·(Σgz) − scale·istd/M·grad_gamma·(bn_input − mu)
            k = scale * istd * grad_gamma / count
            coef_linear[:channels] -= k
            coef_const[:channels] += k * mu - scale * sum_gz / count
            if relu_first:
                grad[:, :channels].add_(grad_z.mul_(scale.view(1, -1, 1, 1)).mul_(a > 0))
            else:
                grad[:, :channels].addcmul_(grad_z, scale.view(1, -1, 1, 1))
            param_grads.append((grad_gamma, grad_beta, grad_w, grad_b))
        finalize(0, block.in_channels)

        flat: list[torch.Tensor | None] = []
        for grads in reversed(param_grads):
            flat.extend(grads)
        input_grads = []
        start = 0
        for c in ctx.input_channels:
            input_grads.append(grad[:, start:start + c])
            start += c
        return (None, None, None, *input_grads, *flat)
