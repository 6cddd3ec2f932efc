"""Config, by fuzzing: mutated valid configs and random YAML either load or give the one-line
ConfigError; never another exception, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard.config import load_config
from shipyard.errors import ConfigError

GOOD = sorted((Path(__file__).parent / "configs" / "good").glob("*.yaml"))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["30s", "0s", "-1m", "1h", "{port}", "{x}", "", " "]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


class NoDates(yaml.SafeLoader):
    """As shipyard reads the file: `2024-13-01` stays text instead of failing as a date."""


NoDates.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def paths(document: object, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths(value, (*prefix, index))
    return found


def replaced(document: object, path: tuple, value: object) -> object:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        return {**document, head: replaced(document[head], rest, value)}
    copy = list(document)  # a list
    copy[head] = replaced(copy[head], rest, value)
    return copy


def loads_or_refuses(tmp_path: Path, text: str) -> None:
    path = tmp_path / "shipyard.yaml"
    path.write_text(text)
    try:
        load_config(path)
    except ConfigError as error:
        assert "\n" not in error.message
        assert error.message.startswith("shipyard.yaml:") or error.message.startswith(str(tmp_path))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutations_of_valid_configs_load_or_refuse_in_one_line(tmp_path, data):
    source = data.draw(st.sampled_from(GOOD))
    document = yaml.load(source.read_text(), Loader=NoDates)
    where = data.draw(st.sampled_from(paths(document)))
    mutated = replaced(document, where, data.draw(VALUES))
    loads_or_refuses(tmp_path, yaml.safe_dump(mutated, allow_unicode=True))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(alphabet=st.sampled_from(list("ab: -[]{}\n\t'\"#&*!|>%@`,?0.1s")), max_size=60))
def test_random_yaml_loads_or_refuses_in_one_line(tmp_path, text):
    loads_or_refuses(tmp_path, "version: 1\n" + text)


def test_a_mutated_config_through_the_cli_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "shipyard.yaml"
    bad.write_text("version: 1\nsteps:\n  lint: {run: ruff, retries: [1, {2: 3}]}\n")
    done = subprocess.run(
        [sys.executable, "-m", "shipyard.config", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
