"""``rkt run``, ``prepare``, ``run-prepared``, ``list``, ``status``, ``stop``, ``rm``, ``gc``,
``enter`` and ``cat-manifest``: pods."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from appc_tools._cli import EXIT_OK, ArgumentParser, Command, UsageError
from appc_tools.rkt._common import (
    EXIT_RKT_FAILURE,
    fetch_options,
    format_time,
    human_duration,
    insecure_options,
    keystore,
    print_json,
    stderr_line,
    store,
)
from appc_tools.rkt._duration import parse_duration

__all__ = ["COMMANDS"]


# --- run / prepare ------------------------------------------------------------------------


def _kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _mount(text: str) -> tuple[str, str]:
    fields = dict(part.partition("=")[::2] for part in text.split(","))
    if set(fields) != {"volume", "target"} or not all(fields.values()):
        raise argparse.ArgumentTypeError(f"expected volume=NAME,target=PATH, got {text!r}")
    return fields["volume"], fields["target"]


def _csv(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


def _gids(text: str) -> list[int]:
    try:
        return [int(part) for part in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad group ID list {text!r}") from None


def _app_parser() -> ArgumentParser:
    p = ArgumentParser(prog="rkt run IMAGE", add_help=False)
    p.add_argument("--exec", help="override the app's command (exec[0])")
    p.add_argument("--name", help="the app's name in the pod")
    p.add_argument("--user", help="user to run as (name, UID, or a file whose owner is used)")
    p.add_argument("--group", help="group to run as (name, GID, or a file whose group is used)")
    p.add_argument("--supplementary-gids", type=_gids)
    p.add_argument("--working-dir")
    p.add_argument("--environment", type=_kv, action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--mount", type=_mount, action="append", default=[], metavar="volume=NAME,target=PATH"
    )
    p.add_argument("--signature", metavar="FILE")
    p.add_argument("--memory", help="memory limit (e.g. 128M)")
    p.add_argument("--cpu", help="CPU limit (e.g. 500m)")
    p.add_argument("--caps-retain", type=_csv, default=[])
    p.add_argument("--caps-remove", type=_csv, default=[])
    p.add_argument("--readonly-rootfs", action="store_true")
    p.add_argument("--user-annotation", type=_kv, action="append", default=[])
    p.add_argument("--user-label", type=_kv, action="append", default=[])
    return p


def _split_apps(rest: Sequence[str]) -> list[tuple[str, list[str], list[str] | None]]:
    """rkt's grammar: ``IMAGE [per-app flags] [-- ARGS... ---] IMAGE2 ...``."""
    actions = _app_parser()._option_string_actions
    apps: list[tuple[str, list[str], list[str] | None]] = []
    index = 0
    while index < len(rest):
        token = rest[index]
        if token == "---":
            index += 1
            continue
        if token == "--":
            raise UsageError("'--' must follow an image")
        if token.startswith("-"):
            raise UsageError(f"flag {token} before an image must come before the first image")
        image, flags, args = token, [], None
        index += 1
        while index < len(rest):
            token = rest[index]
            if token == "--":
                if args is not None:
                    raise UsageError(f"only one argument list (--) per image ({image})")
                args = []
                index += 1
                while index < len(rest) and rest[index] != "---":
                    args.append(rest[index])
                    index += 1
                index += 1
                continue
            if not token.startswith("-") or token == "---":
                break
            flags.append(token)
            action = actions.get(token.split("=", 1)[0])
            if (
                action is not None
                and action.nargs != 0
                and "=" not in token
                and index + 1 < len(rest)
            ):
                flags.append(rest[index + 1])
                index += 1
            index += 1
        apps.append((image, flags, args))
    return apps


def _configure_pod_flags(p: argparse.ArgumentParser, *, runtime: bool) -> None:
    p.add_argument(
        "--volume",
        action="append",
        default=[],
        metavar="NAME,kind=host|empty,...",
        help="a pod volume",
    )
    p.add_argument(
        "--mount",
        type=_mount,
        action="append",
        default=[],
        metavar="volume=NAME,target=PATH",
        help="mount a volume in every app",
    )
    p.add_argument(
        "--set-env",
        type=_kv,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for every app",
    )
    p.add_argument("--set-env-file", metavar="FILE", help="KEY=VALUE lines for every app")
    p.add_argument("--inherit-env", action="store_true", help="apps inherit rkt's environment")
    p.add_argument("--pull-policy", default="new", choices=("never", "new", "update"))
    p.add_argument("--uuid-file-save", metavar="FILE", help="write the pod UUID to FILE")
    p.add_argument(
        "--no-overlay",
        action="store_true",
        help="accepted for compatibility (overlay is always used)",
    )
    p.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="NAME:HOSTPORT",
        help="forward a host port (needs a contained network)",
    )
    if runtime:
        _configure_runtime_flags(p)
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="IMAGE [flags] [-- args ---] ...")


