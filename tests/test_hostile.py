"""Every hostile archive of :mod:`tests.hostile_corpus` through every path that reads archives.

The paths: ``actool validate`` (the CLI, one process for the whole corpus), extraction
(:func:`~appc.aci.extract.extract_image`, as an image layout and rootfs only, with the
options ``rkt image extract`` uses as root), ``actool patch-manifest`` (the library and
the CLI, to a new file and ``--replace``), the image store (``import_image``, then
``TreeStore.render`` of what is legal), and Docker layer application (``convert_image``
over an OCI layout, squashed and ``-nosquash``).

For each: a refused item fails with an :mod:`appc.errors` error of one line matching its
verdict; an accepted one gives a valid result.  Either way nothing changes outside the
target — neither the watched directory hostile links point to (``outside``), nor the
target's parent, which holds bait files that ``../`` names aim at — and a refusal
leaves nothing behind: no target, no output file, no temporary file, no store entry
(``ImageStore.check()`` clean), no tree.  Decompression bombs are refused at the limit
in bounded memory (a subprocess's peak RSS, ``VmHWM``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator

import pytest
from appc_tools.actool import main as actool_main

from appc._fs import rmtree
from appc.aci._compress import MAX_SIZE_ENV
from appc.aci.extract import ExtractOptions, extract_image
from appc.aci.patch import ManifestPatch, patch_image
from appc.aci.read import ImageReader
from appc.aci.validate import validate_archive
from appc.docker.archive import open_archive_image
from appc.docker.convert import ConvertOptions, convert_image
from appc.errors import AppcError, ImageError
from appc.store import ImageStore
from appc.store.tree import TreeStore
from tests import hostile_corpus as hc
from tests.aci_fixtures import compress, good_tar
from tests.store_fixtures import make_image

REPO = pathlib.Path(__file__).resolve().parents[1]
ROOT = os.geteuid() == 0

#: The items' ids (the same whatever directory hostile links point to).
ACI_IDS = [item.id for item in hc.aci_items("/outside")]
LAYER_IDS = [item.id for item in hc.layer_items("/outside")]
BAIT = {"bait": b"bait: must not change\n", "secret": b"secret\n", "manifest": b"{}\n"}


def file_name(item_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.:@-]", "_", item_id) + ".aci"


class Corpus:
    """The corpus written once for the module: a watched directory and a file per item."""

    def __init__(self, root: pathlib.Path) -> None:
        self.outside = root / "outside"
        self.outside.mkdir()
        for name, data in BAIT.items():
            (self.outside / name).write_bytes(data)
        (self.outside / "sub").mkdir()
        self.aci = {item.id: item for item in hc.aci_items(str(self.outside))}
        self.layer = {
            item.id: item for item in hc.layer_items(str(self.outside), bomb_size=256 * 1024**2)
        }
        self.files = root / "images"
        self.files.mkdir()
        for item in self.aci.values():
            (self.files / file_name(item.id)).write_bytes(item.make())

    def path(self, item_id: str) -> pathlib.Path:
        return self.files / file_name(item_id)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return Corpus(tmp_path_factory.mktemp("hostile"))


# --- watching the file system -------------------------------------------------------


def snapshot(root: pathlib.Path, *, skip: tuple[str, ...] = ()) -> dict[str, tuple[object, ...]]:
    """Every path under *root* (never following a symlink): type, mode, owner, links,
    size and contents (or link target) — what an escape would change."""
    seen: dict[str, tuple[object, ...]] = {}
    for directory, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, root)
            if rel.split(os.sep)[0] in skip:
                if name in dirs:
                    dirs.remove(name)
                continue
            st = os.lstat(path)
            content: object = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    content = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            seen[rel] = (
                stat.S_IFMT(st.st_mode),
                st.st_mode & 0o7777,
                st.st_uid,
                st.st_gid,
                st.st_nlink,
                st.st_size if not stat.S_ISDIR(st.st_mode) else 0,
                content,
            )
    return seen


class Area:
    """A target's parent directory holding bait files, and the watched directory."""

    def __init__(self, tmp: pathlib.Path, outside: pathlib.Path) -> None:
        self.dir = tmp / "area"
        self.dir.mkdir()
        for name, data in BAIT.items():
            (self.dir / name).write_bytes(data)
        self.outside = outside
        self._area = snapshot(self.dir)
        self._outside = snapshot(outside)

    def unchanged(self, *, except_for: tuple[str, ...] = ()) -> None:
        """Nothing changed outside, nor in the area apart from *except_for* (its entries)."""
        assert snapshot(self.outside) == self._outside, "the watched directory changed"
        assert snapshot(self.dir, skip=except_for) == {
            k: v for k, v in self._area.items() if k.split(os.sep)[0] not in except_for
        }, "the target's parent changed"
        extra = sorted(set(os.listdir(self.dir)) - set(BAIT) - set(except_for))
        assert extra == [], f"left behind: {extra}"


