"""Rendering with dependencies, the tree store protocol, ``image render`` and ``image extract``."""

from __future__ import annotations

import os
import pathlib
import stat
import textwrap
import time
from collections.abc import Sequence
from typing import Any

import pytest

from appc.errors import StoreError
from appc.store import (
    ImageStore,
    StoredImage,
    TreeStore,
    dependency_list,
    extract_stored,
    render_image,
    tree_id_for,
)
from tests.store_fixtures import make_image, run_python


@pytest.fixture
def store(tmp_path: pathlib.Path):
    with ImageStore(tmp_path / "rkt") as opened:
        yield opened


class Images:
    """Builds images into a store: ``images.add("a", entries, dependencies=[...])``."""

    def __init__(self, store: ImageStore, directory: pathlib.Path) -> None:
        self.store = store
        self.directory = directory
        self.count = 0

    def add(
        self,
        short: str,
        entries: Sequence[tuple[Any, ...]] = (),
        *,
        latest: bool = False,
        **manifest: Any,
    ) -> StoredImage:
        self.count += 1
        path = self.directory / f"{short}-{self.count}.aci"
        make_image(path, f"example.com/{short}", entries, **manifest)
        return self.store.import_image(path, latest=latest)


@pytest.fixture
def images(store: ImageStore, tmp_path: pathlib.Path) -> Images:
    directory = tmp_path / "images"
    directory.mkdir()
    return Images(store, directory)


def dep(short: str, **fields: Any) -> dict[str, Any]:
    return {"imageName": f"example.com/{short}", **fields}


def read(root: str, rel: str) -> str:
    return pathlib.Path(root, rel).read_text()


# --- dependency order ---------------------------------------------------------------


def test_order_and_first_provider_wins(store: ImageStore, images: Images) -> None:
    # A -> [B, C], C -> [D]: the spec lays down B, D, C, A; top first that is A, C, D, B.
    d = images.add(
        "d",
        [("file", "all", b"D"), ("file", "bcd", b"D"), ("file", "bd", b"D"), ("file", "d", b"D")],
    )
    c = images.add(
        "c",
        [("file", "all", b"C"), ("file", "bcd", b"C"), ("file", "c", b"C")],
        dependencies=[dep("d")],
    )
    b = images.add(
        "b",
        [("file", "all", b"B"), ("file", "bcd", b"B"), ("file", "bd", b"B"), ("file", "b", b"B")],
    )
    a = images.add("a", [("file", "all", b"A")], dependencies=[dep("b"), dep("c")])
    order = dependency_list(store, a.key)
    assert [i.key for i in order] == [a.key, c.key, d.key, b.key]
    assert [i.level for i in order] == [0, 1, 2, 1]
    assert [i.parent for i in order] == [None, 0, 1, 0]
    tree = TreeStore(store).render(a.key)
    assert tree.images == (a.key, c.key, d.key, b.key)
    assert tree.tree_id == tree_id_for([a.key, c.key, d.key, b.key])
    assert {n: read(tree.rootfs, n) for n in ("all", "bcd", "bd", "b", "c", "d")} == {
        "all": "A",
        "bcd": "C",
        "bd": "D",
        "b": "B",
        "c": "C",
        "d": "D",
    }
    assert pathlib.Path(tree.path, "manifest").read_bytes() == store.manifest_bytes(a.key)
    assert pathlib.Path(tree.path, "image").read_text() == a.key
    assert tree.manifest.name == "example.com/a"


def test_diamond_renders_the_shared_dependency_under_each_whitelist(
    store: ImageStore, images: Images
) -> None:
    d = images.add(
        "d",
        [
            ("dir", "lib"),
            ("file", "lib/one", b"1"),
            ("file", "lib/two", b"2"),
            ("file", "lib/three", b"3"),
        ],
    )
    b = images.add(
        "b", [("file", "b", b"B")], dependencies=[dep("d")], whitelist=["/b", "/lib/one"]
    )
    c = images.add(
        "c", [("file", "c", b"C")], dependencies=[dep("d")], whitelist=["/c", "/lib/two"]
    )
    a = images.add("a", [("file", "a", b"A")], dependencies=[dep("b"), dep("c")])
    order = dependency_list(store, a.key)
    assert [i.key for i in order] == [a.key, c.key, d.key, b.key, d.key]
    rootfs = TreeStore(store).render(a.key).rootfs
    assert sorted(os.listdir(rootfs)) == ["a", "b", "c", "lib"]
    assert sorted(os.listdir(os.path.join(rootfs, "lib"))) == ["one", "two"]


