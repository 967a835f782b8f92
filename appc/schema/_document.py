"""Reading and writing whole manifest documents.

A document is read in four steps:

1. JSON text → Python values (a syntax error names its line and column);
2. **canonical keys**: object keys are matched to the spec's field names
   case-insensitively, the last of several spellings winning and ``null`` members
   dropped -- the reference (Go ``encoding/json``) decoder's rules.  The walk is driven
   by the JSON Schemas in ``schemas/``, so the field names live in one place;
3. the **structural pass**: the JSON Schema validates the canonical document
   (``jsonschema`` is imported only here, so tools that never validate stay quick);
4. the **semantic pass**: the attrs classes convert every field, collecting every error
   with its path.  The two passes must agree on what is invalid (a test corpus checks
   it); the semantic messages are the precise ones, so a structural error is reported
   only where no semantic error covers the same field.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import pathlib
import re
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from appc.errors import InvalidManifest, Path, ValidationError
from appc.types._struct import Struct

__all__ = [
    "MAX_DEPTH",
    "SCHEMA_IDS",
    "canonicalize",
    "dumps",
    "load_schema",
    "loads",
    "merge_errors",
    "read_document",
    "structural_errors",
]

#: The ``$id`` of each schema file, by file name.
SCHEMA_IDS = {
    "appc-types.schema.json": "urn:appc:schema:0.8.11:types",
    "image-manifest.schema.json": "urn:appc:schema:0.8.11:image-manifest",
    "pod-manifest.schema.json": "urn:appc:schema:0.8.11:pod-manifest",
}


def _schema_text(filename: str) -> str:
    # Installed wheels carry the schemas as the package ``appc.schemas``; a source
    # checkout (or a default editable install) reads the repository's ``schemas/``.
    try:
        return importlib.resources.files("appc.schemas").joinpath(filename).read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        repo = pathlib.Path(__file__).resolve().parents[2] / "schemas" / filename
        return repo.read_text("utf-8")


@functools.cache
def _schemas() -> dict[str, dict[str, Any]]:
    return {SCHEMA_IDS[name]: json.loads(_schema_text(name)) for name in SCHEMA_IDS}


def load_schema(filename: str) -> dict[str, Any]:
    """Return the parsed JSON Schema shipped as *filename* (e.g. ``image-manifest.schema.json``)."""
    return _schemas()[SCHEMA_IDS[filename]]


# --- 1. JSON text ---------------------------------------------------------------------

#: The deepest nesting of arrays and objects a document may have.  Real manifests nest
#: about ten levels; the limit keeps every recursive step of reading (and writing)
#: well inside Python's recursion limit.  Go's decoder allows 10000 levels.
MAX_DEPTH = 128


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as written: its members in order, duplicates kept."""


def _children(value: Any) -> list[Any] | None:
    if isinstance(value, _Pairs):
        return [member for _, member in value]
    if isinstance(value, Mapping):
        return list(value.values())
    if isinstance(value, (list, tuple)):
        return list(value)
    return None


def _too_deep(value: Any) -> bool:
    """True when *value* nests arrays and objects more than :data:`MAX_DEPTH` levels (no recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = _children(node)
        if children is None:
            continue
        if depth > MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


_SURROGATE = re.compile("[\ud800-\udfff]")


def _replace_surrogates(value: Any) -> Any:
    """Replace lone UTF-16 surrogates (from escapes such as ``\\ud800``) with U+FFFD, as Go does.

    Python's decoder keeps them, and a string holding one cannot be written as UTF-8.
    """
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, _Pairs):
        return _Pairs((_replace_surrogates(k), _replace_surrogates(v)) for k, v in value)
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes | str, *, what: str = "manifest") -> Any:
    """Parse JSON text as Go does: invalid UTF-8 becomes U+FFFD, ``NaN``/``Infinity`` are refused.

    Objects come back as ordered member lists so that the canonical-key step can apply
    the last-one-wins rule to duplicate and differently-cased keys.  Lone surrogates
    (``"\\ud800"``) become U+FFFD, as in Go.

    :raises ValidationError: ``invalid JSON at line L, column C: ...``, or a document
        nested more than :data:`MAX_DEPTH` levels.
    """
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    try:
        value = json.loads(text, object_pairs_hook=_Pairs, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise ValidationError(
            f"invalid JSON in {what} at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from None
    except (ValueError, RecursionError) as err:
        raise ValidationError(f"invalid JSON in {what}: {err}") from None
    if _too_deep(value):
        raise ValidationError(f"invalid JSON in {what}: nested more than {MAX_DEPTH} levels deep")
    return _replace_surrogates(value)


_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def dumps(value: Any, *, indent: int | None = None) -> str:
    """Serialize like Go's ``json.Marshal`` (compact, HTML characters escaped) or ``MarshalIndent``."""
    separators = (",", ":") if indent is None else (",", ": ")
    text = json.dumps(value, ensure_ascii=False, separators=separators, indent=indent)
    # Outside strings JSON has none of these characters, so replacing them everywhere is safe.
    return text.translate(_GO_ESCAPES)