@pytest.fixture
def area(tmp_path: pathlib.Path, corpus: Corpus) -> Area:
    return Area(tmp_path, corpus.outside)


def refused(err: BaseException, item: hc.Item) -> None:
    """*err* is the one-line refusal *item* expects."""
    assert isinstance(err, AppcError), f"{type(err).__name__}: {err}"
    text = str(err)
    assert "\n" not in text
    assert re.search(item.verdict.message, text), (
        f"{item.id}: {text!r} does not match {item.verdict.message!r}"
    )


def inside_only(root: pathlib.Path, outside: pathlib.Path) -> None:
    """No regular file under *root* shares an inode with a file outside it."""
    outer = {(st.st_dev, st.st_ino) for st in map(os.lstat, _files(outside))}
    for path in _files(root):
        st = os.lstat(path)
        assert (st.st_dev, st.st_ino) not in outer, f"{path} is a hard link to a file outside"


def _files(root: pathlib.Path) -> Iterator[str]:
    for directory, _, files in os.walk(root):
        for name in files:
            yield os.path.join(directory, name)


def device_nodes(root: pathlib.Path) -> list[str]:
    found = []
    for path in _files(root):
        mode = os.lstat(path).st_mode
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            found.append(os.path.relpath(path, root))
    return sorted(found)


def entry_names(path: pathlib.Path | str, max_size: int | None = None) -> list[str]:
    with ImageReader(path, max_size=max_size) as image:
        names = [name for _, name in image.entries()]
        image.finish()
    return names


# --- actool validate: the whole corpus in one process per size limit ------------------------


