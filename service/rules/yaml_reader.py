"""Reading a rule set's YAML (`load_yaml`) and finding a field's line (`line_of`).

PyYAML speaks YAML 1.1, where `on`, `off`, `yes` and `no` are booleans (so a rule's
`on:` key would become True), `2026-11-01` is a date and `010` is octal. Rule sets
are read with JSON-like scalars instead: only true/false are booleans, integers are
decimal, no timestamps. Aliases (billion laughs) and duplicate keys are refused.

Bad bytes are refused before they can cost more than a glance: the document must be
UTF-8 without control characters, nest at most `MAX_NESTING` levels (as JSON bodies
do), and its escapes may not make a NUL or a lone surrogate. Each is a 422 that
names the line.
"""

from __future__ import annotations

import re
from typing import Any

import yaml  # type: ignore[import-untyped]

from service.errors import ValidationFailed
from service.inbound import MAX_NESTING, check_utf8

_BOOL, _INT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
_TOO_DEEP = f"sequences and mappings nest deeper than {MAX_NESTING} levels"


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """PyYAML composes and constructs recursively, a few Python frames per level, so
    depth is refused in the composer, as soon as a collection would open level
    `MAX_NESTING + 1`: a 50,000-deep document stops there, its parser having read
    little more than those levels."""

    def __init__(self, text: str) -> None:
        super().__init__(text)  # the reader refuses control characters here
        self._depth = 0

    def fetch_flow_collection_start(self, token: Any) -> None:
        """The scanner reads up to 1,024 characters ahead for a possible key, and
        checks every open flow collection at each step: a line of brackets takes it
        a third of a second before the composer sees the first one. So flow nesting
        is refused here too, at the bracket that would go one level too deep."""
        if self.flow_level == MAX_NESTING:
            raise yaml.MarkedYAMLError(problem=_TOO_DEEP, problem_mark=self.get_mark())
        super().fetch_flow_collection_start(token)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.MarkedYAMLError(problem="aliases (*name) are not allowed", problem_mark=mark)
        if not self.check_event(yaml.CollectionStartEvent):
            return super().compose_node(parent, index)
        if self._depth == MAX_NESTING:
            mark = self.peek_event().start_mark
            raise yaml.MarkedYAMLError(problem=_TOO_DEEP, problem_mark=mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_scalar(self, node: Any) -> Any:
        """Refuses what the escapes `\\0` and `\\udc00` make of plain ASCII: a NUL
        (which PostgreSQL text cannot hold) or a lone surrogate (not Unicode text)."""
        value = super().construct_scalar(node)
        if _UNSTORABLE.search(value):
            problem = "text may not contain NUL (\\0) or unpaired surrogate characters"
            raise yaml.MarkedYAMLError(problem=problem, problem_mark=node.start_mark)
        return value

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = getattr(key_node, "value", None)
            if isinstance(key_node, yaml.ScalarNode) and key in seen:
                mark = key_node.start_mark
                raise yaml.MarkedYAMLError(problem=f"duplicate key {key!r}", problem_mark=mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(_INT, re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
_Loader.add_constructor(_INT, lambda loader, node: int(loader.construct_scalar(node)))


def load_yaml(raw: bytes) -> tuple[Any, Any]:
    """The document's data and its node tree (for line numbers).

    The bytes must be UTF-8: PyYAML would also read UTF-16, which the stored text of
    the version could not hold. The loader is built inside the `try` because its
    reader checks the whole text for control characters as it starts."""
    text = check_utf8(raw)
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.reader.ReaderError as exc:
        raise ValidationFailed(f"not valid YAML: {_unreadable(text, exc)}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ValidationFailed(f"not valid YAML: {exc.problem}{at}") from None
    except yaml.YAMLError as exc:
        raise ValidationFailed(f"not valid YAML: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, node


def _unreadable(text: str, exc: Any) -> str:
    """Where the reader found a character YAML does not allow (read from text, the
    only fault it can find is such a character)."""
    line = text.count("\n", 0, exc.position) + 1
    column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
    return f"the character U+{exc.character:04X} is not allowed (line {line}, column {column})"


_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")


def line_of(node: Any, path: tuple[str | int, ...], message: str) -> int | None:
    """The 1-based line of the field at `path` (or of the unknown field it names)."""
    extra = _UNKNOWN_FIELD.search(message)
    line = int(node.start_mark.line)
    for step in (*path, extra.group(1)) if extra else path:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if getattr(k, "value", None) == step), None)
            if pair is None:
                break
            line, node = int(pair[0].start_mark.line), pair[1]
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value)
        ):
            node = node.value[step]
            line = int(node.start_mark.line)
        else:
            break
    return line + 1
