"""A small reader of ELF headers: what a dynamically linked program needs to run.

``goaci`` copies a cgo program's loader and shared libraries into the image.  The
original ran ``ldd`` on the binary, which may execute it; this module reads the same
facts from the file with :mod:`struct` instead (the design of pypa/packaging's
``_elffile.py``): the ELF header, the program headers, the ``PT_INTERP`` string and the
``PT_DYNAMIC`` entries (``DT_NEEDED``, ``DT_SONAME``, ``DT_RPATH``, ``DT_RUNPATH``).

Decisions:

* The dynamic section is found through its program header and its string table through
  ``DT_STRTAB`` mapped by the ``PT_LOAD`` segments, as the loader does; section headers
  are not needed, so stripped binaries read the same.
* Everything is read eagerly in the constructor, then the file may be closed; at most a
  few kilobytes are read however large the file.
* Any inconsistency (a table or string beyond the end of the file, a string table no
  segment maps) is an :class:`~appc.errors.ELFError` naming the file, never an
  ``IndexError`` or ``struct.error``.

>>> import io
>>> ELFFile(io.BytesIO(b"#!/bin/sh\\n"), source="script")
Traceback (most recent call last):
...
appc.errors.ELFError: script: not an ELF file (bad magic b'#!/b')
"""

from __future__ import annotations

import enum
import os
import struct
from typing import BinaryIO, NamedTuple

from appc.errors import ELFError

__all__ = [
    "ELFClass",
    "ELFData",
    "ELFFile",
    "LibraryResolver",
    "ProgramHeader",
    "default_library_dirs",
    "is_elf",
    "read_ld_so_cache",
    "MACHINE_NAMES",
    "PT_DYNAMIC",
    "PT_INTERP",
    "PT_LOAD",
]


def __dir__() -> list[str]:
    return __all__


_MAGIC = b"\x7fELF"

#: Program header types used here.
PT_LOAD = 1
PT_DYNAMIC = 2
PT_INTERP = 3

_DT_NULL = 0
_DT_NEEDED = 1
_DT_STRTAB = 5
_DT_STRSZ = 10
_DT_SONAME = 14
_DT_RPATH = 15
_DT_RUNPATH = 29

_PN_XNUM = 0xFFFF
_MAX_STRING = 4096
_MAX_DYNAMIC = 1 << 16  # entries; real files have a few dozen

#: ``e_machine`` values and the names ``uname -m`` (and appc's arch labels) use.
MACHINE_NAMES: dict[int, str] = {
    3: "i386",
    8: "mips",
    20: "ppc",
    21: "ppc64",
    22: "s390x",
    40: "arm",
    62: "x86_64",
    183: "aarch64",
    243: "riscv",
    258: "loongarch",
}


class ELFClass(enum.IntEnum):
    """``EI_CLASS``: 32- or 64-bit objects."""

    C32 = 1
    C64 = 2


class ELFData(enum.IntEnum):
    """``EI_DATA``: little- or big-endian encoding."""

    LSB = 1
    MSB = 2


class ProgramHeader(NamedTuple):
    """One program header (segment): its type, flags, file offset, address and sizes."""

    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int


