"""Parses a CEL expression and adds up its cost with the rules of `cost.py`.

A small recursive-descent parser of CEL's grammar: ternary, `||`, `&&`, relations
(`in` among them), `+ -`, `* / %`, unary `! -`, member, index and call, literals,
list and map literals, parentheses. `cel.compile` has already accepted the text, so
anything this parser does not know (message construction, optional fields) is
refused as unboundable rather than guessed at. It computes as it parses: each rule
returns the `Cost` of its node, and a comprehension's variable is bound to the shape
of what it ranges over while its body is parsed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final, NamedTuple, TypeVar

from service.rules import cost, limits
from service.rules.cost import Cost, CostInvalid, Shape

_T = TypeVar("_T")
MACROS: Final = frozenset({"all", "exists", "exists_one", "map", "filter"})
_PRECEDENCE: Final = {"||": 1, "&&": 2, "+": 4, "-": 4, "*": 5, "/": 5, "%": 5} | dict.fromkeys(
    ("==", "!=", "<", "<=", ">", ">=", "in"), 3
)

_TOKEN: Final = re.compile(
    r"""(?P<space>\s+|//[^\n]*)
    |(?P<string>(?:[rR][bB]?|[bB][rR]?)?(?:'''.*?'''|\"\"\".*?\"\"\"
        |'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))
    |(?P<number>0[xX][0-9a-fA-F]+[uU]?|\d*\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+[uU]?)
    |(?P<name>[A-Za-z_]\w*)
    |(?P<op>&&|\|\||==|!=|<=|>=|[-+*/%!<>?:.,()\[\]{}])
    |(?P<other>.)""",
    re.VERBOSE | re.DOTALL,
)


class Token(NamedTuple):
    kind: str  # string | number | name | op | end
    text: str
    at: int


def tokens(source: str) -> list[Token]:
    """The tokens of `source`, comments and whitespace dropped."""
    out: list[Token] = []
    for match in _TOKEN.finditer(source):
        kind = match.lastgroup or "space"
        if kind == "other":
            shown, at = match.group(), match.start()
            raise CostInvalid(f"the cost cannot be bounded: unexpected {shown!r} at {at}")
        if kind != "space":
            out.append(Token(kind, match.group(), match.start()))
    out.append(Token("end", "", len(source)))
    return out


def bound(source: str, roots: Mapping[str, Shape]) -> int:
    """The most units one evaluation of `source` can take; raises `CostInvalid`."""
    parser = _Parser(tokens(source), roots)
    result = parser.expression()
    parser.expect("end")
    units = result.units + cost.EVALUATION
    if units > cost.MAX_EXPRESSION_UNITS:
        raise CostInvalid(
            f"this expression may take too long to evaluate: its cost is bounded by"
            f" {describe(units)} units, and at most {cost.MAX_EXPRESSION_UNITS:,} are allowed"
            " (see `Expression budget` in docs/rules.md)"
        )
    return units


def describe(units: int) -> str:
    return f"{units:,}" if units < 10**12 else "more than 10^12"


class _Parser:
    def __init__(self, stream: list[Token], roots: Mapping[str, Shape]) -> None:
        self.stream = stream
        self.at = 0
        self.roots = roots
        self.scopes: list[tuple[str, Shape]] = []  # comprehension variables, innermost last
        self.nesting = 0  # comprehensions around the current node
        self.depth = 0  # parenthesised expressions around it

    # --- tokens -----------------------------------------------------------------------

    def peek(self) -> Token:
        return self.stream[self.at]

    def take(self, text: str) -> bool:
        if self.peek().text == text and self.peek().kind in ("op", "name"):
            self.at += 1
            return True
        return False

    def expect(self, what: str) -> Token:
        token = self.peek()
        if not self._is(token, what):
            shown = repr(token.text) if token.text else "the end"
            raise CostInvalid(f"the cost cannot be bounded: unexpected {shown} at {token.at}")
        self.at += 1
        return token

    @staticmethod
    def _is(token: Token, what: str) -> bool:
        if what in ("name", "number", "string", "end"):
            return token.kind == what
        return token.kind == "op" and token.text == what

    # --- the grammar, loosest first -------------------------------------------------

    def expression(self) -> Cost:
        self.depth += 1
        if self.depth > cost.MAX_PARSE_DEPTH:
            raise CostInvalid(f"an expression nests at most {cost.MAX_PARSE_DEPTH} deep")
        condition = self.binary(1)
        if self.take("?"):
            yes = self.binary(1)
            self.expect(":")
            condition = cost.ternary(condition, yes, self.expression())
        self.depth -= 1
        return condition

    def binary(self, floor: int) -> Cost:
        """Binary operators binding at least as tightly as `floor`, left-associative
        (precedence climbing: one rule for the five levels of CEL's grammar)."""
        left = self.unary()
        while True:
            token = self.peek()
            precedence = _PRECEDENCE.get(token.text, 0) if token.kind in ("op", "name") else 0
            if precedence < floor:
                return left
            self.at += 1
            left = cost.binary(token.text, left, self.binary(precedence + 1))

    def unary(self) -> Cost:
        signs = 0
        while self.peek().text in ("!", "-") and self.peek().kind == "op":
            self.at += 1
            signs += 1
        result = self.member()
        for _ in range(signs):
            result = cost.unary(result)
        return result

    def member(self) -> Cost:
        result = self.primary()
        while True:
            if self.take("["):
                key = self.expression()
                self.expect("]")
                result = cost.access(result, None, key)
            elif self.take("."):
                name = self.expect("name").text
                result = self.method(result, name) if self.take("(") else self.field(result, name)
            else:
                return result

    def field(self, receiver: Cost, name: str) -> Cost:
        return cost.access(receiver, name)

    def method(self, receiver: Cost, name: str) -> Cost:
        if name in MACROS:
            return self.comprehension(receiver, name)
        return cost.call(name, receiver, self.arguments())

    def arguments(self) -> list[Cost]:
        """The arguments of a call whose `(` is taken, up to and with its `)`."""
        return self.sequence(")", self.expression)

    def comprehension(self, source: Cost, macro: str) -> Cost:
        variable = self.expect("name").text
        self.expect(",")
        self.nesting += 1
        if self.nesting > cost.MAX_NESTING:
            raise CostInvalid(
                f"comprehensions ({', '.join(sorted(MACROS))}) nest at most {cost.MAX_NESTING} deep"
            )
        self.scopes.append((variable, source.shape.element or cost.SCALAR))
        bodies = [self.expression()]
        if macro == "map" and self.take(","):
            bodies.append(self.expression())
        self.expect(")")
        self.scopes.pop()
        self.nesting -= 1
        return cost.comprehension(macro, source, bodies)

    def primary(self) -> Cost:
        token = self.peek()
        self.at += 1
        if token.kind == "number" or token.text in ("true", "false", "null"):
            return Cost(1, cost.SCALAR)
        if token.kind == "string":
            weight = limits.string_weight(len(token.text))
            return Cost(weight, Shape(items=0, weight=weight))
        if token.kind == "name":
            return self.name(token)
        if token.text == "(":
            inner = self.expression()
            self.expect(")")
            return inner
        if token.text == "[":
            return cost.literal_list(self.sequence("]", self.expression))
        if token.text == "{":
            return cost.literal_map(self.sequence("}", self.entry))
        self.at -= 1
        self.expect("a value")
        raise AssertionError("unreachable")

    def name(self, token: Token) -> Cost:
        if self.take("("):
            if token.text == "has":
                inner = self.expression()
                self.expect(")")
                return Cost(inner.units + 1, cost.SCALAR)
            return cost.call(token.text, None, self.arguments())
        for variable, shape in reversed(self.scopes):
            if variable == token.text:
                return Cost(2, shape)
        if token.text in self.roots:
            return Cost(2, self.roots[token.text])
        raise CostInvalid(f"the cost cannot be bounded: unknown name {token.text!r}")

    def entry(self) -> tuple[Cost, Cost]:
        key = self.expression()
        self.expect(":")
        return key, self.expression()

    def sequence(self, close: str, item: Callable[[], _T]) -> list[_T]:
        """Comma-separated `item`s up to `close`, a trailing comma allowed."""
        items: list[_T] = []
        while not self.take(close):
            if items:
                self.expect(",")
                if self.take(close):
                    break
            items.append(item())
        return items
