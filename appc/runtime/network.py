"""Pod networking: ``--net=host``, ``--net=none`` and rkt's ``default`` network.

* ``host``: nothing to do; the pod shares the caller's network namespace and no
  ``net-info.json`` is written.
* ``none``: the pod's PID 1 unshares a network namespace and calls :func:`loopback_up`
  there; loopback is all it has.
* ``default``: as rkt's default network (CNI ``ptp`` + ``host-local`` IPAM + IP masquerade),
  done with ``ip``, ``nsenter`` and ``iptables``.  :func:`setup_default` runs in the host's
  network namespace once the pod's PID 1 has its own:

  - a veth pair: ``veth<11 hex digits of the pod UUID>`` on the host, ``eth0`` in the pod;
  - an address from ``172.16.28.0/24`` (``.2`` to ``.254``; ``.1`` is the gateway) kept
    by a host-local IPAM under ``<data dir>/networks/default/`` (one file per address,
    named by the address and holding the pod UUID, plus ``last_reserved_ip.0``, as CNI
    host-local does), allocated under a file lock.  An address that already has a host
    route (a pod of another data directory) is skipped, and a host route that overlaps
    the subnet stops the setup instead of hijacking it;
  - point-to-point routing as ``ptp``: the host side holds ``172.16.28.1/32`` (shared by
    every pod's veth) and a ``/32`` route to the pod; the pod's address has no subnet
    route of its own, the gateway is reached on-link and the default route and the
    subnet go through it, so pods reach each other through the host;
  - egress: ``net.ipv4.ip_forward=1`` and ``iptables -t nat -A POSTROUTING -s <pod>/32
    ! -d 172.16.28.0/24 -j MASQUERADE`` tagged ``-m comment --comment "appc pod <uuid>"``.

  :func:`teardown_default` undoes all of it and is idempotent, so ``gc`` can call it for
  any dead pod: rules are found by their comment and the host veth by its name, so it
  needs neither the :class:`NetInfo` nor the pod's namespace.

Restoring the host (decision): ``ip_forward`` is global and shared by every pod of every
data directory, so its original value is saved in ``/run/appc/net/ip_forward.orig`` by the
first pod that turns it on, each pod registers as ``/run/appc/net/user.<uuid>``, and the
last pod to go restores the value (``/run`` is cleared at boot, as the setting is).

Not supported: other CNI networks (``/etc/rkt/net.d``), ``default-restricted``, port
forwarding (``--port``), IPv6, and a ``FORWARD`` chain that drops by default (as CNI's
``ptp`` without the ``firewall`` plugin, no ``FORWARD`` rule is added).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import json
import os
import shlex
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from typing import Any

import attrs

from appc.errors import PodError

__all__ = [
    "DEFAULT_NET",
    "DEFAULT_SUBNET",
    "NET_INFO_FILE",
    "POD_IF",
    "NetInfo",
    "allocations",
    "forward_users",
    "host_interface",
    "loopback_up",
    "read_net_info",
    "setup_default",
    "teardown_default",
    "write_net_info",
]

#: rkt's default network.
DEFAULT_NET = "default"
DEFAULT_SUBNET = ipaddress.IPv4Network("172.16.28.0/24")
#: The pod-side interface name.
POD_IF = "eth0"
#: The file of the pod directory that lists the pod's networks (rkt's name).
NET_INFO_FILE = "net-info.json"
#: Where the machine-wide ``ip_forward`` bookkeeping lives.
RUN_DIR = "/run/appc/net"

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = "16sH22x"  # struct ifreq: name, flags, the rest of the union


@attrs.frozen
class NetInfo:
    """One network a pod joined (an entry of ``net-info.json``).

    :param net_name: the network's name (``default``).
    :param if_name: the interface inside the pod (``eth0``).
    :param ip: the pod's address.
    :param mask: the network mask in dotted form (``255.255.255.0``).
    :param host_ip: the host side's address (the pod's gateway).
    :param host_if: the host side's interface.
    """

    net_name: str
    if_name: str
    ip: str
    mask: str
    host_ip: str
    host_if: str

    def to_json(self) -> dict[str, str]:
        """rkt's ``{netName, netConf, pluginPath, ifName, ip, args, mask}`` plus ``hostIP``
        and ``hostIf`` (rkt leaves those out; readers ignore unknown keys)."""
        return {
            "netName": self.net_name,
            "netConf": "",
            "pluginPath": "",
            "ifName": self.if_name,
            "ip": self.ip,
            "args": "",
            "mask": self.mask,
            "hostIP": self.host_ip,
            "hostIf": self.host_if,
        }

    @classmethod
    def from_json(cls, data: Any) -> NetInfo:
        """Read one entry (missing ``hostIP``/``hostIf``, as rkt writes them, read as ``""``)."""
        if not isinstance(data, dict):
            raise PodError(f"bad {NET_INFO_FILE} entry {data!r}")

        def text(key: str) -> str:
            value = data.get(key) or ""
            if not isinstance(value, str):
                raise PodError(f"bad {NET_INFO_FILE} entry: {key} is {value!r}")
            return value

        return cls(
            text("netName"),
            text("ifName"),
            text("ip"),
            text("mask"),
            text("hostIP"),
            text("hostIf"),
        )


def write_net_info(pod_dir: str, infos: list[NetInfo]) -> None:
    """Write ``<pod_dir>/net-info.json`` (atomically: a temporary file renamed into place)."""
    path = os.path.join(pod_dir, NET_INFO_FILE)
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(json.dumps([info.to_json() for info in infos]) + "\n")
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def read_net_info(pod_dir: str) -> list[NetInfo]:
    """Read ``<pod_dir>/net-info.json``; ``[]`` when absent (host networking).

    :raises PodError: for a file that is not a JSON list of entries.
    """
    try:
        with open(os.path.join(pod_dir, NET_INFO_FILE), encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        raise PodError(f"cannot read {NET_INFO_FILE} of {pod_dir}: {err}") from None
    if not isinstance(data, list):
        raise PodError(f"{NET_INFO_FILE} of {pod_dir} is not a list")
    return [NetInfo.from_json(item) for item in data]


# --- loopback -----------------------------------------------------------------------------


def loopback_up() -> None:
    """Bring ``lo`` up in the caller's network namespace (an ioctl: no ``ip`` needed, so
    it works after a pivot_root too).

    :raises PodError: when the kernel refuses.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            request = struct.pack(_IFREQ, b"lo", 0)
            _name, flags = struct.unpack(_IFREQ, fcntl.ioctl(sock, _SIOCGIFFLAGS, request))
            if not flags & _IFF_UP:
                fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))
    except OSError as err:
        raise PodError(f"cannot bring up the loopback interface: {err.strerror}") from None


