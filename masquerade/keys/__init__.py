"""Keys: the master secret, per-stream/per-track passwords, and the keyed identity transform."""

from masquerade.keys.hkdf import hkdf, stream_password, track_password
from masquerade.keys.orthogonal import OrthogonalIdentityKey
from masquerade.keys.reference import ReferenceLibrary
from masquerade.keys.rotation import IdentityKey, PrivacyCurve, rotate, unrotate
from masquerade.keys.secret import KeyMaterialError, SecretKey, load_key

__all__ = [
    "IdentityKey",
    "KeyMaterialError",
    "OrthogonalIdentityKey",
    "PrivacyCurve",
    "ReferenceLibrary",
    "SecretKey",
    "hkdf",
    "load_key",
    "rotate",
    "stream_password",
    "track_password",
    "unrotate",
]