def test_cli_validate_every_item(corpus: Corpus, tmp_path: pathlib.Path) -> None:
    groups: dict[int | None, list[hc.Item]] = {}
    for item in corpus.aci.values():
        groups.setdefault(item.max_size, []).append(item)
    for limit, items in groups.items():
        env = dict(os.environ)
        env.pop(MAX_SIZE_ENV, None)
        if limit is not None:
            env[MAX_SIZE_ENV] = str(limit)
        paths = [str(corpus.path(item.id)) for item in items]
        done = subprocess.run(
            [sys.executable, "-m", "appc_tools.actool", "--debug", "validate", *paths],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert "Traceback" not in done.stderr
        errors = done.stderr.splitlines()
        valid = done.stdout.splitlines()
        assert done.returncode == (0 if all(i.verdict.accept for i in items) else 1)
        for item, path in zip(items, paths, strict=True):
            mine = [line for line in errors if line.startswith(f"{path}: ")]
            if item.verdict.accept:
                assert mine == [] and f"{path}: valid app container image" in valid, item.id
            else:
                assert len(mine) == 1, (item.id, mine)
                assert re.search(item.verdict.message, mine[0]), (item.id, mine[0])
        assert len(errors) == sum(not i.verdict.accept for i in items)


# --- extraction ------------------------------------------------------------------------


@pytest.mark.parametrize("item_id", ACI_IDS)
def test_extract(corpus: Corpus, area: Area, item_id: str) -> None:
    item = corpus.aci[item_id]
    target = area.dir / "target"
    if not item.verdict.accept:
        with pytest.raises(AppcError) as info:
            extract_image(corpus.path(item_id), target, max_size=item.max_size)
        refused(info.value, item)
        area.unchanged()
        return
    extract_image(corpus.path(item_id), target, max_size=item.max_size)
    area.unchanged(except_for=("target",))
    assert (target / "manifest").is_file() and (target / "rootfs").is_dir()
    inside_only(target, corpus.outside)
    inside_only(target, area.dir / "bait")
    assert device_nodes(target) == []  # skipped unless asked for
    if not ROOT:  # owners are not restored: no setuid file owned by the extractor
        assert not any(os.lstat(p).st_mode & 0o6000 for p in _files(target))


@pytest.mark.parametrize("item_id", ACI_IDS)
def test_extract_rootfs_as_a_runtime(corpus: Corpus, area: Area, item_id: str) -> None:
    """``rkt image extract --rootfs-only``: owners, xattrs and devices restored when root."""
    item = corpus.aci[item_id]
    target = area.dir / "target"
    options = ExtractOptions(owners=ROOT, devices=ROOT, xattrs=ROOT)
    if not item.verdict.accept:
        with pytest.raises(AppcError) as info:
            extract_image(
                corpus.path(item_id),
                target,
                rootfs_only=True,
                options=options,
                max_size=item.max_size,
            )
        refused(info.value, item)
        area.unchanged()
        return
    extract_image(
        corpus.path(item_id), target, rootfs_only=True, options=options, max_size=item.max_size
    )
    area.unchanged(except_for=("target",))
    inside_only(target, corpus.outside)
    if item_id == "devices" and ROOT:
        assert device_nodes(target) == ["dev/mem", "dev/sda", "dev/tty9"]


# --- patch-manifest --------------------------------------------------------------------


PATCH = ManifestPatch(name="example.com/patched")


@pytest.mark.parametrize("item_id", ACI_IDS)
def test_patch(corpus: Corpus, area: Area, item_id: str) -> None:
    item = corpus.aci[item_id]
    out = area.dir / "out.aci"
    replaced = area.dir / "in.aci"
    shutil.copyfile(corpus.path(item_id), replaced)
    original = replaced.read_bytes()
    if not item.verdict.accept:
        for source, output in ((corpus.path(item_id), out), (replaced, None)):
            with pytest.raises(AppcError) as info:
                patch_image(source, output, PATCH, max_size=item.max_size)
            refused(info.value, item)
        assert replaced.read_bytes() == original
        area.unchanged(except_for=("in.aci",))
        return
    patch_image(corpus.path(item_id), out, PATCH, max_size=item.max_size)
    patch_image(replaced, None, PATCH, max_size=item.max_size)
    for result in (out, replaced):
        report = validate_archive(result, max_size=item.max_size)
        assert str(report.manifest.name) == "example.com/patched"
        assert entry_names(result) == entry_names(corpus.path(item_id), item.max_size)
    area.unchanged(except_for=("in.aci", "out.aci"))


@pytest.mark.parametrize("item_id", ACI_IDS)
def test_cli_patch(
    corpus: Corpus,
    area: Area,
    item_id: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    item = corpus.aci[item_id]
    if item.max_size is not None:
        monkeypatch.setenv(MAX_SIZE_ENV, str(item.max_size))
    out = area.dir / "out.aci"
    code = actool_main(
        ["patch-manifest", "--name=example.com/patched", str(corpus.path(item_id)), str(out)]
    )
    captured = capsys.readouterr()
    if item.verdict.accept:
        assert (code, captured.err) == (0, "")
        area.unchanged(except_for=("out.aci",))
        return
    assert code == 1 and captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("actool patch-manifest: "), lines
    assert re.search(item.verdict.message, lines[0]), lines[0]
    area.unchanged()


# --- the image store and its trees -----------------------------------------------------


@pytest.mark.parametrize("item_id", ACI_IDS)
def test_store(corpus: Corpus, area: Area, item_id: str) -> None:
    item = corpus.aci[item_id]
    with ImageStore(area.dir / "store", max_size=item.max_size) as store:
        if not item.verdict.accept:
            with pytest.raises(AppcError) as info:
                store.import_image(corpus.path(item_id))
            refused(info.value, item)
            assert store.list() == []
        else:
            image = store.import_image(corpus.path(item_id))
            tree = TreeStore(store).render(image.key)
            rootfs = pathlib.Path(tree.rootfs)
            inside_only(rootfs, corpus.outside)
            inside_only(rootfs, area.dir / "bait")
            if item_id == "devices":
                assert device_nodes(rootfs) == (["dev/mem", "dev/sda", "dev/tty9"] if ROOT else [])
        assert store.check() == []
        assert os.listdir(store.tmp_dir) == []
        trees = TreeStore(store).list()
        assert len(trees) == (1 if item.verdict.accept else 0)
    area.unchanged(except_for=("store",))


def test_failed_render_leaves_no_tree(area: Area, corpus: Corpus) -> None:
    """A tree that cannot be written (a name too long under the store's path) is removed."""
    name = "/".join(["y" * 200] * 20)  # legal in an archive, too long under cas/tree/...
    image = area.dir / "long.aci"
    make_image(image, "example.com/long", [("file", name, b"x")])
    with ImageStore(area.dir / "store") as store:
        key = store.import_image(image).key
        with pytest.raises(AppcError, match="File name too long"):
            TreeStore(store).render(key)
        assert TreeStore(store).list() == []
        assert store.check() == []
    area.unchanged(except_for=("store", "long.aci"))


def test_dependencies_never_lead_out(area: Area, corpus: Corpus) -> None:
    """An upper image's symlinks to the outside and a lower image's files under the same
    names: the files are not rendered through the links (the reverse neither)."""
    outside = str(corpus.outside)
    images = area.dir / "images"
    images.mkdir()
    make_image(
        images / "lower.aci",
        "example.com/lower",
        [
            ("file", "link/pwned", b"pwned"),
            ("dir", "up"),
            ("file", "up/bait", b"pwned"),
            ("symlink", "rev", outside),
        ],
    )
    make_image(
        images / "upper.aci",
        "example.com/upper",
        [
            ("symlink", "link", outside),
            ("symlink", "up", "../../../../.."),
            ("file", "rev/pwned", b"pwned"),
        ],
        dependencies=[{"imageName": "example.com/lower"}],
    )
    with ImageStore(area.dir / "store") as store:
        store.import_image(images / "lower.aci")
        top = store.import_image(images / "upper.aci")
        rootfs = pathlib.Path(
            TreeStore(store, options=ExtractOptions(owners=ROOT, devices=ROOT))
            .render(top.key)
            .rootfs
        )
        assert os.readlink(rootfs / "link") == outside
        assert (rootfs / "rev").is_dir() and not (rootfs / "rev").is_symlink()
        assert (rootfs / "rev/pwned").read_bytes() == b"pwned"
        assert store.check() == []
    area.unchanged(except_for=("store", "images"))


# --- Docker layers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory, corpus: Corpus) -> dict[str, pathlib.Path]:
    tmp = tmp_path_factory.mktemp("layouts")
    return {
        item.id: hc.write_layout(item.make(), tmp / file_name(item.id).removesuffix(".aci"))
        for item in corpus.layer.values()
    }


@pytest.mark.parametrize("squash", [True, False], ids=["squash", "nosquash"])
@pytest.mark.parametrize("item_id", LAYER_IDS)
def test_layer(
    corpus: Corpus, layouts: dict[str, pathlib.Path], area: Area, item_id: str, squash: bool
) -> None:
    item = corpus.layer[item_id]
    verdict = item.verdict_for(squash)
    out = area.dir / "out"
    options = ConvertOptions(squash=squash, compression="none", max_size=item.max_size)
    if not verdict.accept:
        with pytest.raises(AppcError) as info, open_archive_image(layouts[item_id]) as source:
            convert_image(source, str(out), options)
        refused(info.value, hc.Item(item.id, item.about, item.make, verdict))
        area.unchanged()
        return
    with open_archive_image(layouts[item_id]) as source:
        result = convert_image(source, str(out), options)
    for path in result.paths:
        validate_archive(path)
    if squash:
        extract_image(result.paths[0], area.dir / "x", options=ExtractOptions(devices=ROOT))
        rootfs = area.dir / "x" / "rootfs"
    else:  # layer ACIs are rendered together: links may point into lower layers
        with ImageStore(area.dir / "store") as store:
            keys = [store.import_image(path).key for path in result.paths]
            rootfs = pathlib.Path(TreeStore(store).render(keys[-1]).rootfs)
            assert store.check() == []
    inside_only(rootfs, corpus.outside)
    inside_only(rootfs, area.dir / "bait")
    area.unchanged(except_for=("out", "x", "store"))


# --- bombs: refused at the limit, in bounded memory ---------------------------------


_PEAK = """
import sys
from appc.aci.validate import validate_archive
from appc.errors import ImageError
try:
    validate_archive(sys.argv[1], max_size=int(sys.argv[2]))
    print("valid")
except ImageError as err:
    print(err)
with open("/proc/self/status") as f:
    print(next(line for line in f if line.startswith("VmHWM:")).split()[1])
"""


def _peak_kib(path: pathlib.Path, limit: int) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, str(path), str(limit)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        cwd=REPO,
    )
    message, peak = done.stdout.splitlines()
    return message, int(peak)


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "zstd"])
def test_bomb_is_refused_at_the_limit_in_bounded_memory(tmp_path: pathlib.Path, kind: str) -> None:
    limit = 256 * 1024**2
    small = tmp_path / "small.aci"
    small.write_bytes(compress(good_tar(), "gzip"))
    bomb = tmp_path / "bomb.aci"
    bomb.write_bytes(hc.bomb(4 * 1024**3, kind))
    assert bomb.stat().st_size < 6 * 1024**2  # at least 700 times smaller than it expands
    baseline_message, baseline = _peak_kib(small, limit)
    message, peak = _peak_kib(bomb, limit)
    assert baseline_message == "valid"
    assert message == f"{bomb}: uncompressed image larger than the limit of {limit} bytes"
    assert peak - baseline < 48 * 1024, f"peak RSS grew by {(peak - baseline) // 1024} MiB"