def _configure_runtime_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--net", default="host", help="host (default), none, or default (veth + NAT)")
    p.add_argument("--hostname", default="", help="the pod's host name (default rkt-UUID)")
    p.add_argument("--interactive", action="store_true", help="give the app the terminal")
    p.add_argument(
        "--dns",
        action="append",
        default=[],
        help="accepted for compatibility: 'host' (the default) only",
    )
    p.add_argument(
        "--no-metadata-service", action="store_true", help="do not start the metadata service"
    )


def _runtime_config(args: argparse.Namespace) -> Any:
    from appc.runtime.executor import RuntimeConfig  # noqa: PLC0415

    net = args.net.split(":", 1)[0] or "default"
    if net not in ("host", "none", "default"):
        raise UsageError(f"unsupported --net={args.net} (host, none or default)")
    if getattr(args, "port", None) and net in ("host", "none"):
        raise UsageError(f"--port flag does not work with '{net}' networking")
    if getattr(args, "port", None):
        raise UsageError("--port forwarding is not supported yet")
    if any(d not in ("host", "") for d in args.dns):
        raise UsageError("only --dns=host is supported")
    insecure = insecure_options(args)
    return RuntimeConfig(
        net=net,
        hostname=args.hostname,
        interactive=args.interactive,
        all_capabilities=insecure.capabilities,
        unmasked_paths=insecure.paths,
        metadata=not args.no_metadata_service,
    )


def _pod_spec(args: argparse.Namespace) -> Any:
    from appc.runtime.prepare import AppSpec, PodSpec, read_env_file  # noqa: PLC0415
    from appc.types.volumes import volume_from_string  # noqa: PLC0415

    if not args.rest:
        raise UsageError("must provide at least one image or specify the pod manifest")
    app_parser = _app_parser()
    apps = []
    for image, flags, app_args in _split_apps(args.rest):
        parsed = app_parser.parse_args(flags)
        apps.append(
            AppSpec(
                image=image,
                name=parsed.name,
                exec=parsed.exec,
                args=tuple(app_args) if app_args is not None else None,
                user=parsed.user,
                group=parsed.group,
                supplementary_gids=tuple(parsed.supplementary_gids)
                if parsed.supplementary_gids is not None
                else None,
                working_dir=parsed.working_dir,
                environment=dict(parsed.environment),
                mounts=tuple(parsed.mount),
                memory=parsed.memory,
                cpu=parsed.cpu,
                caps_retain=tuple(parsed.caps_retain),
                caps_remove=tuple(parsed.caps_remove),
                readonly_rootfs=parsed.readonly_rootfs,
                signature=parsed.signature,
                user_annotations=dict(parsed.user_annotation),
                user_labels=dict(parsed.user_label),
            )
        )
    env = read_env_file(args.set_env_file) if args.set_env_file else {}
    env.update(dict(args.set_env))
    return PodSpec(
        apps=tuple(apps),
        volumes=tuple(volume_from_string(v) for v in args.volume),
        mounts=tuple(args.mount),
        set_env=env,
        inherit_env=args.inherit_env,
    )


def _prepare(args: argparse.Namespace, config: Any) -> Any:
    from appc.fetch import Fetcher  # noqa: PLC0415
    from appc.runtime.prepare import prepare_pod  # noqa: PLC0415

    _require_root()
    spec = _pod_spec(args)
    # The store is closed before the pod runs: its database and its shared lock on cas/
    # must not live on in the pod's supervisor and apps (forked from this process).
    with store(args) as image_store:
        fetcher = Fetcher(image_store, keystore(args), fetch_options(args, args.pull_policy))
        return prepare_pod(args.dir, spec, fetcher, config, uuid_file=args.uuid_file_save)


def _require_root() -> None:
    from appc.errors import PodError  # noqa: PLC0415

    if os.geteuid() != 0:
        raise PodError("running pods needs root (namespaces, mounts and cgroups)")


