"""Edit a YAML document as text, so everything the edit does not touch stays byte for byte.

``hazardgw tags import`` changes a few list items of ``tags`` and ``sources[].points``; a
YAML dump of the whole document would lose the user's comments, alignment and quoting
everywhere. :func:`patch_text` instead compares the document's raw data with the new data
and rewrites only what differs, at the smallest YAML node that differs:

* an unchanged value keeps its text (comments inside and around it included);
* a changed item of a block list or value of a block mapping is rewritten in place (a
  flow one-liner, or block lines when the original was block), recursing into block
  collections so a source whose points changed keeps its other keys' text;
* items and keys are inserted after their last sibling in the siblings' style and
  indentation, and deleted with their lines.

The result is checked: :func:`patch_text` raises :class:`PatchError` unless loading the
patched text gives exactly the new data, so a patch can never silently change anything.
``${ENV}`` references are data like any other string here (never interpolated).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from gateway.core.yamlsrc import RAW_TEXT_KEYS, Path_

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"


class PatchError(Exception):
    """The document cannot be edited as text (anchors, an internal mismatch)."""


# libyaml's parser when PyYAML has it (10x faster on a 2,000-tag site; the same node marks)
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def compose(text: str) -> yaml.Node | None:
    loader = _Loader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def raw_data(node: yaml.Node | None, path: Path_ = ()) -> Any:
    """Plain data of a node, without ``${ENV}`` interpolation; ``address``-like keys keep the
    text of numbers YAML would alter (``40.10``, ``00017``), as :func:`gateway.core.yamlsrc.load_yaml`."""
    if node is None:
        return {}
    builder = yaml.SafeLoader("")

    def build(n: yaml.Node, p: Path_) -> Any:
        if isinstance(n, yaml.MappingNode):
            builder.flatten_mapping(n)
            return {builder.construct_object(k, deep=True): build(v, (*p, str(k.value))) for k, v in n.value}
        if isinstance(n, yaml.SequenceNode):
            return [build(v, (*p, i)) for i, v in enumerate(n.value)]
        if p and p[-1] in RAW_TEXT_KEYS and (
            n.tag == _FLOAT or (n.tag == _INT and len(str(n.value)) > 1 and str(n.value)[0] == "0"
                                and str(n.value).isdigit())
        ):
            return n.value
        return builder.construct_object(n, deep=True)

    return build(node, path)


def load_raw(text: str) -> Any:
    return raw_data(compose(text))


# --------------------------------------------------------------------------- rendering


def flow(value: Any) -> str:
    """One-line flow YAML of ``value`` (strings quoted only when YAML needs it)."""
    out = yaml.safe_dump([value], default_flow_style=True, width=1 << 30, allow_unicode=True, sort_keys=False)
    return out.strip()[1:-1]


def _nested(value: Any) -> bool:
    return isinstance(value, dict | list) and any(
        isinstance(x, dict | list) and x for x in (value.values() if isinstance(value, dict) else value)
    )


def block_lines(value: Any) -> list[str]:
    """Block YAML lines of a mapping or list (no trailing newline): one key or item per line,
    collections of scalars in flow style (``range: [0, 10]``, ``h: {limit: 5}``), as people
    write configs."""
    out: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if _nested(v) or (isinstance(v, list) and v and all(isinstance(x, dict) for x in v)):
                out.append(f"{flow(k)}:")
                out.extend(f"  {line}" for line in block_lines(v))
            else:
                out.append(f"{flow(k)}: {flow(v)}")
    elif isinstance(value, list):
        for item in value:
            if _nested(item):
                lines = block_lines(item)
                out.append(f"- {lines[0]}")
                out.extend(f"  {line}" for line in lines[1:])
            else:
                out.append(f"- {flow(item)}")
    else:
        out.append(flow(value))
    return out


# --------------------------------------------------------------------------- the patcher


def _is_block(node: yaml.Node) -> bool:
    return isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.flow_style


def _end(node: yaml.Node) -> int:
    """Index just past a node's own text (a block collection's end mark lies beyond the
    comments that follow it; its last child's end does not)."""
    if _is_block(node) and node.value:
        last = node.value[-1]
        return _end(last[1] if isinstance(node, yaml.MappingNode) else last)
    return int(node.end_mark.index)


def _ident(item: Any) -> Any:
    """What makes a list item the same item after an edit: its ``id``, ``tag`` or ``topic``
    (a tag, a source, a point, a subscription); None for other items."""
    if isinstance(item, dict):
        for k in ("id", "tag", "topic"):
            if isinstance(item.get(k), str | int):
                return (k, item[k])
    return None


