"""Strict validation of JSON bodies against Microsoft's generated Python SDK models.

Two generator styles are in the pinned packages, so there are two walkers:

* the TypeSpec "hybrid" models (azure-mgmt-compute 39, -network 33, -storage 25): each wire
  property is a ``rest_field(name=..., visibility=[...])`` class attribute, its type the class
  annotation (``Optional[...]`` when not required);
* the msrest models (azure-mgmt-msi 7.1 ``v2024_11_30``, azure-mgmt-authorization 4.0
  ``v2022_04_01``): ``_attribute_map`` (attribute -> wire key, dotted when flattened, and a type
  string) and ``_validation`` (``readonly``, ``required``).

``validate(body, model, mode)`` returns a list of :class:`Problem` naming the JSON path of each
unknown key, wrong type, missing required property, and (in a request) read-only property. The
mode is ``"create"`` (PUT), ``"update"`` (PATCH) or ``"response"``.
"""

from __future__ import annotations

import datetime
import re
import sys
import typing
from dataclasses import dataclass
from enum import Enum
from typing import Any

# Extensible enums whose members are not the full list of values Azure accepts (VM sizes are
# added every month; the SDK's enum stops at the ones known when the spec was written).
OPEN_ENUMS = {"VirtualMachineSizeTypes"}


@dataclass(frozen=True)
class Problem:
    path: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(body)'}: {self.message}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _check_datetime(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


_DURATION = re.compile(r"^-?P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")


