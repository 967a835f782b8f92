"""Shared fixtures.  Every fixture builds its data from code here; nothing is downloaded."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def run_tool(tmp_path: pathlib.Path):
    """Run a console tool (``actool`` ...) as a user would, in a subprocess; returns CompletedProcess."""

    def run(tool: str, *args: str, cwd: os.PathLike[str] | str | None = None, input: bytes | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        module = {"actool": "appc_tools.actool"}[tool]
        full_env = dict(os.environ, **(env or {}))
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=cwd or tmp_path, input=input.decode() if input else None,
            capture_output=True, text=True, env=full_env, timeout=300, check=False,
        )

    return run


# `pytest` run directly (not `python -m pytest`) does not put the repository on sys.path;
# the test modules import their generators as `tests.aci_fixtures`.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Real registries, token server and push helpers for the docker2aci tests.
pytest_plugins = ["tests.registry_fixtures"]
