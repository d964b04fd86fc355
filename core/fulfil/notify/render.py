"""Rendering messages from Jinja2 templates: a subject, a plain-text and an HTML body.

Templates live in ``<language>/<kind>.txt`` and ``<language>/<kind>.html``; the
``.txt`` template sets the subject with ``{% set subject %}…{% endset %}``. A provider
overrides any of them (or adds a language) by putting a file of the same relative path
in the directory named by ``FULFIL_TEMPLATES_DIR``; everything else comes from the
templates shipped here. A language without a template falls back to English.

Subjects are listed by ``fulfil outbox list``: never put a secret in one.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined, TemplateError, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"
TEMPLATES_DIR_ENV = "FULFIL_TEMPLATES_DIR"
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class RenderError(Exception):
    """A template is missing or broken. The message names the template and the
    reason, never a value from the context (it may be a secret)."""


_lock = threading.Lock()
_environments: dict[str | None, SandboxedEnvironment] = {}


def environment(templates_dir: str | None = None) -> SandboxedEnvironment:
    """The Jinja environment for a provider directory (default: ``FULFIL_TEMPLATES_DIR``)."""
    if templates_dir is None:
        templates_dir = os.environ.get(TEMPLATES_DIR_ENV) or None
    with _lock:
        env = _environments.get(templates_dir)
        if env is None:
            loaders = [FileSystemLoader(templates_dir)] if templates_dir else []
            loaders.append(FileSystemLoader(BUILTIN_TEMPLATES))
            env = SandboxedEnvironment(
                loader=ChoiceLoader(loaders),
                autoescape=select_autoescape(["html"], default_for_string=False, default=False),
                undefined=StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
                keep_trailing_newline=True,
            )
            _environments[templates_dir] = env
        return env


def languages(language: str | None) -> list[str]:
    """``ru-RU`` → ``["ru-RU", "ru", "en"]``."""
    out: list[str] = []
    for lang in (language, (language or "").split("-")[0], DEFAULT_LANGUAGE):
        if lang and lang not in out:
            out.append(lang)
    return out


def render(kind: str, language: str | None, context: dict[str, Any], *, templates_dir: str | None = None) -> Rendered:
    """Render one message. Raises :class:`RenderError`."""
    env = environment(templates_dir)
    candidates = languages(language)
    name = f"{kind}.txt"
    try:
        text_template = env.select_template([f"{lang}/{kind}.txt" for lang in candidates])
        name = text_template.name
        lang = name.split("/", 1)[0]
        values = {**context, "lang": lang}
        module = text_template.make_module(values)
        subject = " ".join(str(getattr(module, "subject", "")).split())
        if not subject:
            raise RenderError(f"template {name} sets no subject ({{% set subject %}}…{{% endset %}})")
        text = str(module).strip() + "\n"
        html_template = env.select_template([f"{lang}/{kind}.html", *(f"{c}/{kind}.html" for c in candidates)])
        name = html_template.name
        html = html_template.render({**values, "subject": subject})
    except RenderError:
        raise
    except TemplateError as exc:
        raise RenderError(describe_template_error(name, exc)) from None
    except Exception as exc:  # noqa: BLE001 - a provider's template may fail in any way
        raise RenderError(f"template {name} failed: {type(exc).__name__}") from None
    return Rendered(subject=subject[:300], text=text, html=html)


def describe_template_error(name: str, exc: TemplateError) -> str:
    """Jinja's own messages name templates, lines and variables, not values; a
    TemplateSyntaxError quotes the template's source, which is no secret either."""
    where = getattr(exc, "name", None) or name
    line = getattr(exc, "lineno", None)
    at = f" line {line}" if line else ""
    return f"template {where}{at}: {type(exc).__name__}: {exc.message or ''}"[:500]
