"""Model registry: every network protoseg can build, by name, with the options that rebuild it.

A model's ``.config`` is a JSON-serialisable dict holding its name and every option, so
``build_model(**model.config)`` (or ``build_model(config["name"], **rest)``) rebuilds it exactly;
run folders and exported model cards store that dict.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from protoseg.errors import InputError

__all__ = ["ModelSpec", "build_model", "is_hit_model", "list_models", "model_spec"]


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture: fixed options that define it, defaults for the rest."""

    name: str
    description: str
    fixed: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    # "image": dense networks over [N, 1, H, W] images; "hits": sparse networks over the sites of an
    # event's hits (coords [S, 3], features [S, F]; protoseg.hits), trained on events files.
    kind: str = "image"


# Off by default: the paper's network. See protoseg.models.tiramisu for what each does.
# norm_statistics "running" is the paper's BatchNorm; "per_image" normalises each image by itself.
_SITE_FEATURES = ("log_charge", "rms", "tick_in_row", "wire", "tick")  # protoseg.hits.sites.DEFAULT_FEATURES
_INPUT_OPTIONS = {"hit_mask_input": False, "position_input": False, "empty_is_background": False,
                  "norm_statistics": "running"}
_TIRAMISU_DEFAULTS = {"up_blocks": None, "first_filters": 48, "dropout": 0.2, "variant": "jegou2017", **_INPUT_OPTIONS}

_REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec("fcdensenet56", "FC-DenseNet56 (Jégou et al. 2017): 4 layers per block, growth 12",
                  fixed={"down_blocks": (4, 4, 4, 4, 4), "bottleneck_layers": 4, "up_blocks": (4, 4, 4, 4, 4),
                         "growth_rate": 12},
                  defaults={"first_filters": 48, "dropout": 0.2, "variant": "jegou2017", **_INPUT_OPTIONS}),
        ModelSpec("fcdensenet67", "FC-DenseNet67 (Jégou et al. 2017): 5 layers per block, growth 16",
                  fixed={"down_blocks": (5, 5, 5, 5, 5), "bottleneck_layers": 5, "up_blocks": (5, 5, 5, 5, 5),
                         "growth_rate": 16},
                  defaults={"first_filters": 48, "dropout": 0.2, "variant": "jegou2017", **_INPUT_OPTIONS}),
        ModelSpec("fcdensenet103", "FC-DenseNet103 (Jégou et al. 2017): 4,5,7,10,12 | 15 | 12,10,7,5,4, growth 16",
                  fixed={"down_blocks": (4, 5, 7, 10, 12), "bottleneck_layers": 15, "up_blocks": (12, 10, 7, 5, 4),
                         "growth_rate": 16},
                  defaults={"first_filters": 48, "dropout": 0.2, "variant": "jegou2017", **_INPUT_OPTIONS}),
        ModelSpec("fcdensenet", "general FC-DenseNet: give down_blocks and bottleneck_layers",
                  defaults={**_TIRAMISU_DEFAULTS, "growth_rate": 16}, required=("down_blocks", "bottleneck_layers")),
        ModelSpec("sparse_unet", "submanifold sparse U-Net over the hits at full resolution (protoseg.models.sparse_unet)",
                  defaults={"channels": (16, 32, 48, 64, 80, 96, 112), "reps": 2, "features": list(_SITE_FEATURES),
                            "ticks_per_row": 6, "attention_blocks": 0, "attention_heads": 4,
                            "decoder_attention_blocks": 0, "fine_decoder_attention_blocks": 0},
                  kind="hits"),
    ]
}


def list_models() -> list[str]:
    """Names accepted by ``build_model``, sorted."""
    return sorted(_REGISTRY)


