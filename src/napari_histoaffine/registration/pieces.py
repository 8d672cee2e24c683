"""A section's largest piece of tissue, alone: for pairs where a piece beside it (another specimen's, a
fragment) misleads the pose search, whose outline and centre it moves.

Pieces are told apart at working resolution, where the tissue mask's smoothing joins a fragment laid
close beside the section: a neck narrower than ``PIECE_NECK`` of the long side separates them. The
other pieces are painted over in the background's colour and the image is prepared again at the same
factor, so the piece is registered as if it lay alone on the glass, in the same working pixels.
"""
from __future__ import annotations

import cv2
import numpy as np

from .grayscale import image_planes
from .preprocess import PreparedImage, prepare

# Chosen on the lung and phantom hard development parts (a second registration by the largest pieces when
# the whole tissue's result is flagged; see the pipeline): necks of 0.06 of the long side split too few of
# their extra-tissue pairs' pieces, 0.15 erode most sections away
PIECE_NECK = 0.1
MIN_PIECE = 0.05  # of the largest piece's core: smaller cores are crumbs, not pieces


def largest_piece(mask: np.ndarray) -> np.ndarray | None:
    """The largest piece of a tissue mask (with its outline), or None when the tissue is one piece."""
    radius = max(1, round(PIECE_NECK * max(mask.shape)))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(cv2.erode(mask.astype(np.uint8), disc), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if count <= 2 or np.sort(areas)[-2] < MIN_PIECE * areas.max():
        return None
    return mask & (cv2.dilate((labels == 1 + int(np.argmax(areas))).astype(np.uint8), disc) > 0)


def _alone(image: np.ndarray, prepared: PreparedImage, keep: np.ndarray) -> PreparedImage:
    """``image`` prepared again with everything beyond ``keep`` (working pixels) in its background's colour."""
    planes = image_planes(image)
    at_input = planes.shape[1::-1]
    tissue = cv2.resize(prepared.mask.astype(np.uint8), at_input, interpolation=cv2.INTER_NEAREST).astype(bool)
    kept = cv2.resize(keep.astype(np.uint8), at_input, interpolation=cv2.INTER_NEAREST).astype(bool)
    background = planes[~tissue] if (~tissue).any() else planes.reshape(-1, *planes.shape[2:])
    alone = planes.copy()
    alone[~kept] = np.median(background, axis=0).astype(planes.dtype)
    return prepare(alone, prepared.factor)


def largest_pieces_alone(moving: np.ndarray, fixed: np.ndarray, prepared_moving: PreparedImage,
                         prepared_fixed: PreparedImage) -> tuple[PreparedImage, PreparedImage] | None:
    """The pair as :func:`~.preprocess.prepare_pair` made it, with each image of several pieces cut to its largest;
    None when both are one piece."""
    pieces = [largest_piece(p.mask) for p in (prepared_moving, prepared_fixed)]
    if all(p is None for p in pieces):
        return None
    return tuple(p if keep is None else _alone(image, p, keep)
                 for image, p, keep in zip((moving, fixed), (prepared_moving, prepared_fixed), pieces))
