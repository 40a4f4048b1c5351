"""A reader for the subset of Alloy's configuration syntax that
istio-add-ons/alloy-values.yaml uses, so the tests check the configuration's
structure (blocks, labels, attributes, values) instead of searching its text.

Alloy itself is a Go program that cannot be installed here; this follows the
syntax as Alloy's documentation describes it (docs/sources/get-started/
configuration-syntax and expressions/types_and_values in grafana/alloy):
blocks `name.parts "label" { ... }`, attributes `name = value`, `//` and
`/* */` comments, double-quoted strings with Go-style escapes, raw strings in
backticks (no escapes), numbers, bools, null, lists `[...]`, objects
`{ key = value, ... }`, references `a.b.c` and calls `f.g(args)`, and `+`.
Anything else is a syntax error, so a typo in the configuration fails here.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}\[\](),=.+])
""", re.X | re.S)


class AlloySyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Ref:
    """A reference to another component's export, e.g. loki.write.default.receiver."""
    name: str


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple


@dataclass(frozen=True)
class Concat:
    parts: tuple


@dataclass
class Block:
    name: str
    label: str | None
    attrs: dict = field(default_factory=dict)
    blocks: list["Block"] = field(default_factory=list)

    def children(self, name: str) -> list["Block"]:
        return [b for b in self.blocks if b.name == name]

    def child(self, name: str, label: str | None = None) -> "Block":
        found = [b for b in self.blocks if b.name == name and b.label == label]
        if len(found) != 1:
            raise AssertionError(f"expected one block {name} {label or ''}, found {len(found)}")
        return found[0]


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            line = text.count("\n", 0, pos) + 1
            raise AlloySyntaxError(f"line {line}: unexpected {text[pos:pos + 20]!r}")
        kind = m.lastgroup
        if kind not in ("space", "comment"):
            tokens.append((kind, m.group()))
        pos = m.end()
    return tokens


class Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else ("eof", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        tok_kind, tok = self.peek()
        if (value is not None and tok != value) or (kind is not None and tok_kind != kind):
            raise AlloySyntaxError(f"expected {value or kind}, got {tok!r} (token {self.i})")
        self.i += 1
        return tok

    def dotted(self) -> str:
        parts = [self.take(kind="ident")]
        while self.peek()[1] == "." and self.peek(1)[0] == "ident":
            self.take(".")
            parts.append(self.take(kind="ident"))
        return ".".join(parts)

    def body(self, end: str | None) -> Block:
        block = Block("", None)
        # The end of the input ends the top level ("" is the eof token's text); inside a block
        # it is a missing brace.
        while self.peek()[1] != (end or ""):
            if self.peek()[0] == "eof":
                raise AlloySyntaxError(f"missing {end!r}")
            name = self.dotted()
            if self.peek()[1] == "=":
                if "." in name:
                    raise AlloySyntaxError(f"attribute names have no dots: {name}")
                self.take("=")
                if name in block.attrs:
                    raise AlloySyntaxError(f"attribute {name} set twice")
                block.attrs[name] = self.expr()
            else:
                label = string_value(self.take(kind="string")) if self.peek()[0] == "string" else None
                self.take("{")
                inner = self.body("}")
                self.take("}")
                block.blocks.append(Block(name, label, inner.attrs, inner.blocks))
        return block

    def items(self, close: str) -> list:
        """Comma-separated expressions up to `close` (a trailing comma allowed), `close` taken."""
        items = []
        while self.peek()[1] != close:
            items.append(self.expr())
            if self.peek()[1] != close:
                self.take(",")
        self.take(close)
        return items

    def expr(self):
        parts = [self.operand()]
        while self.peek()[1] == "+":
            self.take("+")
            parts.append(self.operand())
        return parts[0] if len(parts) == 1 else Concat(tuple(parts))

    def operand(self):
        kind, tok = self.peek()
        if kind == "string":
            self.take()
            return string_value(tok)
        if kind == "raw":
            self.take()
            return tok[1:-1]
        if kind == "number":
            self.take()
            return float(tok) if "." in tok else int(tok)
        if tok == "[":
            self.take("[")
            return self.items("]")
        if tok == "{":
            self.take("{")
            obj = {}
            while self.peek()[1] != "}":
                key_kind, key = self.peek()
                self.take()
                if key_kind not in ("ident", "string"):
                    raise AlloySyntaxError(f"bad object key {key!r}")
                self.take("=")
                obj[string_value(key) if key_kind == "string" else key] = self.expr()
                if self.peek()[1] != "}":
                    self.take(",")
            self.take("}")
            return obj
        if kind == "ident":
            if tok in ("true", "false"):
                self.take()
                return tok == "true"
            if tok == "null":
                self.take()
                return None
            name = self.dotted()
            if self.peek()[1] == "(":
                self.take("(")
                return Call(name, tuple(self.items(")")))
            return Ref(name)
        raise AlloySyntaxError(f"unexpected {tok!r}")


GO_ESCAPE = re.compile(r'\\(?:[abfnrtv\\\'"]|[0-7]{3}|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})')


def string_value(token: str) -> str:
    """A double-quoted Alloy string. Its escapes are Go's (Alloy rejects any other, e.g. `\\d`);
    for those, Python's string literal means the same."""
    if "\\" in GO_ESCAPE.sub("", token[1:-1]):
        raise AlloySyntaxError(f"unknown escape sequence in {token}")
    return ast.literal_eval(token)


def parse(text: str) -> Block:
    """The whole configuration as one unnamed block holding the top-level blocks."""
    parser = Parser(text)
    return parser.body(None)
