"""Segmentation networks: the FC-DenseNet (Tiramisu) family and the registry that builds them by name."""
from __future__ import annotations

from protoseg.models.registry import ModelSpec, build_model, is_hit_model, list_models, model_spec
from protoseg.models.tiramisu import FCDenseNet, count_parameters, tune_cpu_allocator

__all__ = ["FCDenseNet", "ModelSpec", "build_model", "count_parameters", "is_hit_model", "list_models", "model_spec", "tune_cpu_allocator"]
