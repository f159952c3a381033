"""YAML loading that remembers where every value came from.

``load_yaml`` returns plain Python data plus a map from each value's path
(``("sources", 0, "points", 3, "tag")``) to its 1-based line, so config errors can name
the file, line and path. ``${ENV}`` and ``${ENV:-default}`` are interpolated in string
scalars; a missing variable is an error at that path, never an empty string (with
``placeholder``, for ``hazardgw check --offline-secrets``: a warning, and the value gets a
stand-in so the rest of the config can still be checked). Duplicate
mapping keys are errors too: in YAML the second one silently wins, which in a safety
config hides a typo.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

Path_ = tuple[str | int | float, ...]  # keys and list positions; a YAML mapping key may be a float

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class SourceMap:
    """Line numbers of every node, by path."""

    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Path_) -> int | None:
        """Line of ``path`` or of its nearest ancestor that has one."""
        p = tuple(path)
        while True:
            if p in self.lines:
                return self.lines[p]
            if not p:
                return None
            p = p[:-1]


@dataclass
class YamlIssue:
    path: Path_
    line: int | None
    message: str
    severity: str = "error"  # "warning": an unset variable replaced by a placeholder
    var: str | None = None  # the unset environment variable, if that is the issue


def offline_placeholder(name: str) -> str:
    """A stand-in for an unset secret: 32 lower-case letters and digits, stable per name (fits
    the token patterns of apprise plugins, never a real secret)."""
    return "x" + hashlib.sha256(name.encode()).hexdigest()[:31]


class YamlError(Exception):
    """The document could not be parsed at all (syntax error)."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def interpolate(
    text: str, env: Mapping[str, str], placeholder: Callable[[str], str] | None = None
) -> tuple[str, list[str]]:
    """Replace ``${NAME}`` / ``${NAME:-default}``; return the text and missing names (replaced
    by ``placeholder(name)`` when given, else by nothing)."""
    missing: list[str] = []

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        missing.append(name)
        return placeholder(name) if placeholder is not None else ""

    return _ENV_RE.sub(sub, text), missing


RAW_TEXT_KEYS = frozenset({"address"})
# libyaml's parser when PyYAML has it: the same nodes and marks, ~10x faster (a 2,000-tag site)
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_LEADING_ZERO = re.compile(r"^0\d+$")


def _raw_text(node: yaml.Node) -> bool:
    """A scalar whose YAML reading would change its digits: a float (``40.10``), or an
    integer with a leading zero, which YAML 1.1 reads as octal (``00010`` -> 8)."""
    if node.tag == "tag:yaml.org,2002:float":
        return True
    return node.tag == "tag:yaml.org,2002:int" and bool(_LEADING_ZERO.match(str(node.value)))


def load_yaml(
    text: str,
    env: Mapping[str, str] | None = None,
    raw_keys: frozenset[str] = RAW_TEXT_KEYS,
    placeholder: Callable[[str], str] | None = None,
) -> tuple[Any, SourceMap, list[YamlIssue]]:
    """Parse ``text``; return (data, source map, issues found while building it).

    Scalars under a key in ``raw_keys`` keep their source text: a Modbus address
    ``40.10`` (register 40, bit 10) must not become the float 40.1 (bit 1), nor ``00010``
    (Modicon coil 10, or decimal 10) the octal 8.
    """
    env = os.environ if env is None else env
    loader: Any = None
    try:
        loader = _Loader(text)
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise YamlError(f"{e.problem or e}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise YamlError(str(e), None) from None
    finally:
        if loader is not None:
            loader.dispose()
    smap = SourceMap()
    issues: list[YamlIssue] = []
    if root is None:
        return {}, smap, issues
    builder = yaml.SafeLoader("")

    def build(node: yaml.Node, path: Path_) -> Any:
        smap.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            builder.flatten_mapping(node)
            out: dict[Any, Any] = {}
            for knode, vnode in node.value:
                key = builder.construct_object(knode, deep=True)
                if not isinstance(key, str | int | float | bool):
                    issues.append(YamlIssue(path, knode.start_mark.line + 1, "mapping key must be a scalar"))
                    continue
                if key in out:
                    issues.append(
                        YamlIssue(
                            (*path, key),
                            knode.start_mark.line + 1,
                            f"duplicate key {key!r} (the earlier value would be silently replaced)",
                        )
                    )
                out[key] = build(vnode, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [build(v, (*path, i)) for i, v in enumerate(node.value)]
        if path and path[-1] in raw_keys and _raw_text(node):
            return node.value
        value = builder.construct_object(node, deep=True)
        if isinstance(value, str) and "${" in value:
            value, missing = interpolate(value, env, placeholder)
            for name in missing:
                if placeholder is None:
                    issues.append(
                        YamlIssue(path, node.start_mark.line + 1, f"environment variable {name} is not set")
                    )
                else:
                    issues.append(
                        YamlIssue(
                            path,
                            node.start_mark.line + 1,
                            f"environment variable {name} is not set: checked with a placeholder (--offline-secrets)",
                            "warning",
                            name,
                        )
                    )
        return value

    try:
        data = build(root, ())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise YamlError(str(e), mark.line + 1 if mark else None) from None
    # Made again in one piece (issue 23): the node tree (every node with two marks) is several
    # times the size of the data built from it, 60 MB for a 5,000-tag site, and the data lands
    # between the nodes; once the tree is freed, the interpreter's memory pools would stay pinned
    # by the data spread over them and the gateway would keep ~45 MB it never uses for as long
    # as it runs. Serialised, freed, and read back once the tree is gone, the same values take
    # fresh, dense pools and the old ones go back to the system. (Plain data only: what YAML's
    # safe constructor makes.)
    builder.constructed_objects.clear()  # the constructor (in a reference cycle) holds every node
    del root
    blob = pickle.dumps((data, smap.lines), protocol=pickle.HIGHEST_PROTOCOL)
    del data
    smap.lines = {}
    data, smap.lines = pickle.loads(blob)  # bytes made just above from safe-loaded YAML
    return data, smap, issues
