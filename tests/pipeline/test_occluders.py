import numpy as np
import pytest

from masquerade.anonymizers import SolidAnonymizer
from masquerade.config import AnonymizerConfig
from masquerade.faces import Faces
from masquerade.pipeline.compositing import Compositor
from masquerade.pipeline.occluders import MAX_FACE_SHARE, build_occluders, hand_mask


def open_hand(x0: float = 100.0, y0: float = 200.0, scale: float = 20.0) -> np.ndarray:
    """21 MediaPipe-ordered landmarks of an upright hand with spread fingers."""
    pts = [(0.0, 0.0)]  # wrist
    for finger, dx in enumerate((-2.0, -1.0, 0.0, 1.0, 2.0)):
        base = (dx * (1.4 if finger == 0 else 1.0), -3.0 if finger else -1.0)
        for joint in range(4):
            pts.append((base[0] + dx * 0.5 * joint, base[1] - 1.5 * joint))
    return np.array(pts) * scale + (x0, y0)


def test_hand_mask_covers_palm_and_fingers_but_not_the_gaps_between_them():
    pts = open_hand()
    mask = hand_mask(pts[None], (300, 300))
    assert mask.dtype == np.float32 and mask.max() == 1.0
    palm = np.mean(pts[[0, 5, 9, 13, 17]], axis=0).round().astype(int)
    assert mask[palm[1], palm[0]] == 1.0
    tip = pts[12].round().astype(int)  # middle finger
    assert mask[tip[1] + 5, tip[0]] > 0.5
    # halfway between the middle and ring fingertips: a gap (an eye could be there)
    gap = ((pts[12] + pts[16]) / 2).round().astype(int)
    assert mask[gap[1], gap[0]] == 0.0
    assert hand_mask(np.zeros((0, 21, 2)), (10, 10)).sum() == 0


class FixedOccluder:
    """An occluder stage with a known mask (the compositor's logic, not the hand model)."""

    def __init__(self, mask: np.ndarray) -> None:
        self._mask = mask

    def mask(self, image: np.ndarray) -> np.ndarray:
        return self._mask


def composite(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, Compositor]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)
    original = image.copy()
    config = AnonymizerConfig(mode="solid", mask="box")
    compositor = Compositor(SolidAnonymizer((0, 0, 0)), config, occluders=FixedOccluder(mask))
    compositor.apply(image, Faces(xyxy=[[50, 50, 150, 150]], track_ids=[1]))
    return original, image, compositor


def test_compositor_keeps_the_occluder_in_front_of_the_face():
    mask = np.zeros((200, 200), np.float32)
    mask[120:150, 60:100] = 1.0  # a hand over the lower left of the face
    original, out, compositor = composite(mask)
    np.testing.assert_array_equal(out[120:150, 60:100], original[120:150, 60:100])
    assert (out[60:110, 60:140] == 0).all()  # the rest of the face is covered
    assert compositor.occluded_faces == 1


def test_an_occluder_covering_most_of_the_face_is_not_trusted():
    mask = np.zeros((200, 200), np.float32)
    mask[40:160, 40:160] = 1.0
    assert mask[50:150, 50:150].mean() > MAX_FACE_SHARE
    _, out, compositor = composite(mask)
    assert (out[60:140, 60:140] == 0).all()  # fail closed: the whole face is covered
    assert compositor.occluded_faces == 0


def test_occluders_only_for_the_generative_modes():
    assert build_occluders(AnonymizerConfig(mode="blur")) is None
    assert build_occluders(AnonymizerConfig(mode="deid", occluders="none")) is None


@pytest.mark.data
def test_mediapipe_hands_finds_the_hand_in_front_of_a_face(data_dir):
    from masquerade.pipeline.occluders import HandOccluders
    from tests.conftest import decode_video

    frames = decode_video(data_dir / "video" / "hand_occlusion.avi")[::40]
    occluders = HandOccluders()
    try:
        masks = [occluders.mask(image) for _, image in frames]
    finally:
        occluders.close()
    assert sum(m is not None and m.sum() > 200 for m in masks) >= len(frames) - 1
