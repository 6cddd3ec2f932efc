"""The file's text as a YAML document whose mappings and lists remember where each value was
written, so that every problem can name its line.

PyYAML's SafeLoader, with four changes: mappings and lists come back as `LineMapping` and
`LineList`, a key defined twice is an error, dates stay text, and a document whose aliases
would expand it past `MAX_VALUES` is refused while it is composed, before anything is built.
Where PyYAML has libyaml, libyaml reads the events (a load takes about half as long); the
nodes are still composed here, in Python, so that the budget is counted.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from shipyard.config.where import Where

try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml
    CParser = None  # type: ignore[assignment,misc]

# Every key, scalar, list and mapping counts one where it is written, and an alias counts as
# all it repeats. 10,000 steps of 8 keys each come to about 180,000; a few hundred bytes of
# aliases repeating aliases (a "billion laughs" or a merge-key bomb) to billions. Counting
# stops the load at the limit, before anything is expanded or built, and so also bounds the
# time that a large file of tiny values takes (a few seconds at most).
MAX_VALUES = 250_000
_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class LineMapping(dict[str, Any]):
    """A YAML mapping that remembers each key's line and how each scalar value was written."""

    def __init__(self) -> None:
        super().__init__()
        self.key_lines: dict[str, int] = {}
        self.sources: dict[str, str | None] = {}


class LineList(list[Any]):
    """A YAML sequence that remembers each item's line and how each scalar item was written."""

    def __init__(self) -> None:
        super().__init__()
        self.item_lines: list[int] = []
        self.sources: list[str | None] = []


def parse_yaml(text: str) -> Any:
    """The document in `text`; any problem is `Invalid` at the line it is on."""
    try:
        return _load_document(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        Where("", mark.line + 1 if mark else 1).fail(f"invalid YAML: {_yaml_problem(error)}")
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        problem = f"unacceptable character #x{error.character:04x}: {error.reason}"
        Where("", line).fail(f"invalid YAML: {problem}")
    except RecursionError:
        Where("", 1).fail("invalid YAML: nested too deeply")


def _source(node: yaml.Node) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) else None


class _LineLoader(yaml.SafeLoader):
    """SafeLoader counting the values it composes, building `LineMapping`/`LineList` and
    refusing duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.start_document()

    def start_document(self) -> None:
        self.where = Where("", 1)  # the value being built, for duplicate-key messages
        self.values = 0  # composed so far, each alias counted as all it repeats
        self.anchored_values: dict[yaml.Node, int] = {}  # each anchored node: the values in it

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """The next node, as PyYAML composes it; counted in file order (a node before its
        children), so that the place named past `MAX_VALUES` is where the limit was passed."""
        event = self.peek_event()  # type: ignore[no-untyped-call]
        values_before = self.values
        if isinstance(event, yaml.ScalarEvent) and event.tag == "!":
            event.implicit = (True, False)  # as PyYAML's parser has it (libyaml: `key: !` is '')
        if not isinstance(event, yaml.AliasEvent):
            self._count(1, event)
        node = super().compose_node(parent, index)
        if node is None:
            return node
        if isinstance(event, yaml.AliasEvent):
            self._count(self.anchored_values.get(node, 1), event)  # 1: inside its own anchor
        elif event.anchor is not None:
            self.anchored_values[node] = self.values - values_before
        return node

    def _count(self, values: int, event: yaml.Event) -> None:
        self.values += values
        if self.values > MAX_VALUES:
            line = event.start_mark.line + 1 if event.start_mark else 1
            Where("", line).fail(
                f"the file holds more than {MAX_VALUES:,} values, counting each alias as"
                " all it repeats (the limit)"
            )

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, IndexError, KeyError) as error:  # `!!int abc`, `!!int `
            problem = f"cannot read {node.tag} value: {error}"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None

    def construct_line_mapping(self, node: yaml.MappingNode) -> LineMapping:
        explicit_count = sum(key_node.tag != _MERGE_TAG for key_node, _ in node.value)
        self.flatten_mapping(node)  # pairs merged in with `<<:` come first and may be overridden
        first_explicit = len(node.value) - explicit_count
        mapping = LineMapping()
        explicit_lines: dict[str, int] = {}
        for index, (key_node, value_node) in enumerate(node.value):
            key, where = self._key(key_node)
            if index >= first_explicit:
                if key in explicit_lines:
                    where.fail(f"duplicate key (first defined on line {explicit_lines[key]})")
                explicit_lines[key] = where.line
            mapping[key] = self._construct_at(where, value_node)
            mapping.key_lines[key] = where.line
            mapping.sources[key] = _source(value_node)
        return mapping

    def construct_line_list(self, node: yaml.SequenceNode) -> LineList:
        items = LineList()
        for index, item_node in enumerate(node.value):
            where = self.where.item(index, item_node.start_mark.line + 1)
            items.append(self._construct_at(where, item_node))
            items.item_lines.append(where.line)
            items.sources.append(_source(item_node))
        return items

    def _key(self, key_node: yaml.Node) -> tuple[str, Where]:
        key = self.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            source = _source(key_node)
            where = self.where.child(source or "?", line, source)
            where.expected("a text key (quote it)", key)
        return key, self.where.child(key, line)

    def _construct_at(self, where: Where, node: yaml.Node) -> Any:
        outer, self.where = self.where, where
        value = self.construct_object(node, deep=True)
        self.where = outer
        return value


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_line_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _LineLoader.construct_line_list)
# No field is a date, and `2024-13-01` must stay text rather than break the load.
_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


if CParser is not None:

    class _FastLineLoader(CParser, _LineLoader):
        """`_LineLoader` reading libyaml's events, composing them in Python all the same."""

        check_node = Composer.check_node
        get_node = Composer.get_node
        get_single_node = Composer.get_single_node

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self.start_document()


def _load_document(text: str) -> Any:
    """The document, read with libyaml when PyYAML has it. libyaml words its errors its own
    way, so a document it refuses is read again by PyYAML alone, for PyYAML's message. What
    both read, they read alike (tests/test_config_fuzz.py); libyaml also reads a little that
    PyYAML's own scanner refuses, such as a tab after a value."""
    if CParser is not None:
        try:
            return _load_with(_FastLineLoader, text)
        except yaml.YAMLError:
            pass
    return _load_with(_LineLoader, text)


def _load_with(loader_class: type[_LineLoader], text: str) -> Any:
    loader = loader_class(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _yaml_problem(error: yaml.MarkedYAMLError) -> str:
    problem = error.problem or error.context or "unreadable"
    if "'\\t'" in problem:
        problem += " (indent with spaces, not tabs)"
    opened, found = error.context_mark, error.problem_mark
    if error.problem and error.context and opened and found and opened.line != found.line:
        problem = f"{error.context} on line {opened.line + 1}: {problem}"  # e.g. an unclosed [
    return problem
