"""Canvas Kit's components as pure functions, so that a canvas reads as the list of what the
agent sees; and what customers write (HTML; words that markdown would act on) made safe for a
canvas.
Imports plumbing.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

from hedwig_app.plumbing import clean_text
from models import DESCRIPTION_MAX


def canvas(components: list[dict[str, Any]], stored_data: dict | None = None) -> dict[str, Any]:
    return {"canvas": {"content": {"components": components}, "stored_data": stored_data or {}}}


def text(value: str, style: str = "paragraph") -> dict[str, Any]:
    return {"type": "text", "text": value, "style": style}


def button(component_id: str, label: str, style: str = "secondary", url: str | None = None) -> dict:
    action = {"type": "url", "url": url} if url else {"type": "submit"}
    return {"type": "button", "id": component_id, "label": label, "style": style, "action": action}


def item(
    component_id: str, title: str, subtitle: str = "", url: str | None = None, submit: bool = False
) -> dict[str, Any]:
    """A list's item: plain text, never markdown, so it shows a customer's words as they are."""
    listed: dict[str, Any] = {"type": "item", "id": component_id, "title": title}
    if subtitle:
        listed["subtitle"] = subtitle
    if submit:
        listed["action"] = {"type": "submit"}
    elif url:
        listed["action"] = {"type": "url", "url": url}
    return listed


def single_select(
    component_id: str, label: str, options: Mapping[str, str], value: str
) -> dict[str, Any]:
    """A choice of one of ``options`` (id → text), ``value`` chosen: Intercom sends the chosen
    option's id in the submit's input_values, under ``component_id``."""
    return {
        "type": "single-select",
        "id": component_id,
        "label": label,
        "options": [
            {"type": "option", "id": option_id, "text": option_text}
            for option_id, option_text in options.items()
        ],
        "value": value,
    }


def data_table(rows: dict[str, str]) -> dict[str, Any]:
    """Fields and their values, plain text (the Inbox cuts each to one line)."""
    items = [
        {"type": "field-value", "field": field, "value": value} for field, value in rows.items()
    ]
    return {"type": "data-table", "items": items}


# What a text component may say of a customer: words, with no character that markdown, an
# escape or a link finder could act on. Intercom documents bold and links in a text, and no
# escape: a backslash may show as itself.
PLAIN_WORDS = re.compile(r"(?:[^\W_]|[ '\u2019-]|\.(?![^\W_]))+")


def plain_words(value: str, otherwise: str, longest: int) -> str:
    """``value`` for a text component when it is plain words of at most ``longest``
    characters, else ``otherwise``: a customer's name shows as they wrote it, or not at all,
    never as a link, in bold, or with a backslash. Lists, labels and data tables show any."""
    value = " ".join(value.split())
    if value and len(value) <= longest and PLAIN_WORDS.fullmatch(value):
        return value
    return otherwise


HTML_READ_MAX = 10 * DESCRIPTION_MAX  # characters of markup read; the details keep fewer
HTML_TOKEN = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*+)[^<>]*+>|<!--")
BLOCK_TAGS = frozenset({"p", "div", "li", "tr", "blockquote", "pre", "h1", "h2", "h3", "h4"})
SKIPPED_TAGS = frozenset({"script", "style"})


def html_to_text(markup: str) -> str:
    """The customer's message as clean plain text: tags dropped, entities decoded, blank runs
    folded.

    One pass over a bounded prefix, in linear time whatever the input: CPython's html.parser
    takes quadratic time on unclosed tags (CVE-2025-6069), and a customer writes this HTML.
    """
    markup = markup[:HTML_READ_MAX]
    parts: list[str] = []
    position, skipping = 0, ""
    while match := HTML_TOKEN.search(markup, position):
        if not skipping:
            parts.append(markup[position : match.start()])
        if match.group() == "<!--":
            end = markup.find("-->", match.end())
            position = len(markup) if end < 0 else end + 3
            continue
        position = match.end()
        closing, tag = match.group(1), match.group(2).lower()
        if skipping:
            skipping = "" if closing and tag == skipping else skipping
        elif tag in SKIPPED_TAGS and not closing:
            skipping = tag
        elif tag == "br" or (closing and tag in BLOCK_TAGS):
            parts.append("\n")
    if not skipping:
        parts.append(markup[position:])
    text = clean_text(html.unescape("".join(parts)), HTML_READ_MAX)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
