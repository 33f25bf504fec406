"""Sealed originals end to end: real runs in every mode, exact restores, per-track keys,
tampering, atomic outputs, and live recordings whose segments carry their own seals."""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masquerade.config import load_config
from masquerade.errors import ConfigError
from masquerade.keys import SecretKey
from masquerade.keys.secret import KeyMaterialError
from masquerade.pipeline.exact_restore import restore_exact
from masquerade.pipeline.runner import run_file
from masquerade.seals.format import SealError, seals_path
from masquerade.seals.keyring import ExportedTrackKeys, MasterKeys
from masquerade.seals.reader import SealStore, open_store
from masquerade.seals.writer import seal_store_factory
from masquerade.streams.frames import Frame, OriginalCrop
from masquerade.streams.live import SegmentedFileSink
from masquerade.synthetic import Scenario, write_clip
from tests.conftest import decode_video

KEY = SecretKey.from_passphrase("correct horse battery")
MODES = ["blur", "pixelate", "solid",
         pytest.param("deid", marks=pytest.mark.slow),
         pytest.param("camouflage", marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small and short, with the scenario's three faces (one entering from the edge)."""
    path = tmp_path_factory.mktemp("sealing") / "in.mp4"
    write_clip(path, Scenario(width=320, height=180, frames=24, audio=True))
    return path


def config(mode: str = "blur", *extra: str):
    return load_config(overrides=[f"anonymizer.mode={mode}", "anonymizer.seal_originals=true",
                                  "pipeline.progress=false", "encoder.preset=ultrafast",
                                  *extra])


@pytest.fixture(scope="module")
def sealed_blur(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sealed") / "anon.mp4"
    run_file(str(clip), out, config(), key=KEY, stream_id="cam")
    return out


def region_mismatches(reference: Path, restored: Path, store: SealStore, tracks: list[int]
                      ) -> tuple[int, int]:
    """(regions compared, regions whose pixels differ) between two videos, frame by frame,
    inside every sealed box of `tracks`."""
    ref, got = decode_video(reference), decode_video(restored)
    assert len(ref) == len(got) == store.frames
    compared = differ = 0
    for index, heads in store.by_frame(tracks).items():
        a, b = ref[index][1], got[index][1]
        for head in heads:
            x1, y1, x2, y2 = head.box
            compared += 1
            differ += not np.array_equal(a[y1:y2, x1:x2], b[y1:y2, x1:x2])
    return compared, differ


@pytest.mark.parametrize("mode", MODES)
def test_exact_restore_is_bit_exact_in_every_mode(clip: Path, tmp_path: Path, mode: str) -> None:
    out = tmp_path / "anon.mkv"
    result = run_file(str(clip), out, config(mode), key=KEY, stream_id="cam")
    assert seals_path(out).is_file()
    assert result.stats.sealed is not None and result.stats.sealed["crops"] > 0
    store = open_store(out)
    tracks = sorted(store.tracks)
    assert len(tracks) >= 2
    # the anonymized regions really differ from the input (else the test proves nothing)
    assert region_mismatches(clip, out, store, tracks)[1] > 0
    restored = restore_exact(str(out), tmp_path / "restored.mkv", config(mode),
                             MasterKeys(KEY), lossless=True)
    compared, differ = region_mismatches(clip, restored.output, store, tracks)
    assert compared == store.record_count and differ == 0


def test_track_key_restores_its_track_and_nobody_else(clip: Path, sealed_blur: Path,
                                                      tmp_path: Path) -> None:
    store = open_store(sealed_blur)
    mine, *others = sorted(store.tracks)
    path = tmp_path / "mine.key"
    MasterKeys(KEY).track(store, mine).save(path)
    from masquerade.keys.seal_keys import TrackKey

    keys = ExportedTrackKeys([TrackKey.from_file(path)])
    restored = restore_exact(str(sealed_blur), tmp_path / "r.mkv", config(), keys,
                             lossless=True).output
    assert region_mismatches(clip, restored, store, [mine]) == (store.tracks[mine]["records"], 0)
    # the others stay as anonymized: their regions match the anonymized video, not the input
    compared, differ = region_mismatches(clip, restored, store, others)
    assert differ > 0.9 * compared
    for other in others:
        with pytest.raises(KeyMaterialError, match=f"no key for track {other}"):
            restore_exact(str(sealed_blur), tmp_path / f"r{other}.mkv", config(), keys,
                          tracks=[other])
        assert not (tmp_path / f"r{other}.mkv").exists()


def tamper_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    head = SealStore(path).records[3]
    data[head.offset + head.length // 2] ^= 0x80
    path.write_bytes(bytes(data))


def tamper_cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


@pytest.mark.parametrize(("tamper", "message"), [
    (tamper_flip, r"track \d+ at frame \d+ \(pts \d+, [\d.]+ s\) does not verify"),
    (tamper_cut, "is cut short"),
])
def test_tampered_store_restores_nothing(sealed_blur: Path, tmp_path: Path, tamper,
                                         message: str) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(sealed_blur.read_bytes())
    seals_path(video).write_bytes(seals_path(sealed_blur).read_bytes())
    tamper(seals_path(video))
    with pytest.raises(SealError, match=message):
        restore_exact(str(video), tmp_path / "r.mkv", config(), MasterKeys(KEY))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4", "v.mp4.seals"]


def test_seals_of_another_video_do_not_restore_it(clip: Path, sealed_blur: Path,
                                                  tmp_path: Path) -> None:
    """A video cut short after sealing: its store promises frames it no longer has."""
    short = tmp_path / "short.mp4"
    write_clip(short, Scenario(width=320, height=180, frames=10, audio=False))
    seals_path(short).write_bytes(seals_path(sealed_blur).read_bytes())
    with pytest.raises(SealError, match=r"track \d+ at frame 10 .*the video has no such frame"):
        restore_exact(str(short), tmp_path / "r.mkv", config(), MasterKeys(KEY))
    assert not (tmp_path / "r.mkv").exists()


def test_sealing_needs_a_key_and_an_aborted_run_leaves_no_seals(clip: Path,
                                                                tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="seal_originals needs a master key"):
        run_file(str(clip), tmp_path / "o.mp4", config(), key=None)
    stop = threading.Event()
    stop.set()
    with pytest.raises(KeyboardInterrupt):
        run_file(str(clip), tmp_path / "o.mp4", config(), key=KEY, stop=stop)
    assert list(tmp_path.iterdir()) == []


def test_each_recorded_segment_carries_its_own_seals(tmp_path: Path) -> None:
    """A live recording's segments: each a whole file with seals of its own (own seal id,
    own keys, pts relative to the segment), each restorable alone."""
    from masquerade.config import EncoderConfig

    sink = SegmentedFileSink(tmp_path, "cam", EncoderConfig(preset="ultrafast"),
                             segment_seconds=0.2, fps=10, sidecar=seal_store_factory(KEY, "cam"))
    rng = np.random.default_rng(0)
    images = []
    for i in range(5):
        image = rng.integers(0, 256, (64, 96, 3), np.uint8)
        images.append(image.copy())
        box = (8 + i, 8, 40 + i, 48)
        original = OriginalCrop(7, box, image[8:48, box[0]:box[2]].copy())
        image[8:48, box[0]:box[2]] = 0  # "anonymized"
        sink.write(Frame(image=image, pts=9000 * i, time_base=Fraction(1, 90000), index=i,
                         originals=[original]))
    sink.close()
    videos = sorted(p for p in tmp_path.glob("cam-*.mp4"))
    assert len(videos) == 3  # 0.2 s segments of 0.1 s frames
    ids = {open_store(v).seal_id for v in videos}
    assert len(ids) == 3
    first = 0
    for video in videos:
        store = open_store(video)
        restored = restore_exact(str(video), tmp_path / f"r-{video.stem}.mkv", config(),
                                 MasterKeys(KEY), lossless=True).output
        frames = decode_video(restored)
        for j, (_, image) in enumerate(frames):
            (head,) = store.by_frame([7])[j]
            x1, y1, x2, y2 = head.box
            assert np.array_equal(image[y1:y2, x1:x2], images[first + j][y1:y2, x1:x2])
        first += len(frames)
    assert first == 5


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), mask=st.sampled_from(["ellipse", "box"]),
       feather=st.sampled_from([0.0, 0.08, 0.3, 0.5]), padding=st.sampled_from([0.0, 0.25, 1.0]),
       mode=st.sampled_from(["solid", "blur", "pixelate"]))
def test_sealed_crops_hold_every_pixel_the_compositor_changes(seed: int, mask: str,
                                                              feather: float, padding: float,
                                                              mode: str) -> None:
    """Faces of any size and shape, overlapping or cut by the frame edge: whatever the
    compositor changes lies inside the sealed crops, and putting them back undoes it."""
    from masquerade.anonymizers import build_anonymizer
    from masquerade.config import AnonymizerConfig
    from masquerade.faces import Faces
    from masquerade.pipeline.compositing import Compositor
    from masquerade.pipeline.sealing import CropCollector

    rng = np.random.default_rng(seed)
    image = rng.integers(0, 120, (90, 160, 3), np.uint8)
    n = int(rng.integers(1, 5))
    xy = rng.uniform(-30, 170, (n, 2))
    wh = rng.uniform(3, 80, (n, 2))
    faces = Faces(xyxy=np.concatenate([xy, xy + wh], axis=1), track_ids=np.arange(n) + 1)
    config = AnonymizerConfig(mode=mode, mask=mask, feather=feather, padding=padding,
                              color=[255, 255, 255])
    collector = CropCollector()
    before = image.copy()
    Compositor(build_anonymizer(config), config, sealer=collector).apply(image, faces)
    changed = (image != before).any(axis=2)
    sealed = np.zeros_like(changed)
    for crop in collector.take():
        x1, y1, x2, y2 = crop.box
        sealed[y1:y2, x1:x2] = True
        image[y1:y2, x1:x2] = crop.pixels
    assert not (changed & ~sealed).any()
    assert np.array_equal(image, before)


def test_serve_recordings_carry_their_own_seals(clip: Path, tmp_path: Path) -> None:
    """`serve` with a file camera, sealing, 1 s segments: every finished segment lands
    with its own seal store, and each restores exactly on its own."""
    from masquerade.pipeline.serve import ServeConfig, StreamSpec, Supervisor
    from tests.conftest import PATIENCE, wait_for

    key_file = tmp_path / "master.key"
    KEY.save(key_file)
    record = tmp_path / "rec"
    spec = ServeConfig(
        streams=[StreamSpec(name="cam", source=str(clip), record_dir=str(record),
                            segment_seconds=0.5, queue_size=64)],
        defaults={"anonymizer": {"mode": "solid", "seal_originals": True},
                  "detector": {"tiling": "off"}, "pipeline": {"progress": False},
                  "encoder": {"preset": "ultrafast"}},
        key_file=str(key_file))
    spec.metrics.enabled = False
    supervisor = Supervisor(spec, threading.Event())
    supervisor.start()
    try:
        assert wait_for(lambda: len(list(record.glob("cam-*.mp4.seals"))) >= 2, PATIENCE)
    finally:
        supervisor.close()
    videos = sorted(record.glob("cam-*.mp4"))
    assert len(videos) >= 2
    assert all(seals_path(v).is_file() for v in videos)
    assert len({open_store(v).seal_id for v in videos}) == len(videos)
    for video in videos:
        store = open_store(video)
        store.verify(MasterKeys(KEY), sorted(store.tracks))
        restore_exact(str(video), tmp_path / f"r-{video.stem}.mkv", config(), MasterKeys(KEY))
