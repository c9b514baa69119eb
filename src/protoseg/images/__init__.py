"""Hits → labelled images, and the image file. One module per job:

=================  ==========================================================================================
``grid``           the pixel grid (tick, wire) → (row, column); checks on hits before they are imaged
``labels``         label schemes (``beam3``, ``species``), class priorities, beam label rules (``all``, ``2018``)
``pooling``        what a pixel holds when several hits share it (``max``, ``sum``, ...); one event → one image
``selection``      hit counts per event, compatible events files, the train / validation / test split
``make``           events file(s) → image file (``make_image_file``, what ``protoseg images`` runs)
``imagefile``      the image file (format ``protoseg-images``): write, open, read, check
``balance``        class balance of label images and the 2018 study's class weights
=================  ==========================================================================================

Every public name is importable from ``protoseg.images`` itself (``from protoseg.images import
make_image_file``); code inside protoseg imports from the module that holds it.
"""
from __future__ import annotations

from protoseg.images.balance import class_balance, format_class_balance
from protoseg.images.grid import DEFAULT_SIZE, check_hit_values, check_size, pixel_indices
from protoseg.images.imagefile import (
    FORMAT,
    SPLIT_CODES,
    SPLIT_NAMES,
    VERSION,
    ImageFile,
    check_image_values,
    open_images,
    validate_images_file,
    write_images,
)
from protoseg.images.labels import (
    BEAM_LABEL_RULES,
    CLASS_RANK,
    EM_PROCESSES,
    LABEL_SCHEMES,
    apply_beam_label_rule,
    credited_particle_rows,
    particle_rows,
    hit_labels,
)
from protoseg.images.make import make_image_file
from protoseg.images.pooling import POOLINGS, event_to_image
from protoseg.images.selection import check_compatible_events, parse_split

__all__ = [
    "FORMAT",
    "VERSION",
    "LABEL_SCHEMES",
    "POOLINGS",
    "BEAM_LABEL_RULES",
    "credited_particle_rows",
    "particle_rows",
    "apply_beam_label_rule",
    "SPLIT_NAMES",
    "pixel_indices",
    "hit_labels",
    "event_to_image",
    "parse_split",
    "make_image_file",
    "write_images",
    "open_images",
    "ImageFile",
    "check_image_values",
    "check_hit_values",
    "validate_images_file",
    "class_balance",
    "format_class_balance",
    "SPLIT_CODES",
    "DEFAULT_SIZE",
    "CLASS_RANK",
    "EM_PROCESSES",
    "check_size",
    "check_compatible_events",
]
