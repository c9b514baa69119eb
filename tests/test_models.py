"""FC-DenseNet family: registry, parameter counts, any input size, the three execution paths, export."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from protoseg.errors import InputError
from protoseg.models import build_model, count_parameters, list_models


def tiny(**options):
    base = dict(down_blocks=(2, 3), bottleneck_layers=2, growth_rate=4, first_filters=8)
    return build_model("fcdensenet", **{**base, **options})


def test_registry_lists_the_paper_models():
    assert {"fcdensenet56", "fcdensenet67", "fcdensenet103", "fcdensenet"} <= set(list_models())
    with pytest.raises(InputError, match="known models"):
        build_model("unet")


# Jégou et al. 2017, Table 2 (CamVid: 3 input planes, 11 classes): 103 → 9.4 M, 67 → 3.5 M, 56 → 1.5 M.
@pytest.mark.parametrize("name,trainable_millions,with_bn_millions", [
    ("fcdensenet103", 9.32, 9.43), ("fcdensenet67", 3.46, 3.50), ("fcdensenet56", 1.38, 1.40)])
def test_parameter_counts_match_the_paper(name, trainable_millions, with_bn_millions):
    with torch.device("meta"):
        model = build_model(name, in_channels=3, num_classes=11)
    assert count_parameters(model) / 1e6 == pytest.approx(trainable_millions, abs=0.01)
    assert count_parameters(model, include_bn_statistics=True) / 1e6 == pytest.approx(with_bn_millions, abs=0.01)


def test_fcdensenet103_layer_structure():
    with torch.device("meta"):
        model = build_model("fcdensenet103")
    assert [len(b.layers) for b in model.down_blocks] == [4, 5, 7, 10, 12]
    assert len(model.bottleneck.layers) == 15
    assert [len(b.layers) for b in model.up_blocks] == [12, 10, 7, 5, 4]
    assert model.first_conv.out_channels == 48
    # only the bottleneck's 15×16 new maps go up: the first transition up carries 240 channels
    assert model.transitions_up[0].in_channels == 240
    # "103 layers": first conv, 38 + 15 + 38 dense layers, 5 transitions down, 5 up, classifier
    n_conv = sum(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) for m in model.modules())
    assert n_conv == 1 + 38 + 15 + 38 + 5 + 5 + 1 == 103


def test_config_rebuilds_the_same_model_and_is_json():
    model = build_model("fcdensenet103", in_channels=1, num_classes=3, dropout=0.1)
    config = json.loads(json.dumps(model.config))
    assert config["name"] == "fcdensenet103" and config["down_blocks"] == [4, 5, 7, 10, 12] and config["dropout"] == 0.1
    rebuilt = build_model(**config)
    assert rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())  # same keys and shapes
    with pytest.raises(InputError, match="fixes growth_rate"):
        build_model("fcdensenet103", growth_rate=12)
    with pytest.raises(InputError, match="no option"):
        build_model("fcdensenet67", depth=3)
    with pytest.raises(InputError, match="needs option"):
        build_model("fcdensenet", down_blocks=(2, 2))


def test_odd_input_size_keeps_its_size_and_paths_agree():
    model = tiny().eval()
    x = torch.randn(2, 1, 37, 53)
    with torch.no_grad():
        buffered = model(x)
    plain = model(x.requires_grad_())  # gradient wanted: the plain autograd path
    assert buffered.shape == (2, 3, 37, 53)
    torch.testing.assert_close(buffered, plain.detach(), rtol=1e-5, atol=1e-5)


def test_odd_size_is_zero_padded_bottom_right_and_cropped():
    model = tiny().eval()  # 2 down blocks: sizes are padded to multiples of 4
    x = torch.randn(1, 1, 37, 53)
    with torch.no_grad():
        odd = model(x)
        explicit = model(torch.nn.functional.pad(x, (0, 3, 0, 3)))  # 40 × 56, no internal padding
    torch.testing.assert_close(odd, explicit[:, :, :37, :53], rtol=1e-5, atol=1e-5)


def test_wrong_channel_count_fails_clearly():
    model = tiny(in_channels=2)
    with pytest.raises(InputError, match=r"in_channels=2.*\[1, 1, 16, 16\]"):
        model(torch.zeros(1, 1, 16, 16))


@pytest.mark.parametrize("variant", ["jegou2017", "protodune2018"])
def test_memory_efficient_mode_gives_the_same_outputs_gradients_and_statistics(variant):
    torch.manual_seed(0)
    plain = tiny(dropout=0.2, variant=variant).double().train()
    efficient = copy.deepcopy(plain)
    efficient.memory_efficient = True
    x = torch.randn(2, 1, 37, 53, dtype=torch.float64)
    results = []
    for model in (plain, efficient):
        torch.manual_seed(1)  # the same dropout draws in both
        xx = x.clone().requires_grad_()
        out = model(xx)
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out))
        results.append((out.detach(), xx.grad, {k: p.grad for k, p in model.named_parameters()},
                        {k: b for k, b in model.named_buffers()}))
    (out_a, gx_a, grads_a, bufs_a), (out_b, gx_b, grads_b, bufs_b) = results
    torch.testing.assert_close(out_b, out_a, rtol=1e-10, atol=1e-11)
    torch.testing.assert_close(gx_b, gx_a, rtol=1e-9, atol=1e-11)
    for key in grads_a:
        torch.testing.assert_close(grads_b[key], grads_a[key], rtol=1e-8, atol=1e-10, msg=key)
    for key in bufs_a:
        torch.testing.assert_close(bufs_b[key].double(), bufs_a[key].double(), rtol=1e-10, atol=1e-12, msg=key)


def test_memory_efficient_flag_keeps_state_dict_keys():
    a, b = tiny(), tiny(memory_efficient=True)
    assert list(a.state_dict()) == list(b.state_dict())
    b.load_state_dict(a.state_dict())


def test_protodune2018_variant_uses_strided_transition_down():
    model = tiny(variant="protodune2018")
    assert all(t.conv.stride == (2, 2) for t in model.transitions_down)
    assert all(t.conv.stride == (1, 1) for t in tiny().transitions_down)
    assert model(torch.randn(1, 1, 21, 19)).shape == (1, 3, 21, 19)


def test_channels_last_input_gives_the_same_output():
    model = tiny(in_channels=2).eval()
    x = torch.randn(2, 2, 24, 20)
    with torch.no_grad():
        torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last)), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_trace_and_script_follow_the_input_size():
    model = tiny().eval()
    x, other = torch.randn(1, 1, 37, 53), torch.randn(2, 1, 29, 70)
    with torch.no_grad():
        expected = model(other)
        traced = torch.jit.trace(model, x)
        scripted = torch.jit.script(model)
        torch.testing.assert_close(traced(other), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(scripted(other), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_onnx_export_with_dynamic_batch_and_size(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    model = tiny().eval()
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(model, (torch.randn(1, 1, 37, 53),), path, dynamo=False, input_names=["adc"], output_names=["logits"],
                      dynamic_axes={"adc": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}})
    other = torch.randn(2, 1, 29, 70)
    with torch.no_grad():
        expected = model(other).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"adc": other.numpy()})[0]
    assert got.shape == (2, 3, 29, 70)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_training_step_reduces_the_loss():
    torch.manual_seed(0)
    model = tiny(memory_efficient=True, dropout=0.0)
    x = torch.randn(2, 1, 16, 16)
    y = (x[:, 0] > 0).long() + (x[:, 0] > 1).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_sync_batch_norm_takes_the_plain_path():
    """SyncBatchNorm (DDP) must not be bypassed by the shared-buffer paths' own BN arithmetic."""
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(tiny(memory_efficient=True)).eval()
    assert not model._buffered_path_supported()
    assert tiny(memory_efficient=True)._buffered_path_supported()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 20, 20)).shape == (1, 3, 20, 20)  # eval SyncBatchNorm runs on one process


