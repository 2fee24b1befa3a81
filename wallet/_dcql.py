"""DCQL (OpenID4VP 1.0 §6) evaluated by the holder against its SD-JWT VCs, choosing the
smallest set of disclosures that answers the query (data minimisation)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from cryptography import x509

from ._jose import JoseError, b64u, x5c_decode
from ._sdjwt import SdJwt, SdJwtError, disclosed_claims, select, unpack
from .errors import AccessDenied, InvalidRequest

SD_JWT_FORMAT = "dc+sd-jwt"
_ID = re.compile(r"[A-Za-z0-9_-]+")


@dataclass
class CredentialMatch:
    """One credential chosen for one credential query, with the disclosures to present.
    ``credential`` is the holder's stored credential (``format``, ``vct``, ``sd_jwt``)."""

    query_id: str
    credential: Any
    disclosures: list[str]
    claims: dict[str, Any] = field(default_factory=dict)
    requested_paths: list[list[Any]] = field(default_factory=list)


def validate(query: Any) -> dict[str, dict[str, Any]]:
    """Structural checks of §6.1-§6.3; returns the credential queries by id."""
    if not isinstance(query, dict) or not isinstance(query.get("credentials"), list) or not query["credentials"]:
        raise InvalidRequest("dcql_query.credentials must be a non-empty array")
    by_id: dict[str, dict[str, Any]] = {}
    for n, cq in enumerate(query["credentials"]):
        where = f"dcql_query.credentials[{n}]"
        if not isinstance(cq, dict):
            raise InvalidRequest(f"{where} must be an object")
        cid = cq.get("id")
        if not isinstance(cid, str) or not _ID.fullmatch(cid) or cid in by_id:
            raise InvalidRequest(f"{where}.id must be a unique [A-Za-z0-9_-]+ string")
        if not isinstance(cq.get("format"), str):
            raise InvalidRequest(f"{where}.format is required")
        if not isinstance(cq.get("meta"), dict):
            raise InvalidRequest(f"{where}.meta is required")
        if cq["format"] == SD_JWT_FORMAT:
            vcts = cq["meta"].get("vct_values")
            if not isinstance(vcts, list) or not all(isinstance(v, str) for v in vcts):
                raise InvalidRequest(f"{where}.meta.vct_values must be an array of strings")
        claims = cq.get("claims")
        if claims is not None:
            if not isinstance(claims, list) or not claims:
                raise InvalidRequest(f"{where}.claims must be a non-empty array")
            claim_ids = set()
            for k, cl in enumerate(claims):
                if not isinstance(cl, dict) or not isinstance(cl.get("path"), list) or not cl["path"]:
                    raise InvalidRequest(f"{where}.claims[{k}].path must be a non-empty array")
                if "values" in cl and (not isinstance(cl["values"], list) or not cl["values"]):
                    raise InvalidRequest(f"{where}.claims[{k}].values must be a non-empty array")
                if "id" in cl:
                    if not isinstance(cl["id"], str) or cl["id"] in claim_ids:
                        raise InvalidRequest(f"{where}.claims[{k}].id must be a unique string")
                    claim_ids.add(cl["id"])
            sets = cq.get("claim_sets")
            if sets is not None:
                if not isinstance(sets, list) or not sets or not all(
                        isinstance(s, list) and s and all(c in claim_ids for c in s) for s in sets):
                    raise InvalidRequest(f"{where}.claim_sets must be non-empty arrays of claim ids")
        elif "claim_sets" in cq:
            raise InvalidRequest(f"{where}.claim_sets without claims")
        by_id[cid] = cq
    sets = query.get("credential_sets")
    if sets is not None:
        if not isinstance(sets, list) or not sets:
            raise InvalidRequest("dcql_query.credential_sets must be a non-empty array")
        for s in sets:
            opts = s.get("options") if isinstance(s, dict) else None
            if not isinstance(opts, list) or not opts or not all(
                    isinstance(o, list) and o and all(i in by_id for i in o) for o in opts):
                raise InvalidRequest("dcql_query.credential_sets options must name credential query ids")
    return by_id


def holder_bound_ids(query: dict[str, Any]) -> set[str]:
    return {cq["id"] for cq in query["credentials"] if cq.get("require_cryptographic_holder_binding", True)}


def _authority_ids(sd_jwt: SdJwt) -> set[str]:
    """AKI key identifiers (and SKIs) of the issuer's x5c chain, base64url (§6.1.1.1 ``aki``)."""
    try:
        certs = x5c_decode(sd_jwt.header.get("x5c"))
    except JoseError:
        return set()
    out = set()
    for cert in certs:
        for ext_cls in (x509.AuthorityKeyIdentifier, x509.SubjectKeyIdentifier):
            try:
                ext = cert.extensions.get_extension_for_class(ext_cls).value
            except x509.ExtensionNotFound:
                continue
            kid = ext.key_identifier if isinstance(ext, x509.AuthorityKeyIdentifier) else ext.digest
            if kid:
                out.add(b64u(kid))
    return out


def _match_one(cq: dict[str, Any], cred: Any) -> CredentialMatch | None:
    if cq["format"] != SD_JWT_FORMAT or cred.format != SD_JWT_FORMAT:
        return None
    if cred.vct not in cq["meta"]["vct_values"]:
        return None
    authorities = cq.get("trusted_authorities")
    if authorities:
        akis = _authority_ids(cred.sd_jwt)
        if not any(isinstance(a, dict) and a.get("type") == "aki" and akis & set(a.get("values") or [])
                   for a in authorities):
            return None
    try:
        root = unpack(cred.sd_jwt)
    except SdJwtError:
        return None
    claims = cq.get("claims")
    chosen: set[str] = set()
    paths: list[list[Any]] = []
    if claims:
        options = [[c for c in claims if c.get("id") in s] for s in cq["claim_sets"]] if cq.get("claim_sets") \
            else [claims]
        for option in options:
            found: set[str] = set()
            for cl in option:
                try:
                    m = select(root, cl["path"], cl.get("values"))
                except SdJwtError as e:
                    raise InvalidRequest(f"dcql_query credential {cq['id']!r}: {e}") from e
                if m is None:
                    break
                found |= m.disclosures
            else:
                chosen, paths = found, [cl["path"] for cl in option]
                break
        else:
            return None
    ordered = [d for d in cred.sd_jwt.disclosures if d in chosen]
    return CredentialMatch(cq["id"], cred, ordered, disclosed_claims(cred.sd_jwt, ordered), paths)


def evaluate(query: dict[str, Any], credentials: Sequence[Any]) -> dict[str, list[CredentialMatch]]:
    """§6.4: match every credential query, then pick credential sets. Required sets must be
    satisfied (else ``access_denied``); optional ones are answered only when they can be."""
    by_id = validate(query)
    matches: dict[str, list[CredentialMatch]] = {}
    for cid, cq in by_id.items():
        found = [m for c in credentials if (m := _match_one(cq, c)) is not None]
        if found:
            matches[cid] = found if cq.get("multiple", False) else found[:1]
    sets = query.get("credential_sets")
    if not sets:
        missing = [cid for cid in by_id if cid not in matches]
        if missing:
            raise AccessDenied(f"the wallet holds no credential matching {missing}")
        return matches
    selected: dict[str, list[CredentialMatch]] = {}
    for s in sets:
        option = next((o for o in s["options"] if all(i in matches for i in o)), None)
        if option is None:
            if s.get("required", True):
                raise AccessDenied(f"the wallet cannot satisfy the credential set {s['options']}")
            continue
        for i in option:
            selected[i] = matches[i]
    return selected
