from importlib import resources

import numpy as np
import pytest

from masquerade.keys.reference import LIBRARY_FILE, MIN_K, ReferenceLibrary


@pytest.fixture(scope="module")
def library():
    return ReferenceLibrary.load()


def test_shipped_library_is_small_float16_identities():
    raw = np.load(resources.files("masquerade.keys") / LIBRARY_FILE)
    assert raw.dtype == np.float16
    assert raw.ndim == 2 and raw.shape[1] == 128 and 100 <= raw.shape[0] <= 1000
    assert np.isfinite(raw).all()
    # distinct people, not copies: no two rows closer than dlib's same-person threshold/2
    d = np.linalg.norm(raw[:, None].astype(np.float32) - raw[None].astype(np.float32), axis=-1)
    assert d[~np.eye(len(raw), dtype=bool)].min() > 0.3


def test_target_is_deterministic_unit_and_password_specific(library):
    a = library.target(b"track-1")
    np.testing.assert_array_equal(a, library.target(b"track-1"))
    assert np.linalg.norm(a) == pytest.approx(1.0)
    targets = np.stack([library.target(bytes([i])) for i in range(50)])
    cos = targets @ targets.T
    assert cos[~np.eye(50, dtype=bool)].max() < 0.999


def test_password_picks_k_distinct_identities(library):
    idx, weights = library.choose(b"secret")
    assert len(set(idx.tolist())) == len(idx) == library.k >= MIN_K
    assert np.all((weights >= 0.5) & (weights < 1.5))
    other, _ = library.choose(b"secret2")
    assert set(idx.tolist()) != set(other.tolist())
    # pinned: the same password must pick the same people in every release
    assert library.choose(b"pin")[0].tolist() == [
        390, 499, 48, 399, 276, 391, 435, 432, 264, 292, 426, 501, 392, 379, 303, 202
    ]


def test_reference_identity_is_no_library_person(library):
    """dlib would not match the synthetic identity to any of the people it mixes."""
    people = library.embeddings
    nearest = [np.linalg.norm(people - library.descriptor(bytes([i, 7])), axis=1).min()
               for i in range(30)]
    assert min(nearest) > 0.3


def test_reference_descriptor_looks_like_a_face(library):
    """As far from the centre as real people are, and a direction among theirs."""
    offsets = np.linalg.norm(library.embeddings - library.mean, axis=1)
    descriptor = library.descriptor(b"x")
    assert np.percentile(offsets, 5) < np.linalg.norm(descriptor - library.mean) < offsets.max()
    nearest = np.linalg.norm(library.embeddings - descriptor, axis=1).min()
    assert nearest < 0.9


def test_k_must_be_at_least_ten():
    with pytest.raises(ValueError):
        ReferenceLibrary(np.random.default_rng(0).normal(size=(50, 128)), k=5)
