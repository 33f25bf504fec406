"""Anonymizers: what replaces a face. Chosen by `anonymizer.mode`."""

from masquerade.anonymizers.base import Anonymizer, FaceRegion
from masquerade.anonymizers.classic import (
    BlurAnonymizer,
    PixelateAnonymizer,
    SolidAnonymizer,
    gaussian_blur,
    pixelate,
)
from masquerade.config import AnonymizerConfig


def build_anonymizer(config: AnonymizerConfig) -> Anonymizer:
    if config.mode == "blur":
        return BlurAnonymizer(config.blur_strength)
    if config.mode == "pixelate":
        return PixelateAnonymizer(config.pixel_blocks)
    return SolidAnonymizer(config.color)


__all__ = [
    "Anonymizer",
    "BlurAnonymizer",
    "FaceRegion",
    "PixelateAnonymizer",
    "SolidAnonymizer",
    "build_anonymizer",
    "gaussian_blur",
    "pixelate",
]
