"""The Faces container and box geometry."""

from __future__ import annotations

import numpy as np
import pytest

from masquerade.faces import Faces, box_iou, nms


def test_indexing_and_merge_keep_rows_aligned() -> None:
    a = Faces(xyxy=[[0, 0, 10, 10], [5, 5, 20, 20]], scores=[0.9, 0.5],
              keypoints=np.zeros((2, 6, 2)))
    b = Faces(xyxy=[[30, 30, 40, 40]], scores=[0.7], keypoints=np.ones((1, 6, 2)))
    merged = Faces.merge([a, b, Faces.empty()])
    assert len(merged) == 3 and merged.keypoints.shape == (3, 6, 2)
    assert merged[np.array([2])].scores.tolist() == pytest.approx([0.7])
    assert Faces.merge([a, Faces(xyxy=[[1, 1, 2, 2]])]).keypoints is None


def test_iou_and_nms() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30]], np.float32)
    assert box_iou(boxes, boxes)[0, 1] == pytest.approx(0.5)
    kept = nms(Faces(xyxy=boxes, scores=[0.9, 0.8, 0.7]), 0.4)
    # Box 1 lies inside box 0: suppressed by containment though IoU is only 0.5 > 0.4 anyway.
    assert kept.xyxy.tolist() == [[0, 0, 10, 10], [20, 20, 30, 30]]
    nested = Faces(xyxy=[[0, 0, 10, 10], [2, 2, 7, 7]], scores=[0.6, 0.9])
    assert len(nms(nested, 0.5)) == 1


def test_padding_grows_every_side() -> None:
    faces = Faces(xyxy=[[10, 20, 30, 60]])
    assert faces.padded(0.5).tolist() == [[0, 0, 40, 80]]
