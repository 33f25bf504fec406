"""The seal store on its own: round trip, per-track keys, and every kind of tampering.

The store is written directly (no video), so each test runs in milliseconds; the tests
in tests/pipeline/test_sealing.py cover it inside real runs and restores.
"""

from __future__ import annotations

import json
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masquerade.keys.seal_keys import TrackKey
from masquerade.keys.secret import KeyMaterialError, SecretKey, WrongKeyError
from masquerade.seals.format import END, FRAME, INDEX_TAG, RECORD, TAIL, SealError
from masquerade.seals.keyring import ExportedTrackKeys, MasterKeys
from masquerade.seals.reader import CropOpener, SealStore
from masquerade.seals.writer import SealStoreWriter
from masquerade.streams.frames import OriginalCrop

TB = Fraction(1, 30000)
KEY = SecretKey(bytes(range(32)))


def crop(track: int, frame: int, box=(10, 20, 42, 60)) -> OriginalCrop:
    x1, y1, x2, y2 = box
    rng = np.random.default_rng(track * 1000 + frame)
    return OriginalCrop(track, box, rng.integers(0, 256, (y2 - y1, x2 - x1, 3), np.uint8))


def write_store(path: Path, frames: dict[int, list[OriginalCrop]], n_frames: int = 5,
                key: SecretKey = KEY, stream_id: str = "cam") -> Path:
    writer = SealStoreWriter(path, key, stream_id)
    for i in range(n_frames):
        writer.add(i, 1000 * i, TB, (320, 180), frames.get(i, []))
    writer.finish()
    return writer.commit()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    frames = {i: [crop(1, i), crop(2, i, (100, 50, 130, 90))] for i in range(4)}
    frames[4] = [crop(3, 4, (0, 0, 16, 16))]
    return write_store(tmp_path / "v.mp4.seals", frames)


def record_offsets(path: Path) -> list[int]:
    """Byte offset of each record's b"R" in the file."""
    store = SealStore(path)
    return [h.offset - RECORD.size - FRAME.size for h in store.records]


def opened(path: Path, keys, tracks: list[int]) -> dict[tuple[int, int], np.ndarray]:
    store = SealStore(path)
    store.verify(keys, tracks)
    opener = CropOpener(store, keys)
    try:
        return {(h.track_id, h.frame_index): opener.open(h)
                for heads in store.by_frame(tracks).values() for h in heads}
    finally:
        opener.close()


def test_round_trip_is_bit_exact_and_lists_tracks(store_path: Path) -> None:
    got = opened(store_path, MasterKeys(KEY), [1, 2, 3])
    assert len(got) == 9
    for (track, frame), pixels in got.items():
        box = {1: (10, 20, 42, 60), 2: (100, 50, 130, 90), 3: (0, 0, 16, 16)}[track]
        assert np.array_equal(pixels, crop(track, frame, box).pixels)
    infos = {t.track_id: t for t in SealStore(store_path).track_infos()}
    assert (infos[1].records, infos[1].frames, infos[1].first_time, infos[1].last_time) == (
        4, 4, 0.0, 0.1)
    assert infos[3].first_frame == 4


def test_track_key_opens_its_track_and_no_other(store_path: Path, tmp_path: Path) -> None:
    store = SealStore(store_path)
    MasterKeys(KEY).track(store, 2).save(tmp_path / "t2.key")
    keys = ExportedTrackKeys([TrackKey.from_file(tmp_path / "t2.key")])
    assert keys.tracks(store) == [2]
    assert len(opened(store_path, keys, [2])) == 4
    with pytest.raises(KeyMaterialError, match=r"no key for track 1: the track key.* open track 2"):
        store.verify(keys, [1])


