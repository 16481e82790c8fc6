"""FlowTemplate expansion: a template's tree + a Flow's arguments -> a plain Flow spec. Pure.

Placeholders, in the strings of a node's `name`, `queueName`, `data` and `opts` values:

- `${params.NAME}`: the argument NAME (or the parameter's default);
- `${item}` / `${item.FIELD}`: inside a node repeated by `withItems`, the current item (or one
  field of it, when the item is an object);
- `${schedule.time}` / `${schedule.date}`: whatever the caller puts in `context` (a CronFlow).

A string that is exactly one placeholder takes the value's JSON type (a number stays a number,
an object stays an object); inside a longer string a value is written as text (strings as they
are, anything else as compact JSON). `$${` writes a literal `${`. Nothing is evaluated: a
placeholder is a name and at most one field, looked up in a dict. Substitution is one pass over
the template's own text, so an argument whose value contains `${...}` stays literal.

Fan-out: a node with `withItems` (a literal list, or a string that is exactly one placeholder
naming a list) stands for one copy of itself per item, in order, with `${item}` bound; a nested
`withItems` binds `${item}` to its own items (the inner one wins, as in Argo's withItems).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from ..models.flow import MAX_DEPTH

# `$${` is an escaped `${`; `${ident}` or `${ident.field}` a placeholder; any other `${...}`
# (or an unclosed one) an error.
_TOKEN = re.compile(r"\$\$\{|\$\{([^{}]*)\}|\$\{")
_PLACEHOLDER = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\.(?P<field>[A-Za-z0-9_-]+))?$")
SUBSTITUTED_NODE_FIELDS = ("name", "queueName", "data", "opts")
NODE_FIELDS = (*SUBSTITUTED_NODE_FIELDS, "children", "withItems")
PARAMETER_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}
# Fields of a FlowTemplate's spec that are not a Flow's: everything else is copied as is.
TEMPLATE_ONLY_FIELDS = ("parameters",)


class TemplateError(Exception):
    """The template cannot be expanded with these arguments. `reason` is the condition reason:
    InvalidArguments (the Flow's fault) or InvalidTemplate (the template's)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class PlaceholderError(ValueError):
    """A placeholder that is malformed or names nothing known."""


def substitute(value: Any, variables: Mapping[str, Any]) -> Any:
    """`value` (any JSON) with every placeholder in its strings replaced from `variables`
    ({"params": {...}, "item": ..., "schedule": {...}}). Object keys are never substituted.
    Raises PlaceholderError."""
    if isinstance(value, str):
        return _substitute_string(value, variables)
    if isinstance(value, list):
        return [substitute(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, variables) for k, v in value.items()}
    return value


def _substitute_string(text: str, variables: Mapping[str, Any]) -> Any:
    whole = _TOKEN.fullmatch(text)
    if whole is not None and whole.group(1) is not None:
        return _lookup(whole.group(1), variables)  # exactly one placeholder: its JSON type

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        if match.group(1) is None:
            raise PlaceholderError(f"unclosed or nested placeholder in {text!r}")
        found = _lookup(match.group(1), variables)
        return found if isinstance(found, str) else _compact(found)

    return _TOKEN.sub(replace, text)


def _lookup(expression: str, variables: Mapping[str, Any]) -> Any:
    match = _PLACEHOLDER.match(expression.strip())
    if match is None:
        raise PlaceholderError(
            f"${{{expression}}} is not a placeholder: use ${{params.NAME}}, ${{item}}, "
            "${item.FIELD} or ${schedule.FIELD}"
        )
    name, field = match["name"], match["field"]
    if name not in variables:
        raise PlaceholderError(f"${{{expression}}}: unknown variable {name!r}{_known(variables)}")
    found = variables[name]
    if field is None:
        return found
    if not isinstance(found, dict) or field not in found:
        raise PlaceholderError(f"${{{expression}}}: {name} has no field {field!r}")
    return found[field]


def _known(variables: Mapping[str, Any]) -> str:
    return f" (known: {', '.join(sorted(variables))})" if variables else ""


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def resolve_arguments(parameters: list[dict[str, Any]], arguments: Mapping[str, Any]) -> dict:
    """The value of every declared parameter: the argument, else its default. Raises
    TemplateError(InvalidArguments) listing every problem."""
    declared = {p["name"]: p for p in parameters}
    problems = [
        f"unknown parameter {name!r} (declared: {', '.join(declared) or 'none'})"
        for name in arguments
        if name not in declared
    ]
    values: dict[str, Any] = {}
    for name, parameter in declared.items():
        if name in arguments:
            value = arguments[name]
        elif parameter.get("required"):
            problems.append(f"parameter {name!r} is required")
            continue
        else:
            value = parameter.get("default")
        problems.extend(_type_problems(name, parameter, value))
        values[name] = value
    if problems:
        raise TemplateError("InvalidArguments", "; ".join(problems))
    return values


def _type_problems(name: str, parameter: Mapping[str, Any], value: Any) -> list[str]:
    wanted = parameter.get("type")
    if value is None and not parameter.get("required"):
        return []  # an optional parameter left unset
    if wanted is not None:
        kinds = PARAMETER_TYPES.get(wanted, ())
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            return [f"parameter {name!r} must be a {wanted}, got {_json_type(value)}"]
    enum = parameter.get("enum")
    if enum is not None and value not in enum:
        return [f"parameter {name!r} must be one of {_compact(enum)}, got {_compact(value)}"]
    return []


