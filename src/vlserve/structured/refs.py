"""References in a client's JSON Schema: each must point at a schema inside that same schema; none is fetched.

``$ref``, ``$dynamicRef`` and ``$recursiveRef`` are resolved with ``referencing``, the library jsonschema
resolves with, against a registry that holds the schema alone and refuses to retrieve anything else
(:data:`NO_RETRIEVAL`): a JSON pointer (``#/$defs/…``, ``#/definitions/…``) and an ``$id`` or
``$anchor`` declared inside the schema resolve; an ``http(s)``, ``file``, ``urn`` or relative reference
does not, and :func:`check_references` refuses it, naming it. Answers are validated against the same
registry, so no reference is ever fetched. A schema whose references loop back without descending
into a property or item (``{"$ref": "#"}``, ``{"allOf": [{"$ref": "#"}]}``) would never finish
validating an answer; it is refused too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import referencing.jsonschema
from referencing import Registry, Resource, Specification
from referencing.exceptions import NoSuchAnchor, NoSuchResource, PointerToNowhere, Unresolvable

from vlserve.errors import ClientError

__all__ = ["NO_RETRIEVAL", "check_references", "specification"]

_REFERENCES = ("$ref", "$dynamicRef", "$recursiveRef")
# Keywords whose subschemas apply to the very value their schema applies to (no property or item of it).
_IN_PLACE_ONE = ("not", "if", "then", "else")
_IN_PLACE_LIST = ("allOf", "anyOf", "oneOf")
_IN_PLACE_MAP = ("dependentSchemas", "dependencies")


def _refuse(uri: str) -> Resource:
    raise NoSuchResource(ref=uri)


NO_RETRIEVAL: Registry = Registry(retrieve=_refuse)  # immutable; every lookup outside a schema fails


def specification(validator: type) -> Specification:
    """The ``referencing`` specification of a jsonschema validator class: where its draft keeps ids and subschemas."""
    dialect = validator.ID_OF(validator.META_SCHEMA) or "urn:unknown-dialect"
    return referencing.jsonschema.specification_with(dialect, default=Specification.OPAQUE)


def _in_place(schema: dict[str, Any]) -> Iterator[Any]:
    """The subschemas of ``schema`` that apply to the same value as ``schema`` itself."""
    for keyword in _IN_PLACE_ONE:
        yield schema.get(keyword)
    for keyword in _IN_PLACE_LIST:
        yield from schema.get(keyword) if isinstance(schema.get(keyword), list) else ()
    for keyword in _IN_PLACE_MAP:
        yield from schema[keyword].values() if isinstance(schema.get(keyword), dict) else ()


def _loop(edges: dict[int, list[tuple[dict[str, Any], str | None]]], nodes: list[dict[str, Any]]) -> str | None:
    """A reference on a loop of in-place edges (depth-first search for a back edge), or None."""
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    for start in nodes:
        if id(start) in state:
            continue
        state[id(start)] = 1
        path = [(start, iter(edges.get(id(start), ())), None)]
        while path:
            for child, ref in path[-1][1]:
                if state.get(id(child)) == 1:
                    on_loop = path[next(i for i, step in enumerate(path) if step[0] is child) + 1 :]
                    return next((r for r in [*(step[2] for step in on_loop), ref] if r is not None), "$ref")
                if id(child) not in state:
                    state[id(child)] = 1
                    path.append((child, iter(edges.get(id(child), ())), ref))
                    break
            else:
                state[id(path.pop()[0])] = 2
    return None


def _unresolvable(param: str, keyword: str, ref: str, why: str) -> ClientError:
    return ClientError(f"{param}: {keyword} {ref!r} {why}", param=param, code="unresolvable_ref")


def check_references(schema: dict[str, Any], validator: type, param: str) -> None:
    """ClientError naming the reference unless every reference in ``schema`` points at a schema inside it
    and none loops back to where it started in place (``validator``: the class that will check answers)."""
    root = specification(validator).create_resource(schema)
    stack = [(root, NO_RETRIEVAL.resolver_with_root(root))]  # as jsonschema walks it, with the same base URIs
    walked: list[tuple[dict[str, Any], Any]] = []
    while stack:
        resource, resolver = stack.pop()
        if isinstance(resource.contents, dict):
            walked.append((resource.contents, resolver))
            stack.extend((sub, resolver.in_subresource(sub)) for sub in resource.subresources())
    subschemas = {id(contents) for contents, _ in walked}
    edges: dict[int, list[tuple[dict[str, Any], str | None]]] = {}
    for contents, resolver in walked:
        out = edges.setdefault(id(contents), [(sub, None) for sub in _in_place(contents) if isinstance(sub, dict)])
        for keyword in (k for k in _REFERENCES if k in contents):
            ref = contents[keyword]
            if not isinstance(ref, str):
                raise ClientError(f"{param}: {keyword} must be a string, got {type(ref).__name__}", param=param)
            try:
                target = resolver.lookup(ref).contents
            except (PointerToNowhere, NoSuchAnchor, ValueError):  # ValueError: a pointer into a list by a name
                raise _unresolvable(param, keyword, ref, "points at nothing in the schema") from None
            except Unresolvable:
                raise _unresolvable(
                    param, keyword, ref, "points outside the schema; references resolve only inside it "
                    "(#/$defs/…, or an $id or $anchor it declares) and are never fetched",
                ) from None  # fmt: skip
            if isinstance(target, dict) and id(target) in subschemas:
                out.append((target, ref))
            elif not isinstance(target, bool):
                raise _unresolvable(param, keyword, ref, "points at something that is not a schema")
    loop = _loop(edges, [contents for contents, _ in walked])
    if loop is not None:
        raise ClientError(
            f"{param}: {loop!r} refers back to a schema it is part of without going into a property or item, "
            "so checking an answer against it would never end",
            param=param,
            code="recursive_ref",
        )
