"""Reading a rule set written in YAML: JSON-like scalars, no aliases, line numbers.

PyYAML speaks YAML 1.1, where `on`, `off`, `yes` and `no` are booleans (so a rule's
`on:` key would become True), `2026-11-01` is a date and `010` is octal. Rule sets
are read with JSON-like scalars instead: only true/false are booleans, integers are
decimal, no timestamps. Aliases (billion laughs) and duplicate keys are refused.
"""

from __future__ import annotations

import re
from typing import Any

import yaml  # type: ignore[import-untyped]

from service.errors import ValidationFailed

Path = tuple[str | int, ...]

_BOOL, _INT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.MarkedYAMLError(problem="aliases (*name) are not allowed", problem_mark=mark)
        return super().compose_node(parent, index)

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


def load(raw: bytes) -> tuple[Any, Any]:
    """The document's data and its node tree (for line numbers)."""
    loader = _Loader(raw)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ValidationFailed(f"not valid YAML: {exc.problem}{at}") from None
    except yaml.YAMLError as exc:
        raise ValidationFailed(f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    return data, node


_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")


def line_of(node: Any, path: Path, message: str) -> int | None:
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
