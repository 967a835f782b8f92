"""The JSON Schemas and the Python validator agree on structure.

Each document of the generated corpus (``tests/manifest_corpus.py``) goes through

* the JSON Schema pass alone: ``_document.structural_errors`` on the canonical document;
* the Python semantic pass alone: ``from_dict(doc, structural=False)``;
* the full validator (both passes merged): ``from_dict(doc)``.

Every document the schema rejects, the Python pass rejects too.  Documents whose only
problem is structural are rejected by both, at the same field.  The documents the
schema accepts and the Python pass rejects are exactly the SEMANTIC cases, each naming
one rule of :data:`manifest_corpus.SEMANTIC_RULES`: the expected disagreements.
"""

from __future__ import annotations

import json
import pathlib
from collections import Counter
from typing import Any

import jsonschema
import pytest

from appc.errors import InvalidManifest, ValidationError
from appc.schema import ImageManifest, PodManifest, _document
from tests.manifest_corpus import (
    IMAGE_SCHEMA,
    POD_SCHEMA,
    SEMANTIC,
    SEMANTIC_RULES,
    STRUCTURAL,
    VALID,
    Case,
    all_cases,
)

SCHEMAS_DIR = pathlib.Path(__file__).resolve().parents[1] / "schemas"
CASES = all_cases()
READERS: dict[str, type[ImageManifest] | type[PodManifest]] = {
    IMAGE_SCHEMA: ImageManifest,
    POD_SCHEMA: PodManifest,
}


def within(inner: str, outer: str) -> bool:
    """True when the dotted field *inner* is *outer* or lies inside it."""
    return inner == outer or inner.startswith((f"{outer}.", f"{outer}["))


def related(a: str, b: str) -> bool:
    """True when the dotted fields *a* and *b* are the same, or one encloses the other."""
    if a == b or "" in (a, b):
        return True
    short, long = sorted((a, b), key=len)
    return long.startswith(short) and long[len(short)] in ".["


_SCHEMA_RESULTS: dict[str, list[ValidationError]] = {}
_SEMANTIC_RESULTS: dict[str, list[ValidationError] | None] = {}


def schema_pass(case: Case) -> list[ValidationError]:
    """The JSON Schema pass alone, on the canonical document (computed once per case)."""
    if case.id not in _SCHEMA_RESULTS:
        canonical = _document.canonicalize(case.document, case.schema)
        _SCHEMA_RESULTS[case.id] = _document.structural_errors(canonical, case.schema)
    return _SCHEMA_RESULTS[case.id]


def semantic_pass(case: Case) -> list[ValidationError] | None:
    """The Python semantic pass alone: its errors, or None when it accepts the document."""
    if case.id not in _SEMANTIC_RESULTS:
        try:
            READERS[case.schema].from_dict(case.document, structural=False)
        except InvalidManifest as err:
            assert err.errors, "an InvalidManifest always lists its errors"
            _SEMANTIC_RESULTS[case.id] = list(err.errors)
        else:
            _SEMANTIC_RESULTS[case.id] = None
    return _SEMANTIC_RESULTS[case.id]


# --- the schema files --------------------------------------------------------------------


