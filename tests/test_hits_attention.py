"""Global attention blocks at the sparse U-Net's coarsest level and after its second- and third-coarsest decoders: their
formula, that they start as the identity, that a batch's events never see each other, the TorchScript
export, and init_from a network without them."""
from __future__ import annotations

import math

import pytest
import torch

from protoseg.config import apply_overrides, load_config
from protoseg.errors import InputError
from protoseg.inference import load_model
from protoseg.models import build_model
from protoseg.models.sparse_unet import GlobalAttention, SparseUNet

from test_hits import _random_sites, assert_torchscript_export_equals_python, tiny_hit_weights

ATTENTION = {"attention_blocks": 2, "attention_heads": 2}


def _perturbed(block: torch.nn.Module, seed: int) -> None:
    """Give zero-initialised layers weights, so that a block does something."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))


def _assert_identity_then_acting_with_events_apart(new: SparseUNet, old: SparseUNet, blocks: torch.nn.Module) -> None:
    """``new`` (``old``'s weights loaded, ``blocks`` still as initialised) equals ``old``; once ``blocks`` get
    weights it differs, and two events run together give what each gives alone."""
    a, b = _random_sites(20, 30, 0.2, seed=2), _random_sites(25, 21, 0.2, seed=3)
    fa, fb = torch.randn(len(a), 5), torch.randn(len(b), 5)
    with torch.no_grad():
        assert torch.equal(new(a, fa), old(a, fa))
        _perturbed(blocks, 4)
        alone_a, alone_b = new(a, fa), new(b, fb)
        assert (alone_a - old(a, fa)).abs().max() > 1e-3  # the blocks now act
        together = new(torch.cat([a, b + torch.tensor([1, 0, 0])]), torch.cat([fa, fb]))
    assert torch.allclose(together[: len(a)], alone_a, atol=1e-5) and torch.allclose(together[len(a):], alone_b, atol=1e-5)


def _assert_init_from_starts_where_it_was(source, overrides: list[str], class_names=("background", "beam", "not-beam")):
    """A module configured by ``overrides`` and initialised from ``source`` (which lacks some attention blocks)
    gives ``source``'s outputs; returns the module."""
    from protoseg.training import HitSegmentationModule, _initialise_from

    module = HitSegmentationModule(apply_overrides(load_config(), [*overrides, f"init_from={source}"]), list(class_names))
    assert _initialise_from(module, str(source)) is True
    coords = _random_sites(30, 30, 0.2, seed=5)
    features = torch.randn(len(coords), 5)
    module.model.eval()
    with torch.no_grad():
        assert torch.equal(module.model(coords, features), load_model(source).eval()(coords, features))
    return module


def test_attention_block_equals_its_formula_per_event():
    torch.manual_seed(0)
    block = GlobalAttention(channels=4, heads=2, stride=8, grid_rows=40, grid_wires=48, frequencies=3).eval()
    _perturbed(block, 1)
    coords = torch.tensor([[0, 1, 2], [0, 3, 5], [0, 4, 0], [1, 2, 2], [1, 0, 5]])
    x = torch.randn(5, 4)
    with torch.no_grad():
        out = block(x, coords)
        # by hand: positions (centre of each site of 8 fine cells, over the 40 x 48 grid), Fourier features
        # with periods 1, 1/2, 1/4 of the grid, one softmax per head over the sites of the same event only
        row = (coords[:, 1].double() + 0.5) * 8 / 40
        wire = (coords[:, 2].double() + 0.5) * 8 / 48
        omega = torch.tensor([math.pi, 2 * math.pi, 4 * math.pi], dtype=torch.float64)
        angles = torch.stack([row, wire], 1)[:, :, None] * omega
        encoding = torch.cat([angles.sin(), angles.cos()], 2).reshape(5, 12)
        d = {name: p.double() for name, p in block.state_dict().items()}
        xd = x.double()
        h = torch.nn.functional.layer_norm(xd, (4,), d["norm_attention.weight"], d["norm_attention.bias"]) + encoding @ d["position.weight"].t() + d["position.bias"]
        qkv = h @ d["qkv.weight"].t() + d["qkv.bias"]
        q, k, v = qkv[:, :4], qkv[:, 4:8], qkv[:, 8:]
        attended = torch.zeros(5, 4, dtype=torch.float64)
        for event in (0, 1):
            rows = (coords[:, 0] == event).nonzero().flatten()
            for head in (0, 1):
                cols = slice(2 * head, 2 * head + 2)
                scores = q[rows, cols] @ k[rows, cols].t() / math.sqrt(2)
                attended[rows, cols] = torch.softmax(scores, 1) @ v[rows, cols]
        y = xd + attended @ d["out.weight"].t() + d["out.bias"]
        hidden = torch.relu(torch.nn.functional.layer_norm(y, (4,), d["norm_feedforward.weight"], d["norm_feedforward.bias"]) @ d["expand.weight"].t() + d["expand.bias"])
        expected = y + hidden @ d["contract.weight"].t() + d["contract.bias"]
    assert torch.allclose(out.double(), expected, atol=1e-5)


def test_new_attention_blocks_are_the_identity_and_events_do_not_interact():
    torch.manual_seed(0)
    plain = SparseUNet(5, 3, channels=(4, 8, 8), reps=1).eval()
    with_attention = SparseUNet(5, 3, channels=(4, 8, 8), reps=1, attention_blocks=2, attention_heads=2, grid_rows=40, grid_wires=40).eval()
    missing, unexpected = with_attention.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(name.startswith("attention.") for name in missing)
    _assert_identity_then_acting_with_events_apart(with_attention, plain, with_attention.attention)


def test_registry_card_and_refusals_with_attention():
    model = build_model("sparse_unet", num_classes=3, channels=[4, 8], reps=1, **ATTENTION)
    assert model.config["attention_blocks"] == 2 and model.config["attention_heads"] == 2 and len(model.attention) == 2
    rebuilt = build_model(**{**model.config, "name": "sparse_unet"})
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    # without attention the card says nothing of it: the cards of the shipped networks stay valid
    assert "attention_blocks" not in build_model("sparse_unet", channels=[4, 8], reps=1).config
    with pytest.raises(InputError, match="attention_heads"):
        build_model("sparse_unet", channels=[4, 8], reps=1, attention_blocks=1, attention_heads=3)


def test_init_from_a_network_without_attention_starts_where_it_was(tmp_path):
    from protoseg.training import HitSegmentationModule, _initialise_from

    source = tiny_hit_weights(tmp_path / "plain")
    module = _assert_init_from_starts_where_it_was(source, ["model.name=sparse_unet", "model.channels=[4, 8]", "model.reps=1",
                                                            "model.attention_blocks=1", "model.attention_heads=2"])
    # other classes cannot be taken on together with new blocks
    with pytest.raises(InputError, match="init_from"):
        _initialise_from(HitSegmentationModule(module.hparams["config"], ["background", "beam"]), str(source))


def test_export_with_attention_equals_python(tmp_path):
    model = load_model(tiny_hit_weights(tmp_path / "run", **ATTENTION))
    assert model.card["architecture"]["options"]["attention_blocks"] == 2
    assert (model.attention[0].out.weight != 0).any()  # the blocks act, so the export must carry them
    assert_torchscript_export_equals_python(model, tmp_path / "hits.pt")


def test_decoder_attention_blocks_start_as_the_identity_see_their_level_and_keep_events_apart():
    torch.manual_seed(0)
    plain = SparseUNet(5, 3, channels=(4, 8, 8), reps=1, attention_blocks=1, attention_heads=2, grid_rows=40, grid_wires=40).eval()
    both = SparseUNet(5, 3, channels=(4, 8, 8), reps=1, attention_blocks=1, attention_heads=2, grid_rows=40, grid_wires=40,
                      decoder_attention_blocks=2).eval()
    _perturbed(plain.attention, 1)
    missing, unexpected = both.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(name.startswith("decoder_attention.") for name in missing)
    # the blocks sit at level 1 of 3 (2 × 2 cells per site), with that level's 8 maps
    assert both.decoder_attention_level == 1 and both.decoder_attention[0].stride == 2 and both.decoder_attention[0].qkv.in_features == 8
    _assert_identity_then_acting_with_events_apart(both, plain, both.decoder_attention)


def test_decoder_attention_card_refusals_init_from_and_export(tmp_path):
    from protoseg.training import HitSegmentationModule, _initialise_from

    model = build_model("sparse_unet", num_classes=3, channels=[4, 8], reps=1, decoder_attention_blocks=1, attention_heads=2)
    assert model.config["decoder_attention_blocks"] == 1 and model.config["attention_blocks"] == 0 and len(model.decoder_attention) == 1
    assert build_model(**{**model.config, "name": "sparse_unet"}).state_dict().keys() == model.state_dict().keys()
    assert "decoder_attention_blocks" not in build_model("sparse_unet", channels=[4, 8], reps=1, **ATTENTION).config
    with pytest.raises(InputError, match="decoder_attention_blocks"):
        build_model("sparse_unet", channels=[6, 8], reps=1, decoder_attention_blocks=1, attention_heads=4)
    with pytest.raises(InputError, match="decoder_attention_blocks"):
        build_model("sparse_unet", channels=[8], reps=1, decoder_attention_blocks=1, attention_heads=2)
    # a network with coarsest-level blocks given decoder blocks too starts where it was
    source = tiny_hit_weights(tmp_path / "coarse", **ATTENTION)
    overrides = ["model.name=sparse_unet", "model.channels=[4, 8]", "model.reps=1", "model.attention_blocks=2",
                 "model.attention_heads=2", "model.decoder_attention_blocks=1"]
    _assert_init_from_starts_where_it_was(source, overrides)
    # but not with its coarsest blocks changed at the same time
    changed = [o.replace("model.attention_blocks=2", "model.attention_blocks=1") for o in overrides] + [f"init_from={source}"]
    with pytest.raises(InputError, match="init_from"):
        _initialise_from(HitSegmentationModule(apply_overrides(load_config(), changed), ["background", "beam", "not-beam"]), str(source))
    exported = load_model(tiny_hit_weights(tmp_path / "run", **ATTENTION, decoder_attention_blocks=1))
    assert (exported.decoder_attention[0].out.weight != 0).any()
    assert_torchscript_export_equals_python(exported, tmp_path / "hits.pt")


def test_fine_decoder_attention_sits_at_the_third_coarsest_level_and_is_added_by_init_from(tmp_path):
    torch.manual_seed(0)
    three_levels = {"channels": (4, 8, 8), "reps": 1, "attention_blocks": 1, "attention_heads": 2, "decoder_attention_blocks": 1}
    plain = SparseUNet(5, 3, grid_rows=40, grid_wires=40, **three_levels).eval()
    fine = SparseUNet(5, 3, grid_rows=40, grid_wires=40, fine_decoder_attention_blocks=1, **three_levels).eval()
    _perturbed(plain.attention, 1)
    _perturbed(plain.decoder_attention, 2)
    missing, unexpected = fine.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(name.startswith("fine_decoder_attention.") for name in missing)
    # level 0 of 3 (one cell per site), with its 4 maps
    assert fine.fine_decoder_attention_level == 0 and fine.fine_decoder_attention[0].stride == 1
    assert fine.fine_decoder_attention[0].qkv.in_features == 4
    _assert_identity_then_acting_with_events_apart(fine, plain, fine.fine_decoder_attention)
    # registry: card option, refusals
    model = build_model("sparse_unet", num_classes=3, channels=[4, 8, 8], reps=1, fine_decoder_attention_blocks=1, attention_heads=2)
    assert model.config["fine_decoder_attention_blocks"] == 1 and len(model.fine_decoder_attention) == 1
    assert "fine_decoder_attention_blocks" not in build_model("sparse_unet", channels=[4, 8, 8], reps=1, **ATTENTION).config
    with pytest.raises(InputError, match="fine_decoder_attention_blocks"):
        build_model("sparse_unet", channels=[4, 8], reps=1, fine_decoder_attention_blocks=1, attention_heads=2)
    with pytest.raises(InputError, match="fine_decoder_attention_blocks"):
        build_model("sparse_unet", channels=[6, 8, 8], reps=1, fine_decoder_attention_blocks=1, attention_heads=4)
    # init_from a network with the two other kinds adds it as the identity; the export equals Python
    options = {"channels": [4, 8, 8], "attention_blocks": 1, "attention_heads": 2, "decoder_attention_blocks": 1}
    source = tiny_hit_weights(tmp_path / "decoder", **options)
    _assert_init_from_starts_where_it_was(source, ["model.name=sparse_unet", "model.reps=1", "model.fine_decoder_attention_blocks=1",
                                                   *[f"model.{k}={v}" for k, v in options.items()]])
    exported = load_model(tiny_hit_weights(tmp_path / "run", **options, fine_decoder_attention_blocks=1))
    assert (exported.fine_decoder_attention[0].out.weight != 0).any()
    assert_torchscript_export_equals_python(exported, tmp_path / "hits.pt")