# ---------------------------------------------------------------- derived input planes, empty pixels
def _sparse_image(shape, seed=0, occupancy=0.1):
    """An event-like input: a few pixels with charge, the rest exactly 0."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    return torch.where(torch.rand(shape, generator=g, dtype=torch.float64) < occupancy, x, torch.zeros_like(x))


def test_derived_planes_are_the_hit_mask_and_relative_position():
    model = tiny(hit_mask_input=True, position_input=True)
    assert model.first_conv.in_channels == 1 + 1 + 2
    x = _sparse_image((2, 1, 4, 5)).float()
    planes = model._prepare(x)
    assert planes.shape == (2, 4, 4, 5)
    torch.testing.assert_close(planes[:, 0], x[:, 0])
    assert torch.equal(planes[:, 1], (x[:, 0] > 0).float())
    # (i + 0.5) / H along ticks (rows) and (j + 0.5) / W along wires (columns), for every image
    assert torch.equal(planes[0, 2, :, 0], torch.tensor([0.125, 0.375, 0.625, 0.875]))
    assert torch.equal(planes[1, 3, 0, :], torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9]))
    assert torch.equal(planes[1, 2], planes[0, 2]) and torch.equal(planes[0, 3, 3], planes[0, 3, 0])


def test_empty_pixels_are_background_with_no_loss_and_no_gradient():
    torch.manual_seed(0)
    model = tiny(empty_is_background=True, hit_mask_input=True).train()
    x = _sparse_image((2, 1, 19, 23)).float().requires_grad_()
    logits = model(x)
    empty = (x.detach()[:, 0] == 0)
    assert empty.any() and (~empty).any()
    probabilities = logits.softmax(1)
    assert torch.equal(probabilities[:, 0][empty], torch.ones(int(empty.sum())))  # exactly background
    # cross-entropy on empty pixels labelled background is 0, and so is its gradient
    target = torch.zeros(2, 19, 23, dtype=torch.long)
    per_pixel = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    assert torch.equal(per_pixel[empty], torch.zeros(int(empty.sum())))
    per_pixel[empty].sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    # the pixels with charge are left to the network
    assert (probabilities[:, 0][~empty] < 1).all()


@pytest.mark.parametrize("variant", ["jegou2017", "protodune2018"])
def test_input_options_keep_the_three_paths_equal(variant):
    torch.manual_seed(0)
    options = dict(hit_mask_input=True, position_input=True, empty_is_background=True, dropout=0.2, variant=variant)
    plain = tiny(**options).double().train()
    efficient = copy.deepcopy(plain)
    efficient.memory_efficient = True
    x = _sparse_image((2, 1, 37, 53), occupancy=0.3)
    outs, grads = [], []
    for model in (plain, efficient):
        torch.manual_seed(1)
        out = model(x)
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out))
        outs.append(out.detach())
        grads.append({k: p.grad for k, p in model.named_parameters()})
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-10, atol=1e-11)
    for key in grads[0]:
        torch.testing.assert_close(grads[1][key], grads[0][key], rtol=1e-8, atol=1e-10, msg=key)
    plain.eval()
    with torch.inference_mode():
        buffered = plain(x)
    torch.testing.assert_close(buffered, plain._forward_plain(x), rtol=1e-10, atol=1e-10)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_input_options_survive_script_and_onnx_at_new_sizes(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    model = tiny(hit_mask_input=True, position_input=True, empty_is_background=True).eval()
    other = _sparse_image((2, 1, 29, 70), seed=3).float()
    with torch.no_grad():
        expected = model(other)
        scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted(other), expected, rtol=1e-5, atol=1e-5)
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(model, (_sparse_image((1, 1, 37, 53)).float(),), path, dynamo=False, input_names=["adc"],
                      output_names=["logits"],
                      dynamic_axes={"adc": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}})
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"adc": other.numpy()})[0]
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-4)


def test_cards_without_the_input_options_build_the_paper_network():
    """Model cards written before these options existed rebuild the same network (options off)."""
    old = dict(tiny().config)
    for key in ("hit_mask_input", "position_input", "empty_is_background"):
        assert old.pop(key) is False
    rebuilt = build_model(**old)
    assert rebuilt.first_conv.in_channels == 1 and not rebuilt.empty_is_background
    rebuilt.load_state_dict(tiny().state_dict())
    with pytest.raises(InputError, match="position_input must be true or false"):
        tiny(position_input="yes")
