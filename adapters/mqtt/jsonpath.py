"""A small, compiled JSON-path subset for picking values out of MQTT payloads.

Grammar (anything else is rejected when the config is loaded)::

    path     := "$" segment*
    segment  := "." name            -- $.a.b          (name: letters, digits, _ and -; not starting with a digit or -)
              | "[" integer "]"     -- $.a[0], $.a[-1] (negative counts from the end)
              | "[" quoted "]"      -- $['key with.dots'], $["k"]  (\\' \\" \\\\ escapes)
              | "[?(@" rel "==" literal ")]"
                                    -- $.metrics[?(@.name=='CO')]: the ONE array element whose
                                       member (rel: segments of the kinds above) equals the literal
              | "[*]"               -- every element of an array (or member value of an object);
                                       only where a path may select several values (``each``)
    literal  := quoted | number | true | false | null

``$`` alone selects the whole document (for a payload that is a bare number). A path
names exactly one value: a filter that matches no element is a missing value
(:class:`PathMissing`), one that matches several is :class:`PathAmbiguous` (a device
that sends ``CO`` twice must not have one of them picked silently). Comparison is by
JSON type: ``3`` equals ``3.0`` but not ``"3"`` or ``true``.

A path compiles to a tuple of keys (``str`` for object members, ``int`` for array
indexes, :class:`Filter`, :data:`WILDCARD`) once at start; :func:`resolve` then walks it
with plain ``dict``/``list`` indexing. A filter over a list is answered from an index
built once per list and message when the caller passes a ``memo`` dict (points of one
message that select by name share it), so selecting N metrics out of N costs O(N).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Final

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_INDEX = re.compile(r"\[\s*(-?\d+)\s*\]")
_QUOTED = re.compile(r"""\[\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\s*\]""")
_STAR = re.compile(r"\[\s*\*\s*\]")
_FILTER_START = re.compile(r"\[\s*\?\s*\(\s*@")
_FILTER_OP = re.compile(r"\s*==\s*")
_LITERAL = re.compile(
    r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|(-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(true|false|null)"""
)
_FILTER_END = re.compile(r"\s*\)\s*\]")
_UNESCAPE = re.compile(r"\\(.)")


class PathMissing(LookupError):
    """The document has no value at this path (absent key, short array, or a scalar in the way)."""


class PathAmbiguous(LookupError):
    """A filter matched more than one element."""


def _norm(v: Any) -> tuple[str, Any]:
    """A hashable key comparing values by JSON type (1 == 1.0, 1 != True, 1 != "1")."""
    t = type(v)
    if t is bool:
        return ("b", v)
    if t is int or t is float:
        return ("n", v)
    if t is str:
        return ("s", v)
    if v is None:
        return ("z", None)
    return ("x", id(v))  # objects/arrays never equal a literal


class Filter:
    """``[?(@.rel == literal)]``: the one element of an array whose ``rel`` equals ``value``."""

    __slots__ = ("key", "rel", "value")

    def __init__(self, rel: tuple[str | int, ...], value: Any) -> None:
        self.rel = rel
        self.value = value
        self.key = _norm(value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Filter) and other.rel == self.rel and other.key == self.key

    def __hash__(self) -> int:
        return hash((self.rel, self.key))

    def __repr__(self) -> str:
        return f"Filter({self.rel!r}, {self.value!r})"


class _Wildcard:
    __slots__ = ()

    def __repr__(self) -> str:
        return "WILDCARD"


WILDCARD: Final = _Wildcard()
Key = str | int | Filter | _Wildcard
Path = tuple[Key, ...]


def _segments(text: str, pos: int, *, relative: bool) -> tuple[list[Key], int]:
    """Parse segments from ``pos``; in a filter's relative path stop at the first ``==``."""
    keys: list[Key] = []
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
            if m:
                raw = m.group(1) if m.group(1) is not None else m.group(2)
                keys.append(_UNESCAPE.sub(r"\1", raw))
                pos = m.end()
                continue
            if relative:
                raise ValueError(f"bad JSON path {text!r} at position {pos}: only [N] or ['name'] inside a filter")
            m = _STAR.match(text, pos)
            if m:
                keys.append(WILDCARD)
                pos = m.end()
                continue
            m = _FILTER_START.match(text, pos)
            if not m:
                raise ValueError(f"bad JSON path {text!r} at position {pos}: expected [N], ['name'], [*] or "
                                 "[?(@.name=='value')]")
            rel, pos = _segments(text, m.end(), relative=True)
            if not rel:
                raise ValueError(f"bad JSON path {text!r} at position {pos}: the filter needs a member, "
                                 "e.g. [?(@.name=='CO')]")
            m = _FILTER_OP.match(text, pos)
            if not m:
                raise ValueError(f"bad JSON path {text!r} at position {pos}: expected == (the only filter "
                                 "operator)")
            m2 = _LITERAL.match(text, m.end())
            if not m2:
                raise ValueError(f"bad JSON path {text!r} at position {m.end()}: expected a quoted string, "
                                 "a number, true, false or null")
            if m2.group(1) is not None or m2.group(2) is not None:
                raw = m2.group(1) if m2.group(1) is not None else m2.group(2)
                value: Any = _UNESCAPE.sub(r"\1", raw)
            else:
                value = json.loads(m2.group(3) or m2.group(4))
            m3 = _FILTER_END.match(text, m2.end())
            if not m3:
                raise ValueError(f"bad JSON path {text!r} at position {m2.end()}: expected )]")
            keys.append(Filter(tuple(k for k in rel if isinstance(k, str | int)), value))
            pos = m3.end()
        elif (relative and text.startswith("==", pos)) or (relative and c.isspace()):
            return keys, pos
        else:
            raise ValueError(f"bad JSON path {text!r} at position {pos}: expected '.' or '['")
    if relative:
        raise ValueError(f"bad JSON path {text!r}: unterminated filter")
    return keys, pos