def is_elf(path: str | os.PathLike[str]) -> bool:
    """True when the file at *path* starts with the ELF magic (False if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == _MAGIC
    except OSError:
        return False


class ELFFile:
    """The headers of one ELF object, read from a binary file object.

    :param f: an open binary file, positioned anywhere (it is read with ``seek``).
    :param source: the file's name, used in error messages.
    :raises ELFError: bad magic, unknown class or encoding, or a truncated file.

    Attributes: ``elf_class``, ``encoding``, ``osabi``, ``type`` (``e_type``: 2 for an
    executable, 3 for a shared object or PIE), ``machine`` (``e_machine``), ``flags``
    (``e_flags``), ``program_headers``, ``interpreter`` (the ``PT_INTERP`` path, or
    ``None``), ``needed`` (``DT_NEEDED`` names in order), ``soname``, ``rpath`` and
    ``runpath`` (each a tuple of directories as written, ``$ORIGIN`` unexpanded).
    """

    def __init__(self, f: BinaryIO, *, source: str = "") -> None:
        self._f = f
        self.source = source
        ident = self._read(0, 16, "ELF identification")
        if ident[:4] != _MAGIC:
            raise ELFError(f"not an ELF file (bad magic {ident[:4]!r})", source=source)
        try:
            self.elf_class = ELFClass(ident[4])
        except ValueError:
            raise ELFError(f"unknown ELF class {ident[4]}", source=source) from None
        try:
            self.encoding = ELFData(ident[5])
        except ValueError:
            raise ELFError(f"unknown ELF data encoding {ident[5]}", source=source) from None
        self.osabi: int = ident[7]
        self._end = "<" if self.encoding is ELFData.LSB else ">"
        is64 = self.elf_class is ELFClass.C64
        header_format = "HHIQQQIHHHHHH" if is64 else "HHIIIIIHHHHHH"
        (
            self.type,
            self.machine,
            _version,
            self.entry,
            phoff,
            shoff,
            self.flags,
            _ehsize,
            phentsize,
            phnum,
            shentsize,
            _shnum,
            _shstrndx,
        ) = self._unpack(header_format, 16, "ELF header")
        if phnum == _PN_XNUM:
            # Too many segments for e_phnum: the real count is sh_info of section 0.
            section_format = "IIQQQQIIQQ" if is64 else "IIIIIIIIII"
            if shoff == 0 or shentsize < struct.calcsize(section_format):
                raise ELFError("e_phnum is PN_XNUM but there is no section 0", source=source)
            phnum = self._unpack(section_format, shoff, "section header 0")[7]
        ph_format = "IIQQQQQQ" if is64 else "IIIIIIII"
        if phnum and phentsize < struct.calcsize(self._end + ph_format):
            raise ELFError(f"program header entry size {phentsize} is too small", source=source)
        headers = []
        for index in range(phnum):
            fields = self._unpack(ph_format, phoff + index * phentsize, "program headers")
            if is64:
                p_type, p_flags, offset, vaddr, _paddr, filesz, memsz, _align = fields
            else:
                p_type, offset, vaddr, _paddr, filesz, memsz, p_flags, _align = fields
            headers.append(ProgramHeader(p_type, p_flags, offset, vaddr, filesz, memsz))
        self.program_headers: tuple[ProgramHeader, ...] = tuple(headers)
        self.interpreter: str | None = self._read_interpreter()
        self.needed: tuple[str, ...] = ()
        self.soname: str | None = None
        self.rpath: tuple[str, ...] = ()
        self.runpath: tuple[str, ...] = ()
        self._read_dynamic()
        del self._f  # nothing more is read: do not keep the file alive

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> ELFFile:
        """Read the ELF headers of the file at *path*.

        :raises ELFError: the file is not a readable ELF object (or cannot be opened).
        """
        name = os.fspath(path)
        try:
            with open(name, "rb") as f:
                return cls(f, source=name)
        except OSError as err:
            raise ELFError(f"cannot read: {err.strerror or err}", source=name) from None

    @property
    def is_dynamic(self) -> bool:
        """True when the object needs a loader or shared libraries to run.

        A static PIE has a dynamic section but neither ``PT_INTERP`` nor ``DT_NEEDED``,
        so it counts as static.
        """
        return self.interpreter is not None or bool(self.needed)

    @property
    def machine_name(self) -> str:
        """``e_machine`` as the usual name (``x86_64``, ``aarch64``, ``arm`` ...)."""
        return MACHINE_NAMES.get(self.machine, f"machine-{self.machine}")

    def compatible_with(self, other: ELFFile) -> bool:
        """True when *other* could be loaded into the same process (class, encoding, machine)."""
        return (self.elf_class, self.encoding, self.machine) == (
            other.elf_class,
            other.encoding,
            other.machine,
        )

    def __repr__(self) -> str:
        return (
            f"<ELFFile {self.source!r} {self.machine_name} {self.elf_class.name} "
            f"{self.encoding.name} interpreter={self.interpreter!r} needed={list(self.needed)!r}>"
        )

    # --- reading ----------------------------------------------------------------------

    def _read(self, offset: int, size: int, what: str) -> bytes:
        try:
            self._f.seek(offset)
            data = self._f.read(size)
        except (OSError, OverflowError, ValueError) as err:
            raise ELFError(f"cannot read {what}: {err}", source=self.source) from None
        if len(data) != size:
            raise ELFError(f"truncated file (reading {what})", source=self.source)
        return data

    def _unpack(self, fmt: str, offset: int, what: str) -> tuple[int, ...]:
        full = self._end + fmt
        return struct.unpack(full, self._read(offset, struct.calcsize(full), what))

    def _string(self, offset: int, limit: int, what: str) -> str:
        """A NUL-terminated string at *offset*, at most *limit* bytes long."""
        try:
            self._f.seek(offset)
            data = self._f.read(min(limit, _MAX_STRING))
        except (OSError, OverflowError, ValueError) as err:
            raise ELFError(f"cannot read {what}: {err}", source=self.source) from None
        end = data.find(b"\0")
        if end < 0:
            raise ELFError(f"truncated file or unterminated string (reading {what})", source=self.source)
        return os.fsdecode(data[:end])

    def _read_interpreter(self) -> str | None:
        for header in self.program_headers:
            if header.type == PT_INTERP:
                return self._string(header.offset, header.filesz, "PT_INTERP")
        return None

    def _file_offset(self, address: int) -> int | None:
        for header in self.program_headers:
            if header.type == PT_LOAD and header.vaddr <= address < header.vaddr + header.filesz:
                return header.offset + (address - header.vaddr)
        return None

    def _read_dynamic(self) -> None:
        dynamic = next((h for h in self.program_headers if h.type == PT_DYNAMIC), None)
        if dynamic is None:
            return
        entry_format = "qQ" if self.elf_class is ELFClass.C64 else "iI"
        entry_size = struct.calcsize(self._end + entry_format)
        count = min(dynamic.filesz // entry_size, _MAX_DYNAMIC)
        data = self._read(dynamic.offset, count * entry_size, "the dynamic section")
        entries: list[tuple[int, int]] = []
        for tag, value in struct.iter_unpack(self._end + entry_format, data):
            if tag == _DT_NULL:
                break
            entries.append((tag, value))
        strtab = next((v for t, v in entries if t == _DT_STRTAB), None)
        strsz = next((v for t, v in entries if t == _DT_STRSZ), _MAX_STRING)
        wanted = [(t, v) for t, v in entries if t in (_DT_NEEDED, _DT_SONAME, _DT_RPATH, _DT_RUNPATH)]
        if not wanted:
            return
        if strtab is None:
            raise ELFError("dynamic section has names but no DT_STRTAB", source=self.source)
        base = self._file_offset(strtab)
        if base is None:
            raise ELFError(f"DT_STRTAB address {strtab:#x} is in no loaded segment", source=self.source)
        needed: list[str] = []
        for tag, value in wanted:
            if value >= strsz:
                raise ELFError(f"dynamic string offset {value} beyond DT_STRSZ {strsz}", source=self.source)
            text = self._string(base + value, strsz - value, "the dynamic string table")
            if tag == _DT_NEEDED:
                needed.append(text)
            elif tag == _DT_SONAME:
                self.soname = text
            elif tag == _DT_RPATH:
                self.rpath += tuple(p for p in text.split(":") if p)
            else:
                self.runpath += tuple(p for p in text.split(":") if p)
        self.needed = tuple(needed)


# --- the loader's library search -------------------------------------------------------

_CACHE_NEW_MAGIC = b"glibc-ld.so.cache1.1"
_CACHE_OLD_MAGIC = b"ld.so-1.7.0"

#: Debian/Ubuntu multiarch directory names, by (machine, class).
_MULTIARCH: dict[tuple[int, ELFClass], str] = {
    (62, ELFClass.C64): "x86_64-linux-gnu",
    (3, ELFClass.C32): "i386-linux-gnu",
    (183, ELFClass.C64): "aarch64-linux-gnu",
    (40, ELFClass.C32): "arm-linux-gnueabihf",
    (21, ELFClass.C64): "powerpc64le-linux-gnu",
    (22, ELFClass.C64): "s390x-linux-gnu",
    (243, ELFClass.C64): "riscv64-linux-gnu",
}


def read_ld_so_cache(path: str | os.PathLike[str] = "/etc/ld.so.cache") -> tuple[tuple[str, str], ...]:
    """The ``(soname, path)`` pairs of glibc's loader cache, in the file's order.

    Reads the format glibc has written since 2.32 (``glibc-ld.so.cache1.1``) and the
    older combined format (an ``ld.so-1.7.0`` table followed by the new one); the
    entries' hardware-capability flags are ignored (callers check each candidate's ELF
    header instead).  This is what ``ldconfig -p`` prints, without running anything.

    :raises ELFError: the file is missing or not a cache this reader understands.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read(64 << 20)
    except OSError as err:
        raise ELFError(f"cannot read: {err.strerror or err}", source=name) from None
    start = 0
    if data.startswith(_CACHE_OLD_MAGIC):
        if len(data) < 16:
            raise ELFError("truncated loader cache", source=name)
        (old_count,) = struct.unpack_from("=I", data, 12)
        start = (16 + old_count * 12 + 7) & ~7
    if not data.startswith(_CACHE_NEW_MAGIC, start):
        raise ELFError("not a glibc loader cache (unknown magic)", source=name)
    if len(data) < start + 48:
        raise ELFError("truncated loader cache", source=name)
    flags = data[start + 28]
    end = ">" if flags & 3 == 3 else "<"
    count, _strings_len = struct.unpack_from(end + "II", data, start + 20)
    entries: list[tuple[str, str]] = []

    def text(offset: int) -> str:
        stop = data.find(b"\0", offset)
        if offset >= len(data) or stop < 0:
            raise ELFError(f"loader cache string offset {offset} is out of range", source=name)
        return os.fsdecode(data[offset:stop])

    for index in range(count):
        at = start + 48 + index * 24
        if at + 24 > len(data):
            raise ELFError("truncated loader cache", source=name)
        _flags, key, value = struct.unpack_from(end + "iII", data, at)
        # New-format offsets count from the new header; a combined file written by old
        # glibc versions counts them from the start of the file.
        soname, lib = text(start + key), text(start + value)
        if start and not lib.startswith("/"):
            soname, lib = text(key), text(value)
        entries.append((soname, lib))
    return tuple(entries)


