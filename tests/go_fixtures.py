"""Go modules for the goaci tests, written by code (nothing is downloaded).

Each ``write_*`` function writes one small module into a directory and returns that
directory.  The programs import as little of the standard library as they can, so a
cold build cache (or a cross build, which compiles the runtime for another arch) stays
cheap.  :func:`write_file_proxy` lays out a ``GOPROXY=file://`` tree (``list``,
``.info``, ``.mod``, ``.zip``) so ``go install path@version`` works offline.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import zipfile
from collections.abc import Mapping

__all__ = [
    "go_test_env",
    "write_broken_module",
    "write_cgo_module",
    "write_file_proxy",
    "write_library_module",
    "write_module",
    "write_replace_modules",
    "write_single_module",
    "write_tiny_module",
    "write_two_binary_module",
]

GO_VERSION = "1.19"


def go_test_env(gocache: str, gomodcache: str, gopath: str, **extra: str) -> dict[str, str]:
    """The process environment for Go in tests: offline, no checksum database, no user
    Go settings, a shared build cache."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOOS", "GOARCH", "GOARM", "GOBIN", "CGO_ENABLED", "GOROOT", "GOWORK")}
    env.update(
        GOPROXY="off",
        GOSUMDB="off",
        GOFLAGS="",
        GOENV="off",
        GOTOOLCHAIN="local",
        GOCACHE=gocache,
        GOMODCACHE=gomodcache,
        GOPATH=gopath,
    )
    env.update(extra)
    return env


def write_module(root: pathlib.Path, module: str, files: Mapping[str, str],
                 go_mod_extra: str = "") -> pathlib.Path:
    """Write ``go.mod`` for *module* and *files* (relative path → text) under *root*."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "go.mod").write_text(f"module {module}\n\ngo {GO_VERSION}\n{go_mod_extra}")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def write_single_module(root: pathlib.Path) -> pathlib.Path:
    """``example.com/Single``: one main package printing its arguments (mixed case on
    purpose: the image name must come out lower-cased)."""
    return write_module(root, "example.com/Single", {
        "main.go": (
            "package main\n\nimport \"os\"\n\n"
            "func main() {\n"
            "\tos.Stdout.WriteString(\"single says hello\")\n"
            "\tfor _, a := range os.Args[1:] {\n\t\tos.Stdout.WriteString(\" \" + a)\n\t}\n"
            "\tos.Stdout.WriteString(\"\\n\")\n"
            "}\n"
        ),
        "conf/app.conf": "answer=42\n",
    })


def write_tiny_module(root: pathlib.Path, module: str = "example.com/tiny") -> pathlib.Path:
    """A main package that needs nothing but the runtime (cheap to cross-compile)."""
    return write_module(root, module, {"main.go": 'package main\n\nfunc main() { println("tiny") }\n'})


def write_two_binary_module(root: pathlib.Path) -> pathlib.Path:
    """``example.com/multi`` with ``cmd/alpha`` and ``cmd/beta`` and a library, no main at the top."""
    return write_module(root, "example.com/multi", {
        "cmd/alpha/main.go": 'package main\n\nfunc main() { println("alpha") }\n',
        "cmd/beta/main.go": 'package main\n\nfunc main() { println("beta") }\n',
        "util/util.go": "package util\n\n// Answer is 42.\nfunc Answer() int { return 42 }\n",
    })


def write_library_module(root: pathlib.Path) -> pathlib.Path:
    """``example.com/justlib``: a module whose only package is not ``main``."""
    return write_module(root, "example.com/justlib", {
        "lib.go": "package justlib\n\n// Answer is 42.\nfunc Answer() int { return 42 }\n",
    })


def write_broken_module(root: pathlib.Path) -> pathlib.Path:
    """``example.com/broken``: a main package with a type error."""
    return write_module(root, "example.com/broken", {
        "main.go": "package main\n\nfunc main() {\n\tundefinedThing()\n}\n",
    })


def write_replace_modules(root: pathlib.Path) -> pathlib.Path:
    """``app`` requiring ``example.com/greeting`` replaced by the sibling directory ``greeting``;
    returns the ``app`` directory."""
    write_module(root / "greeting", "example.com/greeting", {
        "greeting.go": 'package greeting\n\n// Text is the greeting.\nconst Text = "hello from a replaced module"\n',
    })
    return write_module(
        root / "app", "example.com/app",
        {"main.go": (
            'package main\n\nimport (\n\t"os"\n\n\t"example.com/greeting"\n)\n\n'
            'func main() { os.Stdout.WriteString(greeting.Text + "\\n") }\n'
        )},
        go_mod_extra="\nrequire example.com/greeting v0.0.0\n\nreplace example.com/greeting => ../greeting\n",
    )


def write_cgo_module(root: pathlib.Path) -> pathlib.Path:
    """``example.com/cgohello``: calls C's ``printf`` (a dynamic binary needing libc)."""
    return write_module(root, "example.com/cgohello", {
        "main.go": (
            "package main\n\n"
            "/*\n#include <stdio.h>\n"
            "static void hello(void) { printf(\"hello from cgo\\n\"); fflush(stdout); }\n*/\n"
            'import "C"\n\nfunc main() { C.hello() }\n'
        ),
    })


def write_file_proxy(proxy: pathlib.Path, module: str, version: str,
                     files: Mapping[str, str]) -> str:
    """Add *module* at *version* with *files* (plus its go.mod) to the file proxy at *proxy*;
    return the ``GOPROXY`` value (``file:///...``)."""
    go_mod = f"module {module}\n\ngo {GO_VERSION}\n"
    base = proxy / module / "@v"
    base.mkdir(parents=True, exist_ok=True)
    with (base / "list").open("a") as f:
        f.write(version + "\n")
    (base / f"{version}.info").write_text(f'{{"Version":"{version}","Time":"2020-01-01T00:00:00Z"}}\n')
    (base / f"{version}.mod").write_text(go_mod)
    prefix = f"{module}@{version}/"
    with zipfile.ZipFile(base / f"{version}.zip", "w") as z:
        z.writestr(prefix + "go.mod", go_mod)
        for name, text in sorted(files.items()):
            z.writestr(prefix + name, text)
    return proxy.resolve().as_uri()


def shared_gocache() -> str:
    """The user's Go build cache (``go env GOCACHE``), shared by all tests and runs.

    Go's cache is content-addressed and safe for concurrent use, and a cold one costs
    tens of seconds (the standard library is rebuilt for ``CGO_ENABLED=0 -trimpath``,
    for cgo, and for each cross target); reusing it keeps the suite fast.  Returns ``""``
    when there is none (``GOCACHE=off``).
    """
    go = shutil.which("go")
    if go is None:
        return ""
    value = subprocess.run([go, "env", "GOCACHE"], capture_output=True, text=True, check=False).stdout.strip()
    return "" if value in ("", "off") else value
