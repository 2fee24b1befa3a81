"""SD-JWT (RFC 9901) on the holder and issuer side: make disclosures, parse an issued SD-JWT into
a tree that remembers which disclosure revealed each node, and pick the disclosures that a
claim path (OpenID4VP §7 claims path pointer) needs."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from ._jose import JoseError, b64u, b64u_decode, decode_jws, sha256_b64u

_RESERVED = {"_sd", "..."}


class SdJwtError(ValueError):
    """The SD-JWT is malformed (RFC 9901 §7.1 checks)."""


def digest(disclosure: str) -> str:
    """RFC 9901 §4.2.3: base64url(SHA-256(ASCII of the base64url disclosure))."""
    return sha256_b64u(disclosure)


def make_disclosure(name: str | None, value: Any, salt: str | None = None) -> str:
    """RFC 9901 §4.2.1/§4.2.2: ``[salt, name, value]`` or, for an array element, ``[salt, value]``;
    128-bit random salt."""
    salt = salt or b64u(secrets.token_bytes(16))
    content = [salt, value] if name is None else [salt, name, value]
    return b64u(json.dumps(content, ensure_ascii=False).encode("utf-8"))


def decoy_digest() -> str:
    """RFC 9901 §4.2.5: a digest over random bytes that no disclosure matches."""
    return b64u(hashlib.sha256(secrets.token_bytes(32)).digest())


@dataclass
class SdJwt:
    """``<issuer-jwt>~<d1>~...~<dn>~[<kb-jwt>]`` split into its parts."""

    issuer_jwt: str
    disclosures: list[str]
    kb_jwt: str | None = None

    @classmethod
    def parse(cls, text: str) -> SdJwt:
        if not isinstance(text, str) or "~" not in text:
            raise SdJwtError("not an SD-JWT (no '~')")
        parts = text.split("~")
        kb = parts[-1] or None
        jwt, disclosures = parts[0], parts[1:-1]
        if any(not d for d in disclosures):
            raise SdJwtError("empty disclosure")
        return cls(jwt, disclosures, kb)

    def serialize(self, disclosures: Iterable[str] | None = None) -> str:
        """The presentation without KB-JWT, i.e. exactly the ``sd_hash`` input (trailing ``~``)."""
        chosen = list(self.disclosures if disclosures is None else disclosures)
        return "~".join([self.issuer_jwt, *chosen]) + "~"

    @property
    def header(self) -> dict[str, Any]:
        return decode_jws(self.issuer_jwt)[0]

    @property
    def payload(self) -> dict[str, Any]:
        return decode_jws(self.issuer_jwt)[1]


@dataclass
class Node:
    """One element of the processed credential. ``disclosure`` is the disclosure that revealed it
    (``None`` for always-visible claims). Objects keep ``members``; arrays keep ``items``."""

    value: Any = None
    members: dict[str, Node] | None = None
    items: list[Node] | None = None
    disclosure: str | None = None

    def plain(self) -> Any:
        if self.members is not None:
            return {k: v.plain() for k, v in self.members.items()}
        if self.items is not None:
            return [v.plain() for v in self.items]
        return self.value

    def descendant_disclosures(self) -> Iterator[str]:
        children = (self.members or {}).values() if self.members is not None else (self.items or [])
        for child in children:
            if child.disclosure:
                yield child.disclosure
            yield from child.descendant_disclosures()


def unpack(sd_jwt: SdJwt) -> Node:
    """RFC 9901 §7.1 steps 3-5 over the issuer payload: resolve every digest to its disclosure,
    reject duplicates and unreferenced disclosures, and build the tree."""
    try:
        payload = sd_jwt.payload
    except JoseError as e:
        raise SdJwtError(str(e)) from e
    by_digest: dict[str, tuple[str, list[Any]]] = {}
    for d in sd_jwt.disclosures:
        try:
            content = json.loads(b64u_decode(d))
        except (ValueError, UnicodeDecodeError) as e:
            raise SdJwtError(f"undecodable disclosure: {e}") from e
        if not isinstance(content, list) or len(content) not in (2, 3) or not isinstance(content[0], str):
            raise SdJwtError("disclosure is not [salt, (name,) value]")
        h = digest(d)
        if h in by_digest:
            raise SdJwtError("the same disclosure appears twice")
        by_digest[h] = (d, content)
    used: set[str] = set()

    def walk(obj: Any, disclosure: str | None = None) -> Node:
        if isinstance(obj, dict):
            members: dict[str, Node] = {}
            for key, val in obj.items():
                if key in ("_sd", "_sd_alg"):
                    continue
                members[key] = walk(val)
            for h in obj.get("_sd", []):
                if not isinstance(h, str):
                    raise SdJwtError("_sd holds a non-string digest")
                if h in used:
                    raise SdJwtError("a digest is referenced twice")
                if h not in by_digest:
                    continue  # decoy, or a disclosure the holder does not present
                d, content = by_digest[h]
                if len(content) != 3:
                    raise SdJwtError("array-element disclosure referenced from an object")
                used.add(h)
                name = content[1]
                if not isinstance(name, str) or name in _RESERVED or name in members:
                    raise SdJwtError(f"bad or duplicate claim name in disclosure: {name!r}")
                members[name] = walk(content[2], d)
            return Node(members=members, disclosure=disclosure)
        if isinstance(obj, list):
            items: list[Node] = []
            for el in obj:
                if isinstance(el, dict) and set(el) == {"..."}:
                    h = el["..."]
                    if h in used:
                        raise SdJwtError("a digest is referenced twice")
                    if h not in by_digest:
                        continue
                    d, content = by_digest[h]
                    if len(content) != 2:
                        raise SdJwtError("object-property disclosure referenced from an array")
                    used.add(h)
                    items.append(walk(content[1], d))
                else:
                    items.append(walk(el))
            return Node(items=items, disclosure=disclosure)
        return Node(value=obj, disclosure=disclosure)

    root = walk(payload)
    if set(by_digest) - used:
        raise SdJwtError("a disclosure is not referenced by the issuer-signed JWT")
    return root


@dataclass
class PathMatch:
    """Nodes a claims path selects, and the disclosures needed to reveal them and everything
    below them."""

    nodes: list[Node] = field(default_factory=list)
    disclosures: set[str] = field(default_factory=set)


def select(root: Node, path: list[Any], values: list[Any] | None = None) -> PathMatch | None:
    """OpenID4VP §7.1 claims path pointer: a string selects an object member, a non-negative
    integer an array element, null every array element. ``None`` if nothing is selected."""
    if not isinstance(path, list) or not path:
        raise SdJwtError("claims path must be a non-empty array")
    frontier: list[tuple[Node, list[Node]]] = [(root, [])]
    for component in path:
        nxt: list[tuple[Node, list[Node]]] = []
        for node, chain in frontier:
            if isinstance(component, str):
                if node.members is not None and component in node.members:
                    child = node.members[component]
                    nxt.append((child, [*chain, child]))
            elif component is None:
                if node.items is not None:
                    nxt.extend((child, [*chain, child]) for child in node.items)
            elif isinstance(component, int) and not isinstance(component, bool) and component >= 0:
                if node.items is not None and component < len(node.items):
                    child = node.items[component]
                    nxt.append((child, [*chain, child]))
            else:
                raise SdJwtError(f"bad claims path component: {component!r}")
        frontier = nxt
        if not frontier:
            return None
    if values is not None:
        frontier = [(n, c) for n, c in frontier if n.members is None and n.items is None and n.value in values]
        if not frontier:
            return None
    match = PathMatch()
    for node, chain in frontier:
        match.nodes.append(node)
        match.disclosures.update(n.disclosure for n in chain if n.disclosure)
        match.disclosures.update(node.descendant_disclosures())
    return match


def disclosed_claims(sd_jwt: SdJwt, disclosures: Iterable[str]) -> dict[str, Any]:
    """The claims a verifier would see given these disclosures (for display and tests)."""
    view = SdJwt(sd_jwt.issuer_jwt, [d for d in sd_jwt.disclosures if d in set(disclosures)])
    return unpack(view).plain()