# --- 2. canonical keys ----------------------------------------------------------------


def _resolve(ref: str, base: str) -> tuple[dict[str, Any], str]:
    target, _, pointer = ref.partition("#")
    doc_id = target or base
    node: Any = _schemas()[doc_id]
    for part in pointer.split("/")[1:]:
        node = node[part]
    return node, doc_id


def _if_matches(condition: Mapping[str, Any], obj: Mapping[str, Any]) -> bool:
    """Evaluate the small ``if`` subset our schemas use: required members with const/enum."""
    for key in condition.get("required", ()):
        if key not in obj:
            return False
    for key, rule in condition.get("properties", {}).items():
        if key not in obj:
            continue
        if "const" in rule and obj[key] != rule["const"]:
            return False
        if "enum" in rule and obj[key] not in rule["enum"]:
            return False
    return True


def _plain(value: Any) -> Any:
    if isinstance(value, _Pairs):
        return {k: _plain(v) for k, v in value}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _subschemas(schema: Mapping[str, Any], base: str) -> list[tuple[Mapping[str, Any], str]]:
    """*schema* with every ``$ref`` and ``anyOf``/``allOf`` branch flattened into a list."""
    out = [(schema, base)]
    if "$ref" in schema:
        target, target_base = _resolve(schema["$ref"], base)
        out.extend(_subschemas(target, target_base))
    for branch in schema.get("anyOf", ()):
        out.extend(_subschemas(branch, base))
    return out


def _canonical(value: Any, schema: Mapping[str, Any] | bool, base: str) -> Any:
    if isinstance(schema, bool):
        return _plain(value)
    parts = _subschemas(schema, base)
    if isinstance(value, (_Pairs, Mapping)):
        members = value if isinstance(value, _Pairs) else list(value.items())
        properties: dict[str, tuple[Mapping[str, Any] | bool, str]] = {}
        for part, part_base in parts:
            for name, sub in part.get("properties", {}).items():
                properties.setdefault(name, (sub, part_base))
        if not properties:
            return _plain(value)
        folded = {name.casefold(): name for name in properties}
        obj: dict[str, Any] = {}
        for key, member in members:
            name = key if key in properties else folded.get(key.casefold(), key)
            obj.pop(name, None)  # the last spelling wins, and takes its place in the order
            if member is not None:
                obj[name] = member
        # Conditional branches (isolator values by name, volume rules by kind).
        for part, part_base in parts:
            for rule in part.get("allOf", ()):
                if "if" in rule and _if_matches(rule["if"], _plain(obj)):
                    for name, sub in rule.get("then", {}).get("properties", {}).items():
                        properties[name] = (sub, part_base)
        return {
            key: _canonical(member, *properties[key]) if key in properties else _plain(member)
            for key, member in obj.items()
        }
    if isinstance(value, list):
        for part, part_base in parts:
            if "items" in part:
                return [_canonical(v, part["items"], part_base) for v in value]
        return _plain(value)
    return value


def canonicalize(document: Any, filename: str) -> Any:
    """Return *document* with the spec's key spelling, as the reference decoder reads it.

    :param document: parsed JSON (from :func:`loads`) or plain dicts and lists.
    :param filename: the schema describing it, e.g. ``image-manifest.schema.json``.
    """
    schema_id = SCHEMA_IDS[filename]
    return _canonical(document, _schemas()[schema_id], schema_id)


