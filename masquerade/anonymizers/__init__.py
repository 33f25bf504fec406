"""Anonymizers: what replaces a face. Chosen by `anonymizer.mode`."""

import functools

from masquerade.anonymizers.base import Anonymizer, FaceRegion, SizeGate, TemporalBlend
from masquerade.anonymizers.classic import (
    BlurAnonymizer,
    PixelateAnonymizer,
    SolidAnonymizer,
    gaussian_blur,
    pixelate,
)
from masquerade.config import AnonymizerConfig, EngineConfig, RecognizerConfig
from masquerade.errors import ConfigError
from masquerade.keys import SecretKey


def build_classic(mode: str, config: AnonymizerConfig) -> Anonymizer:
    if mode == "blur":
        return BlurAnonymizer(config.blur_strength)
    if mode == "pixelate":
        return PixelateAnonymizer(config.pixel_blocks)
    return SolidAnonymizer(config.color)


def identity_key(config: AnonymizerConfig):
    """The keyed identity transform M with the configured angle curve (shared by run and
    restore)."""
    from masquerade.keys.orthogonal import OrthogonalIdentityKey
    from masquerade.keys.rotation import IdentityKey, PrivacyCurve

    curve = PrivacyCurve(max_angle_deg=config.max_identity_angle)
    if config.identity_transform == "rotation":
        return IdentityKey(curve=curve)
    return OrthogonalIdentityKey(curve=curve)


def build_anonymizer(config: AnonymizerConfig, key: SecretKey | None = None,
                     stream_id: str = "default", engine: EngineConfig | None = None,
                     recognizer: RecognizerConfig | None = None) -> Anonymizer:
    """The configured anonymizer; keyed modes derive each track's password from `key`."""
    if config.mode not in ("deid", "camouflage"):
        return build_classic(config.mode, config)
    if key is None:
        raise ConfigError(f"anonymizer.mode={config.mode} needs a key: --password, --key-file "
                          "or the MASQUERADE_KEY environment variable")
    if config.mode == "camouflage":
        from masquerade.anonymizers.camouflage import CamouflageAnonymizer
        from masquerade.models.recognizer import Recognizer

        camouflage = CamouflageAnonymizer(
            password=functools.partial(key.track_password, stream_id),
            recognizer=Recognizer(recognizer, engine), max_strength=config.camouflage_strength,
            margin=config.camouflage_margin, hair=config.camouflage_hair)
        return SizeGate(camouflage, build_classic(config.fallback_mode, config),
                        config.min_generator_face_px, config.min_generator_score)
    from masquerade.anonymizers.deid import KeyedDeidAnonymizer

    generator = KeyedDeidAnonymizer(
        password=functools.partial(key.track_password, stream_id), d=config.privacy_level,
        key=identity_key(config), engine=engine,
        render_every=config.generator_every_n_frames,
        identity_feedback=config.identity_feedback,
        feedback_renders=config.identity_feedback_renders,
        refresh_distance=config.identity_refresh_distance,
        composite=config.deid_composite, gain=config.identity_gain,
        smoothing=config.temporal_smoothing)
    gate = SizeGate(generator, build_classic(config.fallback_mode, config),
                    config.min_generator_face_px, config.min_generator_score)
    if config.deid_composite == "residual":  # the generator smooths its own changes
        return gate
    return TemporalBlend(gate, alpha=1.0 - config.temporal_smoothing)


__all__ = [
    "Anonymizer",
    "BlurAnonymizer",
    "FaceRegion",
    "PixelateAnonymizer",
    "SizeGate",
    "SolidAnonymizer",
    "build_anonymizer",
    "gaussian_blur",
    "pixelate",
]