def test_whitelist_filters_files_and_keeps_directories(store: ImageStore, images: Images) -> None:
    base = images.add(
        "base",
        [
            ("dir", "bin"),
            ("file", "bin/sh", b"sh"),
            ("file", "bin/ls", b"ls"),
            ("dir", "empty"),
            ("symlink", "sbin", "bin"),
            ("file", "etc-x", b"x"),
        ],
    )
    top = images.add(
        "top",
        [("file", "app", b"app"), ("file", "junk", b"j")],
        dependencies=[dep("base")],
        whitelist=["/app", "bin/sh", "/sbin/../sbin"],
    )
    rootfs = TreeStore(store).render(top.key).rootfs
    assert sorted(os.listdir(rootfs)) == ["app", "bin", "empty", "sbin"]
    assert os.listdir(os.path.join(rootfs, "bin")) == ["sh"]
    assert os.path.islink(os.path.join(rootfs, "sbin"))
    assert base.key in TreeStore(store).render(top.key).images


def test_a_whitelisted_link_to_a_filtered_file_gets_its_contents(
    store: ImageStore, images: Images
) -> None:
    images.add(
        "base",
        [
            ("dir", "bin"),
            ("file", "bin/busybox", b"bb"),
            ("hardlink", "bin/sh", "bin/busybox"),
            ("hardlink", "bin/ls", "bin/sh"),
        ],
    )
    top = images.add("top", dependencies=[dep("base")], whitelist=["/bin/sh", "/bin/ls"])
    rootfs = TreeStore(store).render(top.key).rootfs
    assert sorted(os.listdir(os.path.join(rootfs, "bin"))) == ["ls", "sh"]
    assert read(rootfs, "bin/sh") == read(rootfs, "bin/ls") == "bb"


def test_every_ancestors_whitelist_applies(store: ImageStore, images: Images) -> None:
    images.add("d", [("file", "x", b"x"), ("file", "y", b"y"), ("file", "z", b"z")])
    images.add("c", dependencies=[dep("d")], whitelist=["/x", "/y"])
    a = images.add("a", dependencies=[dep("c")], whitelist=["/x", "/z"])
    assert os.listdir(TreeStore(store).render(a.key).rootfs) == ["x"]


def test_dependency_labels_and_app_sections(store: ImageStore, images: Images) -> None:
    images.add("base", [("file", "v", b"1")], labels={"version": "1"})
    images.add("base", [("file", "v", b"2")], labels={"version": "2"})
    a = images.add("a", dependencies=[dep("base", labels=[{"name": "version", "value": "1"}])])
    b = images.add("b", dependencies=[dep("base")])
    trees = TreeStore(store)
    assert read(trees.render(a.key).rootfs, "v") == "1"
    assert read(trees.render(b.key).rootfs, "v") == "2"  # the newest import
    assert trees.render(b.key).manifest.app is not None  # the top image's


def test_dependency_by_image_id(store: ImageStore, images: Images) -> None:
    old = images.add("base", [("file", "v", b"old")])
    time.sleep(0.002)
    images.add("base", [("file", "v", b"new")])
    pinned = images.add("a", dependencies=[dep("base", imageID=str(old.image_id))])
    assert read(TreeStore(store).render(pinned.key).rootfs, "v") == "old"


def test_dependency_image_id_mismatch(store: ImageStore, images: Images) -> None:
    images.add("base", [("file", "v", b"x")])
    wrong = "sha512-" + "0" * 128
    a = images.add("a", dependencies=[dep("base", imageID=wrong)])
    with pytest.raises(
        StoreError, match=f"depends on 'example.com/base' with image ID {wrong}, which is not"
    ):
        TreeStore(store).render(a.key)


