"""Progress lines on a terminal (stderr), for downloads and long conversions."""

from __future__ import annotations

import threading
import time
from typing import TextIO

from appc.docker.remote import DownloadProgress

__all__ = ["TerminalProgress", "human_size"]


def human_size(count: float) -> str:
    """``1536`` → ``1.5 KB`` (powers of 1000, as Docker prints sizes)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


class TerminalProgress(DownloadProgress):
    """One status line, redrawn at most every 0.2 s: blobs done, bytes received, rate."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._totals: dict[str, int | None] = {}
        self._done: dict[str, int] = {}
        self._finished: set[str] = set()
        self._start = time.monotonic()
        self._last = 0.0

    def start(self, digest: str, total: int | None) -> None:
        with self._lock:
            self._totals[digest] = total
            self._done.setdefault(digest, 0)
        self._draw()

    def advance(self, digest: str, count: int) -> None:
        with self._lock:
            self._done[digest] = self._done.get(digest, 0) + count
        self._draw()

    def finish(self, digest: str) -> None:
        with self._lock:
            self._finished.add(digest)
        self._draw(force=True)

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last < 0.2:
                return
            self._last = now
            received = sum(self._done.values())
            known = [t for t in self._totals.values() if t is not None]
            total = (
                f" / {human_size(sum(known))}" if len(known) == len(self._totals) and known else ""
            )
            rate = received / max(now - self._start, 1e-3)
            line = (
                f"Downloading {len(self._finished)}/{len(self._totals)} blobs: "
                f"{human_size(received)}{total} ({human_size(rate)}/s)"
            )
        self._stream.write(f"\r{line:<70}")
        self._stream.flush()

    def close(self) -> None:
        """End the status line."""
        with self._lock:
            started = bool(self._totals)
        if started:
            self._stream.write("\n")
            self._stream.flush()
