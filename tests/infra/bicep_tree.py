"""The Bicep files as syntax trees (tree-sitter-bicep), and just enough evaluation to read them.

The Bicep compiler is not reachable here, so the tests read the templates the way it would parse
them: declarations, resource bodies as nested objects, literal values, and string interpolation
of parameters and variables, across module boundaries (a module's parameter takes the value its
caller passes). What cannot be known before deployment (resource properties, function calls)
stays an ``Expr`` holding its source text.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser, Tree

INFRA = Path(__file__).resolve().parents[2] / "infra"
PARSER = Parser(Language(tree_sitter_bicep.language()))


class Expr(str):
    """An expression known only at deployment: its source text."""


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def syntax_problems(tree: Tree) -> list[str]:
    """Every ERROR or MISSING node, as 'line:column type text'."""
    problems = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            row, column = node.start_point
            kind = "MISSING" if node.is_missing else "ERROR"
            problems.append(f"{row + 1}:{column + 1} {kind} {node.text.decode()[:60]!r}")
        stack.extend(node.children)
    return problems


def named(node: Node) -> list[Node]:
    """Named children, comments left out."""
    return [child for child in node.named_children if child.type != "comment"]


def body_object(node: Node) -> Node:
    """The object of a resource or module body, through `if (...)` and `[for ...]`."""
    for child in named(node):
        if child.type == "object":
            return child
        if child.type in ("if_statement", "for_statement"):
            return body_object(child)
    raise ValueError(f"no body in {node.text.decode()[:80]!r}")


def key_of(prop: Node) -> str:
    """An object property's key: a name, a quoted name, or (interpolated) its source text."""
    key = named(prop)[0]
    if key.type != "string":
        return key.text.decode()
    try:
        return string_literal(key)
    except ValueError:
        return key.text.decode()


def string_text(node: Node, interpolation: Callable[[Node], str]) -> str:
    """A string node's text: its literal parts as they read, each ``${...}`` part as
    ``interpolation`` renders it."""
    parts = []
    for child in node.named_children:
        if child.type == "string_content":
            parts.append(child.text.decode())
        elif child.type == "escape_sequence":
            parts.append(child.text.decode()[1:])
        else:
            parts.append(interpolation(child))
    return "".join(parts)


def string_literal(node: Node) -> str:
    """A string node without interpolation, as its value."""

    def refuse(_: Node) -> str:
        raise ValueError(f"not a literal: {node.text.decode()!r}")

    return string_text(node, refuse)


@dataclass
class Resource:
    symbol: str
    type: str  # full type, e.g. Microsoft.Web/sites/config
    api_version: str
    node: Node
    file: BicepFile

    @property
    def body(self) -> Node:
        return body_object(self.node)

    @property
    def conditional(self) -> bool:
        return any(child.type == "if_statement" for child in named(self.node))

    def value(self) -> dict:
        return self.file.evaluate(self.body)


@dataclass
class Module:
    symbol: str
    source: str
    node: Node
    file: BicepFile

    @property
    def conditional(self) -> bool:
        return any(child.type == "if_statement" for child in named(self.node))

    @property
    def target(self) -> BicepFile:
        return BicepFile.load((self.file.path.parent / self.source).resolve())

    def param_nodes(self) -> dict[str, Node]:
        for prop in named(body_object(self.node)):
            if prop.type == "object_property" and key_of(prop) == "params":
                value = named(prop)[-1]
                return {key_of(p): named(p)[-1] for p in named(value)
                        if p.type == "object_property"}
        return {}


