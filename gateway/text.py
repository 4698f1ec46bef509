"""Free text from clients: what every ``str`` field of a request model is made of.

Every text field a client sends, in a JSON body or in the login form, is annotated with one of
these rules, which also carry its length limits, so no field can forget either
(tests/gateway/test_text_hygiene.py walks every request model of the app and of the catalogue
server and fails on a ``str`` field without one)::

    company: Annotated[str, Line(200)] | None = None
    reason: Annotated[str, Text(1000, min_length=3)]

- ``Line``: one line (names, company, phone, email, ids, versions). Refused: control characters
  (C0 U+0000-U+001F, tab and line breaks included; DEL U+007F; C1 U+0080-U+009F), lone
  surrogates, the line and paragraph separators U+2028/U+2029, and invisible format characters
  (Unicode category Cf: the bidi embeddings, overrides, isolates and marks U+202A-U+202E,
  U+2066-U+2069, U+200E, U+200F, U+061C, the zero-width space U+200B, the word joiner, the BOM
  U+FEFF, the tag characters U+E0000-U+E007F...), all of which can make text that looks like
  other text, break a log line, or be refused by PostgreSQL (NUL) as a 500. Allowed: any other
  character, spaces of every script included, and the zero-width (non-)joiners U+200C/U+200D
  that Persian, the Indic scripts and emoji sequences need.
- ``Text``: several lines (a postal address, an admin's reason): the same, but tab and line feed
  are allowed, and CR LF is stored as LF (a CR on its own is refused).
- ``Secret``: a password. Never trimmed (a leading or trailing space is the password's, and
  ``weak_password`` says so); only controls and lone surrogates are refused: a password is never
  shown, so an invisible character cannot spoof anything, and whatever a user can type works.
- ``VinText``: the VIN. No character rule here on purpose: the ``vin`` library judges its
  characters (``vin.normalize`` refuses anything that is not printable ASCII, by position), so
  a bad one is ``422 invalid_vin``, a suspicious-usage signal written to the search log like
  every invalid VIN, not an ``invalid_request``.

A refusal is the usual ``422 invalid_request``, each entry naming the field and a stable code
(``control_character``, ``invisible_character``, pydantic's ``string_too_long``...), never the
value. Text is otherwise kept as sent (no Unicode normalization).
"""

from __future__ import annotations

import functools
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from annotated_types import GroupedMetadata, MaxLen, MinLen
from pydantic import AfterValidator, StringConstraints
from pydantic_core import PydanticCustomError

__all__ = [
    "CONTROL", "INVISIBLE", "LINE", "SECRET", "TEXT", "VIN",
    "Kind", "Line", "PathId", "PathKid", "Rule", "Secret", "Text", "VinText",
]  # fmt: skip

#: The error codes a refused character gives (``errors[].code`` of ``invalid_request``).
CONTROL = "control_character"
INVISIBLE = "invisible_character"

_JOINERS = frozenset("\u200c\u200d")  # zero-width non-joiner and joiner: parts of some scripts


@dataclass(frozen=True, slots=True)
class Rule:
    """The character rule of a kind of text (the after-validator the annotations carry)."""

    kind: str  # "line", "text", "secret" or "vin"
    allowed: frozenset[str] = frozenset()  # controls allowed anyway (tab and LF in "text")
    invisible_allowed: bool = False  # format characters and separators (passwords)
    checked: bool = True  # False: the characters are judged elsewhere (the VIN)

    def __call__(self, value: str) -> str:
        if not self.checked:
            return value
        if self.kind == "text" and "\r\n" in value:
            value = value.replace("\r\n", "\n")
        if value.isprintable():  # the common case: no Cc, Cf, Cs, Zl, Zp at all
            return value
        for char in value:
            if char in self.allowed or char in _JOINERS:
                continue
            category = unicodedata.category(char)
            if category in ("Cc", "Cs"):
                raise PydanticCustomError(CONTROL, _MESSAGES[self.kind, CONTROL])
            if category in ("Cf", "Zl", "Zp") and not self.invisible_allowed:
                raise PydanticCustomError(INVISIBLE, _MESSAGES[self.kind, INVISIBLE])
        return value


