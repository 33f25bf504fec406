"""Counters and per-stage timings of a run, for the summary, `bench` and live metrics."""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

STAGES = ("decode", "detect", "track", "anonymize", "composite", "encode")
# Upper bounds (seconds) of the per-stage latency histogram exported to Prometheus.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


@dataclass
class RunStats:
    frames_in: int = 0
    frames_out: int = 0
    frames_dropped: int = 0
    frames_covered: int = 0
    faces: int = 0
    coasted_faces: int = 0
    backfilled_faces: int = 0  # covers added to frames before a late-found face's track
    tracks: int = 0
    corrupt_packets: int = 0
    decode_errors: int = 0
    stage_errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    stage_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    stage_counts: dict[str, list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0] * (len(LATENCY_BUCKETS) + 1)))
    frames_dropped_behind: int = 0
    fallback_faces: int = 0
    identity_refreshes: int = 0  # deid: tracks whose face became someone else mid-track
    frames_expected: int | None = None  # what the input's header announces, when it does
    # Things the user should know although the run succeeded (an input cut short).
    warnings: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    # Sealed originals (anonymizer.seal_originals): crops, bytes stored, seconds spent.
    sealed: dict[str, float] | None = None

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            took = time.perf_counter() - start
            self.stage_seconds[stage] += took
            self.stage_counts[stage][bisect.bisect_left(LATENCY_BUCKETS, took)] += 1

    @property
    def fps(self) -> float:
        return self.frames_in / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def stage_ms_per_frame(self) -> dict[str, float]:
        n = max(self.frames_in, 1)
        return {s: 1000.0 * self.stage_seconds.get(s, 0.0) / n for s in STAGES}

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames_expected": self.frames_expected,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "frames_dropped": self.frames_dropped,
            "frames_dropped_behind": self.frames_dropped_behind,
            "fallback_faces": self.fallback_faces,
            "identity_refreshes": self.identity_refreshes,
            "frames_covered": self.frames_covered,
            "faces": self.faces,
            "coasted_faces": self.coasted_faces,
            "backfilled_faces": self.backfilled_faces,
            "tracks": self.tracks,
            "corrupt_packets": self.corrupt_packets,
            "decode_errors": self.decode_errors,
            "stage_errors": dict(self.stage_errors),
            "wall_seconds": round(self.wall_seconds, 3),
            "fps": round(self.fps, 2),
            "stage_ms_per_frame": {k: round(v, 3) for k, v in self.stage_ms_per_frame().items()},
            "warnings": list(self.warnings),
            **({"sealed": self.sealed} if self.sealed is not None else {}),
        }

    def summary(self) -> str:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in self.stage_ms_per_frame().items())
        parts = [
            f"{self.frames_out}/{self.frames_in} frames written",
            f"{self.faces} faces ({self.coasted_faces} covered from track prediction, "
            f"{self.backfilled_faces} backfilled before a late detection)",
            f"{self.tracks} tracks",
            f"{self.fps:.1f} fps",
            f"ms/frame: {stages}",
        ]
        if self.fallback_faces:
            parts.append(f"{self.fallback_faces} faces too small or too uncertain for the "
                         "generator were anonymized with anonymizer.fallback_mode")
        if self.identity_refreshes:
            parts.append(f"{self.identity_refreshes} times a track's face became someone else "
                         "(tracker ID switch) and got a new fake identity")
        if self.frames_dropped_behind:
            parts.append(f"{self.frames_dropped_behind} frames dropped to stay real-time")
        if self.frames_dropped or self.frames_covered:
            parts.append(f"{self.frames_dropped} dropped, {self.frames_covered} fully covered "
                         "after stage errors")
        if self.corrupt_packets or self.decode_errors:
            parts.append(f"{self.corrupt_packets} corrupt packets, {self.decode_errors} "
                         "undecodable packets skipped")
        if self.sealed is not None:
            parts.append(f"sealed {int(self.sealed['crops'])} original crops "
                         f"({self.sealed['bytes'] / 1e6:.2f} MB, "
                         f"{self.sealed['ms_per_frame']:.1f} ms/frame)")
        parts.extend(f"WARNING: {w}" for w in self.warnings)
        return "; ".join(parts)
