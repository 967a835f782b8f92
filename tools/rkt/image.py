"""``rkt image``: list, remove, collect, export, extract, render and show stored images."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from appc_tools._cli import EXIT_OK, Command, UsageError
from appc_tools.rkt._common import EXIT_RKT_FAILURE, format_time, human_duration, print_json, store

__all__ = ["COMMAND"]

_FIELDS = ("id", "name", "importtime", "lastused", "size", "latest")
_HEADERS = {
    "id": "ID",
    "name": "NAME",
    "importtime": "IMPORT TIME",
    "lastused": "LAST USED",
    "size": "SIZE",
    "latest": "LATEST",
}


def _iec(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size}{unit}" if unit == "B" else f"{size:.0f}{unit}"
        size //= 1024
    return f"{size}TiB"


def _display_name(image: Any) -> str:
    version = image.manifest.labels.get("version")
    return f"{image.name}:{version}" if version else str(image.name)


def _resolve(images_store: Any, text: str) -> Any:
    """An image by ID (prefix) or by name[:version]."""
    from appc.errors import StoreError  # noqa: PLC0415

    if text.startswith("sha512-"):
        return images_store.get(text)
    name, _, version = text.partition(":")
    found = images_store.find(name, {"version": version} if version else {})
    if found is None:
        raise StoreError(f"no image {text!r} in the store")
    return found


# --- list -------------------------------------------------------------------------------


def _configure_list(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fields",
        default=",".join(_FIELDS),
        help=f"comma-separated columns ({', '.join(_FIELDS)})",
    )
    p.add_argument(
        "--sort",
        default="importtime",
        choices=_FIELDS,
        help="sort by this field (default importtime)",
    )
    p.add_argument("--order", default="asc", choices=("asc", "desc"))
    p.add_argument("--full", action="store_true", help="full IDs, absolute times, sizes in bytes")
    p.add_argument("--no-legend", action="store_true", help="no header line")
    p.add_argument("--format", default="", choices=("", "json", "json-pretty"))


def _row(image: Any, full: bool) -> dict[str, str]:
    size = image.size + image.tree_size
    return {
        "id": image.key if full else image.key[: len("sha512-") + 12],
        "name": _display_name(image),
        "importtime": format_time(image.import_time) if full else human_duration(image.import_time),
        "lastused": format_time(image.last_used) if full else human_duration(image.last_used),
        "size": str(size) if full else _iec(size),
        "latest": str(image.latest).lower(),
    }


def _run_list(args: argparse.Namespace) -> int:
    fields = [f.strip().lower() for f in args.fields.split(",") if f.strip()]
    unknown = [f for f in fields if f not in _FIELDS]
    if unknown:
        raise UsageError(f"rkt image list: unknown field(s) {', '.join(unknown)}")
    with store(args) as images_store:
        images = images_store.list()
    key = {
        "id": lambda i: i.key,
        "name": lambda i: str(i.name),
        "importtime": lambda i: i.import_time,
        "lastused": lambda i: i.last_used,
        "size": lambda i: i.size + i.tree_size,
        "latest": lambda i: i.latest,
    }[args.sort]
    images.sort(key=key, reverse=args.order == "desc")
    if args.format:
        print_json(
            [
                {
                    "id": i.key,
                    "name": _display_name(i),
                    "import_time": int(i.import_time.timestamp() * 1e9),
                    "last_used_time": int(i.last_used.timestamp() * 1e9),
                    "size": i.size + i.tree_size,
                }
                for i in images
            ],
            args.format,
        )
        return EXIT_OK
    rows = [[_row(i, args.full)[f] for f in fields] for i in images]
    if not args.no_legend:
        rows.insert(0, [_HEADERS[f] for f in fields])
    widths = [max((len(r[c]) for r in rows), default=0) for c in range(len(fields))]
    for row in rows:
        sys.stdout.write(
            "\t".join(cell.ljust(widths[c]) for c, cell in enumerate(row)).rstrip() + "\n"
        )
    return EXIT_OK


# --- rm / gc ----------------------------------------------------------------------------


def _configure_rm(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE-ID-OR-NAME")


def _run_rm(args: argparse.Namespace) -> int:
    from appc.errors import AppcError  # noqa: PLC0415

    removed = 0
    with store(args) as images_store:
        for text in args.images:
            try:
                image = _resolve(images_store, text)
                images_store.remove(image.key)
            except AppcError as err:
                sys.stderr.write(f"rkt image rm: {text}: {err}\n")
                continue
            sys.stdout.write(f'successfully removed aci for image: "{image.key}"\n')
            removed += 1
    sys.stderr.write(f"{removed} image(s) successfully removed\n")
    return EXIT_OK if removed == len(args.images) else EXIT_RKT_FAILURE


def _configure_gc(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--grace-period", default="24h", help="remove images unused for this long (default 24h)"
    )


def _run_gc(args: argparse.Namespace) -> int:
    from appc_tools.rkt._duration import parse_duration  # noqa: PLC0415

    from appc.store import TreeStore  # noqa: PLC0415

    grace = parse_duration(args.grace_period)
    with store(args) as images_store:
        trees = TreeStore(images_store)
        in_use = _trees_in_use(args.dir)
        for tree_id in trees.gc(in_use):
            sys.stdout.write(f"removed treestore {tree_id!r}\n")
        import datetime  # noqa: PLC0415 - not on the start-up path of every rkt command

        now = datetime.datetime.now(datetime.UTC)
        used_keys = _images_in_use(args.dir)
        for image in images_store.list():
            if image.key in used_keys or (now - image.last_used).total_seconds() < grace:
                continue
            images_store.remove(image.key)
            sys.stdout.write(f'successfully removed aci for image: "{image.key}"\n')
    return EXIT_OK


def _pod_files(data_dir: str, name: str) -> list[str]:
    found = []
    for state in ("prepare", "prepared", "run", "exited-garbage"):
        base = os.path.join(data_dir, "pods", state)
        try:
            pods = os.listdir(base)
        except OSError:
            continue
        for pod in pods:
            apps = os.path.join(base, pod, "appsinfo")
            try:
                app_names = os.listdir(apps)
            except OSError:
                continue
            for app in app_names:
                path = os.path.join(apps, app, name)
                try:
                    with open(path, encoding="ascii") as f:
                        found.append(f.read().strip())
                except OSError:
                    continue
    return found


def _trees_in_use(data_dir: str) -> set[str]:
    return set(_pod_files(data_dir, "treeStoreID"))


def _images_in_use(data_dir: str) -> set[str]:
    return set(_pod_files(data_dir, "imageKey"))


# --- export / extract / render / cat-manifest ------------------------------------------


def _configure_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("image", metavar="IMAGE-ID-OR-NAME")
    p.add_argument("output", metavar="FILE.aci")


def _run_export(args: argparse.Namespace) -> int:
    from appc.aci.write import atomic_output  # noqa: PLC0415

    with store(args) as images_store:
        image = _resolve(images_store, args.image)
        with (
            images_store.open_blob(image.key) as blob,
            atomic_output(args.output, overwrite=args.overwrite) as out,
        ):
            import shutil  # noqa: PLC0415 - not on the start-up path of every rkt command

            shutil.copyfileobj(blob, out, 1024 * 1024)
    return EXIT_OK


def _configure_extract(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rootfs-only", action="store_true", help="extract only the root filesystem")
    p.add_argument("--overwrite", action="store_true", help="replace the target directory")
    p.add_argument("image", metavar="IMAGE-ID-OR-NAME")
    p.add_argument("target", metavar="DIR")


def _check_target(args: argparse.Namespace) -> None:
    """rkt refuses any existing target without ``--overwrite``; with it, the store's
    functions replace the target only once the new tree is complete (a symlink is
    replaced, never followed)."""
    from appc.errors import StoreError  # noqa: PLC0415

    if os.path.lexists(args.target) and not args.overwrite:
        raise StoreError(f"{args.target}: target directory exists (try --overwrite)")


def _run_extract(args: argparse.Namespace) -> int:
    from appc.store import extract_stored  # noqa: PLC0415

    with store(args) as images_store:
        image = _resolve(images_store, args.image)
        _check_target(args)
        extract_stored(
            images_store, image.key, args.target, rootfs_only=args.rootfs_only, overwrite=True
        )
    return EXIT_OK


def _run_render(args: argparse.Namespace) -> int:
    from appc.store import render_image  # noqa: PLC0415

    with store(args) as images_store:
        image = _resolve(images_store, args.image)
        _check_target(args)
        render_image(
            images_store, image.key, args.target, rootfs_only=args.rootfs_only, overwrite=True
        )
    return EXIT_OK


def _configure_cat(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pretty-print", action="store_true", default=True, help="indent the JSON (default)"
    )
    p.add_argument("--no-pretty-print", dest="pretty_print", action="store_false")
    p.add_argument("image", metavar="IMAGE-ID-OR-NAME")


def _run_cat(args: argparse.Namespace) -> int:
    with store(args) as images_store:
        image = _resolve(images_store, args.image)
    sys.stdout.write(image.manifest.to_json(indent=4 if args.pretty_print else None) + "\n")
    return EXIT_OK


COMMAND = Command(
    "image",
    "Operate on images in the local store",
    "<list|rm|gc|export|extract|render|cat-manifest> [flags] [args]",
    lambda p: None,
    lambda a: EXIT_OK,
    subcommands=(
        Command("list", "List images in the local store", "[flags]", _configure_list, _run_list),
        Command("rm", "Remove images from the local store", "IMAGE...", _configure_rm, _run_rm),
        Command(
            "gc", "Remove unused images and renders", "[--grace-period=24h]", _configure_gc, _run_gc
        ),
        Command(
            "export",
            "Write a stored image to an ACI file",
            "[--overwrite] IMAGE FILE.aci",
            _configure_export,
            _run_export,
        ),
        Command(
            "extract",
            "Extract a stored image to a directory",
            "[--rootfs-only] [--overwrite] IMAGE DIR",
            _configure_extract,
            _run_extract,
        ),
        Command(
            "render",
            "Render a stored image with its dependencies to a directory",
            "[--rootfs-only] [--overwrite] IMAGE DIR",
            _configure_extract,
            _run_render,
        ),
        Command(
            "cat-manifest",
            "Print a stored image's manifest",
            "[--pretty-print] IMAGE",
            _configure_cat,
            _run_cat,
        ),
    ),
)
