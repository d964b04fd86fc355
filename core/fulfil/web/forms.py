"""HTML forms generated from a module's JSON schema, and reading them back.

A processing module describes its main settings (and connection settings) with a
pydantic model; the core hands the web UI that model's JSON schema. Each property
becomes one labelled input; secrets (``SecretStr``: ``format: password``) become
password inputs that show the mask until staff press "show".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fulfil.secrets import MASK

LONG_TEXT = 1000  # strings that may be longer get a textarea


class FormData:
    """An urlencoded form body: the values of each name, in order."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs = list(pairs)

    @classmethod
    def parse(cls, body: bytes) -> FormData:
        return cls(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))

    def get(self, name: str, default: str | None = None) -> str | None:
        for key, value in self._pairs:
            if key == name:
                return value
        return default

    def getlist(self, name: str) -> list[str]:
        return [v for k, v in self._pairs if k == name]

    def names(self) -> list[str]:
        return list(dict.fromkeys(k for k, _v in self._pairs))

    def __contains__(self, name: str) -> bool:
        return any(k == name for k, _ in self._pairs)

    def with_prefix(self, prefix: str) -> dict[str, str]:
        """``{"domain": …}`` from inputs named ``settings.domain`` (the last value wins)."""
        return {k[len(prefix):]: v for k, v in self._pairs if k.startswith(prefix)}


@dataclass
class Field:
    name: str
    label: str
    kind: str  # text · textarea · password · integer · number · checkbox · select · json
    value: str = ""
    checked: bool = False
    description: str = ""
    required: bool = False
    secret: bool = False
    #: the secret has a stored value, shown only as the mask
    masked: bool = False
    options: list[str] = field(default_factory=list)
    maxlength: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    inputmode: str | None = None
    error: str | None = None

    @property
    def input_id(self) -> str:
        return "f-" + re.sub(r"[^a-zA-Z0-9_-]", "-", self.name)


def _resolve(schema: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return schema.get("$defs", {}).get(ref.split("/")[-1], {})
    return node


def _effective(schema: Mapping[str, Any], prop: Mapping[str, Any]) -> Mapping[str, Any]:
    """``Optional[X]`` is ``anyOf: [X, null]``: the input is for X."""
    prop = _resolve(schema, prop)
    for key in ("anyOf", "oneOf"):
        options = [_resolve(schema, o) for o in prop.get(key, []) if o.get("type") != "null"]
        if len(options) == 1:
            merged = {**{k: v for k, v in prop.items() if k != key}, **options[0]}
            return merged
        if options:
            return {**{k: v for k, v in prop.items() if k != key}, "type": "json"}
    if "allOf" in prop and len(prop["allOf"]) == 1:
        return {**prop, **_resolve(schema, prop["allOf"][0])}
    return prop


def humanise(name: str) -> str:
    words = name.replace("_", " ").strip()
    words = re.sub(r"\bip\b", "IP", words, flags=re.I)
    words = re.sub(r"\burl\b", "URL", words, flags=re.I)
    return words[:1].upper() + words[1:]


def _display(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, indent=2)
    return str(value)


def schema_fields(
    schema: Mapping[str, Any] | None,
    values: Mapping[str, Any],
    *,
    errors: Mapping[str, str] | None = None,
) -> list[Field]:
    """One field per schema property (in the model's order), then any value the
    schema does not name (a module with ``extra="allow"``)."""
    errors = errors or {}
    props: Mapping[str, Any] = (schema or {}).get("properties", {})
    required = set((schema or {}).get("required", []))
    out: list[Field] = []
    for name, raw in props.items():
        prop = _effective(schema or {}, raw)
        typ = prop.get("type", "string")
        value = values.get(name)
        title = raw.get("title") or prop.get("title")
        if title == name.replace("_", " ").title():
            title = None  # pydantic's automatic title: ours reads better (IP address)
        f = Field(
            name=name,
            label=title or humanise(name),
            kind="text",
            description=raw.get("description") or prop.get("description") or "",
            required=name in required,
            error=errors.get(name),
        )
        if prop.get("format") == "password" or prop.get("writeOnly"):
            f.kind, f.secret = "password", True
            f.masked = value == MASK
            f.value = _display(value)
        elif "enum" in prop:
            f.kind, f.options = "select", [str(o) for o in prop["enum"]]
            f.value = _display(value)
        elif typ == "boolean":
            f.kind, f.checked = "checkbox", bool(value) and value not in ("false", "off")
        elif typ in ("integer", "number"):
            f.kind = typ
            f.value = _display(value)
            f.minimum = prop.get("minimum", prop.get("exclusiveMinimum"))
            f.maximum = prop.get("maximum", prop.get("exclusiveMaximum"))
        elif typ == "string":
            f.maxlength = prop.get("maxLength")
            f.kind = "textarea" if (f.maxlength or 0) > LONG_TEXT else "text"
            fmt = prop.get("format", "")
            if fmt.startswith("ip"):
                f.inputmode = "decimal" if "v4" in fmt else None
            f.value = _display(value)
        else:
            f.kind = "json"
            f.value = _display(value)
        out.append(f)
    for name, value in values.items():
        if name not in props:
            kind = "json" if isinstance(value, (dict, list)) else "text"
            out.append(
                Field(name=name, label=humanise(name), kind=kind, value=_display(value), error=errors.get(name),
                      masked=value == MASK, secret=value == MASK)
            )
    return out


def read_fields(fields: list[Field], submitted: Mapping[str, str], present: set[str]) -> dict[str, Any]:
    """The submitted values typed for validation. A value that does not parse is
    passed on as typed so the module's model names the field and the reason."""
    out: dict[str, Any] = {}
    for f in fields:
        if f.kind == "checkbox":
            out[f.name] = f.name in present
            continue
        if f.name not in submitted:
            continue
        raw = submitted[f.name]
        if f.kind in ("text", "textarea", "password", "select"):
            raw = raw.strip() if f.kind != "textarea" else raw.strip("\r\n")
            out[f.name] = raw if raw != "" else None
        elif f.kind == "integer":
            raw = raw.strip()
            out[f.name] = None if raw == "" else (int(raw) if re.fullmatch(r"[+-]?\d+", raw) else raw)
        elif f.kind == "number":
            raw = raw.strip()
            try:
                out[f.name] = None if raw == "" else float(raw)
            except ValueError:
                out[f.name] = raw
        else:  # json
            raw = raw.strip()
            try:
                out[f.name] = None if raw == "" else json.loads(raw)
            except ValueError:
                out[f.name] = raw
    return out


def field_errors(errors: Iterable[tuple[str, str]], *prefixes: str) -> dict[str, str]:
    """``{"ip_address": "…"}`` from InvalidInput's ``("params.ip_address", "…")``."""
    out: dict[str, str] = {}
    for name, reason in errors:
        for prefix in prefixes:
            if name.startswith(prefix + "."):
                name = name[len(prefix) + 1:]
                break
        out.setdefault(name.split(".")[0], reason)
    return out


def parse_json_object(raw: str | None, field_name: str) -> dict[str, Any]:
    """An admin form's JSON box (settings, add-on definitions): an object or empty."""
    from fulfil.errors import InvalidInput

    raw = (raw or "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput.one(field_name, f"is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(value, dict):
        raise InvalidInput.one(field_name, 'must be a JSON object, e.g. {"key": "value"}')
    return value
