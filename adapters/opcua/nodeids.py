"""Node ids and browse paths as written in a config, parsed without the OPC UA library.

``hazardgw check`` validates them with these functions (importing asyncua costs most of a
second), and the adapter turns the parsed forms into asyncua objects at connect time.

Node ids use the OPC UA string form (Part 6, 5.3.1.10)::

    [ns=<index>;|nsu=<namespace uri>;](i=<uint32>|s=<string>|g=<guid>|b=<base64>)

``nsu=`` is resolved through the server's NamespaceArray at every connect, so it survives a
server that renumbers its namespaces after a restart.

Browse paths are browse names separated by ``/`` from the Root folder:
``Objects/Plant/V101/PT101`` (a leading ``/`` or ``Root/`` is allowed). An element
``2:PT101`` names namespace index 2; an element without a prefix matches its name in any
namespace (and is an error for that point when two children of one node match).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Literal

IdKind = Literal["i", "s", "g", "b"]

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_NS_PREFIX = re.compile(r"^(\d{1,5}):(.+)$", re.S)


@dataclass(frozen=True)
class NodeRef:
    """A parsed node id: namespace by index (``ns``) or by URI (``nsu``), and the identifier."""

    kind: IdKind
    ident: str  # as written (for i: decimal digits)
    ns: int = 0
    nsu: str | None = None

    def text(self) -> str:
        prefix = f"nsu={self.nsu};" if self.nsu is not None else (f"ns={self.ns};" if self.ns else "")
        return f"{prefix}{self.kind}={self.ident}"


def parse_node_id(text: str) -> NodeRef:
    """Parse a node id string; ValueError with a readable reason when it is not one."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("node id is empty")
    rest = text.strip()
    ns = 0
    nsu: str | None = None
    if rest.startswith("ns="):
        head, sep, rest = rest.partition(";")
        if not sep:
            raise ValueError(f"node id {text!r}: 'ns=<index>;' must be followed by i=, s=, g= or b=")
        digits = head[3:]
        if not digits.isdigit() or int(digits) > 65535:
            raise ValueError(f"node id {text!r}: namespace index must be 0..65535")
        ns = int(digits)
    elif rest.startswith("nsu="):
        head, sep, rest = rest.partition(";")
        if not sep or len(head) <= 4:
            raise ValueError(f"node id {text!r}: 'nsu=<uri>;' must be followed by i=, s=, g= or b=")
        nsu = head[4:]
    kind, eq, ident = rest[:1], rest[1:2], rest[2:]
    if eq != "=" or kind not in ("i", "s", "g", "b"):
        raise ValueError(
            f"node id {text!r}: expected [ns=<index>;]i=<number>|s=<string>|g=<guid>|b=<base64>, "
            "e.g. ns=2;s=V101.TT101.PV"
        )
    if kind == "i":
        if not ident.isdigit() or int(ident) > 0xFFFFFFFF:
            raise ValueError(f"node id {text!r}: i= takes a number 0..4294967295")
        ident = str(int(ident))
    elif kind == "s":
        if not ident:
            raise ValueError(f"node id {text!r}: s= needs a string")
    elif kind == "g":
        if not _GUID.match(ident):
            raise ValueError(f"node id {text!r}: g= takes a GUID like 72962b91-fa75-4ae6-8d28-b404dc7daf63")
    else:
        try:
            base64.b64decode(ident, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"node id {text!r}: b= takes base64") from None
        if not ident:
            raise ValueError(f"node id {text!r}: b= needs base64 bytes")
    return NodeRef(kind, ident, ns, nsu)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PathElement:
    name: str
    ns: int | None = None  # None: any namespace

    def text(self) -> str:
        return self.name if self.ns is None else f"{self.ns}:{self.name}"


def parse_browse_path(text: str) -> tuple[PathElement, ...]:
    """``Objects/Plant/V101/PT101`` -> its elements below the Root folder."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("browse path is empty")
    parts = text.strip().strip("/").split("/")
    if parts and parts[0] == "Root":
        parts = parts[1:]
    if not parts or any(not p.strip() for p in parts):
        raise ValueError(f"browse path {text!r}: empty element (write Objects/Folder/Variable)")
    out = []
    for p in parts:
        p = p.strip()
        m = _NS_PREFIX.match(p)
        if m:
            if int(m.group(1)) > 65535:
                raise ValueError(f"browse path {text!r}: namespace index {m.group(1)} must be 0..65535")
            out.append(PathElement(m.group(2), int(m.group(1))))
        else:
            out.append(PathElement(p))
    return tuple(out)


def format_browse_path(elements: tuple[PathElement, ...] | list[PathElement]) -> str:
    return "/".join(e.text() for e in elements)
