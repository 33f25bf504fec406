"""Which keys open which tracks of a seal store: the master key, or exported track keys.

The two holders differ in what they may learn and verify. The master key derives every
track's key and the index key, so it can open any track and vouch for the whole store.
Exported track keys open their own tracks of their own file only; asking them for another
track, or for another file's tracks, is refused with a line that says which keys were
given, so an operator cannot mistake "not disclosed" for "not there".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from masquerade.keys.seal_keys import TrackKey, seal_index_key
from masquerade.keys.secret import KeyMaterialError, SecretKey, WrongKeyError
from masquerade.seals.format import SealError

if TYPE_CHECKING:
    from masquerade.seals.reader import SealStore


class SealKeys(Protocol):
    def tracks(self, store: SealStore) -> list[int]:
        """The tracks these keys may open (all, for the master key)."""

    def check(self, store: SealStore, track_id: int, check: str) -> None:
        """Raise unless these keys hold the key that sealed `track_id`."""

    def index_key(self, store: SealStore) -> bytes | None:
        """The key of the index MAC, or None when these keys cannot vouch for it."""

    def track(self, store: SealStore, track_id: int) -> TrackKey: ...

    def aead(self, store: SealStore, track_id: int) -> AESGCM: ...


class MasterKeys:
    """Every track of every store sealed under this master key."""

    def __init__(self, key: SecretKey):
        self.key = key
        self._tracks: dict[tuple[bytes, int], tuple[TrackKey, AESGCM]] = {}

    def tracks(self, store: SealStore) -> list[int]:
        return sorted(store.tracks)

    def _check_file(self, store: SealStore) -> None:
        if store.key_id != self.key.key_id():
            raise WrongKeyError(f"this key is not the one used to seal {store.path}")

    def check(self, store: SealStore, track_id: int, check: str) -> None:
        self._check_file(store)
        if self.track(store, track_id).check != check:
            raise SealError(f"{store.name}: the key check of track {track_id} does not match "
                            "the master key that wrote the store: its index was altered")

    def index_key(self, store: SealStore) -> bytes:
        self._check_file(store)
        return seal_index_key(self.key.expose(), store.stream_id, store.seal_id)

    def _get(self, store: SealStore, track_id: int) -> tuple[TrackKey, AESGCM]:
        entry = self._tracks.get((store.seal_id, track_id))
        if entry is None:
            key = TrackKey.derive(self.key, store.stream_id, store.seal_id, track_id)
            entry = self._tracks[(store.seal_id, track_id)] = (key, AESGCM(key.aead_key()))
        return entry

    def track(self, store: SealStore, track_id: int) -> TrackKey:
        return self._get(store, track_id)[0]

    def aead(self, store: SealStore, track_id: int) -> AESGCM:
        return self._get(store, track_id)[1]


class ExportedTrackKeys:
    """Keys exported for single tracks (`masquerade keys export-track`)."""

    def __init__(self, keys: list[TrackKey]):
        self.keys = keys
        self._aeads = {id(k): AESGCM(k.aead_key()) for k in keys}

    def _mine(self, store: SealStore) -> dict[int, TrackKey]:
        mine = {k.track_id: k for k in self.keys if k.seal_id == store.seal_id}
        if not mine:
            raise WrongKeyError(f"the track key(s) given are for another sealed video, not "
                                f"{store.path}")
        return mine

    def tracks(self, store: SealStore) -> list[int]:
        return sorted(self._mine(store))

    def check(self, store: SealStore, track_id: int, check: str) -> None:
        key = self.track(store, track_id)
        if key.check != check:
            raise WrongKeyError(f"the track key given for track {track_id} is not the one "
                                f"that sealed it in {store.path}")

    def index_key(self, store: SealStore) -> None:
        return None

    def track(self, store: SealStore, track_id: int) -> TrackKey:
        mine = self._mine(store)
        if track_id not in mine:
            opens = ", ".join(str(t) for t in sorted(mine))
            raise KeyMaterialError(f"no key for track {track_id}: the track key(s) given open "
                                   f"track {opens} of {store.path} only")
        return mine[track_id]

    def aead(self, store: SealStore, track_id: int) -> AESGCM:
        return self._aeads[id(self.track(store, track_id))]