def model_spec(name: str) -> ModelSpec:
    """The registered spec of ``name``; InputError naming the known models otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def _normalise(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [v if isinstance(v, str) else int(v) for v in value]
    return value


def is_hit_model(name: str) -> bool:
    """Whether the registered network ``name`` works on hits (sites of events files) rather than images."""
    return model_spec(name).kind == "hits"


def _build_sparse(spec: ModelSpec, in_channels: int, num_classes: int, memory_efficient: bool, resolved: dict[str, Any]) -> nn.Module:
    from protoseg.hits.sites import HitGrid, check_features
    from protoseg.models.sparse_unet import SparseUNet

    features = check_features(resolved["features"])
    if in_channels not in (1, len(features)):
        raise InputError(f"model {spec.name!r} reads {len(features)} site features ({', '.join(features)}); in_channels={in_channels} does not match")
    channels = tuple(int(c) for c in resolved["channels"])
    attention_blocks, attention_heads = int(resolved["attention_blocks"]), int(resolved["attention_heads"])
    if attention_blocks < 0 or attention_heads < 1 or channels[-1] % attention_heads:
        raise InputError(f"model {spec.name!r}: attention_blocks must be >= 0 and attention_heads divide the coarsest "
                         f"level's {channels[-1]} maps; got {attention_blocks} and {attention_heads}")
    # blocks after the decoder of the n-th coarsest level
    decoder_blocks = {}
    for option, nth, which in (("decoder_attention_blocks", 2, "second"), ("fine_decoder_attention_blocks", 3, "third")):
        count = decoder_blocks[option] = int(resolved[option])
        if count and (count < 0 or len(channels) < nth or channels[-nth] % attention_heads):
            raise InputError(f"model {spec.name!r}: {option} must be >= 0, needs >= {nth} levels, and attention_heads must divide "
                             f"the {which}-coarsest level's maps; got {count}, channels {list(channels)}, {attention_heads} heads")
    grid = HitGrid(int(resolved["ticks_per_row"]))  # refuses an impossible grid
    model = SparseUNet(len(features), num_classes, channels, int(resolved["reps"]), memory_efficient=memory_efficient,
                       attention_blocks=attention_blocks, attention_heads=attention_heads, grid_rows=grid.n_rows, grid_wires=grid.n_wires,
                       **decoder_blocks)
    model.config = {"name": spec.name, "in_channels": len(features), "num_classes": int(num_classes),
                    "memory_efficient": bool(memory_efficient), "channels": list(channels), "reps": int(resolved["reps"]),
                    "features": list(features), "ticks_per_row": int(resolved["ticks_per_row"])}
    if attention_blocks or any(decoder_blocks.values()):  # absent when 0: the cards of networks without attention stay as they were
        model.config.update(attention_blocks=attention_blocks, attention_heads=attention_heads)
    model.config.update({option: count for option, count in decoder_blocks.items() if count})
    return model


def build_model(name: str, in_channels: int = 1, num_classes: int = 3, memory_efficient: bool = False,
                **options: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: one of ``list_models()``: "fcdensenet56", "fcdensenet67", "fcdensenet103", the
            general "fcdensenet", or the hit-level "sparse_unet" (options channels, reps, features,
            ticks_per_row; in_channels is the number of features).
        in_channels: input planes (1 for an ADC image). num_classes: output classes (3 for beam3).
        memory_efficient: train with the shared-buffer path that recomputes BN → ReLU in backward
            (same outputs and gradients, a fraction of the memory; also the fastest CPU training path).
        options: FC-DenseNet options: down_blocks (layers per down block), bottleneck_layers,
            up_blocks (default reversed down_blocks), growth_rate (maps per layer, default 16),
            first_filters (default 48), dropout (default 0.2), variant ("jegou2017" default, or
            "protodune2018"), hit_mask_input, position_input, empty_is_background (default false:
            derived input planes and exact background for empty pixels, see protoseg.models.tiramisu),
            norm_statistics ("running", default, or "per_image": each image normalised by its own statistics). The named models fix down_blocks, bottleneck_layers, up_blocks and
            growth_rate; passing them again is accepted only with the same values.

    Returns the model; ``model.config`` holds ``name`` and every option (JSON-serialisable).
    """
    from protoseg.models.tiramisu import FCDenseNet

    spec = model_spec(name)
    unknown = set(options) - set(spec.fixed) - set(spec.defaults) - set(spec.required)
    if unknown:
        raise InputError(f"model {name!r} has no option(s) {', '.join(sorted(unknown))}; "
                         f"options: {', '.join(sorted({*spec.fixed, *spec.defaults, *spec.required}))}")
    missing = [key for key in spec.required if key not in options]
    if missing:
        raise InputError(f"model {name!r} needs option(s) {', '.join(missing)}")
    for key, value in spec.fixed.items():
        if key in options and _normalise(options[key]) != _normalise(value):
            raise InputError(f"model {name!r} fixes {key}={list(value) if isinstance(value, tuple) else value}; "
                             f"got {options[key]!r} (use the general 'fcdensenet' for other shapes)")
    resolved = {**spec.defaults, **spec.fixed, **options}
    if spec.kind == "hits":
        try:
            return _build_sparse(spec, int(in_channels), int(num_classes), bool(memory_efficient), resolved)
        except (TypeError, ValueError) as exc:
            raise InputError(f"cannot build {name!r}: {exc}") from None
    if resolved.get("up_blocks") is None:
        resolved["up_blocks"] = tuple(reversed(tuple(resolved["down_blocks"])))
    resolved = {key: _normalise(value) for key, value in resolved.items()}
    model = FCDenseNet(in_channels=in_channels, num_classes=num_classes, memory_efficient=memory_efficient,
                       **{key: tuple(v) if isinstance(v, list) else v for key, v in resolved.items()})
    model.config = {"name": name, "in_channels": int(in_channels), "num_classes": int(num_classes),
                    "memory_efficient": bool(memory_efficient), **resolved}
    return model