def test_keys_are_bound_to_their_file(store_path: Path, tmp_path: Path) -> None:
    """The same master key and stream sealing another file gives other keys."""
    other = write_store(tmp_path / "w.mp4.seals", {0: [crop(2, 0)]}, 1)
    key = MasterKeys(KEY).track(SealStore(other), 2)
    with pytest.raises(WrongKeyError, match="for another sealed video"):
        SealStore(store_path).verify(ExportedTrackKeys([key]), [2])


def test_wrong_master_key_is_named(store_path: Path) -> None:
    with pytest.raises(WrongKeyError, match="not the one used to seal"):
        SealStore(store_path).verify(MasterKeys(SecretKey(bytes(32 * [7]))), [1])


def test_asking_for_a_missing_track_lists_the_sealed_ones(store_path: Path) -> None:
    with pytest.raises(SealError, match=r"no track 9 \(sealed tracks: 1, 2, 3\)"):
        SealStore(store_path).verify(MasterKeys(KEY), [9])


def test_flipped_byte_names_frame_and_track(store_path: Path) -> None:
    data = bytearray(store_path.read_bytes())
    third = SealStore(store_path).records[2]  # track 1, frame 1
    data[third.offset + 5] ^= 0x01
    store_path.write_bytes(bytes(data))
    with pytest.raises(SealError, match=r"track 1 at frame 1 \(pts 1000, 0.033 s\) does not "
                                        r"verify: the sealed crop was altered, or moved"):
        SealStore(store_path).verify(MasterKeys(KEY), [1, 2, 3])