# --- 3. structural pass ---------------------------------------------------------------


@functools.cache
def _validator(filename: str) -> Any:
    import jsonschema  # noqa: PLC0415 - heavy; only validation needs it
    import referencing  # noqa: PLC0415

    registry: referencing.Registry[Any] = referencing.Registry().with_resources(
        (schema_id, referencing.Resource.from_contents(schema))
        for schema_id, schema in _schemas().items()
    )

    def ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
        # JSON Schema patterns are ECMA-262: '$' is the end of the string.  Python's '$'
        # also matches before a final newline, so a match must reach the end.
        if not isinstance(instance, str):
            return
        match = re.search(pattern, instance)
        if match is None or (pattern.endswith("$") and match.end() != len(instance)):
            yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")

    cls = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        jsonschema.Draft202012Validator, {"pattern": ecma_pattern}
    )
    return cls(load_schema(filename), registry=registry)


def _branch_errors(error: Any) -> Iterator[Any]:
    """*error* itself or, for an ``anyOf`` that failed, the errors of the branch meant.

    ``app: {anyOf: [null, App]}`` would otherwise give one vague error at ``app`` for
    any fault inside the app.  The branch meant is the one whose errors lie deepest in
    the document; on a tie, the later branch (the object, after the null).
    """
    if error.validator not in ("anyOf", "oneOf") or not error.context:
        yield error
        return
    branches: dict[int, list[Any]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    _, meant = max(
        branches.items(), key=lambda item: (max(len(e.absolute_path) for e in item[1]), item[0])
    )
    for sub in meant:
        yield from _branch_errors(sub)


def _converted(error: Any) -> ValidationError:
    path: Path = tuple(error.absolute_path)
    if error.validator == "required":
        # One error per missing member; place it at the member, like the semantic pass.
        name = next(
            n for n in error.validator_value if error.message == f"{n!r} is a required property"
        )
        return ValidationError(f"{name} is required", path=(*path, name))
    return ValidationError(error.message, path=path, value=error.instance)


def structural_errors(document: Any, filename: str) -> list[ValidationError]:
    """Validate a canonical *document* against the schema *filename*; every error, with its path.

    A failed ``anyOf`` is reported by the errors of the branch the document meant (see
    :func:`_branch_errors`), so each error names the innermost bad field.
    """
    return [
        _converted(error)
        for top in _validator(filename).iter_errors(document)
        for error in _branch_errors(top)
    ]


def _related(a: Path, b: Path) -> bool:
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]


def merge_errors(
    semantic: list[ValidationError], structural: list[ValidationError]
) -> list[ValidationError]:
    """The semantic errors, plus each structural error no semantic error covers (same field,
    an enclosing one or one inside it)."""
    merged = list(semantic)
    for error in structural:
        if not any(_related(error.path, other.path) for other in semantic):
            merged.append(error)
    return merged


_D = TypeVar("_D", bound=Struct)


def read_document(cls: type[_D], data: object, schema: str, *, structural: bool = True) -> _D:
    """Read a whole document of class *cls*: canonical keys, structural pass, semantic pass.

    :param data: parsed JSON (from :func:`loads`) or plain dicts.
    :param schema: the schema file describing the document.
    :param structural: run the JSON Schema pass (it imports ``jsonschema``).
    :raises InvalidManifest: with every error found, each with its field path.
    """
    kind = cls.__name__
    if not isinstance(data, (_Pairs, Mapping)):
        what = "array" if isinstance(data, list) else type(data).__name__
        raise InvalidManifest(
            [ValidationError(f"{kind} must be a JSON object, not {what}")], kind=kind
        )
    if _too_deep(data):
        raise InvalidManifest(
            [ValidationError(f"{kind} is nested more than {MAX_DEPTH} levels deep")], kind=kind
        )
    document = canonicalize(data, schema)
    semantic: list[ValidationError] = []
    result: _D | None = None
    try:
        result = cls._from_fields(document)
    except ValidationError as err:
        semantic = list(err.errors)
    errors = merge_errors(semantic, structural_errors(document, schema) if structural else [])
    if errors or result is None:
        raise InvalidManifest(errors, kind=kind)
    return result