def test_missing_dependency(store: ImageStore, images: Images) -> None:
    a = images.add("a", dependencies=[dep("nowhere", labels=[{"name": "version", "value": "3"}])])
    with pytest.raises(
        StoreError,
        match=r"'example\.com/a' depends on 'example\.com/nowhere' with labels "
        "version=3, which is not in the store",
    ):
        TreeStore(store).render(a.key)
    assert TreeStore(store).list() == []


def test_dependency_cycle_by_name(store: ImageStore, images: Images) -> None:
    images.add("b", dependencies=[dep("a")])
    a = images.add("a", dependencies=[dep("b")])
    with pytest.raises(StoreError, match="dependency cycle"):
        dependency_list(store, a.key)


def test_new_dependency_gives_a_new_tree(store: ImageStore, images: Images) -> None:
    images.add("base", [("file", "v", b"1")])
    a = images.add("a", dependencies=[dep("base")])
    trees = TreeStore(store)
    first = trees.render(a.key)
    time.sleep(0.002)
    images.add("base", [("file", "v", b"2")])
    second = trees.render(a.key)
    assert first.tree_id != second.tree_id
    assert read(second.rootfs, "v") == "2" and read(first.rootfs, "v") == "1"
    assert sorted(trees.list()) == sorted([first.tree_id, second.tree_id])


# --- overriding and safety -------------------------------------------------------------


