"""Image generation: a small protocol, three backends chosen by configuration, provenance and safety.

Importing this package does not import torch or diffusers; the diffusers backend loads them when a
"tiny" or "model" backend is first built.
"""

from contentforge.images.factory import build_image_backend, reset_image_backends
from contentforge.images.protocol import GeneratedImage, ImageBackend, ImageRequest
from contentforge.images.provenance import (
    DIGITAL_SOURCE_TYPE,
    Provenance,
    png_with_provenance,
    read_provenance,
)
from contentforge.images.safety import check_model_file, validate_lora

__all__ = [
    "DIGITAL_SOURCE_TYPE",
    "GeneratedImage",
    "ImageBackend",
    "ImageRequest",
    "Provenance",
    "build_image_backend",
    "check_model_file",
    "png_with_provenance",
    "read_provenance",
    "reset_image_backends",
    "validate_lora",
]
