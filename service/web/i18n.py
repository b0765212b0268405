"""The app's one message catalogue: every string a page shows, in zh-CN and
English, from `service/web/messages/*.yaml` (one file per area, one key space).

A message is `key: {zh: …, en: …}`, with `{name}` placeholders filled by
`str.format_map`. Loading fails if a key is defined twice or lacks a language, so
a page can never show a key instead of a sentence.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Final, Literal

import yaml  # type: ignore[import-untyped]

Lang = Literal["zh", "en"]
LANGS: Final[tuple[Lang, ...]] = ("zh", "en")
DEFAULT: Final[Lang] = "zh"
HTML_LANG: Final = {"zh": "zh-CN", "en": "en"}
_DIR: Final = Path(__file__).parent / "messages"


@cache
def catalogue() -> dict[str, dict[str, str]]:
    messages: dict[str, dict[str, str]] = {}
    for path in sorted(_DIR.glob("*.yaml")):
        loaded: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for key, texts in loaded.items():
            if key in messages:
                raise RuntimeError(f"message {key!r} of {path.name} is defined twice")
            if not isinstance(texts, dict) or set(texts) != set(LANGS):
                raise RuntimeError(f"message {key!r} of {path.name} needs exactly {LANGS}")
            messages[key] = {lang: str(texts[lang]) for lang in LANGS}
    return messages


def language(query: str | None, cookie: str | None) -> Lang:
    """`?lang=en` (or `zh-CN`) chooses; else the cookie an earlier choice left; else zh."""
    for value in (query, cookie):
        if value:
            if value.lower().startswith("en"):
                return "en"
            if value.lower().startswith("zh"):
                return "zh"
    return DEFAULT


class Translator:
    """`t("key", name=value)` in templates and pages."""

    def __init__(self, lang: Lang) -> None:
        self.lang: Lang = lang
        self._messages = catalogue()

    def __call__(self, key: str, /, **values: Any) -> str:
        texts = self._messages.get(key)
        if texts is None:
            raise KeyError(f"no message {key!r} in service/web/messages")
        text = texts[self.lang]
        return text.format_map(values) if values else text

    def has(self, key: str) -> bool:
        return key in self._messages

    def first(self, *keys: str, default: str) -> str:
        """The first of `keys` the catalogue has, else `default`."""
        for key in keys:
            if key in self._messages:
                return self(key)
        return default

    def refusal(self, code: str, detail: str, area: str | None = None) -> str:
        """A refusal's `code` in the area's words (`<area>.<code>`), else in the
        common ones (`error.<code>`), else the service's own sentence `detail`."""
        keys = (f"{area}.{code}",) if area else ()
        return self.first(*keys, f"error.{code}", default=detail)