def test_swapped_crops_fail(store_path: Path) -> None:
    """Two records of one track swapped whole: out of place; their payloads swapped: altered."""
    data = store_path.read_bytes()
    index_at = TAIL.unpack(data[-TAIL.size:])[1]
    offsets = [*record_offsets(store_path), index_at]
    a, b = 0, 2  # track 1 at frames 0 and 1
    parts = [data[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    head_end, tail = offsets[0], data[index_at:]

    def rebuild(records: list[bytes]) -> bytes:
        """The file with these records; the end marker points at the index's new place."""
        body = data[:head_end] + b"".join(records)
        return body + tail[:-TAIL.size] + TAIL.pack(END, len(body))

    whole = list(parts)
    whole[a], whole[b] = parts[b], parts[a]
    store_path.write_bytes(rebuild(whole))
    with pytest.raises(SealError, match=r"track 1 at frame 1 .* is out of place \(record 1 "
                                        "of the track where 0 was expected"):
        SealStore(store_path).verify(MasterKeys(KEY), [1])

    # payloads only, headers kept: each crop now sits under the other's frame
    def split(record: bytes) -> tuple[bytes, bytes]:
        return record[FRAME.size:FRAME.size + RECORD.size], record[FRAME.size + RECORD.size:]

    (head_a, ct_a), (head_b, ct_b) = split(parts[a]), split(parts[b])
    swapped = list(parts)
    swapped[a] = FRAME.pack(b"R", RECORD.size + len(ct_b)) + head_a + ct_b
    swapped[b] = FRAME.pack(b"R", RECORD.size + len(ct_a)) + head_b + ct_a
    store_path.write_bytes(rebuild(swapped))
    with pytest.raises(SealError, match=r"track 1 at frame 0 .* does not verify"):
        SealStore(store_path).verify(MasterKeys(KEY), [1])


def test_crop_moved_to_another_pts_fails(store_path: Path) -> None:
    data = bytearray(store_path.read_bytes())
    head = SealStore(store_path).records[2]
    start = head.offset - RECORD.size
    fields = list(RECORD.unpack(data[start:start + RECORD.size]))
    fields[3] = 3000  # pts of frame 3
    data[start:start + RECORD.size] = RECORD.pack(*fields)
    store_path.write_bytes(bytes(data))
    with pytest.raises(SealError, match=r"track 1 at frame 1 \(pts 3000, 0.100 s\) does not "
                                        "verify"):
        SealStore(store_path).verify(MasterKeys(KEY), [1])


def test_crop_moved_to_another_track_fails(store_path: Path) -> None:
    data = bytearray(store_path.read_bytes())
    head = SealStore(store_path).records[0]
    start = head.offset - RECORD.size
    data[start:start + 8] = struct.pack(">q", 2)
    store_path.write_bytes(bytes(data))
    with pytest.raises(SealError, match="track 2 at frame 0"):
        SealStore(store_path).verify(MasterKeys(KEY), [2])


@pytest.mark.parametrize("keep", [0.5, 0.99, 20])
def test_cut_store_fails_on_opening(store_path: Path, keep: float) -> None:
    data = store_path.read_bytes()
    store_path.write_bytes(data[:int(len(data) * keep)] if keep < 1 else data[:-keep])
    with pytest.raises(SealError, match="is cut short: no end marker"):
        SealStore(store_path)


def test_dropped_record_is_detected(store_path: Path) -> None:
    """A record cut out and the index's count fixed: the track's summary gives it away."""
    data = store_path.read_bytes()
    store = SealStore(store_path)
    offsets = record_offsets(store_path)
    last = [i for i, h in enumerate(store.records) if h.track_id == 1][-1]
    end = offsets[last + 1]
    cut = data[:offsets[last]] + data[end:]
    # rewrite the index with the count the file now has
    index = dict(store.index)
    index["records"] -= 1
    index_at = len(cut) - TAIL.size - FRAME.size - len(store.index_raw)
    body = json.dumps(index, sort_keys=True, separators=(",", ":")).encode()
    forged = cut[:index_at] + FRAME.pack(INDEX_TAG, len(body)) + body + TAIL.pack(END, index_at)
    store_path.write_bytes(forged)
    keys = ExportedTrackKeys([MasterKeys(KEY).track(SealStore(store_path), 1)])
    with pytest.raises(SealError, match="track 1 does not verify as a whole: 3 records found, "
                                        "its index says 4"):
        SealStore(store_path).verify(keys, [1])
    with pytest.raises(SealError, match="its index was altered"):
        SealStore(store_path).verify(MasterKeys(KEY), [1])


def test_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "x.seals"
    path.write_bytes(b"hello world, not a seal store at all")
    with pytest.raises(SealError, match="is not a masquerade seal store"):
        SealStore(path)
    with pytest.raises(SealError, match="no seal store"):
        SealStore(tmp_path / "missing.seals")


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(master=st.binary(min_size=32, max_size=32),
       tracks=st.lists(st.integers(0, 2**40), min_size=1, max_size=4, unique=True),
       other=st.binary(min_size=32, max_size=32),
       data=st.data())
def test_any_key_and_tracks_round_trip_and_isolate(tmp_path_factory, master: bytes,
                                                   tracks: list[int], other: bytes,
                                                   data: st.DataObject) -> None:
    """For random master keys and track ids: every track restores exactly with the master
    key and with its own exported key; another track's key and another master key fail."""
    path = tmp_path_factory.mktemp("prop") / "v.seals"
    key = SecretKey(master)
    frames = {i: [crop(t, i, (4 * j, 2, 4 * j + 3 + i, 9)) for j, t in enumerate(tracks)]
              for i in range(3)}
    write_store(path, frames, 3, key=key, stream_id=data.draw(st.text(max_size=8)))
    got = opened(path, MasterKeys(key), tracks)
    assert all(np.array_equal(got[(c.track_id, i)], c.pixels)
               for i, cs in frames.items() for c in cs)
    store = SealStore(path)
    chosen = data.draw(st.sampled_from(tracks))
    exported = ExportedTrackKeys([MasterKeys(key).track(store, chosen)])
    assert len(opened(path, exported, [chosen])) == 3
    for t in tracks:
        if t != chosen:
            with pytest.raises(KeyMaterialError):
                store.verify(exported, [t])
    if other != master:
        with pytest.raises(WrongKeyError):
            store.verify(MasterKeys(SecretKey(other)), tracks)