def test_size_limit_from_the_environment(corpus: Corpus, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = corpus.path("bomb-gzip")
    monkeypatch.setenv(MAX_SIZE_ENV, "64M")
    with pytest.raises(ImageError, match=f"larger than the limit of {64 * 1024**2} bytes"):
        validate_archive(bomb)
    monkeypatch.setenv(MAX_SIZE_ENV, "lots")
    with pytest.raises(ImageError, match=f"{MAX_SIZE_ENV}='lots' is not a size"):
        validate_archive(bomb)


# --- the command lines: one line, exit 1 ---------------------------------------------------


def _run(
    *argv: str,
    env: dict[str, str] | None = None,
    cwd: pathlib.Path | None = None,
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != MAX_SIZE_ENV}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", *argv],
        capture_output=True,
        text=True,
        env=full,
        timeout=300,
        check=False,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    "item_id",
    [
        "symlink-then-file",
        "hardlink-dotdot",
        "too-deep",
        "bomb-zstd",
        "manifest-100MB",
        "truncated-gzip:deflate-middle",
    ],
)
def test_cli_one_line(corpus: Corpus, area: Area, item_id: str) -> None:
    item = corpus.aci[item_id]
    env = {MAX_SIZE_ENV: str(item.max_size)} if item.max_size else {}
    path = str(corpus.path(item_id))
    runs = {
        "validate": _run("appc_tools.actool", "validate", path, env=env),
        "patch": _run(
            "appc_tools.actool",
            "patch-manifest",
            "--name=example.com/x",
            path,
            str(area.dir / "out.aci"),
            env=env,
        ),
        "fetch": _run(
            "appc_tools.rkt",
            f"--dir={area.dir / 'rkt'}",
            "--insecure-options=image",
            "fetch",
            path,
            env=env,
        ),
    }
    for what, done in runs.items():
        assert done.returncode == (254 if what == "fetch" else 1), (what, done.stderr)
        lines = done.stderr.splitlines()
        if what == "fetch":  # the warning that comes with --insecure-options=image
            assert lines[0].startswith(f"image: skipping signature verification for {path}")
            lines = lines[1:]
        assert len(lines) == 1 and re.search(item.verdict.message, lines[0]), (what, lines)
    with ImageStore(area.dir / "rkt") as store:
        assert store.list() == [] and store.check() == []
    area.unchanged(except_for=("rkt",))


