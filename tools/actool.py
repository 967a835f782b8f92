"""``actool``: build, validate, inspect and patch App Container Images.

The reference tool's commands, flags, output lines and exit codes (see
``reference/appc-spec.md`` §8), plus ``--json`` for ``validate``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from appc_tools._cli import EXIT_FAILURE, EXIT_OK, Command, Tool, UsageError

__all__ = ["main", "tool"]

_VERSION = "0.1.0"
_SPEC = "0.8.11"


# --- build ----------------------------------------------------------------------------


def _configure_build(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite", action="store_true", help="overwrite the output file if it exists"
    )
    p.add_argument(
        "--no-compression", action="store_true", help="write a plain tar (default: gzip)"
    )
    p.add_argument(
        "--compression-level", type=int, default=6, metavar="N", help="gzip level 1-9 (default 6)"
    )
    p.add_argument(
        "--owner-root", action="store_true", help="record every file as owned by root (0:0)"
    )
    p.add_argument(
        "--mtime",
        type=int,
        metavar="SECONDS",
        help="set every entry's time to this Unix time (default: SOURCE_DATE_EPOCH if set, "
        "else each file's own); the same tree then always gives the same image ID",
    )
    p.add_argument("directory", metavar="DIRECTORY")
    p.add_argument("output", metavar="OUTPUT_FILE")


def _run_build(args: argparse.Namespace) -> int:
    from appc.aci.build import build_image  # noqa: PLC0415 - keep start-up light

    if not 1 <= args.compression_level <= 9:
        raise UsageError("--compression-level must be between 1 and 9")
    result = build_image(
        args.directory,
        args.output,
        overwrite=args.overwrite,
        compression="none" if args.no_compression else "gzip",
        level=args.compression_level,
        owner_root=args.owner_root,
        mtime=args.mtime,
    )
    if args.debug:
        sys.stderr.write(f"{args.output}: {result.image_id}\n")
    return EXIT_OK


# --- validate -------------------------------------------------------------------------

_VALID = {"appimage": "valid app container image", "layout": "valid image layout"}


def _configure_validate(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--type",
        choices=("appimage", "layout", "manifest"),
        help="what the files are (default: detected: directory → layout, archive → appimage, text → manifest)",
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON report for all files on stdout"
    )
    p.add_argument("files", nargs="+", metavar="FILE")


def _validate_one(path: str, kind: str | None) -> dict[str, Any]:
    from appc.aci import validate  # noqa: PLC0415
    from appc.errors import AppcError, ValidationError  # noqa: PLC0415

    report: dict[str, Any] = {"path": path}
    try:
        kind = kind or validate.detect_validation_type(path)
        report["type"] = kind
        if kind == "appimage":
            result = validate.validate_archive(path)
            report.update(
                message=_VALID[kind],
                name=str(result.manifest.name),
                imageID=str(result.image_id),
                compression=str(result.compression),
            )
        elif kind == "layout":
            manifest = validate.validate_layout(path)
            report.update(message=_VALID[kind], name=str(manifest.name))
        else:
            manifest = validate.read_manifest_file(path)
            report.update(message=f"valid {manifest.ac_kind}", kind=str(manifest.ac_kind))
        report["valid"] = True
    except ValidationError as err:
        report.update(
            valid=False,
            error=f"{path}: {err}",
            errors=[{"field": e.field, "message": e.message} for e in err.errors],
        )
    except AppcError as err:
        text = str(err)
        report.update(valid=False, error=text if text.startswith(f"{path}:") else f"{path}: {text}")
    return report


def _run_validate(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415 - start-up stays light

    reports = [_validate_one(path, args.type) for path in args.files]
    if args.json:
        json.dump(reports, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for report in reports:
            if not report["valid"]:
                sys.stderr.write(f"{report['error']}\n")
            elif args.debug:
                sys.stdout.write(f"{report['path']}: {report['message']}\n")
    return EXIT_OK if all(r["valid"] for r in reports) else EXIT_FAILURE


# --- cat-manifest ---------------------------------------------------------------------


def _configure_cat(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pretty-print", action="store_true", help="print indented JSON")
    p.add_argument("image", metavar="ACI_FILE")


def _run_cat(args: argparse.Namespace) -> int:
    from appc.aci.read import read_manifest_bytes  # noqa: PLC0415
    from appc.aci.validate import image_manifest  # noqa: PLC0415

    raw = read_manifest_bytes(args.image)
    if args.pretty_print:
        sys.stdout.write(image_manifest(raw, args.image).to_json(indent=4) + "\n")
        return EXIT_OK
    # Like the reference: the bytes as stored first, then the check (exit 1 if invalid).
    sys.stdout.buffer.write(raw)
    if not raw.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()
    image_manifest(raw, args.image)  # an invalid one is an error naming the image
    return EXIT_OK


# --- patch-manifest -------------------------------------------------------------------


def _csv(text: str) -> list[str]:
    return [item for item in text.split(",") if item]


def _gids(text: str) -> list[int]:
    try:
        return [int(item) for item in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad group ID list {text!r}") from None


def _colon_list(text: str) -> list[str]:
    return [item for item in text.split(":") if item]


def _configure_patch(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--manifest", metavar="FILE", help="replace the manifest with this file, unvalidated"
    )
    p.add_argument("--name", help="set the image name")
    p.add_argument("--exec", help='set the command line, e.g. "/app --debug" (split on spaces)')
    p.add_argument("--user", help="set the user (name, number or path)")
    p.add_argument("--group", help="set the group (name, number or path)")
    p.add_argument(
        "--supplementary-groups", type=_gids, metavar="GID,...", help="set supplementary group IDs"
    )
    p.add_argument(
        "--capability",
        type=_csv,
        default=[],
        metavar="CAP,...",
        help="capabilities to retain (replaces capability isolators)",
    )
    p.add_argument(
        "--revoke-capability",
        type=_csv,
        default=[],
        metavar="CAP,...",
        help="capabilities to remove (replaces capability isolators)",
    )
    p.add_argument(
        "--mounts",
        type=_colon_list,
        default=[],
        metavar="NAME,path=P[,readOnly=B][:...]",
        help="mount points to add",
    )
    p.add_argument(
        "--ports",
        type=_colon_list,
        default=[],
        metavar="NAME,protocol=P,port=N[,...][:...]",
        help="ports to add",
    )
    p.add_argument(
        "--isolators",
        type=_colon_list,
        default=[],
        metavar="NAME,...[:...]",
        help="isolators to add (resource/*, no-new-privileges, oom-score-adj)",
    )
    p.add_argument(
        "--seccomp-mode",
        metavar="remove|retain[,errno=E]",
        help="seccomp set kind (with --seccomp-set)",
    )
    p.add_argument(
        "--seccomp-set",
        type=_csv,
        default=[],
        metavar="SYSCALL,...",
        help="seccomp syscall set (replaces seccomp isolators)",
    )
    p.add_argument("--replace", action="store_true", help="rewrite the input image in place")
    p.add_argument(
        "--overwrite", action="store_true", help="overwrite the output file if it exists"
    )
    p.add_argument(
        "--no-compression", action="store_true", help="write a plain tar (default: gzip)"
    )
    p.add_argument("input", metavar="INPUT_ACI")
    p.add_argument("output", metavar="OUTPUT_ACI", nargs="?")


def _run_patch(args: argparse.Namespace) -> int:
    from appc.aci.patch import ManifestPatch, patch_image  # noqa: PLC0415
    from appc.errors import ImageError  # noqa: PLC0415

    if args.replace and args.overwrite:
        raise UsageError("--replace and --overwrite cannot be used together")
    if args.replace and args.output:
        raise UsageError("--replace takes no OUTPUT_ACI")
    if not args.replace and not args.output:
        raise UsageError("give OUTPUT_ACI, or --replace to rewrite INPUT_ACI")
    manifest = None
    if args.manifest:
        from appc.aci.read import MAX_MANIFEST_SIZE  # noqa: PLC0415

        try:
            with open(args.manifest, "rb") as f:
                manifest = f.read(MAX_MANIFEST_SIZE + 1)  # never a huge file into memory
        except OSError as err:
            raise ImageError(err.strerror or str(err), source=args.manifest) from None
        if len(manifest) > MAX_MANIFEST_SIZE:
            raise ImageError(f"larger than {MAX_MANIFEST_SIZE} bytes", source=args.manifest)
    patch = ManifestPatch(
        manifest=manifest,
        name=args.name,
        exec=args.exec,
        user=args.user,
        group=args.group,
        supplementary_gids=args.supplementary_groups,
        capability=args.capability,
        revoke_capability=args.revoke_capability,
        mounts=args.mounts,
        ports=args.ports,
        isolators=args.isolators,
        seccomp_mode=args.seccomp_mode,
        seccomp_set=args.seccomp_set,
    )
    image_id = patch_image(
        args.input,
        None if args.replace else args.output,
        patch,
        overwrite=args.overwrite,
        compression="none" if args.no_compression else "gzip",
    )
    if args.debug:
        sys.stderr.write(f"{args.output or args.input}: {image_id}\n")
    return EXIT_OK


# --- discover -------------------------------------------------------------------------


def _configure_discover(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--port", type=int, metavar="N", help="connect to this port instead of 443 (80 for HTTP)"
    )
    p.add_argument(
        "--insecure", action="store_true", help="allow plain HTTP and skip TLS verification"
    )
    p.add_argument("--ca-file", metavar="PEM", help="extra trusted CA certificates")
    p.add_argument("apps", nargs="+", metavar="APP", help="name[:version][,label=value...]")


def _run_discover(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415 - start-up stays light

    from appc.discovery import AppRequest, DiscoveryOptions, discover, parse_app_string  # noqa: PLC0415
    from appc.errors import DiscoveryError  # noqa: PLC0415
    from appc.fetch import host_os_arch  # noqa: PLC0415

    options = DiscoveryOptions(
        insecure_http=args.insecure,
        insecure_tls=args.insecure,
        port=args.port,
        ca_file=args.ca_file,
    )
    status = EXIT_OK
    for text in args.apps:
        request = parse_app_string(text)
        labels = dict(request.labels)
        os_, arch = host_os_arch()
        labels.setdefault("os", os_)
        labels.setdefault("arch", arch)
        request = AppRequest(request.name, labels)
        try:
            result = discover(request, options)
        except DiscoveryError as err:
            for prefix, error in err.attempts:
                sys.stdout.write(f"discover endpoints walk: prefix: {prefix} error: {error}\n")
            sys.stderr.write(f"error fetching endpoints for {text}: discovery failed\n")
            status = EXIT_FAILURE
            continue
        for prefix, error in result.endpoint_attempts:
            sys.stdout.write(f"discover endpoints walk: prefix: {prefix} error: {error}\n")
        for prefix, error in result.key_attempts:
            sys.stdout.write(f"discover public keys walk: prefix: {prefix} error: {error}\n")
        if not result.public_keys:
            # As the reference: an image without a discoverable key is an error too.
            sys.stderr.write(f"error fetching public keys for {text}: discovery failed\n")
            status = EXIT_FAILURE
            continue
        if args.json:
            document = {
                "ACIEndpoints": [{"ACI": e.aci, "ASC": e.asc} for e in result.endpoints],
                "PublicKeys": list(result.public_keys),
            }
            sys.stdout.write(json.dumps(document, indent=4) + "\n")  # Go's MarshalIndent
            continue
        for endpoint in result.endpoints:
            sys.stdout.write(f"ACI: {endpoint.aci}, ASC: {endpoint.asc}\n")
        sys.stdout.write(f"PublicKeys: {','.join(result.public_keys)}\n")
    return status


# --- sign -----------------------------------------------------------------------------


def _configure_sign(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--key",
        required=True,
        metavar="FILE",
        help="the secret key to sign with (armored or binary export)",
    )
    p.add_argument("--key-id", metavar="ID", help="which key of FILE to use, if it holds several")
    p.add_argument(
        "--passphrase-file", metavar="FILE", help="read the key's passphrase from this file"
    )
    p.add_argument(
        "--output", metavar="FILE", help="where to write the signature (default: IMAGE.asc)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing signature file")
    p.add_argument("image", metavar="ACI_FILE")


def _run_sign(args: argparse.Namespace) -> int:
    from appc.aci.write import atomic_output  # noqa: PLC0415
    from appc.errors import SignatureError  # noqa: PLC0415
    from appc.signing import sign_file  # noqa: PLC0415

    try:
        with open(args.key, "rb") as f:
            secret = f.read()
        passphrase = None
        if args.passphrase_file:
            with open(args.passphrase_file, encoding="utf-8") as f:
                passphrase = f.readline().rstrip("\n")
    except OSError as err:
        raise SignatureError(f"{err.filename}: {err.strerror or err}") from None
    if not os.path.isfile(args.image):
        raise SignatureError(f"{args.image}: no such file")
    signature = sign_file(args.image, secret, passphrase=passphrase, key_id=args.key_id)
    output = args.output or f"{args.image}.asc"
    with atomic_output(output, overwrite=args.overwrite) as out:
        out.write(signature)
    if args.debug:
        sys.stderr.write(f"wrote {output}\n")
    return EXIT_OK


# --- push / export-oci -----------------------------------------------------------------


def _configure_oci_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dir",
        metavar="DATA_DIR",
        help="an rkt data directory whose store holds the images' dependencies",
    )
    p.add_argument(
        "--compression-level",
        type=int,
        default=6,
        metavar="N",
        help="gzip level of the layers (1-9)",
    )


def _debug_log(line: str) -> None:
    """A progress line on stderr (``--debug``)."""
    sys.stderr.write(line + "\n")


def _oci_images(args: argparse.Namespace, paths: list[str], work: str) -> list[Any]:
    from appc.aci.validate import validate_archive  # noqa: PLC0415
    from appc.oci.image import oci_image_from_aci  # noqa: PLC0415

    if not 1 <= args.compression_level <= 9:
        raise UsageError("--compression-level must be between 1 and 9")
    store = None
    if args.dir:
        from appc.store import ImageStore  # noqa: PLC0415

        store = ImageStore(args.dir)
    log = _debug_log if args.debug else None
    images = []
    try:
        for path in paths:
            validate_archive(path)
            images.append(
                oci_image_from_aci(path, work, store=store, level=args.compression_level, log=log)
            )
    finally:
        if store is not None:
            store.close()
    return images


def _configure_push(p: argparse.ArgumentParser) -> None:
    _configure_oci_common(p)
    p.add_argument("--insecure-allow-http", action="store_true", help="allow a plain-HTTP registry")
    p.add_argument(
        "--insecure-skip-verify", action="store_true", help="do not verify TLS certificates"
    )
    p.add_argument("--ca-file", metavar="PEM", help="trust these CA certificates")
    p.add_argument("--username", help="registry user name")
    p.add_argument("--password", help="registry password")
    p.add_argument("--creds", metavar="USER:PASSWORD", help="registry credentials in one argument")
    p.add_argument(
        "--mount-from",
        action="append",
        default=[],
        metavar="REPOSITORY",
        help="try to mount blobs from this repository of the same registry",
    )
    p.add_argument("args", nargs="+", metavar="ACI_FILE... docker://REGISTRY/NAME:TAG")


def _run_push(args: argparse.Namespace) -> int:
    import tempfile  # noqa: PLC0415

    from appc.docker.auth import Credentials, credentials_from_string, load_docker_credentials  # noqa: PLC0415
    from appc.docker.reference import parse_reference  # noqa: PLC0415
    from appc.docker.registry import RegistryOptions  # noqa: PLC0415
    from appc.oci.push import push_images  # noqa: PLC0415

    if len(args.args) < 2 or not args.args[-1].startswith("docker://"):
        raise UsageError("actool push: give ACI files, then docker://REGISTRY/NAME:TAG")
    reference = parse_reference(args.args[-1])
    credentials = None
    if args.creds:
        if args.username or args.password:
            raise UsageError("--creds cannot be combined with --username/--password")
        credentials = credentials_from_string(args.creds)
    elif args.username or args.password:
        if not (args.username and args.password is not None):
            raise UsageError("--username and --password go together")
        credentials = Credentials(args.username, args.password)
    else:
        credentials = load_docker_credentials(reference.credential_keys())
    options = RegistryOptions(
        insecure_allow_http=args.insecure_allow_http,
        insecure_skip_verify=args.insecure_skip_verify,
        ca_file=args.ca_file,
        credentials=credentials,
    )
    with tempfile.TemporaryDirectory(prefix="appc-push-") as work:
        images = _oci_images(args, args.args[:-1], work)
        log = _debug_log if args.debug else None
        digest = push_images(
            images, reference, options=options, mount_from=args.mount_from, log=log
        )
    sys.stdout.write(f"{digest}\n")
    return EXIT_OK


def _configure_export_oci(p: argparse.ArgumentParser) -> None:
    _configure_oci_common(p)
    p.add_argument(
        "--tag", default="latest", help="the reference name in the layout (default latest)"
    )
    p.add_argument(
        "--archive", action="store_true", help="write an oci-archive tarball instead of a directory"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DIR_OR_TAR",
        help="the OCI layout directory (or .tar with --archive)",
    )
    p.add_argument("images", nargs="+", metavar="ACI_FILE")


def _run_export_oci(args: argparse.Namespace) -> int:
    import tempfile  # noqa: PLC0415

    from appc.oci.layout import write_oci  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="appc-oci-") as work:
        images = _oci_images(args, args.images, work)
        digest = write_oci(
            images, args.output, tag=args.tag, archive=args.archive, overwrite=args.overwrite
        )
    sys.stdout.write(f"{digest}\n")
    return EXIT_OK


# --- version --------------------------------------------------------------------------


def _run_version(args: argparse.Namespace) -> int:
    sys.stdout.write(f"actool version {_VERSION}\nappc spec version {_SPEC}\n")
    return EXIT_OK


def _no_flags(p: argparse.ArgumentParser) -> None:
    """A command without flags."""


COMMANDS = [
    Command(
        "build",
        "Build an ACI from a given directory",
        "[--overwrite] [--no-compression] [--owner-root] [--mtime=SECONDS] DIRECTORY OUTPUT_FILE",
        _configure_build,
        _run_build,
    ),
    Command(
        "cat-manifest",
        "Print the manifest from an ACI",
        "[--pretty-print] ACI_FILE",
        _configure_cat,
        _run_cat,
    ),
    Command(
        "discover",
        "Discover the download URLs for an app",
        "[--json] [--port=N] [--insecure] APP...",
        _configure_discover,
        _run_discover,
    ),
    Command(
        "export-oci",
        "Write ACIs as an OCI image layout or oci-archive",
        "[--archive] -o DIR_OR_TAR ACI_FILE...",
        _configure_export_oci,
        _run_export_oci,
    ),
    Command(
        "patch-manifest",
        "Copy an ACI and patch its manifest",
        "[flags] INPUT_ACI [OUTPUT_ACI]",
        _configure_patch,
        _run_patch,
    ),
    Command(
        "push",
        "Push ACIs to a registry v2 as an OCI image",
        "[flags] ACI_FILE... docker://REGISTRY/NAME:TAG",
        _configure_push,
        _run_push,
    ),
    Command(
        "sign",
        "Sign an ACI with a detached signature",
        "--key=FILE [--output=FILE] ACI_FILE",
        _configure_sign,
        _run_sign,
    ),
    Command(
        "validate",
        "Validate one or more App Container files",
        "[--type=appimage|layout|manifest] [--json] FILE...",
        _configure_validate,
        _run_validate,
    ),
    Command("version", "Print the version and exit", "", _no_flags, _run_version),
]


def tool() -> Tool:
    """The ``actool`` command table."""
    return Tool(
        "actool",
        "tool for building and validating App Container Images",
        f"{_VERSION} (appc spec {_SPEC})",
        COMMANDS,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``actool`` console script."""
    return tool().main(argv)


if __name__ == "__main__":
    sys.exit(main())
