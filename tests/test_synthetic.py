"""Generated clips: the crowd layout the model benchmarks use."""

import itertools

import pytest

from masquerade.faces import box_iou
from masquerade.synthetic import Scenario, read_index, read_index_if_legible, stamp_index


@pytest.mark.parametrize("n", [1, 4, 16])
def test_crowd_faces_are_all_inside_the_frame_and_apart(n):
    scenario = Scenario(width=1280, height=720, frames=30, crowd=n, audio=False)
    for index in (0, 29):
        truth = scenario.ground_truth(index)
        assert len(truth) == n
        assert all(face.inside > 1 - 1e-9 and not face.occluded for face in truth)
        for a, b in itertools.combinations(truth, 2):
            assert box_iou([a.xyxy], [b.xyxy])[0, 0] == 0.0
    assert scenario.render(0).shape == (720, 1280, 3)


def test_a_stamp_reads_back_unless_painted_over() -> None:
    image = Scenario(audio=False).render(7)
    stamp_index(image, 12345)
    assert read_index(image) == read_index_if_legible(image) == 12345
    # a cover (magenta here) reaching the corner: read_index would make up an index
    image[-12:, :40] = (255, 0, 255)
    assert read_index(image) != 12345
    assert read_index_if_legible(image) is None