def _key(item: Any) -> str:
    ident = _ident(item)
    return f"\0{ident!r}" if ident is not None else _canon(item)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


class _Patcher:
    def __init__(self, text: str) -> None:
        self.text = text
        self.edits: list[tuple[int, int, str]] = []  # (start, end, replacement)

    # -- text helpers
    def line_start(self, i: int) -> int:
        return self.text.rfind("\n", 0, i) + 1

    def line_end(self, i: int) -> int:
        j = self.text.find("\n", i)
        return len(self.text) if j < 0 else j

    def column(self, i: int) -> int:
        return i - self.line_start(i)

    def only_space_before(self, i: int) -> bool:
        return self.text[self.line_start(i) : i].strip(" -") == ""

    def apply(self) -> str:
        out = self.text
        last = len(out) + 1
        # from the end backwards; of two insertions at one place the later-made is applied
        # first, so the earlier-made ends up first in the text
        order = sorted(range(len(self.edits)), key=lambda i: (self.edits[i][0], self.edits[i][1], i), reverse=True)
        for start, end, new in (self.edits[i] for i in order):
            if end > last:
                raise PatchError("overlapping edits")
            out = out[:start] + new + out[end:]
            last = start
        return out

    # -- values
    def value(self, node: yaml.Node, old: Any, new: Any, owner_col: int) -> None:
        """Make ``node`` (holding ``old``) hold ``new``. ``owner_col``: the column of the key
        or dash that owns the node (for block renderings that start on a new line)."""
        if old == new and type(old) is type(new):
            return
        if isinstance(node, yaml.MappingNode) and _is_block(node) and isinstance(old, dict) and isinstance(new, dict):
            self.mapping(node, old, new)
        elif isinstance(node, yaml.SequenceNode) and _is_block(node) and isinstance(old, list) and (
            isinstance(new, list)
        ):
            if new:
                self.sequence(node, old, new)
            else:
                self.replace(node, "[]")
        elif isinstance(node, yaml.MappingNode) and isinstance(old, dict) and isinstance(new, dict) and (
            list(old) == list(new)
        ):
            # a flow mapping with the same keys: only the values that changed
            for kn, vn in node.value:
                k = yaml.SafeLoader("").construct_object(kn)
                self.value(vn, old[k], new[k], owner_col)
        elif isinstance(node, yaml.SequenceNode) and isinstance(old, list) and isinstance(new, list) and (
            len(old) == len(new) and old
        ):
            for vn, o, n in zip(node.value, old, new, strict=True):
                self.value(vn, o, n, owner_col)
        elif isinstance(node, yaml.SequenceNode) and isinstance(new, list) and new and not old:
            # an empty flow list (tags: []) becomes a block list under its key
            start = int(node.start_mark.index)
            while start > 0 and self.text[start - 1] == " ":
                start -= 1
            lines = self.item_lines(new, owner_col + 2, None)
            self.edits.append((start, _end(node), "\n" + "\n".join(lines)))
        elif _is_block(node) and isinstance(new, dict | list) and new:
            col = self.column(int(node.start_mark.index))
            lines = block_lines(new)
            self.replace(node, ("\n" + " " * col).join(lines))
        else:
            self.replace(node, flow(new))

    def replace(self, node: yaml.Node, text: str) -> None:
        self.edits.append((int(node.start_mark.index), _end(node), text))

    def delete_lines(self, first: int, last_end: int) -> None:
        """Delete from the line of index ``first`` through the end of the line of ``last_end``."""
        start = self.line_start(first) if self.only_space_before(first) else first
        end = self.line_end(last_end)
        if start == self.line_start(first) and end < len(self.text):
            end += 1  # the newline
        self.edits.append((start, end, ""))

    # -- block mappings
    def mapping(self, node: yaml.MappingNode, old: dict[Any, Any], new: dict[Any, Any]) -> None:
        pairs = {k: (kn, vn) for kn, vn in node.value for k in [yaml.SafeLoader("").construct_object(kn)]}
        if any(kn.tag == "tag:yaml.org,2002:merge" for kn, _ in node.value):
            raise PatchError("YAML merge keys (<<) in an edited mapping")
        key_col = self.column(int(node.value[0][0].start_mark.index))
        for k, (kn, vn) in pairs.items():
            if k not in new:
                self.delete_lines(int(kn.start_mark.index), _end(vn))
            elif k in old:
                self.value(vn, old[k], new[k], key_col)
        added = [k for k in new if k not in pairs]
        if added:
            lines = [line for k in added for line in self.key_lines(k, new[k], key_col)]
            kept = [vn for kn, vn in node.value if yaml.SafeLoader("").construct_object(kn) in new]
            # after the last kept key whose value is one line of its own (a block value may
            # have lines deleted at its end by this very patch)
            flat = [vn for vn in kept if not _is_block(vn)]
            kept = flat or kept
            if kept:
                anchor = self.line_end(_end(kept[-1]))
                self.edits.append((anchor, anchor, "".join("\n" + line for line in lines)))
            else:
                anchor = self.line_start(int(node.value[0][0].start_mark.index))
                self.edits.append((anchor, anchor, "".join(line + "\n" for line in lines)))

    def key_lines(self, key: Any, value: Any, col: int) -> list[str]:
        pad = " " * col
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            return [f"{pad}{flow(key)}:", *self.item_lines(value, col + 2, None)]
        return [f"{pad}{flow(key)}: {flow(value)}"]

    # -- block sequences
    def dash_col(self, item: yaml.Node) -> int:
        i = int(item.start_mark.index)
        j = self.text.rfind("-", self.line_start(i), i)
        return self.column(j) if j >= 0 else self.column(i)

    def item_lines(self, items: Sequence[Any], dash: int, style_of: yaml.Node | None) -> list[str]:
        pad = " " * dash
        out: list[str] = []
        block = style_of is not None and _is_block(style_of)
        for it in items:
            if block and isinstance(it, dict | list) and it:
                lines = block_lines(it)
                out.append(f"{pad}- {lines[0]}")
                out.extend(f"{pad}  {line}" for line in lines[1:])
            else:
                out.append(f"{pad}- {flow(it)}")
        return out

    def sequence(self, node: yaml.SequenceNode, old: list[Any], new: list[Any]) -> None:
        """Items are aligned by identity (``id``, ``tag`` or ``topic``; else by content): the
        same item is patched where it is, others are deleted and inserted."""
        items = node.value
        dash = self.dash_col(items[0])
        sm = difflib.SequenceMatcher(a=[_key(x) for x in old], b=[_key(x) for x in new], autojunk=False)
        for op, i1, i2, j1, j2 in sm.get_opcodes():
            if op == "equal" or (
                op == "replace" and i2 - i1 == j2 - j1 and all(_ident(x) is None for x in old[i1:i2] + new[j1:j2])
            ):
                for k in range(i2 - i1):
                    self.value(items[i1 + k], old[i1 + k], new[j1 + k], dash)
                continue
            for k in range(i1, i2):
                self.delete_lines(int(items[k].start_mark.index), _end(items[k]))
            if j2 > j1:
                style = items[i1 - 1] if i1 > 0 else items[0]
                lines = self.item_lines(new[j1:j2], dash, style)
                if i1 > 0:
                    anchor = self.line_end(_end(items[i1 - 1]))
                    self.edits.append((anchor, anchor, "".join("\n" + line for line in lines)))
                else:
                    anchor = self.line_start(int(items[0].start_mark.index))
                    self.edits.append((anchor, anchor, "".join(line + "\n" for line in lines)))


def patch_text(text: str, new: Mapping[str, Any]) -> str:
    """``text`` edited so that its raw data is ``new`` (see the module doc)."""
    root = compose(text)
    if root is None or not isinstance(root, yaml.MappingNode) or not root.value:
        raise PatchError("the config must be a non-empty YAML mapping")
    if "&" in text and _has_anchor(root):
        raise PatchError("YAML anchors/aliases in the config: import cannot edit it as text")
    old = raw_data(root)
    p = _Patcher(text if text.endswith("\n") else text + "\n")
    p.mapping(root, old, dict(new))
    out = p.apply()
    if load_raw(out) != new:
        raise PatchError("internal: the edited text does not load as the merged config")
    return out


def _has_anchor(node: yaml.Node, seen: set[int] | None = None) -> bool:
    seen = set() if seen is None else seen
    if id(node) in seen:
        return True  # an alias: the same node twice
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        return any(_has_anchor(k, seen) or _has_anchor(v, seen) for k, v in node.value)
    if isinstance(node, yaml.SequenceNode):
        return any(_has_anchor(v, seen) for v in node.value)
    return False
