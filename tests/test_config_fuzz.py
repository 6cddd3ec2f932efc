"""Config, by fuzzing: mutated valid configs and random YAML either load or give the one-line
ConfigError; never another exception, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard.config import document, load_config
from shipyard.config.document import LineList, LineMapping
from shipyard.config.where import Invalid
from shipyard.errors import ConfigError

GOOD = sorted((Path(__file__).parent / "configs" / "good").glob("*.yaml"))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(
        ["30s", "0s", "-1m", "1h", "24h", "25h", "\u0663s", "{port}", "{x}", "", " ", "../x", "/x"]
    ),
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


YAML_CHARACTERS = list("ab: -[]{}\n\t'\"#&*!|>%@`,?0.1s<")


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
@given(text=st.text(alphabet=st.sampled_from(YAML_CHARACTERS), max_size=60))
def test_random_yaml_loads_or_refuses_in_one_line(tmp_path, text):
    loads_or_refuses(tmp_path, "version: 1\n" + text)


REFUSED = object()


def read_with(loader: type, text: str) -> object:
    """The document as `loader` reads it, with every line and source it remembers."""
    try:
        return with_places(document._load_with(loader, text))
    except (yaml.YAMLError, Invalid, RecursionError):
        return REFUSED


def with_places(value: object) -> object:
    if isinstance(value, LineMapping):
        return {k: (value.key_lines[k], value.sources[k], with_places(v)) for k, v in value.items()}
    if isinstance(value, LineList):
        places = zip(value.item_lines, value.sources, value, strict=True)
        return [(line, source, with_places(item)) for line, source, item in places]
    return value


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(YAML_CHARACTERS), max_size=80))
def test_what_libyaml_and_pure_python_both_read_they_read_alike(text):
    """libyaml reads the events when PyYAML has it (PyYAML reads again what libyaml refuses,
    for its message). libyaml also reads a little that PyYAML's scanner refuses (`a: 1<tab>`);
    whatever both read must come out the same, lines and sources included."""
    fast = read_with(document._FastLineLoader, text)
    pure = read_with(document._LineLoader, text)
    if REFUSED not in (fast, pure):
        assert fast == pure


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
