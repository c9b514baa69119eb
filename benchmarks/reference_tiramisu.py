"""The straightforward FC-DenseNet the benchmarks compare against.

Written in the style of the widely used PyTorch port of Jégou et al. 2017 (bfortuner/pytorch_tiramisu):
each layer is an ``nn.Sequential`` BN → ReLU → 3×3 conv → Dropout2d, a dense block grows its input
with ``torch.cat`` in a Python loop (one new copy of everything so far per layer), transition up is
a 3×3 stride-2 transposed conv followed by a centre crop, and nothing is done about memory.
Input sizes must be divisible by 2**len(down_blocks). It is a baseline, not part of the package.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ReferenceFCDenseNet", "reference_fcdensenet103"]


class _Layer(nn.Sequential):
    def __init__(self, in_channels: int, growth_rate: int) -> None:
        super().__init__(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, growth_rate, kernel_size=3, padding=1, bias=True),
            nn.Dropout2d(0.2),
        )


class _Block(nn.Module):
    def __init__(self, in_channels: int, growth_rate: int, n_layers: int, upsample: bool = False) -> None:
        super().__init__()
        self.upsample = upsample
        self.layers = nn.ModuleList(_Layer(in_channels + i * growth_rate, growth_rate) for i in range(n_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            new_features = []
            for layer in self.layers:
                out = layer(x)
                x = torch.cat([x, out], 1)
                new_features.append(out)
            return torch.cat(new_features, 1)
        for layer in self.layers:
            out = layer(x)
            x = torch.cat([x, out], 1)
        return x


class _TransitionDown(nn.Sequential):
    def __init__(self, in_channels: int) -> None:
        super().__init__(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, in_channels, kernel_size=1, bias=True),
            nn.Dropout2d(0.2),
            nn.MaxPool2d(2),
        )


class _TransitionUp(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=3, stride=2, bias=True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        h, w = skip.shape[2:]
        top, left = (out.shape[2] - h) // 2, (out.shape[3] - w) // 2
        out = out[:, :, top:top + h, left:left + w]
        return torch.cat([out, skip], 1)


class ReferenceFCDenseNet(nn.Module):
    def __init__(self, in_channels: int = 1, down_blocks=(4, 5, 7, 10, 12), up_blocks=(12, 10, 7, 5, 4),
                 bottleneck_layers: int = 15, growth_rate: int = 16, first_filters: int = 48,
                 num_classes: int = 3) -> None:
        super().__init__()
        self.first_conv = nn.Conv2d(in_channels, first_filters, kernel_size=3, padding=1, bias=True)
        channels = first_filters
        skip_channels = []
        self.down = nn.ModuleList()
        self.trans_down = nn.ModuleList()
        for n in down_blocks:
            self.down.append(_Block(channels, growth_rate, n))
            channels += growth_rate * n
            skip_channels.insert(0, channels)
            self.trans_down.append(_TransitionDown(channels))
        self.bottleneck = _Block(channels, growth_rate, bottleneck_layers, upsample=True)
        prev = growth_rate * bottleneck_layers
        self.trans_up = nn.ModuleList()
        self.up = nn.ModuleList()
        for i, n in enumerate(up_blocks):
            self.trans_up.append(_TransitionUp(prev, prev))
            channels = prev + skip_channels[i]
            last = i == len(up_blocks) - 1
            self.up.append(_Block(channels, growth_rate, n, upsample=not last))
            prev = growth_rate * n
            channels += prev
        self.final_conv = nn.Conv2d(channels, num_classes, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.first_conv(x)
        skips = []
        for block, down in zip(self.down, self.trans_down):
            out = block(out)
            skips.append(out)
            out = down(out)
        out = self.bottleneck(out)
        for up, block in zip(self.trans_up, self.up):
            out = up(out, skips.pop())
            out = block(out)
        return self.final_conv(out)


def reference_fcdensenet103(in_channels: int = 1, num_classes: int = 3) -> ReferenceFCDenseNet:
    return ReferenceFCDenseNet(in_channels=in_channels, num_classes=num_classes)