def compile_path(text: str, *, multi: bool = False) -> Path:
    """``"$.a[0]['b.c']"`` -> ``("a", 0, "b.c")``; raises ``ValueError`` with the position on bad syntax.

    ``[*]`` is accepted only with ``multi=True`` (a path selecting several values)."""
    if not isinstance(text, str) or not text.startswith("$"):
        raise ValueError(f"JSON path must start with '$', got {text!r}")
    keys, _ = _segments(text, 1, relative=False)
    if not multi and any(k is WILDCARD for k in keys):
        raise ValueError(f"bad JSON path {text!r}: [*] selects several values; this path must name one")
    return tuple(keys)


def has_filter(path: Path) -> bool:
    return any(type(k) is Filter for k in path)


def _filter(cur: Any, f: Filter, memo: dict[Any, Any] | None) -> Any:
    if type(cur) is not list:
        raise PathMissing(f)
    if memo is not None:
        mk = (id(cur), f.rel)
        index = memo.get(mk)
        if index is None:
            index = memo[mk] = {}
            for e in cur:
                try:
                    v = _norm(resolve(e, f.rel))
                except PathMissing:
                    continue
                hit = index.get(v)
                index[v] = e if hit is None else _AMBIGUOUS
        found = index.get(f.key)
        if found is None:
            raise PathMissing(f)
        if found is _AMBIGUOUS:
            raise PathAmbiguous(f)
        return found
    found = None
    n = 0
    for e in cur:
        try:
            v = resolve(e, f.rel)
        except PathMissing:
            continue
        if _norm(v) == f.key:
            found = e
            n += 1
    if n == 0:
        raise PathMissing(f)
    if n > 1:
        raise PathAmbiguous(f)
    return found


_AMBIGUOUS: Final = object()


def resolve(doc: Any, path: Path, memo: dict[Any, Any] | None = None) -> Any:
    """The value at ``path`` in ``doc``; raises :class:`PathMissing` (or :class:`PathAmbiguous`)."""
    cur = doc
    key: Key = ""
    try:
        for key in path:
            t = type(key)
            if t is str:
                if type(cur) is not dict:
                    raise PathMissing(key)
                cur = cur[key]
            elif t is int:
                if type(cur) is not list:
                    raise PathMissing(key)
                cur = cur[key]  # type: ignore[index]
            elif t is Filter:
                cur = _filter(cur, key, memo)  # type: ignore[arg-type]
            else:
                raise PathMissing("[*] in a single-value path")
    except (KeyError, IndexError):
        raise PathMissing(key) from None
    return cur


def expand(doc: Any, path: Path, memo: dict[Any, Any] | None = None) -> Iterator[Any]:
    """Every value ``path`` selects (``[*]`` fans out; a missing branch selects nothing)."""
    for i, key in enumerate(path):
        if key is WILDCARD:
            try:
                base = resolve(doc, path[:i], memo)
            except LookupError:
                return
            items = base if type(base) is list else list(base.values()) if type(base) is dict else ()
            rest = path[i + 1:]
            for item in items:
                yield from expand(item, rest, memo)
            return
    try:
        yield resolve(doc, path, memo)
    except LookupError:
        return


def format_path(path: Path) -> str:
    """The canonical text of a compiled path (for messages)."""
    out = ["$"]
    for k in path:
        if isinstance(k, int):
            out.append(f"[{k}]")
        elif type(k) is Filter:
            rel = format_path(k.rel)[1:]
            out.append(f"[?(@{rel}=={json.dumps(k.value, ensure_ascii=False)})]")
        elif k is WILDCARD:
            out.append("[*]")
        elif _NAME.fullmatch(k):  # type: ignore[arg-type]
            out.append(f".{k}")
        else:
            out.append("['" + k.replace("\\", "\\\\").replace("'", "\\'") + "']")  # type: ignore[union-attr]
    return "".join(out)
