"""Declarative input schemas: one description validates input and documents it.

The JSON API, the page forms, the CSV import and the CLI all parse input
through a :class:`Schema`, and the OpenAPI document is generated from the same
schemas, so the document cannot drift from what the handlers accept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Literal

from server.errors import ValidationFailed

Kind = Literal["string", "integer", "boolean", "datetime", "integer_list"]
# What a string may hold: "line" (a name, a title: no control character at all), "lines" (a
# description, a question: line breaks and tabs too), "raw" (an SDP, a password: anything but NUL).
Text = Literal["line", "lines", "raw"]

# Never in a name, a title or a message: C0 and C1 controls, DEL; bidirectional embeddings,
# overrides, isolates and marks (U+202E makes "exe.txt" read "txt.exe"); zero-width characters
# and the BOM (invisible differences between two names that look the same); line and paragraph
# separators. "lines" allows \t, \n and \r.
_UNSAFE = ("\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
           "\ufff9-\ufffb")
_UNSAFE_IN = {
    "line": re.compile(f"[{_UNSAFE}]"),
    "lines": re.compile(f"(?![\t\n\r])[{_UNSAFE}]"),
}
# The same rules for the OpenAPI document (ECMA-262 patterns): no character the field refuses, and
# no whitespace at either end (the validators strip it before measuring the length).
_DOC_UNSAFE = {
    "line": "\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u2064\\u2066-\\u206f"
            "\\ufeff\\ufff9-\\ufffb",
    "lines": "\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f\\u061c\\u200b-\\u200f\\u2028-\\u202e"
             "\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb",
    "raw": "\\u0000",
}


def _doc_pattern(text: Text) -> str:
    unsafe = _DOC_UNSAFE[text]
    return f"^(?:[^{unsafe}\\s](?:[^{unsafe}]*[^{unsafe}\\s])?)?$"


def unsafe_characters(value: str, text: Text = "line") -> bool:
    """True when ``value`` holds a character ``text`` does not allow (see ``_UNSAFE``)."""
    pattern = _UNSAFE_IN.get(text)
    return "\x00" in value if pattern is None else pattern.search(value) is not None

# The databases' INTEGER (PostgreSQL's is 32-bit): an id or a count beyond it is refused here,
# never sent to the database to fail there.
DB_INT_MIN, DB_INT_MAX = -(2**31), 2**31 - 1


def digits(raw: str, maximum: int = DB_INT_MAX) -> int | None:
    """``raw`` as a non-negative integer if it is ASCII digits only and at most ``maximum``, else None.

    ``str.isdigit`` accepts "²" and other digits ``int`` refuses, and ``int``
    accepts thousands of digits: every id or number read from a URL goes
    through here.
    """
    if not raw or len(raw) > len(str(maximum)) or not (raw.isascii() and raw.isdigit()):
        return None
    value = int(raw)
    return value if value <= maximum else None
_TRUE = {"1", "true", "on", "yes"}
_FALSE = {"0", "false", "off", "no", ""}
# Fields every page form carries besides its data.
FORM_EXTRAS = {"csrf_token", "next"}


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind = "string"
    required: bool = True
    nullable: bool = False
    min_length: int = 0
    max_length: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    max_items: int = 1000
    description: str = ""
    default: Any = None
    text: Text = "line"

    def openapi(self) -> dict[str, Any]:
        spec: dict[str, Any]
        if self.kind == "string":
            spec = {"type": "string"}
            least = max(self.min_length, 1 if self.required else 0)
            if least:
                spec["minLength"] = least
            if self.max_length is not None:
                spec["maxLength"] = self.max_length
            if self.choices:
                spec["enum"] = list(self.choices)
            else:
                spec["pattern"] = _doc_pattern(self.text)
                if self.pattern:
                    spec["allOf"] = [{"pattern": f"^(?:{self.pattern})$"}]
        elif self.kind == "integer":
            spec = {"type": "integer",
                    "minimum": DB_INT_MIN if self.minimum is None else self.minimum,
                    "maximum": DB_INT_MAX if self.maximum is None else self.maximum}
        elif self.kind == "boolean":
            spec = {"type": "boolean"}
        elif self.kind == "datetime":
            # With its UTC offset (RFC 3339), in the years the validators take.
            spec = {"type": "string", "format": "date-time", "pattern": "^2[01][0-9]{2}-"}
        else:
            spec = {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": DB_INT_MAX},
                    "maxItems": self.max_items}
        if self.nullable:
            spec = {"anyOf": [spec, {"type": "null"}]}
        if self.description:
            spec["description"] = self.description
        return spec


@dataclass(frozen=True)
class Schema:
    name: str
    fields: tuple[Field, ...]
    description: str = ""
    _by_name: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {f.name: f for f in self.fields})

    def parse(
        self,
        data: Any,
        *,
        partial: bool = False,
        forms: bool = False,
        local_zone: tzinfo | None = None,
    ) -> dict[str, Any]:
        """Validate ``data`` and return the typed values.

        ``partial`` (PATCH): absent fields are left out instead of required.
        ``forms``: values come from an HTML form or CSV, all strings; an empty
        string then means "not given".  ``local_zone``: a datetime without an
        offset is read in this zone (forms); without it, an offset is required.
        """
        if not isinstance(data, Mapping):
            raise ValidationFailed.one("", "not_an_object", "the body must be a JSON object")
        errors: list[dict[str, str]] = []
        unknown = sorted(set(data) - set(self._by_name) - (FORM_EXTRAS if forms else set()))
        for name in unknown:
            errors.append({"field": name, "code": "unknown_field", "message": f"unknown field {name!r}"})
        result: dict[str, Any] = {}
        for spec in self.fields:
            present = spec.name in data
            raw = data.get(spec.name)
            if forms and spec.kind == "boolean" and not partial:
                # An unchecked checkbox is simply absent from a form.
                present, raw = True, raw if raw is not None else "0"
            if forms and raw == "" and spec.kind != "string":
                present, raw = (not spec.required and not partial), None
            if not present:
                if spec.required and not partial:
                    errors.append({"field": spec.name, "code": "required", "message": f"{spec.name} is required"})
                elif not partial and spec.default is not None:
                    result[spec.name] = spec.default
                continue
            try:
                result[spec.name] = _convert(spec, raw, forms=forms, local_zone=local_zone)
            except _Invalid as problem:
                errors.append({"field": spec.name, "code": problem.code, "message": f"{spec.name}: {problem.text}"})
        if errors:
            raise ValidationFailed(errors)
        return result

    def openapi(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {f.name: f.openapi() for f in self.fields},
        }
        required = [f.name for f in self.fields if f.required]
        if required:
            schema["required"] = required
        if self.description:
            schema["description"] = self.description
        return schema

    def partial(self) -> Schema:
        """The same fields, none required (for PATCH bodies in the document)."""
        # A field left out is fine; one given is checked as usual (a required string is still not empty).
        fields = tuple(Field(**{**f.__dict__, "required": False,
                                "min_length": max(f.min_length, 1 if f.required and f.kind == "string" else 0)})
                       for f in self.fields)
        return Schema(f"{self.name}Patch", fields, self.description)


class _Invalid(Exception):
    def __init__(self, code: str, text: str) -> None:
        self.code = code
        self.text = text


def _convert(spec: Field, raw: Any, *, forms: bool, local_zone: tzinfo | None) -> Any:
    if raw is None:
        if spec.nullable or (forms and not spec.required):
            return None
        raise _Invalid("null", "may not be null")
    if spec.kind == "string":
        return _string(spec, raw)
    if spec.kind == "integer":
        return _integer(spec, raw, forms)
    if spec.kind == "boolean":
        if isinstance(raw, bool):
            return raw
        if forms and isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise _Invalid("not_boolean", "must be true or false")
    if spec.kind == "datetime":
        return _datetime(raw, local_zone)
    return _integer_list(spec, raw, forms)


def _string(spec: Field, raw: Any) -> str:
    if not isinstance(raw, str):
        raise _Invalid("not_string", "must be a string")
    value = raw.strip()
    if unsafe_characters(value, spec.text):
        raise _Invalid("invalid_characters", "contains a control, bidirectional or invisible character")
    if len(value) < max(spec.min_length, 1 if spec.required else 0):
        raise _Invalid("too_short" if value else "required", f"must have at least {max(spec.min_length, 1)} characters")
    if spec.max_length is not None and len(value) > spec.max_length:
        raise _Invalid("too_long", f"must have at most {spec.max_length} characters")
    if spec.choices and value not in spec.choices:
        raise _Invalid("invalid_choice", f"must be one of {', '.join(spec.choices)}")
    if spec.pattern and value and not re.fullmatch(spec.pattern, value):
        raise _Invalid("invalid_format", f"must match {spec.pattern}")
    return value


def _integer(spec: Field, raw: Any, forms: bool) -> int:
    if isinstance(raw, bool):
        raise _Invalid("not_integer", "must be an integer")
    if isinstance(raw, float) and raw.is_integer() and abs(raw) <= 2**53:
        raw = int(raw)  # JSON has numbers, not integers: 3.0 is 3 (JSON Schema agrees)
    if forms and isinstance(raw, str) and re.fullmatch(r"-?[0-9]{1,18}", raw.strip()):
        raw = int(raw.strip())
    if not isinstance(raw, int):
        raise _Invalid("not_integer", "must be an integer")
    if spec.minimum is None and raw < DB_INT_MIN:
        raise _Invalid("too_small", f"must be at least {DB_INT_MIN}")
    if spec.maximum is None and raw > DB_INT_MAX:
        raise _Invalid("too_large", f"must be at most {DB_INT_MAX}")
    if spec.minimum is not None and raw < spec.minimum:
        raise _Invalid("too_small", f"must be at least {spec.minimum}")
    if spec.maximum is not None and raw > spec.maximum:
        raise _Invalid("too_large", f"must be at most {spec.maximum}")
    return raw


def _datetime(raw: Any, local_zone: tzinfo | None) -> datetime:
    if not isinstance(raw, str) or len(raw) > 40:
        raise _Invalid("not_datetime", "must be an ISO 8601 date and time")
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise _Invalid("not_datetime", "must be an ISO 8601 date and time") from None
    if value.tzinfo is None:
        if local_zone is None:
            raise _Invalid("timezone_required", "must include a UTC offset, e.g. 2026-12-01T08:00:00+07:00")
        value = value.replace(tzinfo=local_zone)
    if not 2000 <= value.year <= 2200:
        raise _Invalid("out_of_range", "year must be between 2000 and 2200")
    return value


def _integer_list(spec: Field, raw: Any, forms: bool) -> list[int]:
    if forms and isinstance(raw, str):
        raw = [part for part in raw.split(",") if part.strip()]
    if not isinstance(raw, list):
        raise _Invalid("not_list", "must be a list of ids")
    if len(raw) > spec.max_items:
        raise _Invalid("too_many", f"must have at most {spec.max_items} items")
    values: list[int] = []
    for item in raw:
        if forms and isinstance(item, str) and digits(item.strip()) is not None:
            item = int(item.strip())
        if isinstance(item, float) and item.is_integer() and abs(item) <= 2**53:
            item = int(item)
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= DB_INT_MAX:
            raise _Invalid("not_id_list", "must be a list of positive integer ids")
        if item not in values:
            values.append(item)
    return values
