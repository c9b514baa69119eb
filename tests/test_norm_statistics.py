"""norm_statistics="per_image": every BN normalises each image with its own statistics, in training and
at inference, on every execution path (plain, buffered inference, memory-efficient training, TorchScript,
ONNX). The reference is what a network trained with batch 1 computed in training: nn.BatchNorm2d in
training mode on one image at a time."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from protoseg.errors import InputError
from protoseg.export import export_model
from protoseg.models import build_model
from protoseg.models.dense_block import PerImageBatchNorm2d

OPTIONS = dict(down_blocks=(2, 3), bottleneck_layers=2, growth_rate=4, first_filters=8, dropout=0.0,
               hit_mask_input=True, position_input=True, empty_is_background=True)


def _sparse_images(shape, seed=0, occupancy=0.3):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64) * 5
    return torch.where(torch.rand(shape, generator=g, dtype=torch.float64) < occupancy, x, torch.zeros_like(x))


def _pair(variant, **changes):
    """A per-image network and a running-statistics one with the same (non-trivial) weights."""
    options = {**OPTIONS, **changes}
    torch.manual_seed(0)
    per_image = build_model("fcdensenet", variant=variant, norm_statistics="per_image", **options).double()
    with torch.no_grad():
        for p in per_image.parameters():
            p.add_(0.3 * torch.randn_like(p))
    running = build_model("fcdensenet", variant=variant, **options).double()
    running.load_state_dict(per_image.state_dict())
    return per_image, running


def _one_image_at_a_time_in_training_mode(running, x):
    running.train()
    with torch.no_grad():
        return torch.cat([running(x[i:i + 1]) for i in range(x.shape[0])])


@pytest.mark.parametrize("variant", ["jegou2017", "protodune2018"])
def test_inference_computes_what_batch_one_training_computed(variant):
    per_image, running = _pair(variant)
    x = _sparse_images((3, 1, 37, 53))
    reference = _one_image_at_a_time_in_training_mode(copy.deepcopy(running), x)
    per_image.eval()
    with torch.inference_mode():
        buffered = per_image(x)
    plain = per_image._forward_plain(x).detach()
    torch.testing.assert_close(buffered, reference, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(plain, reference, rtol=1e-9, atol=1e-9)
    # each image alone gives the same logits as in a batch: nothing is shared between images
    with torch.inference_mode():
        alone = per_image(x[1:2])
    torch.testing.assert_close(alone, buffered[1:2], rtol=1e-9, atol=1e-9)
    # and it is not what the running statistics give
    running.eval()
    with torch.inference_mode():
        assert (running(x) - buffered).abs().max() > 1e-2


def test_training_batch_one_equals_batchnorm_on_every_path():
    """Batch 1: per-image statistics are batch statistics, so outputs, gradients and running averages
    equal nn.BatchNorm2d's (memory-efficient path and plain path alike)."""
    per_image, running = _pair("jegou2017")
    x = _sparse_images((1, 1, 37, 53), seed=2)
    efficient = copy.deepcopy(per_image)
    efficient.memory_efficient = True
    results = []
    for model in (running, per_image, efficient):
        model.train()
        out = model(x)
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out))
        results.append((out.detach(), {k: p.grad for k, p in model.named_parameters()}, dict(model.named_buffers())))
    for out, grads, buffers in results[1:]:
        torch.testing.assert_close(out, results[0][0], rtol=1e-9, atol=1e-10)
        for key, grad in grads.items():
            torch.testing.assert_close(grad, results[0][1][key], rtol=1e-7, atol=1e-9, msg=key)
        for key, value in buffers.items():
            torch.testing.assert_close(value.double(), results[0][2][key].double(), rtol=1e-9, atol=1e-12, msg=key)


def test_training_with_a_batch_normalises_each_image_alone():
    per_image, running = _pair("jegou2017")
    per_image.memory_efficient = True  # a batch of 3 takes the plain path, which normalises per image
    x = _sparse_images((3, 1, 32, 32), seed=4)
    per_image.train()
    out = per_image(x)
    torch.testing.assert_close(out.detach(), _one_image_at_a_time_in_training_mode(running, x), rtol=1e-9, atol=1e-9)


def test_module_is_instance_normalisation_with_batchnorm_parameters():
    torch.manual_seed(3)
    norm = PerImageBatchNorm2d(4).double().eval()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, -1.0, 0.5]))
        norm.bias.copy_(torch.tensor([0.0, 1.0, 0.5, -2.0]))
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64) * 3 + 1
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), keepdim=True, unbiased=False)
    expected = (x - mean) / torch.sqrt(var + norm.eps) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(norm(x), expected, rtol=1e-12, atol=1e-12)
    assert list(norm.state_dict()) == list(torch.nn.BatchNorm2d(4).state_dict())


def test_state_dict_and_card_carry_over_and_bad_value_is_refused():
    per_image, running = _pair("jegou2017")
    assert list(per_image.state_dict()) == list(running.state_dict())
    assert per_image.config["norm_statistics"] == "per_image" and running.config["norm_statistics"] == "running"
    assert build_model(**per_image.config).norm_statistics == "per_image"
    with pytest.raises(InputError, match="norm_statistics must be one of running, per_image, got 'batch'"):
        build_model("fcdensenet", norm_statistics="batch", **OPTIONS)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exports_keep_per_image_statistics(tmp_path, fmt):
    """The C++ / onnxruntime hand-offs compute what PyTorch computes (export_model checks it at two
    new sizes); the exported file differs from a running-statistics export of the same weights."""
    pytest.importorskip("onnxruntime")
    per_image, running = _pair("jegou2017", down_blocks=(1,), bottleneck_layers=1)  # small: dynamo export is slow
    per_image.float().eval()
    result = export_model(per_image, fmt, tmp_path / f"tiny.{'pt' if fmt == 'torchscript' else 'onnx'}")
    assert max(result.max_abs_diff.values()) < 1e-4
    x = _sparse_images((2, 1, 24, 40), seed=5).float()
    if fmt == "torchscript":
        got = torch.jit.load(str(result.path))(x)
    else:
        import onnxruntime
        session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    expected = torch.softmax(_one_image_at_a_time_in_training_mode(running.float(), x), dim=1)
    np.testing.assert_allclose(got.detach().numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
