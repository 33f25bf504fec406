import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from masquerade.keys.reference import ReferenceLibrary
from masquerade.keys.rotation import (
    IdentityKey,
    PrivacyCurve,
    applied_angle,
    rotate,
    unrotate,
)


@pytest.fixture(scope="module")
def key():
    """A key over a synthetic library shaped like dlib descriptors (a cone, not centred)."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=128)
    base *= 0.8 / np.linalg.norm(base)
    embeddings = base + rng.normal(scale=0.45 / np.sqrt(128), size=(300, 128))
    return IdentityKey(ReferenceLibrary(embeddings), PrivacyCurve(90.0))


descriptors = st.integers(0, 2**32 - 1).map(
    lambda s: np.random.default_rng(s).normal(size=128) * np.random.default_rng(s).uniform(0.1, 3)
)
passwords = st.binary(min_size=1, max_size=40)
levels = st.floats(0.0, 1.0)


@settings(max_examples=200, deadline=None)
@given(descriptors, passwords, levels)
def test_inverse_recovers_z(key, z, p, d):
    z_new = key.apply(z, p, d)
    c = key.centre
    np.testing.assert_allclose(np.linalg.norm(z_new - c), np.linalg.norm(z - c), rtol=1e-12)
    np.testing.assert_allclose(key.invert(z_new, p, d), z, atol=1e-9 * np.linalg.norm(z))


@settings(max_examples=100, deadline=None)
@given(descriptors, passwords, passwords, st.floats(0.05, 1.0))
def test_different_passwords_give_different_outputs_and_do_not_invert(key, z, p, q, d):
    assume(p != q)
    z_p = key.apply(z, p, d)
    assert np.linalg.norm(z_p - key.apply(z, q, d)) > 1e-6 * np.linalg.norm(z)
    assert np.linalg.norm(key.invert(z_p, q, d) - z) > 1e-6 * np.linalg.norm(z)


@settings(max_examples=100, deadline=None)
@given(descriptors, passwords, st.floats(0.05, 1.0), st.floats(0.05, 1.0))
def test_wrong_privacy_level_does_not_invert(key, z, p, d, d_wrong):
    assume(abs(d - d_wrong) > 0.02)
    z_new = key.apply(z, p, d)
    assert np.linalg.norm(key.invert(z_new, p, d_wrong) - z) > 1e-6 * np.linalg.norm(z)


def test_rotation_moves_towards_the_target_by_at_most_the_nominal_angle():
    rng = np.random.default_rng(1)
    z, f = rng.normal(size=(500, 128)), rng.normal(size=(500, 128))
    g = rng.uniform(0, np.pi, 500)
    z_new = rotate(z, f, g)
    cos = lambda a, b: (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)  # noqa: E731
    moved = np.arccos(np.clip(cos(z, z_new), -1, 1))
    before, after = np.arccos(cos(z, f)), np.arccos(cos(z_new, f))
    np.testing.assert_allclose(moved, before - after, atol=1e-7)  # straight towards f
    assert np.all(moved <= np.minimum(g, before) + 1e-9)
    assert np.all(after > 0)  # never reaches or passes f: one-to-one


def test_applied_angle_is_nominal_far_away_and_a_fraction_near():
    assert applied_angle(np.pi, 0.2) == pytest.approx(0.2, rel=1e-4)
    assert applied_angle(1e-6, 1.0) == pytest.approx(0.9e-6, rel=1e-6)
    assert applied_angle(0.5, 0.0) == 0 and applied_angle(0.0, 1.0) == 0
    a = np.linspace(0, np.pi, 10001)
    b = a - applied_angle(a, 1.5)
    assert np.all(np.diff(b) > 0)  # the new angle to f(p) is strictly increasing: one-to-one


def test_degenerate_directions():
    f = np.zeros(128)
    f[3] = 1.0
    for z in (2.5 * f, -2.5 * f, 2.5 * f + 1e-14, np.zeros(128)):
        z_new = rotate(z, f, 1.0)
        assert np.all(np.isfinite(z_new))
        np.testing.assert_allclose(unrotate(z_new, f, 1.0), z, atol=1e-9)
    np.testing.assert_allclose(rotate(2.5 * f, f, 1.0), 2.5 * f)  # the target is a fixed point
    flipped = rotate(-2.5 * f, f, 1.0)  # antipode: moves off the pole by the nominal angle
    assert np.dot(flipped, f) / 2.5 == pytest.approx(-np.cos(applied_angle(np.pi, 1.0)))


def test_d_zero_is_identity(key):
    z = np.random.default_rng(2).normal(size=(4, 128))
    np.testing.assert_allclose(key.apply(z, b"pw", 0.0), z, atol=1e-12)


def test_privacy_curve_bounds():
    curve = PrivacyCurve(120.0, 2.0)
    assert curve.angle(1.0) == pytest.approx(np.deg2rad(120))
    assert curve.angle(0.5) == pytest.approx(np.deg2rad(30))
    with pytest.raises(ValueError):
        curve.angle(1.5)


def test_batches_with_one_password_per_face(key):
    z = np.random.default_rng(5).normal(size=(3, 128))
    passwords = [b"track-0", b"track-1", b"track-2"]
    batch = key.apply(z, passwords, 0.7)
    singles = np.stack([key.apply(zi, p, 0.7) for zi, p in zip(z, passwords, strict=True)])
    np.testing.assert_allclose(batch, singles, atol=1e-12)
    np.testing.assert_allclose(key.invert(batch, passwords, 0.7), z, atol=1e-9)
