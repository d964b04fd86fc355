"""Secrets in settings and main settings: which fields they are, and masking them.

A field is secret when the module's pydantic model declares it ``SecretStr`` (or
``SecretBytes``). Stored values are plain; everything shown in lists, logs and
history goes through :func:`mask`.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError

from fulfil.errors import InvalidInput

MASK = "********"


def _is_secret(annotation: Any) -> bool:
    if annotation in (SecretStr, SecretBytes):
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return any(_is_secret(a) for a in typing.get_args(annotation))
    return False


def secret_fields(model: type[BaseModel] | None) -> frozenset[str]:
    if model is None:
        return frozenset()
    names = set()
    for name, info in model.model_fields.items():
        if _is_secret(info.annotation):
            names.add(info.alias or name)
    return frozenset(names)


def mask(data: Mapping[str, Any] | None, model: type[BaseModel] | None, extra_secret: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A copy of ``data`` with secret fields replaced by a mask (nested pool
    entries of a module's settings included, when their model says so)."""
    if not data:
        return {}
    secrets = secret_fields(model) | extra_secret
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in secrets and value not in (None, ""):
            out[key] = MASK
            continue
        sub = _submodel(model, key)
        if sub is not None and isinstance(value, Mapping):
            out[key] = mask(value, sub)
        elif sub is not None and isinstance(value, list):
            out[key] = [mask(v, sub) if isinstance(v, Mapping) else v for v in value]
        else:
            out[key] = value
    return out


def _submodel(model: type[BaseModel] | None, key: str) -> type[BaseModel] | None:
    if model is None or key not in model.model_fields:
        return None
    ann = model.model_fields[key].annotation
    for cand in (ann, *typing.get_args(ann)):
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return cand
        for inner in typing.get_args(cand):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return None


def plain(value: Any) -> Any:
    """JSON-ready value with secrets revealed, for storage."""
    if isinstance(value, (SecretStr, SecretBytes)):
        v = value.get_secret_value()
        return v.decode() if isinstance(v, bytes) else v
    if isinstance(value, BaseModel):
        out = {k: plain(getattr(value, k)) for k in type(value).model_fields}
        out.update({k: plain(v) for k, v in (value.model_extra or {}).items()})
        return out
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def validate(model: type[BaseModel], data: Mapping[str, Any], *, field_prefix: str) -> dict[str, Any]:
    """Validate ``data`` with ``model``; return the storable dict or raise
    :class:`InvalidInput` naming each bad field (``params.domain``, …)."""
    try:
        instance = model.model_validate(dict(data))
    except ValidationError as exc:
        raise InvalidInput.from_pydantic(exc, prefix=field_prefix) from None
    dumped = plain(instance)
    # keep only what was set or has a non-None default, so stored params stay tidy
    return {k: v for k, v in dumped.items() if v is not None or k in data}


def unmask(new: Mapping[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    """A form that shows masked secrets sends the mask back: keep the old value."""
    return {k: (old.get(k) if v == MASK and k in old else v) for k, v in new.items()}
