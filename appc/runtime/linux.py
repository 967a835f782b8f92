"""The Linux system calls the runtime needs that Python 3.11's ``os`` lacks (through ctypes).

unshare, setns, mount, umount2, pivot_root, sethostname, prctl (no_new_privs, bounding
set, keep caps, a seccomp filter), capget/capset.  Each raises :class:`OSError` with the
C errno, like ``os`` functions do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import struct

__all__ = [
    "CAPABILITIES",
    "CLONE_NEWIPC",
    "CLONE_NEWNET",
    "CLONE_NEWNS",
    "CLONE_NEWPID",
    "CLONE_NEWUTS",
    "MNT_DETACH",
    "MS_BIND",
    "MS_NODEV",
    "MS_NOEXEC",
    "MS_NOSUID",
    "MS_PRIVATE",
    "MS_RDONLY",
    "MS_REC",
    "MS_REMOUNT",
    "MS_SLAVE",
    "capability_number",
    "deny_device_nodes",
    "device_node_filter",
    "drop_bounding_set",
    "last_capability",
    "mount",
    "pivot_root",
    "set_capabilities",
    "set_no_new_privs",
    "sethostname",
    "setns",
    "umount",
    "unshare",
]

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MNT_DETACH = 2

_PR_SET_KEEPCAPS = 8
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_SYS_PIVOT_ROOT = {
    "x86_64": 155,
    "aarch64": 41,
    "armv7l": 218,
    "i686": 217,
    "ppc64le": 203,
    "s390x": 217,
}
_SYS_CAPSET = {
    "x86_64": 126,
    "aarch64": 91,
    "armv7l": 185,
    "i686": 185,
    "ppc64le": 184,
    "s390x": 185,
}
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

#: Capability names and numbers (linux/capability.h).
CAPABILITIES = {
    name: number
    for number, name in enumerate(
        (
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_DAC_READ_SEARCH",
            "CAP_FOWNER",
            "CAP_FSETID",
            "CAP_KILL",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETPCAP",
            "CAP_LINUX_IMMUTABLE",
            "CAP_NET_BIND_SERVICE",
            "CAP_NET_BROADCAST",
            "CAP_NET_ADMIN",
            "CAP_NET_RAW",
            "CAP_IPC_LOCK",
            "CAP_IPC_OWNER",
            "CAP_SYS_MODULE",
            "CAP_SYS_RAWIO",
            "CAP_SYS_CHROOT",
            "CAP_SYS_PTRACE",
            "CAP_SYS_PACCT",
            "CAP_SYS_ADMIN",
            "CAP_SYS_BOOT",
            "CAP_SYS_NICE",
            "CAP_SYS_RESOURCE",
            "CAP_SYS_TIME",
            "CAP_SYS_TTY_CONFIG",
            "CAP_MKNOD",
            "CAP_LEASE",
            "CAP_AUDIT_WRITE",
            "CAP_AUDIT_CONTROL",
            "CAP_SETFCAP",
            "CAP_MAC_OVERRIDE",
            "CAP_MAC_ADMIN",
            "CAP_SYSLOG",
            "CAP_WAKE_ALARM",
            "CAP_BLOCK_SUSPEND",
            "CAP_AUDIT_READ",
            "CAP_PERFMON",
            "CAP_BPF",
            "CAP_CHECKPOINT_RESTORE",
        )
    )
}

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str, path: str | None = None) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return result


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces (``CLONE_NEW*`` flags)."""
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    """Join the namespace open at *fd* (a ``/proc/PID/ns/*`` file)."""
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(
    source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    """mount(2)."""
    result = _libc.mount(
        os.fsencode(source),
        os.fsencode(target),
        os.fsencode(fstype) if fstype else None,
        ctypes.c_ulong(flags),
        os.fsencode(data) if data else None,
    )
    _check(result, f"mount {fstype or 'bind'} {source} on {target}", target)


def umount(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    _check(_libc.umount2(os.fsencode(target), ctypes.c_int(flags)), f"umount {target}", target)


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2) (a raw system call: glibc has no wrapper)."""
    number = _SYS_PIVOT_ROOT[platform.machine()]
    _check(
        _libc.syscall(ctypes.c_long(number), os.fsencode(new_root), os.fsencode(put_old)),
        "pivot_root",
        new_root,
    )


def sethostname(name: str) -> None:
    """Set the host name of the current UTS namespace."""
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


def set_no_new_privs() -> None:
    """prctl(PR_SET_NO_NEW_PRIVS): exec can never grant privileges again."""
    _check(
        _libc.prctl(
            _PR_SET_NO_NEW_PRIVS,
            ctypes.c_ulong(1),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        ),
        "prctl(NO_NEW_PRIVS)",
    )


def set_keep_caps(keep: bool) -> None:
    """prctl(PR_SET_KEEPCAPS): keep permitted capabilities across setuid."""
    _check(
        _libc.prctl(
            _PR_SET_KEEPCAPS,
            ctypes.c_ulong(int(keep)),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        ),
        "prctl(KEEPCAPS)",
    )


def capability_number(name: str) -> int:
    """The number of capability *name* (``CAP_NET_ADMIN`` or ``net_admin``)."""
    key = name.upper()
    if not key.startswith("CAP_"):
        key = "CAP_" + key
    if key not in CAPABILITIES:
        raise ValueError(f"unknown capability {name!r}")
    return CAPABILITIES[key]


def last_capability() -> int:
    """The highest capability number the running kernel knows (``cap_last_cap``)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:  # bytes: no codec lookup
            return int(f.read())
    except (OSError, ValueError):
        return max(CAPABILITIES.values())


def drop_bounding_set(keep: set[int], last: int | None = None) -> None:
    """Remove every capability not in *keep* from the bounding set (needs CAP_SETPCAP).

    :param last: the kernel's last capability (:func:`last_capability`); pass it when
        calling after ``pivot_root``, where the host's ``/proc`` may be gone.
    """
    for number in range((last_capability() if last is None else last) + 1):
        if number in keep:
            continue
        result = _libc.prctl(
            _PR_CAPBSET_DROP,
            ctypes.c_ulong(number),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        )
        if result < 0 and ctypes.get_errno() != 22:  # EINVAL: the kernel does not know it
            _check(result, f"prctl(CAPBSET_DROP {number})")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def set_capabilities(caps: set[int]) -> None:
    """Make *caps* the effective, permitted and inheritable sets of this process."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for number in caps:
        index, bit = divmod(number, 32)
        for field in ("effective", "permitted", "inheritable"):
            setattr(data[index], field, getattr(data[index], field) | (1 << bit))
    number = _SYS_CAPSET[platform.machine()]
    _check(_libc.syscall(ctypes.c_long(number), ctypes.byref(header), data), "capset")


# --- a seccomp filter: no device nodes ----------------------------------------------------

_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_EPERM = 0x00050000 | 1  # SECCOMP_RET_ERRNO | EPERM
_LD_ABS, _JEQ, _AND, _RET = 0x20, 0x15, 0x54, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, ALU|AND|K, RET|K
_S_IFMT, _S_IFCHR, _S_IFBLK = 0o170000, 0o020000, 0o060000
#: Per machine: (audit arch, [(mknod-like syscall number, index of its mode argument)]),
#: the native ABI first, then the compat ones a 32-bit binary reaches (x32's numbers
#: carry bit 30).
_MKNOD_CALLS: dict[str, list[tuple[int, list[tuple[int, int]]]]] = {
    "x86_64": [
        (0xC000003E, [(133, 1), (259, 2), (0x40000085, 1), (0x40000103, 2)]),
        (0x40000003, [(14, 1), (297, 2)]),
    ],
    "aarch64": [(0xC00000B7, [(33, 2)]), (0x40000028, [(14, 1), (324, 2)])],
}


def device_node_filter() -> bytes | None:
    """A classic-BPF seccomp program that fails ``mknod``/``mknodat`` of a character or
    block device with ``EPERM`` (fifos and sockets stay possible); ``None`` on a machine
    whose system call numbers are not known here.  Build it before ``pivot_root``."""
    table = _MKNOD_CALLS.get(platform.machine())
    if table is None:
        return None
    code: list[tuple[int, str | int, str | int, int]] = [(_LD_ABS, 0, 0, 4)]  # the arch
    code += [(_JEQ, f"arch{i}", 0, arch) for i, (arch, _) in enumerate(table)]
    code.append((_RET, 0, 0, _SECCOMP_RET_ALLOW))
    labels: dict[str, int] = {}
    for i, (_, calls) in enumerate(table):
        labels[f"arch{i}"] = len(code)
        code.append((_LD_ABS, 0, 0, 0))  # the system call number
        code += [(_JEQ, f"mode{arg}", 0, nr) for nr, arg in calls]
        code.append((_RET, 0, 0, _SECCOMP_RET_ALLOW))
    for arg in (1, 2):
        labels[f"mode{arg}"] = len(code)
        code.append((_LD_ABS, 0, 0, 16 + 8 * arg))  # the mode's low 32 bits (little-endian)
        code.append((_AND, 0, 0, _S_IFMT))
        code.append((_JEQ, "deny", 0, _S_IFCHR))
        code.append((_JEQ, "deny", 0, _S_IFBLK))
        code.append((_RET, 0, 0, _SECCOMP_RET_ALLOW))
    labels["deny"] = len(code)
    code.append((_RET, 0, 0, _SECCOMP_RET_EPERM))
    out = bytearray()
    for index, (op, jt, jf, k) in enumerate(code):
        hops = [labels[j] - index - 1 if isinstance(j, str) else j for j in (jt, jf)]
        out += struct.pack("=HBBI", op, hops[0], hops[1], k)
    return bytes(out)


def deny_device_nodes(program: bytes) -> None:
    """Install *program* (from :func:`device_node_filter`) for this process and every
    process it starts; needs ``CAP_SYS_ADMIN`` or no_new_privs."""

    class _Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    prog = _Program(len(program) // 8, program)
    _check(
        _libc.prctl(
            _PR_SET_SECCOMP,
            ctypes.c_ulong(_SECCOMP_MODE_FILTER),
            ctypes.byref(prog),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        ),
        "prctl(SECCOMP_MODE_FILTER)",
    )
