"""Hit-level segmentation: every collection hit at the detector's full resolution.

``sites``: hits on the (row, wire) site grid and their features; ``data``: training on events files;
``inference``: classes per hit, the projection onto the 2018 image grid, scores; ``export``: one
TorchScript graph from hits to probabilities for LArSoft. The network is
``protoseg.models.sparse_unet`` (registry name ``sparse_unet``).
"""
