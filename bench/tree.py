"""A deterministic benchmark tree: many small files, some large ones, symlinks, hard links.

The content compresses about as well as a real root filesystem (text and code compress
well, binaries less): each file mixes pseudo-random bytes with repeated text.  The same
seed and size give the same tree, byte for byte, on any machine.
"""

from __future__ import annotations

import os
import random
import shutil
import sys

__all__ = ["make_tree"]

_WORDS = (
    b"the quick brown fox jumps over the lazy dog container image manifest rootfs layer "
    b"static binary library function return value error handling configuration option "
)


def _content(rng: random.Random, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        chunk = rng.randint(64, 4096)
        if rng.random() < 0.35:
            out += rng.randbytes(chunk)  # incompressible, like machine code
        else:
            start = rng.randrange(len(_WORDS))
            text = (_WORDS[start:] + _WORDS[:start]) * (chunk // len(_WORDS) + 1)
            out += text[:chunk]
    return bytes(out[:size])


def make_tree(path: str, total_mb: int, *, seed: int = 1) -> str:
    """Create (once) ``path`` = a layout dir (``manifest`` + ``rootfs/``) of about *total_mb* MB.

    A finished tree is marked by ``path.complete`` (beside it) and reused.
    """
    marker = path.rstrip("/") + ".complete"
    if os.path.exists(marker):
        return path
    shutil.rmtree(path, ignore_errors=True)
    rng = random.Random(seed)
    rootfs = os.path.join(path, "rootfs")
    os.makedirs(rootfs)
    budget = total_mb * 1_000_000
    large = int(budget * 0.4)
    written = 0
    index = 0
    # Large files: 40 % of the bytes in a handful of files.
    os.makedirs(os.path.join(rootfs, "opt", "big"))
    while written < large:
        size = min(rng.randint(8, 64) * 1_000_000, large - written)
        with open(os.path.join(rootfs, "opt", "big", f"blob{index:03d}.bin"), "wb") as f:
            for _ in range(0, size, 1_000_000):
                f.write(_content(rng, min(1_000_000, size)))
        written += size
        index += 1
    # Many small files in a deep tree.
    directories = []
    for top in ("usr/lib", "usr/share", "usr/bin", "etc", "var/lib"):
        for sub in range(25):
            directory = os.path.join(rootfs, top, f"pkg{sub:02d}", f"sub{sub % 4}")
            os.makedirs(directory, exist_ok=True)
            directories.append(directory)
    files = []
    while written < budget:
        directory = directories[rng.randrange(len(directories))]
        size = int(rng.expovariate(1 / 12_000)) + 1
        name = os.path.join(directory, f"file{len(files):06d}.dat")
        with open(name, "wb") as f:
            f.write(_content(rng, size))
        os.chmod(name, 0o755 if rng.random() < 0.1 else 0o644)
        files.append(name)
        written += size
    for number in range(200):
        source = files[rng.randrange(len(files))]
        os.symlink(
            os.path.relpath(source, os.path.dirname(directories[number % len(directories)])),
            os.path.join(directories[number % len(directories)], f"link{number:03d}"),
        )
        os.link(
            files[rng.randrange(len(files))],
            os.path.join(directories[(number * 7) % len(directories)], f"hard{number:03d}"),
        )
    for root, dirs, names in os.walk(path):
        for name in dirs + names:
            os.utime(
                os.path.join(root, name), (1_600_000_000, 1_600_000_000), follow_symlinks=False
            )
    with open(os.path.join(path, "manifest"), "w", encoding="ascii") as f:
        f.write(
            '{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/bench",'
            '"app":{"exec":["/bin/true"],"user":"0","group":"0"}}'
        )
    with open(marker, "w", encoding="ascii"):
        pass
    return path


if __name__ == "__main__":
    print(make_tree(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 400))