# --- commands -------------------------------------------------------------------------


#: Searched after ``PATH`` for ``ip`` and ``iptables`` (a user's PATH often lacks sbin).
SBIN_DIRS: tuple[str, ...] = ("/usr/sbin", "/sbin")


def _tool(name: str) -> str:
    path = shutil.which(name)
    for directory in SBIN_DIRS:
        if path is None and os.access(candidate := os.path.join(directory, name), os.X_OK):
            path = candidate
    if path is None:
        package = {"ip": "iproute2", "nsenter": "util-linux"}.get(name, name)
        raise PodError(f"--net=default needs the {name!r} command (install {package})")
    return path


def _run(
    argv: list[str], *, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise PodError(f"{shlex.join(argv)}: {err}") from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().replace("\n", "; ")
        raise PodError(f"{shlex.join(argv)} failed: {detail or f'exit status {result.returncode}'}")
    return result


def host_interface(pod_uuid: str) -> str:
    """The host side's veth name for a pod: ``veth`` and 11 hex digits of its UUID (15
    characters, the kernel's limit)."""
    digits = pod_uuid.replace("-", "").lower()
    if len(digits) < 11 or any(c not in "0123456789abcdef" for c in digits):
        raise PodError(f"bad pod UUID {pod_uuid!r}")
    return "veth" + digits[:11]


def _comment(pod_uuid: str) -> str:
    return f"appc pod {pod_uuid}"


def _nat_rule(ip: str, pod_uuid: str) -> list[str]:
    return [
        "POSTROUTING", "-s", f"{ip}/32", "!", "-d", str(DEFAULT_SUBNET),
        "-m", "comment", "--comment", _comment(pod_uuid), "-j", "MASQUERADE",
    ]  # fmt: skip


# --- IPAM -----------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(directory: str) -> Iterator[None]:
    """Hold an exclusive flock on *directory* itself (no lock file is left behind)."""
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _ipam_dir(data_dir: str) -> str:
    return os.path.join(data_dir, "networks", DEFAULT_NET)


_ROUTE_TYPES = frozenset(
    {
        "unicast",
        "local",
        "broadcast",
        "multicast",
        "throw",
        "unreachable",
        "prohibit",
        "blackhole",
        "nat",
    }
)


def _host_routes(ip: str) -> tuple[set[ipaddress.IPv4Address], list[str]]:
    """Host routes inside the subnet (/32s: taken) and routes overlapping it wider."""
    taken: set[ipaddress.IPv4Address] = set()
    overlapping: list[str] = []
    for line in _run([ip, "-4", "-o", "route", "show", "table", "main"]).stdout.splitlines():
        words = line.split()
        if words and words[0] in _ROUTE_TYPES:
            words = words[1:]
        if not words or words[0] == "default":
            continue
        try:
            network = ipaddress.IPv4Network(words[0], strict=False)
        except ValueError:
            continue
        if not network.overlaps(DEFAULT_SUBNET):
            continue
        if network.prefixlen == 32:
            taken.add(network.network_address)
        else:
            overlapping.append(line.strip())
    return taken, overlapping


def _allocate(
    directory: str, pod_uuid: str, taken: set[ipaddress.IPv4Address]
) -> ipaddress.IPv4Address:
    """Reserve a free address for *pod_uuid* (the caller holds the lock)."""
    gateway = DEFAULT_SUBNET.network_address + 1
    candidates = [h for h in DEFAULT_SUBNET.hosts() if h != gateway]
    for address in candidates:  # already has one (a retried setup)
        if _read(os.path.join(directory, str(address))) == pod_uuid:
            return address
    last = _read(os.path.join(directory, "last_reserved_ip.0"))
    start = 0
    with contextlib.suppress(ValueError):
        start = candidates.index(ipaddress.IPv4Address(last)) + 1
    for offset in range(len(candidates)):
        address = candidates[(start + offset) % len(candidates)]
        if address in taken:
            continue
        try:
            fd = os.open(
                os.path.join(directory, str(address)), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644
            )
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as f:
            f.write(pod_uuid)
        with open(os.path.join(directory, "last_reserved_ip.0"), "w", encoding="ascii") as f:
            f.write(str(address))
        return address
    raise PodError(f"no free address left in {DEFAULT_SUBNET} ({directory})")


def _release(directory: str, pod_uuid: str) -> list[str]:
    """Free every address held by *pod_uuid*; return them."""
    freed: list[str] = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return freed
    for name in names:
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            continue
        path = os.path.join(directory, name)
        if _read(path) == pod_uuid:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            freed.append(name)
    return freed


def allocations(data_dir: str) -> dict[str, str]:
    """The addresses the IPAM of *data_dir* holds: ``{ip: pod uuid}``."""
    directory = _ipam_dir(data_dir)
    out = {}
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(directory):
            with contextlib.suppress(ValueError):
                ipaddress.IPv4Address(name)
                out[name] = _read(os.path.join(directory, name))
    return out


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


# --- ip_forward ---------------------------------------------------------------------------

_FORWARD = "/proc/sys/net/ipv4/ip_forward"


def _forward_acquire(pod_uuid: str) -> None:
    with _locked(RUN_DIR):
        original = os.path.join(RUN_DIR, "ip_forward.orig")
        current = _read(_FORWARD)
        if current != "1" and not os.path.exists(original):
            with open(original, "w", encoding="ascii") as f:
                f.write(current or "0")
        with open(os.path.join(RUN_DIR, f"user.{pod_uuid}"), "w", encoding="ascii"):
            pass
        if current != "1":
            with open(_FORWARD, "w", encoding="ascii") as f:
                f.write("1")


def _forward_release(pod_uuid: str) -> None:
    if not os.path.isdir(RUN_DIR):
        return
    with _locked(RUN_DIR):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(RUN_DIR, f"user.{pod_uuid}"))
        remaining = [n for n in os.listdir(RUN_DIR) if n.startswith("user.")]
        original = os.path.join(RUN_DIR, "ip_forward.orig")
        if not remaining and os.path.exists(original):
            value = _read(original) or "0"
            with open(_FORWARD, "w", encoding="ascii") as f:
                f.write(value)
            os.unlink(original)


