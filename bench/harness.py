"""Measuring commands against baselines in the same run: alternate, repeat, take medians.

These machines are shared and noisy, so no absolute time means much: every benchmark
runs beside its baseline, alternating, several times, and the report is a ratio.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Result", "Sample", "compare", "measure", "print_table"]


@dataclass
class Sample:
    """One run: wall seconds, peak RSS of the measured process (KiB), exit status."""

    wall: float
    max_rss_kib: int
    status: int


def measure(
    command: str | Sequence[str], *, cwd: str | None = None, env: dict[str, str] | None = None
) -> Sample:
    """Run *command* (a shell string for pipelines, or argv) and measure it.

    The peak RSS is the measured process's own (``wait4``): for a pipeline run through
    the shell it is the shell's, so only our single-process tools report memory.
    """
    shell = isinstance(command, str)
    start = time.perf_counter()
    process = subprocess.Popen(
        command, shell=shell, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        error = process.stderr.read().decode(errors="replace") if process.stderr else ""
        raise RuntimeError(f"benchmark command failed ({process.returncode}): {command}\n{error}")
    if process.stderr:
        process.stderr.close()
    return Sample(wall, usage.ru_maxrss, process.returncode)


@dataclass
class Result:
    """A benchmark beside its baseline."""

    name: str
    ours: list[Sample] = field(default_factory=list)
    baseline: list[Sample] = field(default_factory=list)
    data_bytes: int = 0  # what throughput is computed on (uncompressed tar size)
    our_size: int = 0
    baseline_size: int = 0
    target: str = ""
    met: bool | None = None
    note: str = ""
    extra: str = ""

    @property
    def our_median(self) -> float:
        return statistics.median(s.wall for s in self.ours)

    @property
    def baseline_median(self) -> float:
        return statistics.median(s.wall for s in self.baseline)

    @property
    def speedup(self) -> float:
        """How many times faster than the baseline (>1: faster)."""
        return self.baseline_median / self.our_median

    @property
    def peak_rss_mib(self) -> float:
        return max(s.max_rss_kib for s in self.ours) / 1024


def compare(
    name: str,
    ours: Callable[[], Sample],
    baseline: Callable[[], Sample],
    *,
    repeat: int = 3,
    before_each: Callable[[], None] | None = None,
) -> Result:
    """Run *ours* and *baseline* alternately *repeat* times each."""
    result = Result(name)
    for index in range(repeat):
        order = (ours, baseline) if index % 2 == 0 else (baseline, ours)
        for run in order:
            if before_each is not None:
                before_each()
            sample = run()
            (result.ours if run is ours else result.baseline).append(sample)
    return result


def _mb(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count else "-"


def print_table(results: Sequence[Result]) -> None:
    """The report: medians, ratio, throughput, peak RSS, sizes, target and verdict."""
    header = (
        "benchmark",
        "ours (s)",
        "baseline (s)",
        "speedup",
        "ours MB/s",
        "peak RSS",
        "ours size",
        "base size",
        "target",
        "met",
    )
    rows = [header]
    for r in results:
        throughput = f"{r.data_bytes / 1e6 / r.our_median:.0f}" if r.data_bytes else "-"
        verdict = "-" if r.met is None else ("yes" if r.met else "NO")
        rows.append(
            (
                r.name,
                f"{r.our_median:.3f}",
                f"{r.baseline_median:.3f}",
                f"{r.speedup:.2f}x",
                throughput,
                f"{r.peak_rss_mib:.0f} MiB",
                _mb(r.our_size),
                _mb(r.baseline_size),
                r.target,
                verdict,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))
    notes = [f"  {r.name}: {r.note}" for r in results if r.note]
    extras = [f"  {r.name}: {r.extra}" for r in results if r.extra]
    if notes or extras:
        print("\nnotes:")
        for line in notes + extras:
            print(line)
