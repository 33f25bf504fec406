"""`restore --exact`: put the sealed original pixels back, bit for bit, for chosen tracks.

The seal store beside the video (`masquerade.seals`) holds, for every covered region,
the rectangle the compositor wrote to, as the source decoded it. Restoring decodes the
anonymized video, writes each chosen track's crops back into the frame they were sealed
with (matched by frame number, and checked against the frame's time), and re-encodes;
`lossless` encodes RGB losslessly (H.264 RGB, qp 0) so the restored regions decode to
exactly the input's pixels. The selection is verified in full before the first frame is
decoded, and the output is published only when every crop of it found its frame: a
wrong key, a tampered store or a cut video yields a one-line error and no file.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from fractions import Fraction

from masquerade.config import Config
from masquerade.faces import Faces
from masquerade.pipeline.runner import FramePipeline, RunResult, run_file
from masquerade.seals.format import SealError, describe_frame
from masquerade.seals.keyring import SealKeys
from masquerade.seals.reader import CropOpener, SealStore, open_store
from masquerade.streams import Frame

log = logging.getLogger(__name__)

# H.264 in RGB at qp 0 (crf 0 is lossless in 8 bit): decodes to exactly what was encoded,
# in mp4, mov and mkv. Not browser-playable; it is evidence, not a preview.
LOSSLESS_CODEC, LOSSLESS_PIX_FMT = "libx264rgb", "bgr24"


class _Placer:
    """Stands where a compositor would: exact restore composites nothing, it places."""

    stats = None
    sealer = None


class ExactRestorePipeline(FramePipeline):
    """Writes the sealed crops of the chosen tracks back into each decoded frame."""

    def __init__(self, store: SealStore, keys: SealKeys, tracks: list[int], config: Config):
        super().__init__(detector=None, tracker=None, compositor=_Placer(),  # type: ignore[arg-type]
                         config=config)
        self.store = store
        self.pending = store.by_frame(tracks)
        self.opener = CropOpener(store, keys)
        self.frames_seen = 0
        self.offset: Fraction | None = None
        self.placed = 0

    def process(self, frame: Frame) -> Frame:
        # No fail-closed cover here: a restore that cannot place a crop must stop, not hide.
        self.frames_seen += 1
        if frame.pts is not None and self.offset is None:
            # A container may start the video later than it was written (Matroska after
            # the encoder's delay): times are compared relative to the first frame.
            self.offset = (Fraction(frame.pts) * frame.time_base
                           - Fraction(self.store.start_pts) * self.store.time_base)
        heads = self.pending.pop(frame.index, [])
        if not heads:
            return frame
        head = heads[0]
        if frame.pts is not None and self.offset is not None:
            sealed = Fraction(head.pts) * self.store.time_base
            shown = Fraction(frame.pts) * frame.time_base - self.offset
            # Containers may round times to their own clock (Matroska: 1 ms): one tick of
            # the coarser clock is the same frame, more is another frame.
            if abs(shown - sealed) > 2 * max(self.store.time_base, frame.time_base):
                raise SealError(
                    f"{self.store.name}: frame {frame.index} of the video is at "
                    f"{float(shown):.3f} s but its seals are for {float(sealed):.3f} s "
                    "(the video was cut or re-timed after sealing)")
        h, w = frame.image.shape[:2]
        for head in heads:
            crop = self.opener.open(head)
            x1, y1, x2, y2 = head.box
            # The encoder may have dropped an odd last row/column: place what the frame has.
            frame.image[y1:min(y2, h), x1:min(x2, w)] = crop[:min(y2, h) - y1, :min(x2, w) - x1]
            self.placed += 1
        self.stats.faces += len(heads)
        return frame

    def push(self, frame: Frame) -> list[tuple[Frame, Faces]]:
        # Nothing to detect, so nothing to hold back: each frame is due at once.
        return [(self.process(frame), Faces.empty())]

    def drain(self) -> list[tuple[Frame, Faces]]:
        return []

    def finish(self) -> None:
        if self.pending:
            first = min(self.pending)
            head = self.pending[first][0]
            raise SealError(f"{self.store.name}: track {head.track_id} at "
                            f"{describe_frame(head.frame_index, head.pts, self.store.time_base)}"
                            f": the video has no such frame (it holds {self.frames_seen}; "
                            "frames were removed after sealing)")
        if self.frames_seen != self.store.frames:
            raise SealError(f"{self.store.name}: the video holds {self.frames_seen} frames, "
                            f"its seals were written for {self.store.frames}")

    def close(self) -> None:
        self.opener.close()


def lossless_encoder(config: Config) -> Config:
    return dataclasses.replace(config, encoder=dataclasses.replace(
        config.encoder, codec=LOSSLESS_CODEC, crf=0, pix_fmt=LOSSLESS_PIX_FMT))


def restore_exact(input_url: str, output: str | os.PathLike[str], config: Config,
                  keys: SealKeys, *, tracks: list[int] | None = None, overwrite: bool = False,
                  lossless: bool = False) -> RunResult:
    """Restore `tracks` (default: every track `keys` may open) of a sealed video."""
    store = open_store(input_url)
    chosen = sorted(set(tracks)) if tracks else keys.tracks(store)
    store.verify(keys, chosen)  # all of it, before a frame is decoded
    log.info("verified %d sealed crops of track(s) %s", sum(
        int(store.tracks[t]["records"]) for t in chosen), ", ".join(map(str, chosen)))
    # The restored file is a disclosure, not something to seal again.
    config = dataclasses.replace(config, anonymizer=dataclasses.replace(
        config.anonymizer, seal_originals=False))
    if lossless:
        config = lossless_encoder(config)
    pipeline = ExactRestorePipeline(store, keys, chosen, config)
    try:
        result = run_file(input_url, output, config, overwrite=overwrite, pipeline=pipeline,
                          record_tracks=False)
    finally:
        pipeline.close()
    log.info("put back %d original crops", pipeline.placed)
    return result


__all__ = ["ExactRestorePipeline", "restore_exact"]