def forward_users() -> list[str]:
    """The pods (of any data directory) that currently need ``ip_forward`` on."""
    try:
        return sorted(n[len("user.") :] for n in os.listdir(RUN_DIR) if n.startswith("user."))
    except FileNotFoundError:
        return []


# --- setup and teardown -------------------------------------------------------------------


def _netns(pid: int) -> str:
    path = f"/proc/{pid}/ns/net"
    try:
        theirs = os.stat(path)
        ours = os.stat("/proc/self/ns/net")
    except OSError as err:
        raise PodError(f"no network namespace for process {pid}: {err.strerror}") from None
    if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
        raise PodError(f"process {pid} is in the host's network namespace, not a pod's")
    return path


def setup_default(data_dir: str, pod_uuid: str, netns_pid: int) -> NetInfo:
    """Join the pod whose PID 1 is host process *netns_pid* to the default network.

    Called in the host's network namespace.  On any failure everything done so far is
    undone (:func:`teardown_default`) before the error is raised.

    :raises PodError: a missing ``ip``/``nsenter``/``iptables``, a process without a
        network namespace of its own, no free address, or a command that failed.
    """
    ip, nsenter, iptables = _tool("ip"), _tool("nsenter"), _tool("iptables")
    netns = _netns(netns_pid)
    host_if = host_interface(pod_uuid)
    gateway = str(DEFAULT_SUBNET.network_address + 1)
    directory = _ipam_dir(data_dir)
    try:
        # The data dir's IPAM lock, then the machine-wide one: pods of other data dirs
        # cannot take the same address between the route check and the route.
        with _locked(directory), _locked(RUN_DIR):
            taken, overlapping = _host_routes(ip)
            if overlapping:
                raise PodError(
                    f"the default network {DEFAULT_SUBNET} overlaps a host route: {overlapping[0]}"
                )
            address = str(_allocate(directory, pod_uuid, taken))
            _run(
                [ip, "-batch", "-"],
                stdin="\n".join(
                    [
                        f"link add {host_if} type veth peer name {POD_IF} netns {netns_pid}",
                        f"addr add {gateway}/32 dev {host_if}",
                        f"link set {host_if} up",
                        f"route add {address}/32 dev {host_if} scope link src {gateway}",
                    ]
                )
                + "\n",
            )
        prefix = DEFAULT_SUBNET.prefixlen
        _run(
            [nsenter, f"--net={netns}", "--", ip, "-batch", "-"],
            stdin="\n".join(
                [
                    "link set lo up",
                    f"addr add {address}/{prefix} dev {POD_IF} noprefixroute",
                    f"link set {POD_IF} up",
                    f"route add {gateway}/32 dev {POD_IF} scope link src {address}",
                    f"route add {DEFAULT_SUBNET} via {gateway} dev {POD_IF} src {address}",
                    f"route add default via {gateway} dev {POD_IF}",
                ]
            )
            + "\n",
        )
        _forward_acquire(pod_uuid)
        _run([iptables, "-w", "-t", "nat", "-A", *_nat_rule(address, pod_uuid)])
    except BaseException:
        with contextlib.suppress(Exception):
            teardown_default(data_dir, pod_uuid)
        raise
    return NetInfo(DEFAULT_NET, POD_IF, address, str(DEFAULT_SUBNET.netmask), gateway, host_if)