@dataclass(frozen=True, slots=True)
class WithJsonPattern:
    """Adds the ``pattern`` of a rule to a field's JSON schema (nothing to validation)."""

    rule: Rule

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = dict(handler(core_schema))
        schema["pattern"] = json_pattern(self.rule)
        return schema


@functools.cache
def _special_characters() -> tuple[tuple[int, str], ...]:
    """Every control, surrogate, format character and line/paragraph separator, by code."""
    wanted = {"Cc", "Cs", "Cf", "Zl", "Zp"}
    category = unicodedata.category
    return tuple(
        (code, c) for code in range(sys.maxunicode + 1) if (c := category(chr(code))) in wanted
    )


@functools.cache
def json_pattern(rule: Rule) -> str:
    """A regular expression accepting exactly what ``rule`` accepts (character-wise): every
    character the rule refuses, listed as ranges in one negated class. Computed once per rule
    from this Python's Unicode database. BMP characters are written as ``\\uXXXX`` escapes and
    the few above it (tag characters, some format controls) literally, which both Python's and
    ECMAScript's (with the ``u`` flag) regular expressions read alike."""
    refused = [
        code
        for code, category in _special_characters()
        if chr(code) not in rule.allowed
        and chr(code) not in _JOINERS
        # lone surrogates are left out: no well-formed Unicode string holds one, and regex
        # engines that work on code points (Rust's, which JSON Schema validators use) refuse
        # the range; the rule still refuses them
        and category != "Cs"
        and (category == "Cc" or not rule.invisible_allowed)
    ]
    ranges: list[tuple[int, int]] = []
    for code in refused:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))

    def one(code: int) -> str:
        return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)

    body = "".join(one(a) if a == b else f"{one(a)}-{one(b)}" for a, b in ranges)
    return f"^[^{body}]*$"


_MESSAGES = {
    ("line", CONTROL): "control characters (tab and line breaks included) are not allowed here",
    ("text", CONTROL): "control characters other than tab and line feed are not allowed here",
    ("secret", CONTROL): "control characters are not allowed here",
    ("line", INVISIBLE): "invisible formatting characters (bidi controls, zero-width spaces, "
    "line separators) are not allowed here",
    ("text", INVISIBLE): "invisible formatting characters (bidi controls, zero-width spaces, "
    "line separators) are not allowed here",
}

LINE = Rule("line")
TEXT = Rule("text", allowed=frozenset("\t\n"))
SECRET = Rule("secret", invisible_allowed=True)
VIN = Rule("vin", checked=False)


@dataclass(frozen=True, slots=True)
class Kind(GroupedMetadata):
    """Length limits and a character rule, as one annotation."""

    max_length: int
    min_length: int = 0

    rule = LINE

    def __iter__(self) -> Iterator[Any]:
        if self.min_length:
            yield MinLen(self.min_length)
        yield MaxLen(self.max_length)
        yield AfterValidator(self.rule)
        # the rule in the OpenAPI document too (a `pattern`), so a client, or a contract fuzzer,
        # knows which text is refused; validation stays the rule's (its codes, not a pattern's)
        yield WithJsonPattern(self.rule)


@dataclass(frozen=True, slots=True)
class Line(Kind):
    """One line of text, at most ``max_length`` characters (after trimming, where trimmed)."""

    rule = LINE


@dataclass(frozen=True, slots=True)
class Text(Kind):
    """Several lines of text (tab and LF allowed), at most ``max_length`` characters."""

    rule = TEXT


@dataclass(frozen=True, slots=True)
class Secret(Kind):
    """A password: not trimmed, no control characters, at most ``max_length`` characters."""

    rule = SECRET

    def __iter__(self) -> Iterator[Any]:
        yield StringConstraints(strip_whitespace=False)
        yield from Kind.__iter__(self)


#: The VIN field: at most 64 characters; its characters are vin.normalize's to judge.
VinText = Annotated[str, MaxLen(64), AfterValidator(VIN)]


#: An id in a URL path (``/v1/api-keys/{key_id}``, ``/v1/admin/accounts/{account_id}``): one
#: line, at most as long as the column it is looked up in (account and API-key ids are 32
#: characters). A NUL or a longer id used to reach PostgreSQL and come back as a 500.
PathId = Annotated[str, Line(32)]
#: An attestation key's ``kid`` in a URL path (its column holds 40 characters).
PathKid = Annotated[str, Line(40)]