def default_library_dirs(elf: ELFFile) -> tuple[str, ...]:
    """The directories searched after the cache for libraries of *elf*'s architecture.

    glibc's built-in list (``/lib``, ``/usr/lib``, their ``64`` variants for 64-bit
    objects) preceded by Debian's multiarch directories, which ``ld.so.conf`` adds.
    """
    dirs: list[str] = []
    triplet = _MULTIARCH.get((elf.machine, elf.elf_class))
    if triplet:
        dirs += [f"/lib/{triplet}", f"/usr/lib/{triplet}"]
    if elf.elf_class is ELFClass.C64:
        dirs += ["/lib64", "/usr/lib64"]
    dirs += ["/lib", "/usr/lib", "/usr/local/lib"]
    return tuple(dirs)


class LibraryResolver:
    """Find shared libraries the way glibc's loader does, for objects read by :class:`ELFFile`.

    Search order for a ``DT_NEEDED`` name without a slash: the requesting object's
    ``DT_RPATH`` (only when it has no ``DT_RUNPATH``), its ``DT_RUNPATH``, the loader
    cache, then :func:`default_library_dirs`.  Each candidate must exist and be an ELF
    object of the requester's class, encoding and machine (so a cross-compiled binary
    never picks up a host library).

    Decisions: ``LD_LIBRARY_PATH`` is not consulted (it describes the build machine's
    session, not the image); search-path entries with ``$ORIGIN``-style tokens are
    skipped, since the object's in-image location is what they would refer to.

    :param cache: ``(soname, path)`` pairs; ``None`` reads ``/etc/ld.so.cache`` (an
        unreadable or missing cache means "no cache", not an error).
    """

    def __init__(self, cache: tuple[tuple[str, str], ...] | None = None) -> None:
        if cache is None:
            try:
                cache = read_ld_so_cache()
            except ELFError:
                cache = ()
        self._cache: dict[str, list[str]] = {}
        for soname, path in cache:
            self._cache.setdefault(soname, []).append(path)

    def candidates(self, name: str, requester: ELFFile) -> list[str]:
        """Every path tried for *name* needed by *requester*, in search order."""
        if "/" in name:
            return [name] if name.startswith("/") else []
        dirs: list[str] = []
        if not requester.runpath:
            dirs += requester.rpath
        dirs += requester.runpath
        out = [os.path.join(d, name) for d in dirs if "$" not in d and d.startswith("/")]
        out += self._cache.get(name, [])
        out += [os.path.join(d, name) for d in default_library_dirs(requester)]
        return out

    def find(self, name: str, requester: ELFFile) -> str | None:
        """The path of the library *name* that *requester* would load, or ``None``."""
        for path in self.candidates(name, requester):
            if not os.path.isfile(path):
                continue
            try:
                found = ELFFile.from_path(path)
            except ELFError:
                continue
            if found.compatible_with(requester):
                return path
        return None
