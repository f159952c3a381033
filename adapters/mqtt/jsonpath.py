"""A tiny, compiled JSON-path subset for picking values out of MQTT payloads.

Grammar (anything else is rejected when the config is loaded)::

    path     := "$" segment*
    segment  := "." name            -- $.a.b          (name: letters, digits, _ and -; not starting with a digit or -)
              | "[" integer "]"     -- $.a[0], $.a[-1] (negative counts from the end)
              | "[" quoted "]"      -- $['key with.dots'], $["k"]  (\\' \\" \\\\ escapes)

``$`` alone selects the whole document (for a payload that is a bare number). There
are no wildcards, filters or recursive descent: one path names exactly one value.

A path compiles to a tuple of keys (``str`` for object members, ``int`` for array
indexes) once at start; :func:`resolve` then walks it with plain ``dict``/``list``
indexing.
"""

from __future__ import annotations

import re
from typing import Any

Path = tuple[str | int, ...]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_INDEX = re.compile(r"\[\s*(-?\d+)\s*\]")
_QUOTED = re.compile(r"""\[\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\s*\]""")
_UNESCAPE = re.compile(r"\\(.)")


class PathMissing(LookupError):
    """The document has no value at this path (absent key, short array, or a scalar in the way)."""


def compile_path(text: str) -> Path:
    """``"$.a[0]['b.c']"`` -> ``("a", 0, "b.c")``; raises ``ValueError`` with the position on bad syntax."""
    if not isinstance(text, str) or not text.startswith("$"):
        raise ValueError(f"JSON path must start with '$', got {text!r}")
    keys: list[str | int] = []
    pos = 1
    n = len(text)
    while pos < n:
        c = text[pos]
        if c == ".":
            m = _NAME.match(text, pos + 1)
            if not m:
                raise ValueError(
                    f"bad JSON path {text!r} at position {pos + 1}: expected a member name after '.' "
                    "(use ['...'] for names with other characters)"
                )
            keys.append(m.group(0))
            pos = m.end()
        elif c == "[":
            m = _INDEX.match(text, pos)
            if m:
                keys.append(int(m.group(1)))
                pos = m.end()
                continue
            m = _QUOTED.match(text, pos)
            if not m:
                raise ValueError(f"bad JSON path {text!r} at position {pos}: expected [N] or ['name']")
            raw = m.group(1) if m.group(1) is not None else m.group(2)
            keys.append(_UNESCAPE.sub(r"\1", raw))
            pos = m.end()
        else:
            raise ValueError(f"bad JSON path {text!r} at position {pos}: expected '.' or '['")
    return tuple(keys)


def resolve(doc: Any, path: Path) -> Any:
    """The value at ``path`` in ``doc``; raises :class:`PathMissing` if there is none."""
    cur = doc
    try:
        for key in path:
            if isinstance(key, str):
                if type(cur) is not dict:
                    raise PathMissing(key)
                cur = cur[key]
            else:
                if type(cur) is not list:
                    raise PathMissing(key)
                cur = cur[key]
    except (KeyError, IndexError):
        raise PathMissing(key) from None
    return cur


def format_path(path: Path) -> str:
    """The canonical text of a compiled path (for messages)."""
    out = ["$"]
    for k in path:
        if isinstance(k, int):
            out.append(f"[{k}]")
        elif _NAME.fullmatch(k):
            out.append(f".{k}")
        else:
            out.append("['" + k.replace("\\", "\\\\").replace("'", "\\'") + "']")
    return "".join(out)