def test_symlink_to_directory_overridden_by_a_directory(
    store: ImageStore, images: Images, tmp_path: pathlib.Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    images.add(
        "base",
        [
            ("symlink", "lib", str(outside)),
            ("symlink", "etc", "../../outside"),
            ("dir", "usr"),
            ("file", "usr/base", b"b"),
        ],
    )
    a = images.add(
        "a",
        [
            ("dir", "lib"),
            ("file", "lib/x", b"x"),
            ("file", "etc/y", b"y"),
            ("symlink", "usr", str(outside)),
        ],
        dependencies=[dep("base")],
    )
    rootfs = TreeStore(store).render(a.key).rootfs
    for name in ("lib", "etc"):
        assert stat.S_ISDIR(os.lstat(os.path.join(rootfs, name)).st_mode), name
    assert read(rootfs, "lib/x") == "x" and read(rootfs, "etc/y") == "y"
    assert os.readlink(os.path.join(rootfs, "usr")) == str(outside)  # upper symlink, never followed
    assert os.listdir(outside) == []


def test_a_file_under_an_upper_non_directory_is_skipped(store: ImageStore, images: Images) -> None:
    images.add(
        "base",
        [("dir", "opt"), ("file", "opt/inner", b"i"), ("dir", "var"), ("file", "var/keep", b"k")],
    )
    a = images.add(
        "a", [("file", "opt", b"a file"), ("dir", "var", 0o700)], dependencies=[dep("base")]
    )
    rootfs = TreeStore(store).render(a.key).rootfs
    assert read(rootfs, "opt") == "a file"
    assert read(rootfs, "var/keep") == "k"
    assert (
        stat.S_IMODE(os.stat(os.path.join(rootfs, "var")).st_mode) == 0o700
    )  # the upper directory's


def test_implicit_directories_take_lower_metadata_but_not_lower_types(
    store: ImageStore, images: Images, tmp_path: pathlib.Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    # (One image may not hold both a symlink and a file under it: the file comes from
    # another dependency.)
    images.add("base", [("dir", "usr", 0o711), ("symlink", "srv", str(outside))])
    images.add("base-x", [("file", "srv/x", b"x")])
    a = images.add(
        "a",
        [("file", "usr/bin/tool", b"t"), ("file", "srv/data", b"d")],
        dependencies=[dep("base"), dep("base-x")],
    )
    rootfs = TreeStore(store).render(a.key).rootfs
    assert stat.S_IMODE(os.stat(os.path.join(rootfs, "usr")).st_mode) == 0o711
    # srv is a directory (made for the upper image's file): the lower symlink is not laid
    # down, and the lower file goes into the directory, as with the reference renderer.
    assert stat.S_ISDIR(os.lstat(os.path.join(rootfs, "srv")).st_mode)
    assert sorted(os.listdir(os.path.join(rootfs, "srv"))) == ["data", "x"]
    assert os.listdir(outside) == []


def test_hard_links(store: ImageStore, images: Images) -> None:
    images.add(
        "base",
        [
            ("file", "shadowed", b"base content"),
            ("hardlink", "alias", "shadowed"),
            ("file", "shared", b"shared"),
            ("file", "plain", b"p"),
            ("hardlink", "plain2", "plain"),
        ],
    )
    a = images.add(
        "a",
        [
            ("file", "shadowed", b"top content"),
            ("file", "f", b"f"),
            ("hardlink", "g", "f"),
            ("hardlink", "to-base", "shared"),
        ],
        dependencies=[dep("base")],
    )
    rootfs = TreeStore(store).render(a.key).rootfs

    def ino(name: str) -> int:
        return os.lstat(os.path.join(rootfs, name)).st_ino

    assert ino("f") == ino("g")  # inside one image
    assert ino("plain") == ino("plain2")
    assert read(rootfs, "shadowed") == "top content"
    assert read(rootfs, "alias") == "base content"  # its own image's file, copied back
    assert ino("alias") != ino("shadowed")
    assert ino("to-base") == ino("shared")  # to a file of a dependency


def test_hard_link_to_nothing(store: ImageStore, images: Images) -> None:
    a = images.add("a", [("hardlink", "dangling", "nowhere")])
    with pytest.raises(StoreError, match="hard link 'dangling' points to 'nowhere'"):
        TreeStore(store).render(a.key)


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need root")
def test_device_nodes_and_fifos(store: ImageStore, images: Images) -> None:
    a = images.add("a", [("dir", "dev"), ("chr", "dev/null", 1, 3), ("fifo", "run-pipe")])
    rootfs = TreeStore(store).render(a.key).rootfs
    st = os.lstat(os.path.join(rootfs, "dev/null"))
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    assert stat.S_ISFIFO(os.lstat(os.path.join(rootfs, "run-pipe")).st_mode)


def test_a_corrupt_blob_is_refused(store: ImageStore, images: Images) -> None:
    base = images.add("base", [("file", "data", b"original")])
    a = images.add("a", dependencies=[dep("base")])
    blob = pathlib.Path(store.blob_path(base.key))
    data = blob.read_bytes()
    blob.write_bytes(data.replace(b"original", b"tampered"))
    trees = TreeStore(store)
    with pytest.raises(StoreError, match=f"image {base.key} is corrupt"):
        trees.render(a.key)
    tree_id = trees.tree_id(a.key)
    assert not trees.is_rendered(tree_id) and trees.get(tree_id) is None
    blob.write_bytes(data)
    assert read(trees.render(a.key).rootfs, "data") == "original"


# --- the tree store protocol -------------------------------------------------------------


def test_rendered_flag_protocol(store: ImageStore, images: Images) -> None:
    a = images.add("a", [("file", "f", b"f")])
    trees = TreeStore(store)
    first = trees.render(a.key)
    assert first.fresh
    assert sorted(os.listdir(first.path)) == ["hash", "image", "manifest", "rendered", "rootfs"]
    again = trees.render(a.key)
    assert not again.fresh and again.tree_id == first.tree_id
    # A tree without its flag is partial: wiped and rendered again.
    os.unlink(os.path.join(first.path, "rendered"))
    pathlib.Path(first.rootfs, "leftover").write_text("x")
    os.chmod(first.rootfs, 0o500)
    third = trees.render(a.key)
    assert third.fresh
    assert sorted(os.listdir(third.rootfs)) == ["f"]
    assert trees.render(a.key, rebuild=True).fresh
    got = trees.get(first.tree_id)
    assert got is not None and got.image_key == a.key and got.rootfs == first.rootfs


def test_sizes_verify_remove_and_gc(store: ImageStore, images: Images) -> None:
    a = images.add("a", [("file", "f", b"x" * 1000), ("hardlink", "g", "f")])
    b = images.add("b", [("file", "f", b"y" * 10)])
    trees = TreeStore(store)
    ta, tb = trees.render(a.key), trees.render(b.key)
    assert trees.size(ta.tree_id) >= 1000
    assert store.get(a.key).tree_size == trees.size(ta.tree_id)
    assert store.get(a.key).last_used > store.get(a.key).import_time
    assert trees.verify(ta.tree_id).startswith("sha512-")
    pathlib.Path(ta.rootfs, "f").write_text("changed")
    with pytest.raises(StoreError, match="was modified"):
        trees.verify(ta.tree_id)
    assert trees.gc(keep=[tb.tree_id]) == [ta.tree_id]
    assert trees.list() == [tb.tree_id]
    assert store.get(a.key).tree_size == 0
    trees.remove(tb.tree_id)
    trees.remove(tb.tree_id)  # missing: fine
    assert trees.list() == []
    with pytest.raises(StoreError, match="not a tree id"):
        trees.remove("../../etc")


_RENDER = textwrap.dedent("""
    import os, sys, time
    from appc.store import ImageStore, TreeStore
    data_dir, key, go = sys.argv[1:4]
    while not os.path.exists(go):
        time.sleep(0.005)
    with ImageStore(data_dir) as store:
        tree = TreeStore(store).render(key)
        print(tree.tree_id, tree.fresh)
""")


def test_concurrent_renders_render_once(
    store: ImageStore, images: Images, tmp_path: pathlib.Path
) -> None:
    images.add("base", [("file", f"b{i}", os.urandom(1024)) for i in range(300)])
    a = images.add(
        "a", [("file", f"a{i}", os.urandom(1024)) for i in range(300)], dependencies=[dep("base")]
    )
    go = tmp_path / "go"
    workers = [run_python(_RENDER, store.data_dir, a.key, str(go)) for _ in range(4)]
    time.sleep(0.5)
    go.touch()
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err.decode()
        results.append(out.decode().split())
    assert len({tree_id for tree_id, _ in results}) == 1
    assert sorted(fresh for _, fresh in results) == ["False", "False", "False", "True"]
    trees = TreeStore(store)
    assert trees.list() == [results[0][0]]
    assert len(os.listdir(trees.get(results[0][0]).rootfs)) == 600  # type: ignore[union-attr]


# --- rkt image render / extract ----------------------------------------------------------


def test_render_image_into_a_directory(
    store: ImageStore, images: Images, tmp_path: pathlib.Path
) -> None:
    images.add("base", [("file", "base", b"b")])
    a = images.add("a", [("file", "top", b"t")], dependencies=[dep("base")])
    target = tmp_path / "out"
    used = render_image(store, a.key, target)
    assert [i.name for i in used] == ["example.com/a", "example.com/base"]
    assert sorted(os.listdir(target)) == ["manifest", "rootfs"]
    assert sorted(os.listdir(target / "rootfs")) == ["base", "top"]
    with pytest.raises(StoreError, match="target exists"):
        render_image(store, a.key, target)
    render_image(store, a.key, target, rootfs_only=True, overwrite=True)
    assert sorted(os.listdir(target)) == ["base", "top"]
    empty = tmp_path / "empty"
    empty.mkdir()
    render_image(store, a.key[:15], empty, rootfs_only=True)
    assert sorted(os.listdir(empty)) == ["base", "top"]
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []


def test_extract_stored(store: ImageStore, images: Images, tmp_path: pathlib.Path) -> None:
    images.add("base", [("file", "base", b"b")])
    a = images.add("a", [("file", "top", b"TOPCONTENT")], dependencies=[dep("base")])
    extract_stored(store, a.key, tmp_path / "layout", False)
    assert sorted(os.listdir(tmp_path / "layout")) == ["manifest", "rootfs"]
    assert os.listdir(tmp_path / "layout" / "rootfs") == ["top"]  # no dependencies
    extract_stored(store, a.key, tmp_path / "rootfs", True)
    assert os.listdir(tmp_path / "rootfs") == ["top"]
    blob = pathlib.Path(store.blob_path(a.key))
    data = blob.read_bytes()
    blob.write_bytes(data.replace(b"TOPCONTENT", b"BADCONTENT"))
    with pytest.raises(StoreError, match="is corrupt: its blob hashes to"):
        extract_stored(store, a.key, tmp_path / "bad", True)
    blob.write_bytes(data[:600])
    with pytest.raises(StoreError, match=r"is corrupt: .*truncated"):
        extract_stored(store, a.key, tmp_path / "bad", True)
    assert not (tmp_path / "bad").exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []
