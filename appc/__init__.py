"""appc: the App Container toolchain as a Python library.

Build, check, convert, sign, fetch and run App Container Images (ACIs)::

    import appc
    manifest = appc.ImageManifest(name="example.com/hello",
                                  app=appc.App(exec=["/bin/hello"], user="0", group="0"))

The spec's value types live in :mod:`appc.types`, the manifests in :mod:`appc.schema`,
image archives in :mod:`appc.aci`, and every error the library raises derives from
:class:`appc.errors.AppcError`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appc.errors import AppcError, ImageError, InvalidManifest, ValidationError
    from appc.schema import SPEC_VERSION, App, ImageManifest, PodManifest

__version__ = "0.1.0"

# Names are imported on first use so that ``import appc.errors`` (or a CLI's start-up)
# does not pay for building every spec class.
_LAZY = {
    "AppcError": "appc.errors",
    "ImageError": "appc.errors",
    "InvalidManifest": "appc.errors",
    "ValidationError": "appc.errors",
    "SPEC_VERSION": "appc.schema",
    "App": "appc.schema",
    "ImageManifest": "appc.schema",
    "PodManifest": "appc.schema",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'appc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

__all__ = [
    "SPEC_VERSION",
    "App",
    "AppcError",
    "ImageError",
    "ImageManifest",
    "InvalidManifest",
    "PodManifest",
    "ValidationError",
    "__version__",
]


def __dir__() -> list[str]:
    return __all__
