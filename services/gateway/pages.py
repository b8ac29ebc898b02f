"""HTML pages the gateway serves (the on-call dashboard, the full list behind a digest
link): Jinja2 templates in ``templates/``, autoescaped, in zh-CN (the coalition's working
language) or English.

The language is ``?lang=`` when given, else the deployment's setting: the same one
notifications use for recipients who chose none (``NOTIFICATIONS.default_language``,
``NOTIFY_LANGUAGE``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services.notifications import texts
from services.notifications.settings import notify_settings

_ENV = Environment(
    loader=FileSystemLoader(str(Path(__file__).resolve().parent / "templates")),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def language(config: dict[str, Any], requested: str | None = None) -> str:
    """``requested`` if it is a language we write, else the deployment's default."""
    if requested in texts.LANGUAGES:
        return requested
    return texts.language_of(notify_settings(config).default_language)


def render(name: str, **context: Any) -> str:
    return _ENV.get_template(name).render(**context)
