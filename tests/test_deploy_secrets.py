"""A deploy whose steps print secrets in every form: none reaches the terminal, any file the
run wrote, or the argv of any process (read from /proc while the deploy runs)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from helpers import BIN, cli_env, random_secret, run_cli
from test_cli import LEAKY_STEP, secret_forms
from test_deploy import BUILD, Staging


def test_a_deploy_printing_secrets_in_every_form_leaks_none_anywhere(tmp_path):
    app = Staging(tmp_path / "proj", build=f"python3 leak.py && {BUILD}")
    config = app.root / "shipyard.yaml"
    config.write_text("secrets: [DEPLOY_KEY]\n" + config.read_text())
    (app.root / "leak.py").write_text(LEAKY_STEP)
    listed, by_name = random_secret() + '"&%+/ü', random_secret()
    started = time.time()
    seen: list[str] = []
    done_reading = threading.Event()
    reader = threading.Thread(target=_read_every_argv, args=(seen, done_reading), daemon=True)
    reader.start()
    try:
        done = run_cli(
            [str(BIN / "inv"), "deploy.staging"],
            app.root,
            env=cli_env(DEPLOY_KEY=listed, MY_API_TOKEN=by_name),
        )
    finally:
        done_reading.set()
        reader.join(timeout=10)
        app.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "***" in done.stdout  # the step did print them: masked
    assert any("webapp" in line for line in seen)  # the reader saw the deploy's processes
    written = [p for p in app.root.rglob("*") if p.is_file() and p.stat().st_mtime >= started - 1]
    folders = {p.relative_to(app.root).parts[0] for p in written}
    assert {"artifacts", "feedback", ".shipyard", "dist"} <= folders
    sinks = {
        "terminal": done.stdout + done.stderr,
        "argv": "\n".join(seen),
        **{str(p): _text(p) for p in written},
    }
    for form in secret_forms(listed) + secret_forms(by_name):
        leaked = [where for where, text in sinks.items() if form in text]
        assert not leaked, f"{form!r} in {leaked}"


def _read_every_argv(seen: list[str], stop: threading.Event) -> None:
    while not stop.is_set():
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                seen.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
        stop.wait(0.01)


def _text(path: Path) -> str:
    """The file's text; a gzip archive's members too (the built artifact)."""
    data = path.read_bytes()
    if path.name.endswith(".tar.gz"):
        import tarfile

        with tarfile.open(path) as archive:
            members = [archive.extractfile(m) for m in archive.getmembers() if m.isfile()]
            data += b"".join(member.read() for member in members if member)
    return data.decode(errors="replace")
