from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from shipyard.artifact import UnsafeArtifact, find_artifact, tree_sha256, unpack
from shipyard.errors import UsageError


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
    import os

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
