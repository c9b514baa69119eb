"""`protoseg export`: TorchScript (LArSoft), ONNX (Triton, onnxruntime) or safetensors + model card."""
from __future__ import annotations

import argparse

HELP = "export a model to TorchScript, ONNX or safetensors, checked against PyTorch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="run folder, checkpoint, weights file or shipped model name (default)")
    parser.add_argument("--format", required=True, choices=["torchscript", "onnx", "safetensors"])
    parser.add_argument("-o", "--out", required=True, metavar="FILE", help="file to write (.pt, .onnx, .safetensors)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")


def run(args: argparse.Namespace) -> int:
    from protoseg.export import export_model
    from protoseg.loading import load_model

    model = load_model(args.model)
    result = export_model(model, args.format, args.out, opset=args.opset)
    print(f"wrote {result.path} ({result.format})")
    for shape, diff in result.max_abs_diff.items():
        print(f"input {shape}: largest |{result.format} - PyTorch| = {diff:.3g} (tolerance {result.tolerance:g})")
    if result.format == "safetensors":
        print(f"model card: {result.path.with_suffix('.json')}")
    return 0
