"""Pod networking with real namespaces, veth pairs and iptables; the host is left as found."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest

from appc.errors import PodError
from appc.runtime import network
from appc.runtime.network import (
    NetInfo,
    read_net_info,
    setup_default,
    teardown_default,
    write_net_info,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

PING = (
    ["ping"] if shutil.which("ping") else ["busybox", "ping"] if shutil.which("busybox") else None
)


def nat_rules() -> str:
    return subprocess.run(
        ["iptables", "-w", "-t", "nat", "-S", "POSTROUTING"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def ip_forward() -> str:
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        return f.read().strip()


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def in_pod(pid: int, argv: list[str], timeout: float = 10) -> subprocess.CompletedProcess[str]:
    """Run *argv* in the network namespace of process *pid*."""
    return subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "--", *argv],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture
def pod_process() -> Iterator[Callable[[], int]]:
    """Start stand-ins for pod PID 1s: ``sleep`` in new network and mount namespaces
    (``unshare`` execs it, so its pid is the namespaces' owner).  Killed afterwards."""
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> int:
        process = subprocess.Popen(["unshare", "--net", "--mount", "--", "sleep", "120"])
        processes.append(process)
        # Wait until unshare has exec'd sleep in its new namespace.
        for _ in range(500):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{process.pid}/ns/net") != os.readlink(
                    "/proc/self/ns/net"
                ) and (os.readlink(f"/proc/{process.pid}/exe").endswith("sleep")):
                    return process.pid
            threading.Event().wait(0.005)
        raise AssertionError("unshare did not start")

    yield start
    for process in processes:
        process.kill()
        process.wait()


@pytest.fixture
def pod_uuid(tmp_path: pathlib.Path) -> Iterator[Callable[[], str]]:
    """Fresh pod UUIDs; each one's networking is torn down afterwards, and checked gone."""
    made: list[str] = []

    def new() -> str:
        made.append(str(uuid.uuid4()))
        return made[-1]

    yield new
    for value in made:
        with contextlib.suppress(PodError):
            teardown_default(str(tmp_path), value)
    for value in made:
        assert not link_exists(network.host_interface(value))
        assert value not in nat_rules()
        assert value not in network.forward_users()


# --- none -------------------------------------------------------------------------------