def _nat_rules(iptables: str, pod_uuid: str) -> list[list[str]]:
    """The rules (``-S`` form, split, without ``-A``) of POSTROUTING tagged for *pod_uuid*."""
    listing = _run([iptables, "-w", "-t", "nat", "-S", "POSTROUTING"]).stdout
    comment = _comment(pod_uuid)
    rules = []
    for line in listing.splitlines():
        if not line.startswith("-A POSTROUTING ") or comment not in line:
            continue
        words = shlex.split(line)
        if any(a == "--comment" and b == comment for a, b in itertools.pairwise(words)):
            rules.append(words[1:])
    return rules


def teardown_default(data_dir: str, pod_uuid: str, info: NetInfo | None = None) -> None:
    """Undo :func:`setup_default` for a pod: NAT rules, host veth, address, ip_forward.

    Idempotent, and works for a half-set-up or long-dead pod (*info* is only a hint).
    Every step is tried; the first failure is raised at the end.

    :raises PodError: when a rule or link exists but cannot be removed.
    """
    errors: list[PodError] = []
    host_if = info.host_if if info is not None and info.host_if else host_interface(pod_uuid)
    iptables: str | None = None
    with contextlib.suppress(PodError):
        iptables = _tool("iptables")
    if iptables is not None:
        try:
            for rule in _nat_rules(iptables, pod_uuid):
                _run([iptables, "-w", "-t", "nat", "-D", *rule])
        except PodError as err:
            errors.append(err)
    try:
        ip = _tool("ip")
        result = _run([ip, "link", "del", host_if], check=False)
        if result.returncode != 0 and os.path.exists(f"/sys/class/net/{host_if}"):
            errors.append(PodError(f"cannot remove {host_if}: {result.stderr.strip()}"))
    except PodError as err:
        if os.path.exists(f"/sys/class/net/{host_if}"):
            errors.append(err)
    directory = _ipam_dir(data_dir)
    if os.path.isdir(directory):
        with _locked(directory):
            _release(directory, pod_uuid)
    try:
        _forward_release(pod_uuid)
    except OSError as err:
        errors.append(PodError(f"cannot restore {_FORWARD}: {err}"))
    if errors:
        raise errors[0]