def _run(args: argparse.Namespace) -> int:
    from appc.runtime.executor import run_pod  # noqa: PLC0415

    config = _runtime_config(args)
    pod = _prepare(args, config)
    pod.to_run()
    return run_pod(pod, config, log=stderr_line)


def _run_prepare(args: argparse.Namespace) -> int:
    from appc.runtime.executor import RuntimeConfig  # noqa: PLC0415

    pod = _prepare(args, RuntimeConfig())
    pod.to_prepared()
    sys.stdout.write(f"{pod.uuid}\n")
    return EXIT_OK


def _configure_prepare(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="print only the UUID")
    _configure_pod_flags(p, runtime=False)


def _configure_run_prepared(p: argparse.ArgumentParser) -> None:
    _configure_runtime_flags(p)
    p.add_argument("uuid", metavar="UUID")


def _run_prepared(args: argparse.Namespace) -> int:
    from appc.errors import PodError  # noqa: PLC0415
    from appc.runtime.executor import run_pod  # noqa: PLC0415
    from appc.runtime.pods import PodState, find_pod  # noqa: PLC0415

    _require_root()
    args.port = []
    config = _runtime_config(args)
    pod = find_pod(args.dir, args.uuid)
    if pod.state is not PodState.PREPARED:
        raise PodError(f"pod {pod.uuid} is not prepared (state {pod.state})")
    pod.to_run()
    pod.write("runtime-config", config.to_json())
    return run_pod(pod, config, log=stderr_line)


# --- list / status / cat-manifest ---------------------------------------------------------


def _configure_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("--full", action="store_true", help="full UUIDs and image IDs, absolute times")
    p.add_argument("--no-legend", action="store_true", help="no header line")
    p.add_argument("--format", default="", choices=("", "json", "json-pretty"))


def _image_name(runtime_app: Any) -> str:
    version = runtime_app.image.labels.get("version")
    name = str(runtime_app.image.name or "")
    return f"{name}:{version}" if version else name


def _run_list(args: argparse.Namespace) -> int:
    from appc.runtime.lifecycle import pod_json  # noqa: PLC0415
    from appc.runtime.pods import list_pods  # noqa: PLC0415

    pods = list_pods(args.dir)
    if args.format:
        print_json([pod_json(p) for p in pods], args.format)
        return EXIT_OK
    header = [
        "UUID",
        "APP",
        "IMAGE NAME",
        *(["IMAGE ID"] if args.full else []),
        "STATE",
        "CREATED",
        "STARTED",
        "NETWORKS",
    ]
    rows = [] if args.no_legend else [header]
    for pod in pods:
        manifest = pod.manifest()
        created, started = pod.created(), pod.started()

        def when(moment: Any) -> str:
            if moment is None:
                return ""
            return format_time(moment) if args.full else human_duration(moment)

        doc = pod_json(pod)
        networks = ", ".join(f"{n['netName']}:ip4={n['ip']}" for n in doc.get("networks", []))
        pod_cells = [
            str(pod.uuid) if args.full else str(pod.uuid)[:8],
            str(pod.state),
            when(created),
            when(started),
            networks,
        ]
        apps = list(manifest.apps) if manifest is not None else []
        if not apps:
            rows.append([pod_cells[0], "-", "-", *(["-"] if args.full else []), *pod_cells[1:]])
        for index, app in enumerate(apps):
            cells = [str(app.name), _image_name(app)]
            if args.full:
                cells.append(str(app.image.id)[: len("sha512-") + 64])
            if index == 0:
                rows.append([pod_cells[0], *cells, *pod_cells[1:]])
            else:
                rows.append(["", *cells, "", "", "", ""])
    if rows:
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        for row in rows:
            sys.stdout.write(
                "\t".join(cell.ljust(widths[c]) for c, cell in enumerate(row)).rstrip() + "\n"
            )
    return EXIT_OK


def _configure_status(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--wait",
        nargs="?",
        const="true",
        default="",
        metavar="DURATION",
        help="wait for the pod to exit (optionally at most DURATION)",
    )
    p.add_argument(
        "--wait-ready",
        nargs="?",
        const="true",
        default="",
        metavar="DURATION",
        help="wait until the pod runs",
    )
    p.add_argument("--format", default="", choices=("", "json", "json-pretty"))
    _uuid_args(p)