def test_docker2aci_one_line(corpus: Corpus, layouts: dict[str, pathlib.Path], area: Area) -> None:
    for item_id in ("layer-dotdot", "layer-hardlink-absolute", "layer-bomb"):
        item = corpus.layer[item_id]
        env = {MAX_SIZE_ENV: str(item.max_size)} if item.max_size else {}
        done = _run("appc_tools.docker2aci", str(layouts[item_id]), cwd=area.dir, env=env)
        lines = done.stderr.splitlines()
        assert done.returncode == 1 and len(lines) == 1, (item_id, done.stderr)
        assert re.search(item.verdict.message, lines[0]), lines
    area.unchanged()


def test_manifest_file_of_100MB(area: Area, corpus: Corpus) -> None:
    big = area.dir / "big.json"
    with open(big, "wb") as f:
        f.write(b'{"acKind": "ImageManifest", "name": "')
        f.truncate(100 * 1024**2)
    good = area.dir / "good.aci"
    good.write_bytes(compress(good_tar(), "gzip"))
    validate = _run("appc_tools.actool", "validate", "--type=manifest", str(big))
    patch = _run(
        "appc_tools.actool",
        "patch-manifest",
        f"--manifest={big}",
        str(good),
        str(area.dir / "out.aci"),
    )
    for done in (validate, patch):
        lines = done.stderr.splitlines()
        assert done.returncode == 1 and len(lines) == 1, done.stderr
        assert re.search(r"larger than 4194304 bytes", lines[0]), lines
    area.unchanged(except_for=("big.json", "good.aci"))


