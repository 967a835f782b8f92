"""The image store and the tree store (rkt's ``cas/``), shared by ``rkt fetch``, ``rkt image`` and ``rkt run``.

* :class:`ImageStore` — content-addressed blobs (uncompressed image tars) keyed by
  image ID, their manifests, and an sqlite index (name, labels, times, ``latest``,
  HTTP cache rows); atomic, crash-safe and multi-process-safe imports and removals.
* :class:`TreeStore` — rendered root filesystems of images with their dependencies,
  rendered once and marked complete last.
* :func:`render_image`, :func:`extract_stored` — ``rkt image render`` / ``extract``.
* :mod:`appc.store.locks` — the ``flock`` helpers (also for the runtime's pod locks).

Example::

    store = ImageStore("/var/lib/rkt")
    image = store.import_image("hello.aci")
    tree = TreeStore(store).render(image.key)
    print(tree.rootfs)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appc.store.images import (
        DEFAULT_DATA_DIR,
        KEY_LENGTH,
        MIN_KEY_LENGTH,
        ImageStore,
        RemoteInfo,
        StoredImage,
        is_key,
        key_for,
    )
    from appc.store.locks import FileLock, KeyLock, LockBusy, lock_directory, lock_file
    from appc.store.render import (
        DependencyImage,
        dependency_list,
        extract_stored,
        render_image,
        render_rootfs,
        tree_digest,
    )
    from appc.store.tree import TREE_PREFIX, RenderedTree, TreeStore, tree_id_for

# Names load on first use: the runtime takes only the locks, not sqlite and the renderer.
_LAZY = {
    "DEFAULT_DATA_DIR": "appc.store.images",
    "DependencyImage": "appc.store.render",
    "FileLock": "appc.store.locks",
    "ImageStore": "appc.store.images",
    "KEY_LENGTH": "appc.store.images",
    "KeyLock": "appc.store.locks",
    "LockBusy": "appc.store.locks",
    "MIN_KEY_LENGTH": "appc.store.images",
    "RemoteInfo": "appc.store.images",
    "RenderedTree": "appc.store.tree",
    "StoredImage": "appc.store.images",
    "TREE_PREFIX": "appc.store.tree",
    "TreeStore": "appc.store.tree",
    "dependency_list": "appc.store.render",
    "extract_stored": "appc.store.render",
    "is_key": "appc.store.images",
    "key_for": "appc.store.images",
    "lock_directory": "appc.store.locks",
    "lock_file": "appc.store.locks",
    "render_image": "appc.store.render",
    "render_rootfs": "appc.store.render",
    "tree_digest": "appc.store.render",
    "tree_id_for": "appc.store.tree",
}

__all__ = [
    "DEFAULT_DATA_DIR",
    "KEY_LENGTH",
    "MIN_KEY_LENGTH",
    "TREE_PREFIX",
    "DependencyImage",
    "FileLock",
    "ImageStore",
    "KeyLock",
    "LockBusy",
    "RemoteInfo",
    "RenderedTree",
    "StoredImage",
    "TreeStore",
    "dependency_list",
    "extract_stored",
    "is_key",
    "key_for",
    "lock_directory",
    "lock_file",
    "render_image",
    "render_rootfs",
    "tree_digest",
    "tree_id_for",
]


def __dir__() -> list[str]:
    return __all__


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'appc.store' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