@dataclass
class BicepFile:
    path: Path
    bindings: dict[str, object] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, bindings: dict[str, object] | None = None) -> BicepFile:
        return cls(path.resolve(), dict(bindings or {}))

    @cached_property
    def tree(self) -> Tree:
        return PARSER.parse(self.path.read_bytes())

    def top(self, kind: str) -> Iterator[Node]:
        return (node for node in named(self.tree.root_node) if node.type == kind)

    @cached_property
    def params(self) -> dict[str, Node | None]:
        """Parameter name -> its default value node (None when it has none)."""
        out = {}
        for node in self.top("parameter_declaration"):
            children = named(node)
            default = children[2] if len(children) > 2 else None
            out[children[0].text.decode()] = default
        return out

    def decorators(self, param: str) -> set[str]:
        """The decorators of parameter ``param`` as written, without '@' (``minValue(40)``)."""
        top = named(self.tree.root_node)
        for before, node in itertools.pairwise(top):
            if node.type == "parameter_declaration" and named(node)[0].text.decode() == param:
                if before.type != "decorators":
                    return set()
                return {d.text.decode().removeprefix("@") for d in named(before)}
        raise KeyError(param)

    @cached_property
    def variables(self) -> dict[str, Node]:
        return {named(node)[0].text.decode(): named(node)[1]
                for node in self.top("variable_declaration")}

    @cached_property
    def modules(self) -> dict[str, Module]:
        out = {}
        for node in self.top("module_declaration"):
            symbol, source = named(node)[:2]
            out[symbol.text.decode()] = Module(symbol.text.decode(), string_literal(source),
                                               node, self)
        return out

    def module_file(self, symbol: str) -> BicepFile:
        """The module's file, its parameters bound to what this file passes."""
        module = self.modules[symbol]
        bindings = {name: self.evaluate(node) for name, node in module.param_nodes().items()}
        return BicepFile.load(module.target.path, bindings)

    @cached_property
    def resources(self) -> list[Resource]:
        """Every resource declaration, nested ones included (with their full type)."""
        found: list[Resource] = []

        def visit(node: Node, parent_type: str | None, parent_api: str | None) -> None:
            symbol, type_node = named(node)[:2]
            spec = string_literal(type_node)
            type_name, _, api = spec.partition("@")
            if parent_type is not None:
                type_name = f"{parent_type}/{type_name}"
                api = api or parent_api or ""
            found.append(Resource(symbol.text.decode(), type_name, api, node, self))
            for prop in named(body_object(node)):
                nested = named(prop)[0] if prop.type == "object_property" else None
                if nested is not None and nested.type == "resource_declaration":
                    visit(nested, type_name, api)

        for node in self.top("resource_declaration"):
            visit(node, None, None)
        return found

    def resources_of(self, type_name: str) -> list[Resource]:
        return [r for r in self.resources if r.type.lower() == type_name.lower()]

    def lookup(self, name: str) -> object:
        if name in self.bindings:
            return self.bindings[name]
        if name in self.variables:
            return self.evaluate(self.variables[name])
        if self.params.get(name) is not None:
            return self.evaluate(self.params[name])
        return Expr(name)

    def _interpolated(self, part: Node) -> str:
        """A ``${...}`` part: its value where known, else kept as ``${expression}``."""
        if part.type != "interpolation":
            return ""
        value = self.evaluate(named(part)[0])
        return str(value) if known(value) else "${" + str(value) + "}"

    def evaluate(self, node: Node) -> object:
        kind = node.type
        if kind == "string":
            text = string_text(node, self._interpolated)
            return Expr(text) if "${" in text else text
        if kind == "boolean":
            return node.text.decode() == "true"
        if kind == "number":
            return int(node.text.decode())
        if kind == "null":
            return None
        if kind == "array":
            return [self.evaluate(item) for item in named(node)]
        if kind == "object":
            out = {}
            for prop in named(node):
                if prop.type == "object_property":
                    key = named(prop)[0]
                    name = str(self.evaluate(key)) if key.type == "string" else key_of(prop)
                    out[name] = self.evaluate(named(prop)[-1])
            return out
        if kind == "identifier":
            return self.lookup(node.text.decode())
        if kind == "parenthesized_expression":
            return self.evaluate(named(node)[0])
        if kind == "call_expression":
            function, arguments = named(node)[0].text.decode(), named(named(node)[1])
            values = [self.evaluate(argument) for argument in arguments]
            if function in FUNCTIONS and all(known(value) for value in values):
                return FUNCTIONS[function](*values)
        return Expr(node.text.decode())


def known(value: object) -> bool:
    return isinstance(value, str | int | bool) and not isinstance(value, Expr)


# The few pure template functions the tests need evaluated when their arguments are known.
FUNCTIONS = {
    "replace": lambda text, old, new: text.replace(old, new),
    "toLower": lambda text: text.lower(),
    "toUpper": lambda text: text.upper(),
    "string": lambda value: str(value).lower() if isinstance(value, bool) else str(value),
}


def dig(value: object, *path: str) -> object:
    """value[path[0]][path[1]]..., or None where a key is absent."""
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def walk(node: Node) -> Iterator[Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))