def _json_type(value: Any) -> str:
    for name, kinds in PARAMETER_TYPES.items():
        if isinstance(value, bool) == (name == "boolean") and isinstance(value, kinds):
            return name
    return "null"


class _Expander:
    """Walks the template tree once, counting jobs so a fan-out cannot run away."""

    def __init__(self, params: dict[str, Any], context: Mapping[str, Any], max_nodes: int):
        self.base = {**context, "params": params}
        self.max_nodes = max_nodes
        self.count = 0

    def nodes(self, node: Any, item: tuple[Any, ...], where: str, depth: int) -> Iterator[dict]:
        """The copies of one template node (one, or one per item of its withItems)."""
        if not isinstance(node, dict):
            raise TemplateError("InvalidTemplate", f"{where}: a node must be an object")
        if depth > MAX_DEPTH:
            raise TemplateError(
                "InvalidTemplate", f"{where}: deeper than BullMQ's limit of {MAX_DEPTH} levels"
            )
        variables = {**self.base, **({"item": item[0]} if item else {})}
        if "withItems" not in node:
            yield self.node(node, variables, where, depth)
            return
        items = self._substituted(node["withItems"], variables, f"{where}.withItems")
        if not isinstance(items, list):
            raise TemplateError(
                "InvalidTemplate", f"{where}.withItems must be a list, got {_json_type(items)}"
            )
        for index, each in enumerate(items):
            yield self.node(node, {**variables, "item": each}, f"{where}[{index}]", depth)

    def node(self, node: dict, variables: dict[str, Any], where: str, depth: int) -> dict:
        unknown = sorted(set(node) - set(NODE_FIELDS))
        if unknown:
            raise TemplateError("InvalidTemplate", f"{where}: unknown field(s) {unknown}")
        self.count += 1
        if self.count > self.max_nodes:
            raise TemplateError(
                "InvalidTemplate",
                f"the expansion has more than {self.max_nodes} jobs; this operator accepts at "
                f"most {self.max_nodes}",
            )
        out = {
            key: self._substituted(node[key], variables, f"{where}.{key}")
            for key in SUBSTITUTED_NODE_FIELDS
            if key in node
        }
        children = node.get("children") or []
        if not isinstance(children, list):
            raise TemplateError("InvalidTemplate", f"{where}.children must be a list")
        item = (variables["item"],) if "item" in variables else ()
        expanded = [
            copy
            for index, child in enumerate(children)
            for copy in self.nodes(child, item, f"{where}.children[{index}]", depth + 1)
        ]
        if expanded:
            out["children"] = expanded
        return out

    @staticmethod
    def _substituted(value: Any, variables: Mapping[str, Any], where: str) -> Any:
        try:
            return substitute(value, variables)
        except PlaceholderError as err:
            raise TemplateError("InvalidTemplate", f"{where}: {err}") from None


def expand(
    template_spec: Mapping[str, Any],
    arguments: Mapping[str, Any] | None,
    context: Mapping[str, Any] | None = None,
    *,
    max_nodes: int = 50_000,
) -> dict[str, Any]:
    """The Flow spec (wire form: root or roots, prefix, ...) the template makes with these
    arguments; `context`: more variables (e.g. {"schedule": {"time": ..., "date": ...}}).
    Deterministic: the same inputs give the same spec. Raises TemplateError. The result is not
    validated as a FlowSpec here: the caller does (a substituted value may have a wrong type)."""
    params = resolve_arguments(list(template_spec.get("parameters") or []), arguments or {})
    expander = _Expander(params, {k: v for k, v in (context or {}).items()}, max_nodes)
    out = {
        k: v
        for k, v in template_spec.items()
        if k not in TEMPLATE_ONLY_FIELDS and k not in ("root", "roots")
    }
    if "root" in template_spec:
        trees, places = [template_spec["root"]], ["spec.root"]
    elif isinstance(template_spec.get("roots"), list):
        trees = template_spec["roots"]
        places = [f"spec.roots[{index}]" for index in range(len(trees))]
    else:
        raise TemplateError("InvalidTemplate", "the template has no root or roots")
    expanded = [
        copy
        for tree, where in zip(trees, places, strict=True)
        for copy in expander.nodes(tree, (), where, 1)
    ]
    if not expanded:
        raise TemplateError("InvalidTemplate", "the template expands to no jobs (empty withItems)")
    fanned_root = "root" in template_spec and "withItems" in (template_spec["root"] or {})
    if "root" in template_spec and not fanned_root:
        out["root"] = expanded[0]
    else:
        out["roots"] = expanded  # a root repeated by withItems: independent trees
    return out


def spec_digest(spec: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of an expanded spec: equal specs, equal digests."""
    return "sha256:" + hashlib.sha256(_compact(spec).encode()).hexdigest()


def pack(spec: Mapping[str, Any]) -> str:
    """A template's spec as a Flow's status records it (gzip'd canonical JSON, base64): what the
    Flow expands from ever after. The template, not its expansion: a fan-out over 10,000 items
    is larger than a status can hold, its template and arguments (the Flow's spec) are not."""
    return base64.b64encode(gzip.compress(_compact(spec).encode(), mtime=0)).decode()


def unpack(packed: str) -> dict[str, Any]:
    """The spec `pack` recorded. Raises ValueError if it is not one."""
    try:
        spec = json.loads(gzip.decompress(base64.b64decode(packed, validate=True)))
    except (OSError, EOFError, ValueError) as err:
        raise ValueError(f"not a recorded expansion: {err}") from err
    if not isinstance(spec, dict):
        raise ValueError("not a recorded expansion: not an object")
    return spec
