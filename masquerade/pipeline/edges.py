"""Faces at the frame edges: which edge a box is near, where it came from, its real size.

A face crossing a frame edge is only partly in the picture: detectors find it late
(BlazeFace needs about 60% of it), box only the part they see, and lose it early when it
leaves. These helpers give the geometry the tracker and the backfill use to keep such
faces covered from their first visible pixel to their last.
"""

from __future__ import annotations

import numpy as np

from masquerade.faces import Faces

# How close to an edge a box must be, as a fraction of its size and at most in pixels,
# to be cut by it or leaving through it (a 263 px face 124 px from the edge is whole and
# may move anywhere; a 37 px one 10 px from it is cut) ...
EDGE_MARGIN = 0.5
CUT_MARGIN_PX = 16
# ... and to have come in through it: live found a 72 px face only 20 px in; a big face
# born 100 px in was not entering (its backfill painted discs over 30 frames)
ENTRY_MARGIN = 1.0
ENTRY_MARGIN_PX = 48
EDGE_SHIFTS = (0.5, 1.0)  # extra copies of an edge face's box, moved outward (box sizes)
CUT_FACE_GROWTH = 1.5  # a detection cut by the edge boxes ~55-70% of the face (measured)


def outward(boxes: np.ndarray, width: int, height: int, margin: float = EDGE_MARGIN,
            cap: float = np.inf) -> np.ndarray:
    """(N, 2) direction, in box sizes, through the frame edges each box is within
    `margin` box sizes (at most `cap` pixels) of; 0: none."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    mx = np.minimum(margin * (boxes[:, 2] - boxes[:, 0]), cap)
    my = np.minimum(margin * (boxes[:, 3] - boxes[:, 1]), cap)
    dx = (boxes[:, 2] >= width - mx).astype(np.float32) - (boxes[:, 0] <= mx)
    dy = (boxes[:, 3] >= height - my).astype(np.float32) - (boxes[:, 1] <= my)
    return np.stack([dx, dy], axis=1)


def edge_path(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes covering where a face near an edge was before: (M, 4) and the (M,) index of
    the face each belongs to. An edge face gets its box shifted outward by 0, 1/2 and 1
    box size (padded ellipses overlap, so every position in between is covered); a face
    inside the frame gets its own box only."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    step = outward(boxes, width, height, ENTRY_MARGIN, ENTRY_MARGIN_PX)
    edge = np.any(step != 0, axis=1)
    wh = boxes[:, 2:] - boxes[:, :2]
    out, owner = [boxes], [np.arange(len(boxes))]
    for shift in EDGE_SHIFTS:
        moved = np.tile(step[edge] * wh[edge] * shift, 2)
        out.append(boxes[edge] + moved)
        owner.append(np.flatnonzero(edge))
    return np.concatenate(out), np.concatenate(owner)


def complete_cut_faces(faces: Faces, width: int, height: int) -> Faces:
    """Grow detections that touch a frame edge by CUT_FACE_GROWTH about their centre.

    On a face 40% inside the frame BlazeFace boxed 38 of its 70 px (synthetic scenario,
    top edge): covering that box left the face's sides raw. The growth costs a little
    area on edge detections only."""
    if not len(faces):
        return faces
    cut = np.any(outward(faces.xyxy, width, height, EDGE_MARGIN, CUT_MARGIN_PX) != 0, axis=1)
    if not cut.any():
        return faces
    boxes = faces.xyxy.copy()
    half = (boxes[cut, 2:] - boxes[cut, :2]) * (CUT_FACE_GROWTH - 1) / 2
    boxes[cut] += np.concatenate([-half, half], axis=1)
    return Faces(xyxy=boxes, scores=faces.scores, keypoints=faces.keypoints,
                 track_ids=faces.track_ids, coasting=faces.coasting)
