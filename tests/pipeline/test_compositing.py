"""Compositing: masks cover the whole padded face, feathering only adds outside."""

from __future__ import annotations

import numpy as np
import pytest

from masquerade.anonymizers import SolidAnonymizer
from masquerade.config import AnonymizerConfig
from masquerade.faces import Faces
from masquerade.pipeline.compositing import Compositor, cover_frame, region_mask


@pytest.mark.parametrize("shape", ["ellipse", "box"])
def test_mask_is_opaque_inside_and_feathers_outward(shape: str) -> None:
    inner = np.array([20.0, 10.0, 80.0, 50.0])
    mask = region_mask(60, 100, inner, shape, feather_px=8)
    ys, xs = np.mgrid[0:60, 0:100] + 0.5
    if shape == "ellipse":
        inside = ((xs - 50) / 30) ** 2 + ((ys - 30) / 20) ** 2 <= 1
    else:
        inside = (xs >= 20) & (xs <= 80) & (ys >= 10) & (ys <= 50)
    assert (mask[inside] == 1).all()
    assert mask[0, 0] == 0 and ((mask > 0) & (mask < 1)).any()


def test_overlapping_faces_are_all_covered() -> None:
    image = np.full((200, 300, 3), 200, np.uint8)
    config = AnonymizerConfig(mode="solid", color=[255, 0, 255], padding=0.0, feather=0.2,
                              mask="box")
    faces = Faces(xyxy=[[40, 40, 160, 160], [140, 60, 200, 120]])
    Compositor(SolidAnonymizer(config.color), config).apply(image, faces)
    for x1, y1, x2, y2 in faces.xyxy.astype(int):
        assert (image[y1:y2, x1:x2] == [255, 0, 255]).all()


def test_faces_at_the_frame_edge_are_clipped_not_skipped() -> None:
    image = np.full((100, 100, 3), 200, np.uint8)
    config = AnonymizerConfig(mode="solid", padding=0.1, feather=0.0, mask="box")
    Compositor(SolidAnonymizer((0, 0, 0)), config).apply(
        image, Faces(xyxy=[[-30, 70, 30, 130]]))
    assert (image[70:, :30] == 0).all()
    assert (image[:50] == 200).all()


def test_cover_frame_leaves_no_detail() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    cover_frame(image)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) <= 8 * 5