def test_none_gives_only_loopback_up() -> None:
    """A real child made with appc.runtime.linux, as the pod's PID 1 does it."""
    script = textwrap.dedent(
        """
        import socket
        from appc.runtime import linux
        from appc.runtime.network import loopback_up
        linux.unshare(linux.CLONE_NEWNET | linux.CLONE_NEWNS)
        print(socket.if_nameindex())
        try:
            socket.create_connection(("127.0.0.1", 9), 1)
        except OSError:
            print("no connection")
        loopback_up()
        loopback_up()  # twice: no harm
        server = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(server.getsockname(), 1)
        conn, _ = server.accept()
        client.sendall(b"ping")
        print(conn.recv(4).decode())
        with open("/sys/class/net/lo/flags") as f:
            print(int(f.read(), 16) & 1)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 0, out.stderr
    # Before: lo exists but is down (no connection); after: it carries traffic.
    assert out.stdout.splitlines() == ["[(1, 'lo')]", "no connection", "ping", "1"]


def test_loopback_up_outside_a_namespace_is_harmless() -> None:
    network.loopback_up()  # the host's lo is up already: nothing changes


# --- default ------------------------------------------------------------------------------


def test_default_network_end_to_end(
    tmp_path: pathlib.Path, pod_process: Callable[[], int], pod_uuid: Callable[[], str]
) -> None:
    data_dir = str(tmp_path)
    forward_before = ip_forward()
    pid, pod = pod_process(), pod_uuid()
    info = setup_default(data_dir, pod, pid)
    assert info.net_name == "default" and info.if_name == "eth0"
    assert info.host_ip == "172.16.28.1" and info.mask == "255.255.255.0"
    assert info.ip.startswith("172.16.28.") and info.ip not in (
        "172.16.28.0",
        "172.16.28.1",
        "172.16.28.255",
    )
    assert info.host_if == network.host_interface(pod) and link_exists(info.host_if)
    assert network.allocations(data_dir) == {info.ip: pod}

    # Inside: lo and eth0, both up, eth0 with the address; a default route via the host.
    links = in_pod(pid, ["ip", "-o", "link"]).stdout
    assert sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines()) == [
        "eth0",
        "lo",
    ]
    assert f"inet {info.ip}/24" in in_pod(pid, ["ip", "-o", "-4", "addr", "show", "eth0"]).stdout
    assert "default via 172.16.28.1 dev eth0" in in_pod(pid, ["ip", "route"]).stdout

    # The pod reaches a TCP server on the host side, and sees the connection come from its address.
    server = socket.create_server((info.host_ip, 0))
    seen: list[str] = []

    def serve() -> None:
        conn, peer = server.accept()
        seen.append(peer[0])
        conn.sendall(b"hello from the host")
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = f"import socket; print(socket.create_connection(({info.host_ip!r}, {server.getsockname()[1]}), 5).recv(100).decode())"
    out = in_pod(pid, [sys.executable, "-S", "-c", client])
    thread.join(5)
    server.close()
    assert out.stdout.strip() == "hello from the host", out.stderr
    assert seen == [info.ip]

    if PING:
        assert in_pod(pid, [*PING, "-c", "1", "-W", "2", info.host_ip]).returncode == 0
        assert (
            subprocess.run(
                [*PING, "-c", "1", "-W", "2", info.ip], capture_output=True, check=False
            ).returncode
            == 0
        )

    # Egress: forwarding on, and a MASQUERADE rule for the pod's address.
    assert ip_forward() == "1"
    assert (
        f'-A POSTROUTING -s {info.ip}/32 ! -d 172.16.28.0/24 -m comment --comment "appc pod {pod}" -j MASQUERADE'
        in nat_rules()
    )

    teardown_default(data_dir, pod, info)
    assert not link_exists(info.host_if)
    assert pod not in nat_rules()
    assert network.allocations(data_dir) == {}
    assert in_pod(pid, ["ip", "-o", "link", "show", "eth0"]).returncode != 0
    if not network.forward_users():
        assert ip_forward() == forward_before
    teardown_default(data_dir, pod, info)  # idempotent
    teardown_default(data_dir, pod)


def test_egress_through_nat(
    tmp_path: pathlib.Path, pod_process: Callable[[], int], pod_uuid: Callable[[], str]
) -> None:
    """The pod reaches the host's default gateway: forwarding + masquerade work."""
    route = subprocess.run(
        ["ip", "-4", "route", "show", "default"], capture_output=True, text=True, check=False
    ).stdout.split()
    if not PING or "via" not in route:
        pytest.skip("no ping or no default gateway")
    gateway = route[route.index("via") + 1]
    if (
        subprocess.run(
            [*PING, "-c", "1", "-W", "2", gateway], capture_output=True, check=False
        ).returncode
        != 0
    ):
        pytest.skip(f"the gateway {gateway} does not answer pings from the host")
    pid, pod = pod_process(), pod_uuid()
    setup_default(str(tmp_path), pod, pid)
    assert in_pod(pid, [*PING, "-c", "1", "-W", "3", gateway]).returncode == 0


def test_two_pods_get_different_addresses_and_reach_each_other(
    tmp_path: pathlib.Path, pod_process: Callable[[], int], pod_uuid: Callable[[], str]
) -> None:
    data_dir = str(tmp_path)
    first_pid, first = pod_process(), pod_uuid()
    second_pid, second = pod_process(), pod_uuid()
    a = setup_default(data_dir, first, first_pid)
    b = setup_default(data_dir, second, second_pid)
    assert a.ip != b.ip and a.host_if != b.host_if
    assert network.allocations(data_dir) == {a.ip: first, b.ip: second}
    if PING:  # through the host (ptp routing), not on a shared link
        assert in_pod(first_pid, [*PING, "-c", "1", "-W", "2", b.ip]).returncode == 0
    teardown_default(data_dir, first, a)
    assert network.allocations(data_dir) == {b.ip: second}
    assert link_exists(b.host_if) and not link_exists(a.host_if)
    # The freed address is not reused at once (round robin, as host-local).
    third_pid, third = pod_process(), pod_uuid()
    c = setup_default(data_dir, third, third_pid)
    assert c.ip not in (a.ip, b.ip)


def test_addresses_of_another_data_dir_are_skipped(
    tmp_path: pathlib.Path, pod_process: Callable[[], int], pod_uuid: Callable[[], str]
) -> None:
    one, two = os.path.join(str(tmp_path), "one"), os.path.join(str(tmp_path), "two")
    first = setup_default(one, (first_uuid := pod_uuid()), pod_process())
    second = setup_default(two, (second_uuid := pod_uuid()), pod_process())
    assert first.ip != second.ip  # the host route of the first pod marks its address as taken
    teardown_default(one, first_uuid)
    teardown_default(two, second_uuid)


def test_teardown_of_a_dead_pod(tmp_path: pathlib.Path, pod_uuid: Callable[[], str]) -> None:
    """gc's case: the pod's namespace is gone (so is the veth pair); the rest is removed."""
    data_dir = str(tmp_path)
    pod = pod_uuid()
    process = subprocess.Popen(["unshare", "--net", "--", "sleep", "120"])
    try:
        for _ in range(500):
            if os.readlink(f"/proc/{process.pid}/exe").endswith("sleep"):
                break
            threading.Event().wait(0.005)
        info = setup_default(data_dir, pod, process.pid)
    finally:
        process.kill()
        process.wait()
    for _ in range(200):  # the kernel removes the pair with the namespace, asynchronously
        if not link_exists(info.host_if):
            break
        threading.Event().wait(0.01)
    assert pod in nat_rules() and network.allocations(data_dir) == {info.ip: pod}
    teardown_default(data_dir, pod)  # no NetInfo: found by name and comment
    assert pod not in nat_rules() and network.allocations(data_dir) == {}


def test_teardown_of_a_pod_never_set_up(tmp_path: pathlib.Path) -> None:
    teardown_default(str(tmp_path), str(uuid.uuid4()))
    teardown_default(os.path.join(str(tmp_path), "missing"), str(uuid.uuid4()))


def test_setup_refuses_the_host_namespace(
    tmp_path: pathlib.Path, pod_uuid: Callable[[], str]
) -> None:
    with pytest.raises(PodError, match="is in the host's network namespace"):
        setup_default(str(tmp_path), pod_uuid(), os.getpid())
    with pytest.raises(PodError, match="no network namespace for process"):
        setup_default(str(tmp_path), pod_uuid(), 2**22 + 1)
    assert network.allocations(str(tmp_path)) == {}


def test_failed_setup_is_rolled_back(
    tmp_path: pathlib.Path, pod_process: Callable[[], int], pod_uuid: Callable[[], str]
) -> None:
    pid, pod = pod_process(), pod_uuid()
    # An eth0 already in the pod: creating the veth peer there fails.
    assert (
        in_pod(
            pid, ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"]
        ).returncode
        == 0
    )
    with pytest.raises(PodError, match="File exists"):
        setup_default(str(tmp_path), pod, pid)
    assert not link_exists(network.host_interface(pod))
    assert network.allocations(str(tmp_path)) == {}
    assert pod not in nat_rules() and pod not in network.forward_users()


def test_missing_tools_are_named(
    tmp_path: pathlib.Path, pod_process: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = pod_process()
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(network, "SBIN_DIRS", ())
    with pytest.raises(
        PodError, match=r"--net=default needs the 'ip' command \(install iproute2\)"
    ):
        setup_default(str(tmp_path), str(uuid.uuid4()), pid)
    os.symlink(
        shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin") or "/usr/sbin/ip", tmp_path / "ip"
    )
    os.symlink(
        shutil.which("nsenter", path="/usr/bin:/bin") or "/usr/bin/nsenter", tmp_path / "nsenter"
    )
    with pytest.raises(
        PodError, match=r"--net=default needs the 'iptables' command \(install iptables\)"
    ):
        setup_default(str(tmp_path), str(uuid.uuid4()), pid)
    assert network.allocations(str(tmp_path)) == {}


def test_overlapping_host_route_stops_setup(
    tmp_path: pathlib.Path, pod_process: Callable[[], int], pod_uuid: Callable[[], str]
) -> None:
    subprocess.run(["ip", "route", "add", "blackhole", "172.16.28.128/25"], check=True)
    try:
        with pytest.raises(PodError, match=r"overlaps a host route: blackhole 172\.16\.28\.128/25"):
            setup_default(str(tmp_path), pod_uuid(), pod_process())
        assert network.allocations(str(tmp_path)) == {}
    finally:
        subprocess.run(["ip", "route", "del", "blackhole", "172.16.28.128/25"], check=False)


# --- net-info.json ----------------------------------------------------------------------


def test_net_info_round_trip(tmp_path: pathlib.Path) -> None:
    pod_dir = str(tmp_path)
    assert read_net_info(pod_dir) == []  # host networking
    info = NetInfo(
        "default", "eth0", "172.16.28.5", "255.255.255.0", "172.16.28.1", "veth0123456789a"
    )
    write_net_info(pod_dir, [info])
    with open(os.path.join(pod_dir, "net-info.json")) as f:
        data = json.load(f)
    assert data == [
        {
            "netName": "default", "netConf": "", "pluginPath": "", "ifName": "eth0",
            "ip": "172.16.28.5", "args": "", "mask": "255.255.255.0",
            "hostIP": "172.16.28.1", "hostIf": "veth0123456789a",
        }
    ]  # fmt: skip
    assert read_net_info(pod_dir) == [info]
    assert oct(os.stat(os.path.join(pod_dir, "net-info.json")).st_mode & 0o777) == "0o644"
    write_net_info(pod_dir, [])
    assert read_net_info(pod_dir) == []


def test_net_info_written_by_rkt(tmp_path: pathlib.Path) -> None:
    with open(os.path.join(str(tmp_path), "net-info.json"), "w") as f:
        f.write('[{"netName":"default","netConf":"net/99-default.conf","pluginPath":"stage1/rootfs/usr/lib/rkt/plugins/net/ptp",'
                '"ifName":"eth0","ip":"172.16.28.7","args":"","mask":"255.255.255.0"}]\n')  # fmt: skip
    assert read_net_info(str(tmp_path)) == [
        NetInfo("default", "eth0", "172.16.28.7", "255.255.255.0", "", "")
    ]


@pytest.mark.parametrize("content", ["{", "{}", "[1]", '[{"ip": 5}]'])
def test_bad_net_info(tmp_path: pathlib.Path, content: str) -> None:
    with open(os.path.join(str(tmp_path), "net-info.json"), "w") as f:
        f.write(content)
    with pytest.raises(PodError):
        read_net_info(str(tmp_path))


def test_host_interface_names() -> None:
    assert network.host_interface("6733C088-4E4E-4C3C-B1B2-0C5BD43F8A9B") == "veth6733c0884e4"
    assert len(network.host_interface(str(uuid.uuid4()))) == 15
    with pytest.raises(PodError):
        network.host_interface("../../etc")
