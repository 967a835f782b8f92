"""The two documents of the spec: :class:`ImageManifest` and :class:`PodManifest`.

Reading follows the reference decoder (keys match case-insensitively, ``null`` is
absent, unknown keys are ignored), checks the structure against the JSON Schemas
shipped in ``schemas/`` and then every rule of the spec, and reports all problems at
once with their field paths (:class:`appc.errors.InvalidManifest`).  Writing gives the
canonical key order of the reference tool.
"""

from __future__ import annotations

from appc.schema.image import SPEC_VERSION, App, ImageManifest
from appc.schema.pod import Mount, PodManifest, RuntimeApp, RuntimeImage

__all__ = [
    "SPEC_VERSION",
    "App",
    "ImageManifest",
    "Mount",
    "PodManifest",
    "RuntimeApp",
    "RuntimeImage",
]


def __dir__() -> list[str]:
    return __all__
