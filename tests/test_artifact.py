from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from shipyard.artifact import find_artifact, tree_sha256
from shipyard.errors import UsageError
from shipyard.unpacking import UnsafeArtifact, unpack


def make_tar(path: Path, *members: tarfile.TarInfo | tuple[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            if isinstance(member, tuple):
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(member)
    return path


def special(name: str, kind: bytes, *, linkname: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    return info


def test_unpack_extracts_plain_files_and_inner_links(tmp_path):
    archive = make_tar(
        tmp_path / "ok.tar.gz",
        ("app/main.py", b"print('hi')\n"),
        special("app/alias.py", tarfile.SYMTYPE, linkname="main.py"),
    )
    unpack(archive, tmp_path / "out")
    assert (tmp_path / "out" / "app" / "main.py").read_text() == "print('hi')\n"
    assert (tmp_path / "out" / "app" / "alias.py").resolve() == (
        tmp_path / "out" / "app" / "main.py"
    )


HOSTILE = {
    "absolute path": ("/etc/evil", None),
    "dot-dot": ("../evil.txt", None),
    "nested dot-dot": ("app/../../evil.txt", None),
    "symlink out": (
        special("app/link", tarfile.SYMTYPE, linkname="../../outside"),
        "links outside",
    ),
    "absolute symlink": (
        special("app/link", tarfile.SYMTYPE, linkname="/etc/passwd"),
        "links outside",
    ),
    "hard link": (special("app/hard", tarfile.LNKTYPE, linkname="app/main.py"), "hard link"),
    "device": (special("app/dev", tarfile.CHRTYPE), "device"),
    "fifo": (special("app/fifo", tarfile.FIFOTYPE), "device"),
    "setuid": (special("app/suid", tarfile.REGTYPE, mode=0o4755), "setuid"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_members_are_refused_and_nothing_is_written(tmp_path, case):
    member, words = HOSTILE[case]
    entry = (member, b"x") if isinstance(member, str) else member
    archive = make_tar(tmp_path / "bad.tar.gz", ("app/main.py", b"ok\n"), entry)
    out = tmp_path / "deep" / "out"
    with pytest.raises(UnsafeArtifact) as refused:
        unpack(archive, out)
    assert "bad.tar.gz: member" in refused.value.message
    assert words is None or words in refused.value.message
    assert not out.exists()
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "deep" / "evil.txt").exists()
    assert refused.value.exit_code == 2


def test_not_a_tarball_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    with pytest.raises(UsageError, match=r"junk\.tar\.gz: not a readable tar archive"):
        unpack(junk, tmp_path / "out")


def test_find_artifact_picks_the_newest_match(tmp_path):
    (tmp_path / "dist").mkdir()
    old, new = tmp_path / "dist" / "app-1.tar.gz", tmp_path / "dist" / "app-2.tar.gz"
    old.write_bytes(b"1")
    new.write_bytes(b"2")
    os.utime(old, (1_000, 1_000))
    assert find_artifact(tmp_path, "dist/app-*.tar.gz") == new
    with pytest.raises(UsageError, match="no artifact matches 'dist/none-\\*'"):
        find_artifact(tmp_path, "dist/none-*")


def test_tree_digest_sees_content_names_and_links_but_skips_what_it_is_told(tmp_path):
    (tmp_path / "a.txt").write_text("one")
    (tmp_path / "release.json").write_text("{}")
    first = tree_sha256(tmp_path, skip=frozenset({"release.json"}))
    (tmp_path / "release.json").write_text('{"status": "bad"}')
    assert tree_sha256(tmp_path, skip=frozenset({"release.json"})) == first
    (tmp_path / "a.txt").write_text("two")
    assert tree_sha256(tmp_path, skip=frozenset({"release.json"})) != first


def test_tree_digest_leaves_out_the_folders_it_is_told_wherever_they_are(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "server.py").write_text("print('hi')")
    first = tree_sha256(tmp_path, skip_folders=frozenset({"__pycache__"}))
    for cache in (tmp_path / "__pycache__", tmp_path / "app" / "__pycache__"):
        cache.mkdir()
        (cache / "server.cpython-311.pyc").write_bytes(b"\x00bytecode")
    assert tree_sha256(tmp_path, skip_folders=frozenset({"__pycache__"})) == first
    assert tree_sha256(tmp_path) != first
    (tmp_path / "app" / "server.py").write_text("print('tampered')")
    assert tree_sha256(tmp_path, skip_folders=frozenset({"__pycache__"})) != first


def test_a_negative_size_is_refused_before_it_can_lower_the_total(tmp_path):
    """A base-256 size field can be negative; summed, it would hide a bomb behind it."""
    info = tarfile.TarInfo("neg")
    info.size = -(2**40)
    archive = tmp_path / "neg.tar"
    archive.write_bytes(info.tobuf(tarfile.GNU_FORMAT) + bytes(10 * 512))
    with pytest.raises(UnsafeArtifact, match=r"^neg\.tar: member 'neg' declares a negative size"):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_member_may_not_replace_what_the_folder_already_holds(tmp_path):
    """The local target writes release.json into the claimed folder before unpacking."""
    out = tmp_path / "v1"
    out.mkdir()
    (out / "release.json").write_text('{"status": "building"}')
    (out / "app").mkdir()
    archive = make_tar(
        tmp_path / "bad.tar.gz", ("app/main.py", b"ok\n"), ("release.json", b'{"status": "ok"}')
    )
    with pytest.raises(UnsafeArtifact) as refused:
        unpack(archive, out)
    assert refused.value.message == (
        f"bad.tar.gz: member 'release.json' would replace {out / 'release.json'}, already there"
    )
    assert sorted(path.name for path in out.iterdir()) == ["app", "release.json"]
    assert not (out / "app" / "main.py").exists()
    assert (out / "release.json").read_text() == '{"status": "building"}'


@pytest.mark.skipif(not hasattr(tarfile, "data_filter"), reason="no stdlib data filter here")
def test_the_stdlib_filter_is_a_second_opinion_on_what_the_folder_already_holds(tmp_path):
    """A link the folder held before the archive came is no member: only the disk knows it."""
    out = tmp_path / "v1"
    out.mkdir()
    (out / "etc").symlink_to("/etc")
    archive = make_tar(
        tmp_path / "bad.tar.gz", special("passwd", tarfile.SYMTYPE, linkname="etc/passwd")
    )
    with pytest.raises(UnsafeArtifact, match=r"member 'passwd' is refused by tarfile's data"):
        unpack(archive, out)
    assert sorted(path.name for path in out.iterdir()) == ["etc"]


def test_nothing_unpacked_is_group_or_world_writable_even_under_umask_000(tmp_path):
    archive = make_tar(
        tmp_path / "ok.tar.gz",
        special("app", tarfile.DIRTYPE, mode=0o777),
        special("app/run.sh", tarfile.REGTYPE, mode=0o777),
        ("app/lib/data.txt", b"x"),
    )
    old = os.umask(0)
    try:
        unpack(archive, tmp_path / "new" / "out")
    finally:
        os.umask(old)
    modes = {
        path.relative_to(tmp_path).as_posix(): path.stat().st_mode & 0o777
        for path in [tmp_path / "new", *sorted((tmp_path / "new").rglob("*"))]
    }
    assert modes == {
        "new": 0o755,
        "new/out": 0o755,
        "new/out/app": 0o755,
        "new/out/app/run.sh": 0o755,
        "new/out/app/lib": 0o755,
        "new/out/app/lib/data.txt": 0o644,
    }
