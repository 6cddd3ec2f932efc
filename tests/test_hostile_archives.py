"""Archives built to escape, to fill the disk, or to fail part way: `unpacking.unpack` refuses
the first two before writing anything, and takes back what it wrote after the third.

Every hostile case runs twice: with the stdlib's `data` filter, and with it gone (as on
Python 3.10.0-3.10.11 and 3.11.0-3.11.3, which `requires-python` allows), so that the
refusal is shown to be Shipyard's own."""

from __future__ import annotations

import errno
import io
import os
import resource
import signal
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from shipyard import artifact, unpacking
from shipyard.artifact import tree_sha256
from shipyard.errors import UsageError
from shipyard.unpacking import (
    NoRoom,
    UnpackFailed,
    UnpackLimits,
    UnsafeArtifact,
    unpack,
)

MiB = 2**20
DEPTH = 14  # the destination's depth under tmp_path: a 12-link chain climbs 11 folders


def member(
    name: str, kind: bytes = tarfile.REGTYPE, *, to: str = "", data: bytes = b"", mode: int = 0o644
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, to, mode
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def folder(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return member(name, tarfile.DIRTYPE, mode=0o755)


def link(name: str, to: str) -> tuple[tarfile.TarInfo, bytes]:
    return member(name, tarfile.SYMTYPE, to=to)


def make_tar(path: Path, *members: tuple[tarfile.TarInfo, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def chain(levels: int) -> list[tuple[tarfile.TarInfo, bytes]]:
    """`sub/x -> ..`, `sub/x/y -> ..`, ...: each link alone resolves textually inside, but
    each is made through the one before, so the file at the end lands `levels - 1` up."""
    names = [f"l{level}" for level in range(levels)]
    links = [link("/".join(["sub", *names[: level + 1]]), "..") for level in range(levels)]
    return [folder("sub"), *links, member("/".join(["sub", *names, "OUTSIDE"]), data=b"out\n")]


HOSTILE = {
    "two-link chain (issue 12)": [
        folder("sub"),
        link("sub/x", ".."),
        link("sub/x/y", ".."),
        member("sub/x/y/OUTSIDE", data=b"out\n"),
    ],
    "12-link chain": chain(12),
    "a file through a link": [folder("app"), link("lnk", "app"), member("lnk/f", data=b"x")],
    "a link to /etc": [link("etc", "/etc")],
    "a link to /etc, then a file through it": [link("etc", "/etc"), member("etc/evil")],
    "a link out by ..": [folder("app"), link("app/up", "../../outside")],
    "a link out, made of a later link": [link("b", "a/.."), link("a", ".")],
    "a loop of links": [link("a", "b"), link("b", "a")],
    "a folder replaced by a link": [
        folder("data"),
        member("data/keep", data=b"x"),
        folder("other"),
        link("data", "other"),
    ],
    "a file replaced by a link": [member("run.sh", data=b"echo\n"), link("run.sh", "app")],
    "a link replaced by a file": [folder("app"), link("cfg", "app/main"), member("cfg")],
    "a link replaced by a folder": [link("cfg", "."), folder("cfg"), member("cfg/x")],
    "a file used as a folder": [member("app", data=b"x"), member("app/x", data=b"y")],
    "the root replaced by a link": [link(".", "..")],
    "absolute name": [member("/tmp/evil", data=b"x")],
    "dot-dot name": [member("../evil.txt", data=b"x")],
    "nested dot-dot name": [member("app/../../evil.txt", data=b"x")],
    "dot-dot that stays inside": [member("app/../app.txt", data=b"x")],
    "hard link": [member("app/main.py", data=b"x"), member("hard", tarfile.LNKTYPE, to="/etc")],
    "fifo": [member("app/fifo", tarfile.FIFOTYPE)],
    "device": [member("app/dev", tarfile.CHRTYPE)],
    "setuid": [member("app/suid", data=b"x", mode=0o4755)],
    "sticky folder": [member("tmp", tarfile.DIRTYPE, mode=0o1777)],
    "a name longer than a path": [member("a/" * 2100 + "f", data=b"x")],
    "a link target longer than a path": [link("l", "a/" * 2100)],
}


@pytest.fixture(params=["stdlib filter", "no stdlib filter"])
def tarfile_mode(request, monkeypatch):
    """The second mode is a Python from before the extraction filters: no `data_filter`, and
    an `extract` that takes no `filter` and filters nothing."""
    if request.param == "no stdlib filter":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
        trusting = getattr(tarfile, "fully_trusted_filter", None)
        for name in ("extract", "extractall"):
            original = getattr(tarfile.TarFile, name)
            monkeypatch.setattr(tarfile.TarFile, name, _without_filter(original, trusting))
    return request.param


def _without_filter(original, trusting):
    def extract(self, *args, **kwargs):
        if "filter" in kwargs:
            raise TypeError("extract() got an unexpected keyword argument 'filter'")
        return original(self, *args, **({"filter": trusting} if trusting else {}), **kwargs)

    return extract


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root`, with a file's content or a link's target."""
    seen = {}
    for folder_name, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(folder_name, name)
            if path.is_symlink():
                seen[str(path)] = f"-> {os.readlink(path)}"
            elif path.is_file():
                seen[str(path)] = path.read_bytes().hex()
            else:
                seen[str(path)] = "folder"
    return seen


def deep_destination(tmp_path: Path) -> Path:
    return tmp_path.joinpath(*[f"d{level}" for level in range(DEPTH)], "release")


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_archives_are_refused_before_anything_is_written(tmp_path, tarfile_mode, case):
    archive = make_tar(tmp_path / "hostile.tar.gz", *HOSTILE[case])
    destination = deep_destination(tmp_path)
    destination.parent.mkdir(parents=True)
    before = snapshot(tmp_path)
    with pytest.raises(UnsafeArtifact) as refused:
        unpack(archive, destination)
    assert refused.value.exit_code == 2
    assert refused.value.message.startswith("hostile.tar.gz: member ")
    assert "\n" not in refused.value.message
    assert snapshot(tmp_path) == before


def test_the_no_filter_mode_is_the_old_python_that_let_the_chain_out(tmp_path, monkeypatch):
    """The harness is faithful: with the filter gone, tarfile's own extraction (what unpack
    used before) writes the two-link chain's file above the destination."""
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    archive = make_tar(tmp_path / "hostile.tar.gz", *HOSTILE["two-link chain (issue 12)"])
    destination = tmp_path / "box" / "release"
    trusting = getattr(tarfile, "fully_trusted_filter", None)
    with tarfile.open(archive) as tar:
        tar.extractall(destination, **({"filter": trusting} if trusting else {}))
    assert (tmp_path / "box" / "OUTSIDE").read_text() == "out\n"


def test_a_chain_of_links_that_stays_inside_is_unpacked(tmp_path, tarfile_mode):
    """Links to links are fine while every path is written through folders only."""
    archive = make_tar(
        tmp_path / "ok.tar.gz",
        folder("./"),
        member("./app/v2/main.py", data=b"print(2)\n", mode=0o755),
        link("./app/current", "v2"),
        link("./main.py", "app/current/main.py"),
        link("./app/v2/self", "../current"),
        folder("./app"),  # a folder named twice, as `tar --append` leaves it
    )
    unpack(archive, tmp_path / "out")
    assert (tmp_path / "out" / "main.py").read_text() == "print(2)\n"
    assert (tmp_path / "out" / "app" / "v2" / "self").resolve() == tmp_path / "out" / "app" / "v2"
    assert (tmp_path / "out" / "app" / "v2" / "main.py").stat().st_mode & 0o777 == 0o755


# --- caps ----------------------------------------------------------------------------------


def test_a_gzip_bomb_is_refused_at_its_header(tmp_path):
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("zeros")
        info.size = 50 * MiB
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert archive.stat().st_size < MiB
    before = snapshot(tmp_path)
    with pytest.raises(UnsafeArtifact) as refused:
        unpack(archive, tmp_path / "out", limits=UnpackLimits(max_bytes=10 * MiB))
    assert refused.value.message == (
        "bomb.tar.gz: member 'zeros' brings the archive to 50.0 MiB unpacked,"
        " over the limit of 10.0 MiB"
    )
    assert refused.value.exit_code == 2
    assert snapshot(tmp_path) == before


def test_too_many_members_are_refused(tmp_path):
    files = [member(f"f{number}", data=b"x") for number in range(101)]
    archive = make_tar(tmp_path / "many.tar.gz", *files)
    before = snapshot(tmp_path)
    with pytest.raises(UnsafeArtifact) as refused:
        unpack(archive, tmp_path / "out", limits=UnpackLimits(max_members=100))
    assert refused.value.message == "many.tar.gz: more than 100 members (the limit)"
    assert refused.value.exit_code == 2
    assert snapshot(tmp_path) == before


def test_an_archive_at_its_limits_unpacks_the_same_every_time(tmp_path):
    files = [member(f"app/f{number}", data=b"%d\n" % number) for number in range(9)]
    archive = make_tar(tmp_path / "ok.tar.gz", folder("app"), *files)
    limits = UnpackLimits(max_bytes=sum(len(data) for _, data in files), max_members=10)
    unpack(archive, tmp_path / "one", limits=limits)
    unpack(archive, tmp_path / "two", limits=limits)
    assert (tmp_path / "one" / "app" / "f7").read_text() == "7\n"
    assert tree_sha256(tmp_path / "one") == tree_sha256(tmp_path / "two")


def test_the_default_limits_are_documented_figures():
    assert UnpackLimits() == UnpackLimits(max_bytes=2 * 2**30, max_members=100_000)


# --- room on the disk ----------------------------------------------------------------------


def test_too_little_room_is_refused_with_the_figures(tmp_path, monkeypatch):
    asked = []

    def disk_usage(path):
        asked.append(Path(path))
        return SimpleNamespace(total=100 * MiB, used=95 * MiB, free=5 * MiB)

    monkeypatch.setattr(unpacking.shutil, "disk_usage", disk_usage)
    archive = make_tar(tmp_path / "app.tar.gz", member("big", data=bytes(MiB)))
    before = snapshot(tmp_path)
    with pytest.raises(NoRoom) as refused:
        unpack(archive, tmp_path / "state" / "v1")
    # 1 MiB of data + one 4 KiB block + the 10 MiB margin
    assert refused.value.message == (
        f"app.tar.gz: unpacking needs 11.0 MiB, 5.0 MiB free on the filesystem of {tmp_path}"
    )
    assert refused.value.exit_code == 2
    assert asked == [tmp_path]  # the nearest folder that is there
    assert snapshot(tmp_path) == before


# --- failing part way ----------------------------------------------------------------------

PART_WAY = [  # the 3rd member, app/c.py, is the 2nd write
    member("app/a.py", data=b"a\n"),
    link("app/b.py", "a.py"),
    member("app/c.py", data=b"c\n"),
    member("app/d.py", data=b"d\n"),
    folder("app/static"),
]


def full_disk_on_write(monkeypatch, number: int) -> None:
    """`os.write`, as unpacking.py calls it, fails with ENOSPC from its `number`th call."""
    calls = []
    real_write = os.write

    def write(fd, data):
        calls.append(fd)
        if len(calls) >= number:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(unpacking.os, "write", write)


def test_a_full_disk_part_way_removes_the_folder_this_call_made(tmp_path, monkeypatch):
    archive = make_tar(tmp_path / "app.tar.gz", *PART_WAY)
    before = snapshot(tmp_path)
    full_disk_on_write(monkeypatch, 2)
    destination = tmp_path / "state" / "v1"
    with pytest.raises(UnpackFailed) as failed:
        unpack(archive, destination)
    assert failed.value.message == (
        "app.tar.gz: unpacking member 'app/c.py' failed (No space left on device);"
        f" {destination} is removed"
    )
    assert failed.value.exit_code == 1
    assert snapshot(tmp_path) == before


def test_a_full_disk_part_way_in_a_claimed_folder_leaves_only_what_was_there(tmp_path, monkeypatch):
    """The local target claims the folder and writes release.json before unpacking."""
    archive = make_tar(tmp_path / "app.tar.gz", *PART_WAY)
    destination = tmp_path / "v1"
    destination.mkdir()
    (destination / "release.json").write_text('{"status": "building"}')
    before = snapshot(tmp_path)
    full_disk_on_write(monkeypatch, 2)
    with pytest.raises(UnpackFailed) as failed:
        unpack(archive, destination)
    assert failed.value.message.endswith(f"; what it wrote in {destination} is removed")
    assert snapshot(tmp_path) == before


def test_a_file_too_big_for_the_process_limit_fails_cleanly(tmp_path):
    """A real EFBIG: RLIMIT_FSIZE lets the third member's data write only its first 64 KiB."""
    archive = make_tar(
        tmp_path / "app.tar.gz",
        member("a", data=b"a"),
        member("b", data=b"b"),
        member("big", data=bytes(MiB)),
    )
    before = snapshot(tmp_path)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, limits[1]))
    try:
        with pytest.raises(UnpackFailed) as failed:
            unpack(archive, tmp_path / "out")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert failed.value.message == (
        f"app.tar.gz: unpacking member 'big' failed (File too large); {tmp_path / 'out'} is removed"
    )
    assert snapshot(tmp_path) == before


def test_an_archive_cut_short_is_unreadable_before_anything_is_written(tmp_path):
    """A plain tar cut inside its last member's data: reading the headers finds it."""
    whole = make_tar(
        tmp_path / "whole.tar",
        member("a", data=b"a" * 600),
        member("b", data=b"b" * 600),
        member("c", data=b"c" * 6000),
        mode="w",
    )
    archive = tmp_path / "cut.tar"
    archive.write_bytes(whole.read_bytes()[: 512 * 7])  # headers and data of a, b; c's header
    whole.unlink()
    before = snapshot(tmp_path)
    with pytest.raises(UsageError) as failed:
        unpack(archive, tmp_path / "out")
    assert failed.value.message == "cut.tar: not a readable tar archive (unexpected end of data)"
    assert failed.value.exit_code == 2
    assert snapshot(tmp_path) == before


def test_a_read_error_part_way_fails_as_unreadable_and_leaves_nothing(tmp_path, monkeypatch):
    """The archive's disk fails (EIO) while the third member's data is read."""
    archive = make_tar(tmp_path / "app.tar.gz", *PART_WAY)
    real_extractfile = tarfile.TarFile.extractfile

    def extractfile(self, member):
        if member.name == "app/c.py":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_extractfile(self, member)

    monkeypatch.setattr(tarfile.TarFile, "extractfile", extractfile)
    before = snapshot(tmp_path)
    with pytest.raises(UsageError) as failed:
        unpack(archive, tmp_path / "out")
    assert failed.value.message == (
        "app.tar.gz: not a readable tar archive at member 'app/c.py' (Input/output error);"
        f" {tmp_path / 'out'} is removed"
    )
    assert failed.value.exit_code == 2
    assert snapshot(tmp_path) == before


def test_a_damaged_header_part_way_is_not_the_end_of_the_archive(tmp_path):
    """tarfile alone stops quietly at a header it cannot parse: the release would be the
    members before it, looking whole."""
    whole = make_tar(
        tmp_path / "whole.tar",
        member("a", data=b"a"),
        member("b", data=b"b"),
        member("c", data=b"c"),
        mode="w",
    )
    damaged = bytearray(whole.read_bytes())
    damaged[1024:1536] = b"\xff" * 512  # b's header (a's header and data are blocks 0 and 1)
    archive = tmp_path / "damaged.tar"
    archive.write_bytes(bytes(damaged))
    whole.unlink()
    before = snapshot(tmp_path)
    with pytest.raises(UsageError) as failed:
        unpack(archive, tmp_path / "out")
    assert failed.value.message == (
        "damaged.tar: not a readable tar archive (a damaged header at byte 1,024: bad checksum)"
    )
    assert snapshot(tmp_path) == before


def test_an_artifact_found_through_a_link_out_of_the_project_is_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "app.tar.gz").write_bytes(b"not read")
    root = tmp_path / "project"
    root.mkdir()
    (root / "dist").symlink_to(outside)
    with pytest.raises(UnsafeArtifact) as refused:
        artifact.find_artifact(root, "dist/*.tar.gz")
    assert refused.value.exit_code == 2 and "outside" in refused.value.message