def test_corpus_is_deterministic() -> None:
    def digests() -> dict[str, str]:
        items = [*hc.aci_items("/x", bomb_size=2**24), *hc.layer_items("/x", bomb_size=2**24)]
        return {i.id: hashlib.sha256(i.make()).hexdigest() for i in items}

    first = digests()
    assert digests() == first
    assert len(first) == len(ACI_IDS) + len(LAYER_IDS)


def test_deep_trees_are_removed_without_following_links(
    tmp_path: pathlib.Path, corpus: Corpus
) -> None:
    """What a pod's app or a partial render leaves can be any depth (rkt gc, tree wipes)."""
    before = snapshot(corpus.outside)
    root = tmp_path / "tree"
    path = root
    for level in range(1500):
        path = path / "d"
        if level % 300 == 0:
            path.mkdir(parents=True)
            (path / "out").symlink_to(corpus.outside)
            (path / "f").write_text("x")
    path.mkdir(parents=True)
    rmtree(root)
    assert not root.exists()
    assert snapshot(corpus.outside) == before


def _layer_blob(layout: pathlib.Path) -> pathlib.Path:
    index = json.loads((layout / "index.json").read_text())
    manifest = layout / "blobs" / index["manifests"][0]["digest"].replace(":", "/")
    layer = json.loads(manifest.read_text())["layers"][0]["digest"]
    return layout / "blobs" / layer.replace(":", "/")


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "outside"])
def test_layout_blobs_are_files_inside_the_layout(area: Area, corpus: Corpus, kind: str) -> None:
    """A blob that never ends (``/dev/zero``, a fifo) or lies outside the layout is refused."""
    layout = hc.write_layout(b"", area.dir / "layout")
    blob = _layer_blob(layout)
    blob.unlink()
    if kind == "dev-zero":
        blob.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(blob)
    else:
        blob.symlink_to(corpus.outside / "secret")
    done = _run("appc_tools.docker2aci", str(layout), cwd=area.dir)
    lines = done.stderr.splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert re.search(r"leads out of the layout|is not a regular file", lines[0]), lines
    area.unchanged(except_for=("layout",))


def test_a_layer_of_endless_zeros_stops_at_the_limit(area: Area, corpus: Corpus) -> None:
    layout = hc.write_layout(bytes(8 * 1024 * 1024), area.dir / "layout", compression="none")
    with (
        pytest.raises(ImageError, match="larger than the limit of 1048576 bytes"),
        open_archive_image(layout) as source,
    ):
        convert_image(source, str(area.dir / "out"), ConvertOptions(max_size=1024 * 1024))
    area.unchanged(except_for=("layout",))