def _uuid_args(p: argparse.ArgumentParser, *, many: bool = False) -> None:
    p.add_argument("--uuid-file", metavar="FILE", help="read the pod UUID from FILE")
    p.add_argument("uuids", nargs="*" if many else "?", metavar="UUID")


def _pods_from(args: argparse.Namespace) -> list[Any]:
    from appc.runtime.pods import find_pod, read_uuid_file  # noqa: PLC0415

    wanted = [read_uuid_file(args.uuid_file)] if args.uuid_file else []
    uuids = args.uuids if isinstance(args.uuids, list) else ([args.uuids] if args.uuids else [])
    wanted += uuids
    if not wanted:
        raise UsageError("give a pod UUID (or --uuid-file)")
    return [find_pod(args.dir, text) for text in wanted]


def _duration_or_none(text: str) -> float | None:
    return None if text in ("true", "") else parse_duration(text)


def _run_status(args: argparse.Namespace) -> int:
    from appc.runtime.lifecycle import pod_json, wait_for_exit  # noqa: PLC0415
    from appc.runtime.pods import PodState, get_pod  # noqa: PLC0415

    (pod,) = _pods_from(args)
    if args.wait_ready:
        _wait_ready(pod, _duration_or_none(args.wait_ready))
        pod = get_pod(args.dir, pod.uuid)
    if args.wait:
        pod = wait_for_exit(pod, _duration_or_none(args.wait))
    if args.format:
        print_json(pod_json(pod), args.format)
        return EXIT_OK
    lines = [f"state={pod.state}"]
    created, started = pod.created(), pod.started()
    if created:
        lines.append(f"created={format_time(created)}")
    if started:
        lines.append(f"started={format_time(started)}")
    if pod.state in (PodState.RUNNING, PodState.DELETING) or pod.state.after_run:
        doc = pod_json(pod)
        lines.append(
            "networks=" + ",".join(f"{n['netName']}:ip4={n['ip']}" for n in doc.get("networks", []))
        )
        pid = pod.pid()
        if pid is not None:
            lines.append(f"pid={pid}")
        lines.append(f"exited={'true' if pod.state.after_run else 'false'}")
        if pod.state is not PodState.RUNNING:
            for app, code in pod.exit_statuses().items():
                lines.append(f"app-{app}={code}")
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def _wait_ready(pod: Any, timeout: float | None) -> None:
    import time  # noqa: PLC0415

    from appc.errors import PodError  # noqa: PLC0415
    from appc.runtime.pods import get_pod  # noqa: PLC0415

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        current = get_pod(pod.data_dir, pod.uuid)
        if current.pid() is not None or current.state.after_run:
            return
        if deadline is not None and time.monotonic() > deadline:
            raise PodError(f"pod {pod.uuid} not ready after {timeout:g}s")
        time.sleep(0.1)


