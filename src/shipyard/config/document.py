"""The file's text as a YAML document whose mappings and lists remember where each value was
written, so that every problem can name its line.

PyYAML's SafeLoader, with three changes: mappings and lists come back as `LineMapping` and
`LineList`, a key defined twice is an error, and dates stay text.
"""

from __future__ import annotations

from typing import Any

import yaml

from shipyard.config.where import Where

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
    """SafeLoader building `LineMapping`/`LineList` and refusing duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.where = Where("", 1)  # the value being built, for duplicate-key messages

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


def _load_document(text: str) -> Any:
    loader = _LineLoader(text)
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