def _check_scalar(kind: str, value: Any) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind in ("int", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "datetime":
        return _check_datetime(value)
    if kind == "duration":
        return isinstance(value, str) and bool(_DURATION.match(value))
    if kind == "any":
        return True
    raise AssertionError(f"unknown scalar kind {kind}")


_SCALAR_WORDS = {
    "str": "string",
    "int": "integer",
    "long": "integer",
    "float": "number",
    "bool": "boolean",
    "datetime": "date-time string",
    "duration": "ISO 8601 duration string",
}


class _Walker:
    def __init__(self, mode: str):
        assert mode in ("create", "update", "response"), mode
        self.mode = mode
        self.problems: list[Problem] = []

    def fail(self, path: str, code: str, message: str) -> None:
        self.problems.append(Problem(path, code, message))

    def scalar(self, kind: str, value: Any, path: str) -> None:
        if not _check_scalar(kind, value):
            self.fail(
                path,
                "InvalidRequestContent",
                f"Error converting value {value!r} ({_type_name(value)}) to type '{_SCALAR_WORDS[kind]}'. Path '{path}'",
            )


# --- the TypeSpec hybrid models ---------------------------------------------------------------


def _is_hybrid(cls: Any) -> bool:
    return isinstance(cls, type) and getattr(cls, "_is_model", False) and not hasattr(cls, "_attribute_map")


_HYBRID_CACHE: dict[type, dict[str, tuple[str, Any, list[str] | None]]] = {}


def _hybrid_fields(cls: type) -> dict[str, tuple[str, Any, list[str] | None]]:
    """wire name -> (attribute, annotation, visibility)."""
    cached = _HYBRID_CACHE.get(cls)
    if cached is not None:
        return cached
    module = sys.modules[cls.__module__]
    package = sys.modules[cls.__module__.rsplit(".", 1)[0]]
    globalns = dict(vars(module))
    globalns["_models"] = package
    hints = typing.get_type_hints(cls, globalns=globalns)
    fields: dict[str, tuple[str, Any, list[str] | None]] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            if attr.startswith("_") or type(value).__name__ != "_RestField":
                continue
            wire = value._rest_name_input or attr
            fields[wire] = (attr, hints.get(attr, Any), value._visibility)
    _HYBRID_CACHE[cls] = fields
    return fields


def _hybrid_concrete(cls: type, value: dict) -> type:
    """The discriminated subclass `value` names, if the class has any."""
    mapping = getattr(cls, "__mapping__", None)
    if not mapping:
        return cls
    for klass in cls.__mro__:
        for field in vars(klass).values():
            if type(field).__name__ == "_RestField" and field._is_discriminator:
                wire = field._rest_name_input
                sub = mapping.get(value.get(wire)) if wire else None
                return sub or cls
    return cls


def _walk_hybrid_type(w: _Walker, ann: Any, value: Any, path: str) -> None:
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if ann is Any:
        return
    if origin is typing.Union:
        non_null = [a for a in args if a is not type(None)]
        if value is None and len(non_null) != len(args):
            return
        enums = [a for a in non_null if isinstance(a, type) and issubclass(a, Enum)]
        if enums and str in non_null:
            if not isinstance(value, str):
                w.scalar("str", value, path)
                return
            enum = enums[0]
            if enum.__name__ in OPEN_ENUMS:
                return
            allowed = [m.value for m in enum]
            if value.lower() not in {str(a).lower() for a in allowed}:
                w.fail(
                    path,
                    "InvalidParameter",
                    f"The value '{value}' of parameter '{path}' is not allowed. Allowed values are: {', '.join(map(str, allowed))}.",
                )
            return
        if len(non_null) == 1:
            _walk_hybrid_type(w, non_null[0], value, path)
            return
        # A union of several types: accept a value any of them takes.
        for option in non_null:
            trial = _Walker(w.mode)
            _walk_hybrid_type(trial, option, value, path)
            if not trial.problems:
                return
        w.fail(path, "InvalidRequestContent", f"Unexpected value {value!r}. Path '{path}'")
        return
    if value is None:
        w.fail(path, "InvalidRequestContent", f"Null is not allowed. Path '{path}'")
        return
    if origin is typing.Literal:
        if value not in args:
            w.fail(path, "InvalidParameter", f"The value {value!r} of '{path}' must be one of {list(args)}")
        return
    if origin is list:
        if not isinstance(value, list):
            w.fail(path, "InvalidRequestContent", f"Expected an array, got {_type_name(value)}. Path '{path}'")
            return
        for i, item in enumerate(value):
            _walk_hybrid_type(w, args[0], item, f"{path}[{i}]")
        return
    if origin is dict:
        if not isinstance(value, dict):
            w.fail(path, "InvalidRequestContent", f"Expected an object, got {_type_name(value)}. Path '{path}'")
            return
        for key, item in value.items():
            _walk_hybrid_type(w, args[1], item, _join(path, key))
        return
    if isinstance(ann, type) and issubclass(ann, Enum):
        if value not in [m.value for m in ann]:
            w.fail(path, "InvalidParameter", f"The value {value!r} of '{path}' is not allowed")
        return
    if _is_hybrid(ann):
        _walk_hybrid_model(w, ann, value, path)
        return
    scalar = {
        str: "str",
        int: "int",
        float: "float",
        bool: "bool",
        datetime.datetime: "datetime",
        datetime.timedelta: "duration",
        datetime.date: "datetime",
    }.get(ann)
    if scalar is None:
        raise AssertionError(f"no rule for the annotation {ann!r} at {path}")
    w.scalar(scalar, value, path)


def _walk_hybrid_model(w: _Walker, cls: type, value: Any, path: str) -> None:
    if not isinstance(value, dict):
        w.fail(path, "InvalidRequestContent", f"Expected an object ({cls.__name__}), got {_type_name(value)}. Path '{path}'")
        return
    cls = _hybrid_concrete(cls, value)
    fields = _hybrid_fields(cls)
    for key, item in value.items():
        sub = _join(path, key)
        field = fields.get(key)
        if field is None:
            w.fail(
                sub,
                "InvalidRequestContent",
                f"Could not find member '{key}' on object of type '{cls.__name__}'. Path '{sub}'",
            )
            continue
        _, ann, visibility = field
        if w.mode != "response" and visibility is not None:
            readonly = visibility == ["read"]
            allowed = ("create", "update") if w.mode == "create" else ("update",)
            if readonly or not any(v in visibility for v in allowed):
                w.fail(
                    sub,
                    "InvalidRequestContent",
                    f"The property '{sub}' is read-only and cannot be set in a request",
                )
                continue
        _walk_hybrid_type(w, ann, item, sub)
    for key, (_, ann, visibility) in fields.items():
        optional = typing.get_origin(ann) is typing.Union and type(None) in typing.get_args(ann)
        if optional or key in value:
            continue
        needed = "read" if w.mode == "response" else ("create" if w.mode == "create" else "update")
        if visibility is None or needed in visibility:
            sub = _join(path, key)
            w.fail(sub, "InvalidRequestContent", f"Required property '{key}' not found in JSON. Path '{sub}'")


# --- the msrest models ------------------------------------------------------------------------

_MSREST_SCALARS = {
    "str": "str",
    "int": "int",
    "long": "int",
    "float": "float",
    "bool": "bool",
    "iso-8601": "datetime",
    "rfc-1123": "any",
    "duration": "duration",
    "date": "datetime",
    "object": "any",
}

_MSREST_CACHE: dict[type, dict] = {}


def _split_key(key: str) -> list[str]:
    # msrest escapes a literal dot in a key as "\\."
    return [part.replace("\\.", ".") for part in re.split(r"(?<!\\)\.", key)]


def _msrest_tree(cls: type) -> dict:
    """Nested dict of wire keys; leaves are (attribute, type string, readonly, required)."""
    cached = _MSREST_CACHE.get(cls)
    if cached is not None:
        return cached
    validation = getattr(cls, "_validation", {}) or {}
    tree: dict = {}
    for attr, spec in cls._attribute_map.items():
        parts = _split_key(spec["key"])
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        rules = validation.get(attr, {})
        node[parts[-1]] = (attr, spec["type"], bool(rules.get("readonly")), bool(rules.get("required")))
    _MSREST_CACHE[cls] = tree
    return tree


def _walk_msrest_type(w: _Walker, module: Any, kind: str, value: Any, path: str) -> None:
    if value is None:
        return
    if kind.startswith("[") and kind.endswith("]"):
        if not isinstance(value, list):
            w.fail(path, "InvalidRequestContent", f"Expected an array, got {_type_name(value)}. Path '{path}'")
            return
        for i, item in enumerate(value):
            _walk_msrest_type(w, module, kind[1:-1], item, f"{path}[{i}]")
        return
    if kind.startswith("{") and kind.endswith("}"):
        if not isinstance(value, dict):
            w.fail(path, "InvalidRequestContent", f"Expected an object, got {_type_name(value)}. Path '{path}'")
            return
        for key, item in value.items():
            _walk_msrest_type(w, module, kind[1:-1], item, _join(path, key))
        return
    if kind in _MSREST_SCALARS:
        w.scalar(_MSREST_SCALARS[kind], value, path)
        return
    model = getattr(module, kind, None)
    if model is None or not hasattr(model, "_attribute_map"):
        raise AssertionError(f"no rule for the msrest type {kind!r} at {path}")
    _walk_msrest_model(w, model, value, path)


def _walk_msrest_node(w: _Walker, cls: type, module: Any, tree: dict, value: Any, path: str) -> None:
    if not isinstance(value, dict):
        w.fail(path, "InvalidRequestContent", f"Expected an object ({cls.__name__}), got {_type_name(value)}. Path '{path}'")
        return
    for key, item in value.items():
        sub = _join(path, key)
        node = tree.get(key)
        if node is None:
            w.fail(
                sub,
                "InvalidRequestContent",
                f"Could not find member '{key}' on object of type '{cls.__name__}'. Path '{sub}'",
            )
            continue
        if isinstance(node, dict):
            if item is not None:
                _walk_msrest_node(w, cls, module, node, item, sub)
            continue
        _, kind, readonly, _ = node
        if readonly and w.mode != "response":
            w.fail(sub, "InvalidRequestContent", f"The property '{sub}' is read-only and cannot be set in a request")
            continue
        _walk_msrest_type(w, module, kind, item, sub)

    def required(node: dict, at: dict | None, prefix: str) -> None:
        for key, child in node.items():
            sub = _join(prefix, key)
            here = at.get(key) if isinstance(at, dict) else None
            if isinstance(child, dict):
                # A present sub-object was checked by the recursion above.
                if here is None:
                    required(child, None, sub)
            elif child[3] and not child[2] and here is None:
                w.fail(sub, "InvalidRequestContent", f"Required property '{key}' not found in JSON. Path '{sub}'")

    required(tree, value, path)


def _walk_msrest_model(w: _Walker, cls: type, value: Any, path: str) -> None:
    subtypes = getattr(cls, "_subtype_map", None)
    if subtypes and isinstance(value, dict):
        for field, mapping in subtypes.items():
            key = cls._attribute_map[field]["key"]
            name = mapping.get(value.get(key))
            if name:
                cls = getattr(sys.modules[cls.__module__], name, cls)
    _walk_msrest_node(w, cls, sys.modules[cls.__module__], _msrest_tree(cls), value, path)


# --- entry point ------------------------------------------------------------------------------


def validate(body: Any, model: type, mode: str) -> list[Problem]:
    """Every problem `body` has as a `mode` body of `model`, by JSON path."""
    w = _Walker(mode)
    if hasattr(model, "_attribute_map"):
        _walk_msrest_model(w, model, body, "")
    elif _is_hybrid(model):
        _walk_hybrid_model(w, model, body, "")
    else:
        raise TypeError(f"{model!r} is not a generated SDK model")
    return w.problems


def walk_all_fields(model: type, seen: set | None = None) -> int:
    """Resolves every field type reachable from `model` (a self-check that every annotation of the
    pinned SDK has a rule); returns how many model classes were visited."""
    seen = set() if seen is None else seen
    if model in seen:
        return 0
    seen.add(model)
    if hasattr(model, "_attribute_map"):
        module = sys.modules[model.__module__]
        for spec in model._attribute_map.values():
            kind = spec["type"].strip("[]{}")
            if kind not in _MSREST_SCALARS:
                sub = getattr(module, kind, None)
                if sub is None:
                    raise AssertionError(f"{model.__name__}: unknown type {kind}")
                walk_all_fields(sub, seen)
        return len(seen)
    for _, ann, _ in _hybrid_fields(model).values():
        stack = [ann]
        while stack:
            t = stack.pop()
            stack.extend(typing.get_args(t))
            if _is_hybrid(t):
                walk_all_fields(t, seen)
    return len(seen)
