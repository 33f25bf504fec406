"""Keyed de-identification end to end: run --mode deid writes a track log; restore reads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from masquerade.config import load_config
from masquerade.errors import InputError
from masquerade.faces import Faces
from masquerade.keys import SecretKey
from masquerade.pipeline.restore import TrackLog, restore_file, track_log_path
from masquerade.pipeline.runner import run_file
from tests.conftest import decode_video

WEIGHTS = Path(__file__).resolve().parents[2] / "masquerade" / "models" / "weights"
needs_weights = pytest.mark.skipif(not (WEIGHTS / "deid_generator.onnx").is_file(),
                                   reason="no committed deid weights")


def test_track_log_round_trip_keeps_only_generated_faces(tmp_path: Path) -> None:
    log = TrackLog({"stream_id": "cam", "privacy_level": 1.0, "anonymizer": {}})
    faces = Faces(xyxy=[[0, 0, 100, 100], [200, 0, 220, 20]], track_ids=[3, 4],
                  keypoints=np.zeros((2, 6, 2)))
    log.record(1000, faces, min_px=40)  # the 20 px face fell back to a classic mode
    log.write(tmp_path / "v.mp4.tracks.json")
    back = TrackLog.read(tmp_path / "v.mp4.tracks.json")
    assert back.meta["stream_id"] == "cam"
    got = back.faces_at(1000)
    assert got.track_ids.tolist() == [3] and got.keypoints.shape == (1, 6, 2)
    assert len(back.faces_at(2000)) == 0


@pytest.mark.parametrize("content", [None, "{not json"])
def test_restore_without_a_valid_track_log_is_an_input_error(tmp_path: Path,
                                                              content: str | None) -> None:
    video = tmp_path / "v.mp4"
    if content is not None:
        track_log_path(video).write_text(content)
    with pytest.raises(InputError, match="track log"):
        TrackLog.read(track_log_path(video))


@needs_weights
@pytest.mark.slow
def test_deid_then_restore(scenario_clip: Path, tmp_path: Path) -> None:
    from masquerade.models.recognizer import Recognizer

    config = load_config(overrides=["anonymizer.mode=deid", "pipeline.progress=false"])
    key = SecretKey.from_passphrase("correct horse battery")
    out = run_file(str(scenario_clip), tmp_path / "deid.mp4", config, key=key, stream_id="s1")
    assert out.stats.fallback_faces > 0  # the 28 px face is below min_generator_face_px
    assert out.stats.identity_refreshes == 0  # one person throughout
    log = TrackLog.read(track_log_path(out.output))
    assert log.meta["stream_id"] == "s1" and len(log.frames) >= 80
    # restore inverts the same M
    assert log.meta["anonymizer"]["identity_transform"] == "orthogonal"
    assert log.meta["key_id"] == key.key_id()
    from masquerade.keys.secret import WrongKeyError

    right = restore_file(str(out.output), tmp_path / "right.mp4", config, key)
    other = SecretKey.from_passphrase("another passphrase")
    with pytest.raises(WrongKeyError, match="not the one used to write"):
        restore_file(str(out.output), tmp_path / "wrong.mp4", config, other)
    wrong = restore_file(str(out.output), tmp_path / "wrong.mp4", config, other,
                         allow_wrong_key=True)
    videos = [decode_video(p) for p in (scenario_clip, out.output, right.output, wrong.output)]
    assert {len(v) for v in videos} == {90}
    # dlib's recognizer decides: the fake is someone else, the right key brings the person
    # back, a wrong key gives yet another person (no error)
    frames = range(10, 90, 10)
    rec = Recognizer()
    emb = []
    for video in videos:
        images, kps = [], []
        for i in frames:
            faces = log.faces_at(video[i][0])
            big = int(np.argmax(faces.wh.min(axis=1)))
            images.append(video[i][1])
            kps.append(faces.keypoints[big])
        emb.append(rec.embed(images, np.stack(kps)))
    original, fake, restored, wrong_restored = emb
    assert (rec.distance(original, fake) > 0.6).mean() >= 0.75
    assert (rec.distance(original, restored) < 0.6).mean() >= 0.75
    assert (rec.distance(original, wrong_restored) > 0.6).mean() >= 0.75


def test_logs_from_before_the_orthogonal_transform_restore_with_the_rotation(tmp_path: Path
                                                                             ) -> None:
    path = tmp_path / "v.mp4.tracks.json"
    path.write_text('{"version": 1, "meta": {"stream_id": "s", "privacy_level": 1.0, '
                    '"anonymizer": {"max_identity_angle": 120.0}}, "frames": {}}')
    assert TrackLog.read(path).meta["anonymizer"]["identity_transform"] == "rotation"


def test_identity_angle_comes_from_config_and_inverts() -> None:
    from masquerade.anonymizers import identity_key
    from masquerade.config import AnonymizerConfig

    k90 = identity_key(AnonymizerConfig(max_identity_angle=90.0))
    k120 = identity_key(AnonymizerConfig(max_identity_angle=120.0))
    rot = identity_key(AnonymizerConfig(identity_transform="rotation"))
    assert type(rot).__name__ == "IdentityKey" and type(k90).__name__ == "OrthogonalIdentityKey"
    z = k90.centre + np.random.default_rng(0).normal(scale=0.1, size=128)
    a, b = k90.apply(z, b"track-1", 1.0), k120.apply(z, b"track-1", 1.0)
    assert np.linalg.norm(b - z) > np.linalg.norm(a - z) + 0.01  # a larger angle moves further
    np.testing.assert_allclose(k120.invert(b, b"track-1", 1.0), z, atol=1e-9)


def test_track_log_records_the_key_fingerprint(scenario_clip: Path, tmp_path: Path) -> None:
    """Only the key's public HKDF fingerprint: restore can then tell a wrong key."""
    config = load_config(overrides=["pipeline.progress=false", "encoder.preset=ultrafast",
                                    "detector.tiling='off'"])
    key = SecretKey.from_passphrase("correct horse battery")
    out = run_file(str(scenario_clip), tmp_path / "o.mp4", config, key=key, stream_id="s1",
                   record_tracks=True)
    text = track_log_path(out.output).read_text()
    assert TrackLog.read(track_log_path(out.output)).meta["key_id"] == key.key_id()
    assert key.to_hex() not in text and key.to_hex()[:16] not in text