@pytest.mark.parametrize("filename", sorted(_document.SCHEMA_IDS))
def test_schema_file_is_a_valid_draft_2020_12_schema(filename: str) -> None:
    schema = json.loads((SCHEMAS_DIR / filename).read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == _document.SCHEMA_IDS[filename]
    assert _document.load_schema(filename) == schema


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _registry() -> Any:
    from referencing import Registry, Resource

    registry: Registry[Any] = Registry()
    return registry.with_resources(
        (schema_id, Resource.from_contents(json.loads((SCHEMAS_DIR / name).read_text("utf-8"))))
        for name, schema_id in _document.SCHEMA_IDS.items()
    )


@pytest.mark.parametrize("filename", sorted(_document.SCHEMA_IDS))
def test_every_schema_reference_resolves(filename: str) -> None:
    resolver = _registry().resolver(base_uri=_document.SCHEMA_IDS[filename])
    refs = _refs(_document.load_schema(filename))
    assert refs
    for ref in refs:
        assert isinstance(resolver.lookup(ref).contents, dict), ref


def test_schema_files_work_with_plain_jsonschema() -> None:
    # Another tool can validate with the shipped files and jsonschema alone (for a
    # canonical document: exact key spelling, as the schemas describe).
    validator = jsonschema.Draft202012Validator(
        json.loads((SCHEMAS_DIR / IMAGE_SCHEMA).read_text("utf-8")), registry=_registry()
    )
    base = next(c for c in CASES if c.id == "image:base")
    assert list(validator.iter_errors(base.document)) == []
    bad = dict(base.document, name="Not Valid")
    assert [e.json_path for e in validator.iter_errors(bad)] == ["$.name"]


# --- the corpus --------------------------------------------------------------------------


def test_corpus_is_large_and_varied() -> None:
    counts = Counter((case.schema, case.expect) for case in CASES)
    assert len(CASES) >= 150
    for schema in (IMAGE_SCHEMA, POD_SCHEMA):
        assert counts[schema, VALID] >= 20
        assert counts[schema, STRUCTURAL] >= 60
        assert counts[schema, SEMANTIC] >= 10
    assert len({case.id for case in CASES}) == len(CASES)
    assert {case.rule for case in CASES if case.expect == SEMANTIC} == set(SEMANTIC_RULES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_corpus_case(case: Case) -> None:
    structural = schema_pass(case)
    semantic = semantic_pass(case)
    reader = READERS[case.schema]

    # The invariant: what the schema rejects, the Python pass rejects.
    if structural:
        assert semantic is not None, f"schema rejects, Python accepts: {structural}"

    if case.expect == VALID:
        assert structural == []
        assert semantic is None
        # Both passes accept it, so the full validator does; it also round-trips.
        manifest = reader.from_dict(case.document, structural=False)
        assert reader.from_json(manifest.to_json(), structural=False) == manifest
        return

    assert semantic is not None
    semantic_fields = [e.field for e in semantic]
    if case.expect == STRUCTURAL:
        assert structural, "a structural fault must be seen by the schema"
        # Both passes point at the field that was changed (or inside it).
        assert any(within(e.field, case.field) for e in structural), (
            case.field, [e.field for e in structural])
        assert any(within(f, case.field) for f in semantic_fields), (case.field, semantic_fields)
    else:
        assert case.expect == SEMANTIC
        assert structural == [], "a semantic-only rule must not be in the schema"
        assert case.field in semantic_fields

    # The full validator reports every semantic error, and something for each
    # structural one (the semantic error covering it, or the structural error itself).
    with pytest.raises(InvalidManifest) as info:
        reader.from_dict(case.document)
    merged = [e.field for e in info.value.errors]
    assert merged[: len(semantic_fields)] == semantic_fields
    for error in structural:
        assert any(related(error.field, f) for f in merged)


def test_expected_disagreements_are_exactly_the_semantic_cases() -> None:
    disagreements = {}
    for case in CASES:
        if not schema_pass(case) and semantic_pass(case) is not None:
            disagreements[case.id] = case.rule
    semantic_cases = {case.id: case.rule for case in CASES if case.expect == SEMANTIC}
    assert disagreements == semantic_cases
    assert sorted(set(disagreements.values())) == sorted(SEMANTIC_RULES)


def test_structural_error_messages_name_their_field() -> None:
    case = next(c for c in CASES if c.id == "image:type:app.ports[0].port=string")
    (error,) = schema_pass(case)
    assert error.field == "app.ports[0].port"
    assert error.message == "'x' is not of type 'integer'"
    case = next(c for c in CASES if c.id == "image:struct:app.user=<deleted>")
    (error,) = schema_pass(case)
    assert (error.field, error.message) == ("app.user", "user is required")
