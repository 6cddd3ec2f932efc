"""Every value Shipyard can know feeds the redactor (issue 13): a secret-named variable set in
a step's own `env:`, or in another step's or an environment's, is masked wherever the run
writes; in GitHub Actions every form derived from a secret is `::add-mask::`ed before any
other output."""

from __future__ import annotations

import base64
from pathlib import Path

from helpers import cli_env, evidence_dir, random_secret, run_here


def written(root: Path) -> str:
    """Everything the run wrote: the evidence bundle and the feedback file."""
    files = [*evidence_dir(root).rglob("*"), *(root / "feedback").rglob("*")]
    return "".join(path.read_text(errors="replace") for path in files if path.is_file())


def test_a_secret_named_variable_of_a_steps_own_env_is_masked_everywhere(project):
    secret = random_secret()
    root = project(f"""
        version: 1
        steps:
          migrate:
            run: 'echo "connecting with $DB_PASSWORD"; echo "$DB_PASSWORD" | base64'
            env: {{DB_PASSWORD: "{secret}"}}
    """)
    done = run_here(["step", "migrate"], root)
    assert done.returncode == 0, done.stdout + done.stderr
    encoded = base64.b64encode(f"{secret}\n".encode()).decode()
    for text in (done.stdout, done.stderr, written(root)):
        assert secret not in text and encoded not in text
    assert "connecting with ***" in done.stdout


def test_another_steps_or_an_environments_env_secret_is_masked_in_this_step(project):
    """A value is a secret wherever it is printed: a step that happens to print another
    step's (or an environment's) API key gets it masked too."""
    step_secret, env_secret = random_secret(), random_secret()
    root = project(f"""
        version: 1
        steps:
          migrate: {{run: "true", env: {{DB_PASSWORD: "{step_secret}"}}}}
          leak: {{run: "echo {step_secret} {env_secret}"}}
        environments:
          staging:
            target: local
            start: "python3 -m http.server {{port}}"
            env: {{APP_API_KEY: "{env_secret}"}}
    """)
    done = run_here(["step", "leak"], root)
    assert done.returncode == 0, done.stdout + done.stderr
    for text in (done.stdout, written(root)):
        assert step_secret not in text and env_secret not in text


def test_in_actions_every_derived_form_is_masked_with_the_runner_before_other_output(project):
    secret = random_secret()
    root = project("""
        version: 1
        secrets: [DEPLOY_KEY]
        steps:
          fmt: {run: echo formatted}
    """)
    summary = root / "summary.md"
    env = cli_env(
        DEPLOY_KEY=secret, GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary), CI="true"
    )
    done = run_here(["step", "fmt"], root, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    masks = [line.removeprefix("::add-mask::") for line in lines if line.startswith("::add-mask::")]
    assert lines[: len(masks)] == [f"::add-mask::{value}" for value in masks]  # first of all
    assert secret in masks
    encoded = base64.b64encode(secret.encode()).decode()
    assert any(len(form) >= 16 and form in encoded for form in masks)  # its stable core
    assert all(secret not in line for line in lines if not line.startswith("::add-mask::"))