def _configure_cat(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pretty-print", action="store_true", default=True)
    p.add_argument("--no-pretty-print", dest="pretty_print", action="store_false")
    _uuid_args(p)


def _run_cat(args: argparse.Namespace) -> int:
    from appc.errors import PodError  # noqa: PLC0415

    (pod,) = _pods_from(args)
    manifest = pod.manifest()
    if manifest is None:
        raise PodError(f"pod {pod.uuid} has no manifest yet")
    sys.stdout.write(manifest.to_json(indent=4 if args.pretty_print else None) + "\n")
    return EXIT_OK


# --- stop / rm / gc / enter ---------------------------------------------------------------


def _configure_stop(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--force", action="store_true", help="kill (SIGKILL) instead of stopping (SIGTERM)"
    )
    _uuid_args(p, many=True)


def _run_stop(args: argparse.Namespace) -> int:
    from appc.errors import AppcError  # noqa: PLC0415
    from appc.runtime.lifecycle import stop_pod  # noqa: PLC0415

    failed = 0
    for pod in _pods_from(args):
        try:
            if stop_pod(pod, force=args.force):
                sys.stdout.write(f'"{pod.uuid}"\n')
            else:
                sys.stdout.write(f'pod "{pod.uuid}" is already stopped\n')
        except AppcError as err:
            sys.stderr.write(f"rkt stop: {err}\n")
            failed += 1
    if failed:
        sys.stderr.write(f"failed to stop {failed} pod(s)\n")
        return EXIT_RKT_FAILURE
    return EXIT_OK


def _run_rm(args: argparse.Namespace) -> int:
    from appc.errors import AppcError  # noqa: PLC0415
    from appc.runtime.lifecycle import remove_pod  # noqa: PLC0415

    failed = False
    for pod in _pods_from(args):
        try:
            remove_pod(pod)
            sys.stdout.write(f'"{pod.uuid}"\n')
        except AppcError as err:
            sys.stderr.write(f"rkt rm: {err}\n")
            failed = True
    if failed:
        sys.stderr.write("failed to remove one or more pods\n")
        return EXIT_RKT_FAILURE
    return EXIT_OK


def _configure_gc(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--grace-period", default="30m", help="how long exited pods are kept (default 30m)"
    )
    p.add_argument(
        "--expire-prepared", default="24h", help="how long prepared pods are kept (default 24h)"
    )
    p.add_argument("--mark-only", action="store_true", help="only mark exited pods as garbage")


def _run_gc(args: argparse.Namespace) -> int:
    from appc.runtime.lifecycle import gc_pods  # noqa: PLC0415

    report = gc_pods(
        args.dir,
        grace_period=parse_duration(args.grace_period),
        expire_prepared=parse_duration(args.expire_prepared),
        mark_only=args.mark_only,
        log=stderr_line,
    )
    for uuid in report.within_grace:
        sys.stdout.write(f"Pod {uuid} still within grace period ({args.grace_period})\n")
    for uuid in report.collected:
        sys.stdout.write(f"Garbage collecting pod {uuid}\n")
    for error in report.errors:
        sys.stderr.write(f"rkt gc: {error}\n")
    return EXIT_RKT_FAILURE if report.errors else EXIT_OK


def _configure_enter(p: argparse.ArgumentParser) -> None:
    p.add_argument("--app", help="the app to enter (needed when the pod has several)")
    p.add_argument("uuid", metavar="UUID")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD [ARGS...]")


def _run_enter(args: argparse.Namespace) -> int:
    from appc.errors import PodError  # noqa: PLC0415
    from appc.runtime.lifecycle import enter_pod  # noqa: PLC0415
    from appc.runtime.pods import find_pod  # noqa: PLC0415

    _require_root()
    pod = find_pod(args.dir, args.uuid)
    apps = pod.app_names()
    app = args.app
    if app is None:
        if len(apps) != 1:
            raise PodError(
                f'pod has several apps ({", ".join(apps)}): specify app using "rkt enter --app= ..."'
            )
        app = apps[0]
    elif app not in apps:
        raise PodError(f"pod {pod.uuid} has no app {app!r}")
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        sys.stderr.write('no command specified, assuming "/bin/sh"\n')
        command = ["/bin/sh"]
    return enter_pod(pod, app, command)


COMMANDS = [
    Command(
        "run",
        "Run image(s) in a pod",
        "[pod flags] IMAGE [app flags] [-- ARGS... ---] [IMAGE...]",
        lambda p: _configure_pod_flags(p, runtime=True),
        _run,
        intermixed=False,
    ),
    Command(
        "prepare",
        "Prepare a pod to run later",
        "[pod flags] IMAGE [app flags] [-- ARGS... ---] [IMAGE...]",
        _configure_prepare,
        _run_prepare,
        intermixed=False,
    ),
    Command(
        "run-prepared",
        "Run a prepared pod",
        "[--net=...] [--interactive] UUID",
        _configure_run_prepared,
        _run_prepared,
    ),
    Command(
        "list", "List pods", "[--full] [--no-legend] [--format=json]", _configure_list, _run_list
    ),
    Command(
        "status",
        "Check the status of a pod",
        "[--wait[=DURATION]] [--format=json] UUID",
        _configure_status,
        _run_status,
    ),
    Command("stop", "Stop running pods", "[--force] UUID...", _configure_stop, _run_stop),
    Command("rm", "Remove pods", "UUID...", lambda p: _uuid_args(p, many=True), _run_rm),
    Command(
        "gc",
        "Garbage collect pods that have exited",
        "[--grace-period=30m] [--expire-prepared=24h] [--mark-only]",
        _configure_gc,
        _run_gc,
    ),
    Command(
        "enter",
        "Run a command in a running pod",
        "[--app=NAME] UUID [CMD [ARGS...]]",
        _configure_enter,
        _run_enter,
        intermixed=False,
    ),
    Command(
        "cat-manifest", "Print a pod's manifest", "[--pretty-print] UUID", _configure_cat, _run_cat
    ),
]
