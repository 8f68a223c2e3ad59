"""WS-Discovery (2005/04, as ONVIF uses it) Probe and ProbeMatches messages, free of sockets."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit
from xml.sax.saxutils import escape, quoteattr

MULTICAST_ADDRESS = "239.255.255.250"
DISCOVERY_PORT = 3702
MAX_MESSAGE_BYTES = 64 * 1024

NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS_WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
NS_DN = "http://www.onvif.org/ver10/network/wsdl"
NS_TDS = "http://www.onvif.org/ver10/device/wsdl"
NS_WSDP = "http://schemas.xmlsoap.org/ws/2006/02/devprof"

ACTION_PROBE = f"{NS_WSD}/Probe"
ACTION_PROBE_MATCHES = f"{NS_WSD}/ProbeMatches"
TO_DISCOVERY = "urn:schemas-xmlsoap-org:ws:2005:04:discovery"
ANONYMOUS = f"{NS_WSA}/role/anonymous"

MATCH_BY_RFC2396 = f"{NS_WSD}/rfc2396"
MATCH_BY_UUID = f"{NS_WSD}/uuid"
MATCH_BY_STRCMP0 = f"{NS_WSD}/strcmp0"

# Types are QNames; they are kept as "prefix:Local" with these fixed prefixes (whatever prefix the
# sender chose), "{namespace}Local" for other namespaces, or "Local" for no namespace, so that
# equal types compare equal as strings.
KNOWN_PREFIXES = {"dn": NS_DN, "tds": NS_TDS, "wsdp": NS_WSDP}
_PREFIX_OF = {ns: prefix for prefix, ns in KNOWN_PREFIXES.items()}

_NCNAME = re.compile(r"[^\W\d][\w.-]*")
# Characters XML 1.0 cannot carry at all, even escaped.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_FORBIDDEN_DECLS = ("<!DOCTYPE", "<!ENTITY")


class WsDiscoveryError(ValueError):
    """A WS-Discovery message that cannot be built or parsed."""


@dataclass(frozen=True)
class Probe:
    message_id: str
    types: tuple[str, ...]
    scopes: tuple[str, ...]
    match_by: str = MATCH_BY_RFC2396


@dataclass(frozen=True)
class ProbeMatch:
    endpoint: str  # urn:uuid:...
    types: tuple[str, ...]
    scopes: tuple[str, ...]
    xaddrs: tuple[str, ...]
    relates_to: str = ""  # filled in by parsing; ignored when building
    metadata_version: int = 1


# --- building -------------------------------------------------------------------------------


def new_message_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def build_probe(
    message_id: str | None = None,
    types: Sequence[str] = ("dn:NetworkVideoTransmitter",),
    scopes: Sequence[str] = (),
    match_by: str = MATCH_BY_RFC2396,
) -> tuple[str, bytes]:
    """A Probe envelope; returns its MessageID (new if not given) and its bytes."""
    message_id = _check_uri(message_id or new_message_id(), "MessageID")
    prefix_of = _type_prefixes(types)
    scopes_xml = ""
    if scopes:
        match_attr = "" if match_by == MATCH_BY_RFC2396 else f" MatchBy={_attr(match_by)}"
        scopes_xml = f"<d:Scopes{match_attr}>{_uri_list(scopes, 'scope')}</d:Scopes>"
    types_xml = f"<d:Types>{_qnames_text(types, prefix_of)}</d:Types>" if types else ""
    header = (
        f'<a:Action s:mustUnderstand="1">{ACTION_PROBE}</a:Action>'
        f"<a:MessageID>{escape(message_id)}</a:MessageID>"
        f"<a:ReplyTo><a:Address>{ANONYMOUS}</a:Address></a:ReplyTo>"
        f'<a:To s:mustUnderstand="1">{TO_DISCOVERY}</a:To>'
    )
    body = f"<d:Probe>{types_xml}{scopes_xml}</d:Probe>"
    return message_id, _envelope(header, body, prefix_of)


def build_probe_matches(
    relates_to: str,
    matches: Sequence[ProbeMatch],
    *,
    message_id: str | None = None,
    instance_id: int = 1,
    message_number: int = 1,
) -> bytes:
    """One ProbeMatches envelope answering the Probe `relates_to`.

    `instance_id`/`message_number` fill the AppSequence header: the instance changes when the
    responder restarts, the number counts its messages, so receivers can order them.
    """
    relates_to = _check_uri(relates_to, "RelatesTo")
    message_id = _check_uri(message_id or new_message_id(), "MessageID")
    prefix_of = _type_prefixes(t for m in matches for t in m.types)
    items = "".join(_probe_match_xml(m, prefix_of) for m in matches)
    header = (
        f"<a:MessageID>{escape(message_id)}</a:MessageID>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>"
        f"<a:To>{ANONYMOUS}</a:To>"
        f"<a:Action>{ACTION_PROBE_MATCHES}</a:Action>"
        f'<d:AppSequence InstanceId="{_uint(instance_id, "InstanceId")}"'
        f' MessageNumber="{_uint(message_number, "MessageNumber")}"/>'
    )
    body = f"<d:ProbeMatches>{items}</d:ProbeMatches>"
    return _envelope(header, body, prefix_of)


def _probe_match_xml(match: ProbeMatch, prefix_of: dict[str, str]) -> str:
    endpoint = _check_uri(match.endpoint, "endpoint")
    return (
        "<d:ProbeMatch>"
        f"<a:EndpointReference><a:Address>{escape(endpoint)}</a:Address></a:EndpointReference>"
        f"<d:Types>{_qnames_text(match.types, prefix_of)}</d:Types>"
        f"<d:Scopes>{_uri_list(match.scopes, 'scope')}</d:Scopes>"
        f"<d:XAddrs>{_uri_list(match.xaddrs, 'XAddr')}</d:XAddrs>"
        f"<d:MetadataVersion>{_uint(match.metadata_version, 'MetadataVersion')}</d:MetadataVersion>"
        "</d:ProbeMatch>"
    )


def _envelope(header: str, body: str, type_prefixes: dict[str, str]) -> bytes:
    decls = {"s": NS_SOAP, "a": NS_WSA, "d": NS_WSD}
    decls.update({prefix: ns for ns, prefix in type_prefixes.items()})
    xmlns = "".join(f" xmlns:{prefix}={_attr(ns)}" for prefix, ns in decls.items())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<s:Envelope{xmlns}><s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def _type_prefixes(types: Iterable[str]) -> dict[str, str]:
    """Prefix to declare for each namespace the types use: the fixed one, else a generated tN."""
    prefix_of: dict[str, str] = {}
    for name in types:
        ns, _ = expand_qname(name)
        if ns and ns not in prefix_of:
            prefix_of[ns] = _PREFIX_OF.get(ns) or f"t{len(prefix_of)}"
    return prefix_of


def _qnames_text(types: Iterable[str], prefix_of: dict[str, str]) -> str:
    names = (expand_qname(t) for t in types)
    return " ".join(f"{prefix_of[ns]}:{local}" if ns else local for ns, local in names)


def _uri_list(uris: Iterable[str], what: str) -> str:
    return " ".join(escape(_check_uri(u, what)) for u in uris)


def _check_uri(value: str, what: str) -> str:
    # List items are whitespace-separated and all values are whitespace-collapsed on parsing, so
    # any whitespace (or a character XML cannot carry) would not survive the round trip.
    if not value or any(c.isspace() for c in value) or _XML_ILLEGAL.search(value):
        raise WsDiscoveryError(f"{what} must be a non-empty URI without whitespace: {value!r}")
    return value


def _uint(value: int, what: str) -> int:
    if not 0 <= value <= 0xFFFFFFFF:
        raise WsDiscoveryError(f"{what} must be an unsigned 32-bit integer: {value}")
    return value


def _attr(value: str) -> str:
    return quoteattr(_check_uri(value, "attribute"))


# --- QNames ---------------------------------------------------------------------------------


def expand_qname(name: str) -> tuple[str, str]:
    """(namespace, local name) of a type written as "prefix:Local", "{ns}Local" or "Local"."""
    if name.startswith("{"):
        ns, sep, local = name[1:].partition("}")
        if not sep or not ns:
            raise WsDiscoveryError(f"bad type name {name!r}")
        _check_uri(ns, "type namespace")
    else:
        prefix, sep, local = name.rpartition(":")
        if sep and prefix not in KNOWN_PREFIXES:
            raise WsDiscoveryError(
                f"unknown prefix in type {name!r}: use one of {sorted(KNOWN_PREFIXES)}"
                " or {namespace}Local"
            )
        ns = KNOWN_PREFIXES[prefix] if sep else ""
    if not _NCNAME.fullmatch(local):
        raise WsDiscoveryError(f"bad local name in type {name!r}")
    return ns, local


def canonical_qname(ns: str, local: str) -> str:
    if not ns:
        return local
    prefix = _PREFIX_OF.get(ns)
    return f"{prefix}:{local}" if prefix else f"{{{ns}}}{local}"


# --- parsing --------------------------------------------------------------------------------


def parse_probe(data: bytes) -> Probe:
    """The Probe in `data`; WsDiscoveryError on anything else."""
    body, header, scopes_of = _parse_envelope(data, "Probe", ACTION_PROBE)
    message_id = _header_text(header, "MessageID")
    types_el = body.find(f"{{{NS_WSD}}}Types")
    scopes_el = body.find(f"{{{NS_WSD}}}Scopes")
    match_by = MATCH_BY_RFC2396
    if scopes_el is not None:
        match_by = (scopes_el.get("MatchBy") or MATCH_BY_RFC2396).strip()
    return Probe(
        message_id=message_id,
        types=_parse_qnames(types_el, scopes_of),
        scopes=_tokens(scopes_el),
        match_by=match_by,
    )


def parse_probe_matches(data: bytes) -> list[ProbeMatch]:
    """The ProbeMatch entries in a ProbeMatches envelope; WsDiscoveryError on anything else."""
    body, header, scopes_of = _parse_envelope(data, "ProbeMatches", ACTION_PROBE_MATCHES)
    relates_to = _header_text(header, "RelatesTo")
    return [
        _parse_probe_match(el, relates_to, scopes_of)
        for el in body.iterfind(f"{{{NS_WSD}}}ProbeMatch")
    ]


def _parse_probe_match(
    el: ET.Element, relates_to: str, scopes_of: dict[ET.Element, dict[str, str]]
) -> ProbeMatch:
    endpoint = _text(el.find(f"{{{NS_WSA}}}EndpointReference/{{{NS_WSA}}}Address"))
    if not endpoint:
        raise WsDiscoveryError("ProbeMatch without EndpointReference/Address")
    version_el = el.find(f"{{{NS_WSD}}}MetadataVersion")
    # Required by the spec, but a camera that leaves it out is still worth finding.
    version = 1
    if version_el is not None:
        try:
            version = _uint(int(_text(version_el)), "MetadataVersion")
        except ValueError as exc:
            raise WsDiscoveryError(f"bad MetadataVersion {_text(version_el)!r}") from exc
    return ProbeMatch(
        endpoint=endpoint,
        types=_parse_qnames(el.find(f"{{{NS_WSD}}}Types"), scopes_of),
        scopes=_tokens(el.find(f"{{{NS_WSD}}}Scopes")),
        xaddrs=_tokens(el.find(f"{{{NS_WSD}}}XAddrs")),
        relates_to=relates_to,
        metadata_version=version,
    )


def _parse_envelope(
    data: bytes, body_name: str, action: str
) -> tuple[ET.Element, ET.Element | None, dict[ET.Element, dict[str, str]]]:
    """The body element named `body_name`, the header, and in-scope xmlns per element."""
    root, ns_scopes = _parse_xml(data)
    if root.tag != f"{{{NS_SOAP}}}Envelope":
        raise WsDiscoveryError(f"not a SOAP 1.2 envelope: root is {root.tag}")
    header = root.find(f"{{{NS_SOAP}}}Header")
    body = root.find(f"{{{NS_SOAP}}}Body")
    content = None if body is None else next(iter(body), None)
    if content is None:
        raise WsDiscoveryError("SOAP envelope without a body element")
    if content.tag != f"{{{NS_WSD}}}{body_name}":
        raise WsDiscoveryError(f"expected a WS-Discovery 2005/04 {body_name}, got {content.tag}")
    sent_action = _text(None if header is None else header.find(f"{{{NS_WSA}}}Action"))
    if sent_action and sent_action != action:
        raise WsDiscoveryError(f"{body_name} body with Action {sent_action!r}")
    return content, header, ns_scopes


def _parse_xml(data: bytes) -> tuple[ET.Element, dict[ET.Element, dict[str, str]]]:
    if len(data) > MAX_MESSAGE_BYTES:
        raise WsDiscoveryError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        # Decoding first makes expat ignore any declared encoding, so the check below sees
        # exactly the text that is parsed.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise WsDiscoveryError(f"message is not UTF-8: {exc}") from exc
    if any(decl in text for decl in _FORBIDDEN_DECLS):
        raise WsDiscoveryError("DOCTYPE/ENTITY declarations are not accepted")
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start-ns", "start", "end"))
    # In-scope namespace declarations per element, to resolve the QNames inside Types.
    scopes_of: dict[ET.Element, dict[str, str]] = {}
    stack: list[dict[str, str]] = [{}]
    pending: dict[str, str] = {}
    root: ET.Element | None = None
    try:
        parser.feed(text)
        parser.close()
        # Only these three kinds of event were asked for.
        events = cast("Iterator[tuple[str, ET.Element | tuple[str, str]]]", parser.read_events())
        for event, item in events:
            if not isinstance(item, ET.Element):  # start-ns: declarations of the next element
                prefix, ns = item
                pending[prefix] = ns
            elif event == "start":
                scope = {**stack[-1], **pending} if pending else stack[-1]
                pending = {}
                stack.append(scope)
                scopes_of[item] = scope
                root = item if root is None else root
            else:
                stack.pop()
    except ET.ParseError as exc:
        raise WsDiscoveryError(f"malformed XML: {exc}") from exc
    if root is None:
        raise WsDiscoveryError("empty message")
    return root, scopes_of


def _parse_qnames(
    el: ET.Element | None, scopes_of: dict[ET.Element, dict[str, str]]
) -> tuple[str, ...]:
    if el is None:
        return ()
    return tuple(_resolve_qname(token, scopes_of[el]) for token in _tokens(el))


def _resolve_qname(token: str, in_scope: dict[str, str]) -> str:
    prefix, sep, local = token.rpartition(":")
    # Some clients send "dn:" undeclared; the well-known prefixes are unambiguous.
    ns = (in_scope.get(prefix) or KNOWN_PREFIXES.get(prefix)) if sep else in_scope.get("", "")
    if ns is None or (sep and not _NCNAME.fullmatch(prefix)) or not _NCNAME.fullmatch(local):
        raise WsDiscoveryError(f"type {token!r} is not a resolvable QName")
    return canonical_qname(ns, local)


def _header_text(header: ET.Element | None, name: str) -> str:
    value = _text(None if header is None else header.find(f"{{{NS_WSA}}}{name}"))
    if not value:
        raise WsDiscoveryError(f"message without a {name} header")
    return value


def _text(el: ET.Element | None) -> str:
    return "" if el is None else (el.text or "").strip()


def _tokens(el: ET.Element | None) -> tuple[str, ...]:
    return tuple(_text(el).split())


# --- matching -------------------------------------------------------------------------------


def probe_wants(probe: Probe, types: Sequence[str], scopes: Sequence[str]) -> bool:
    """Whether a target with these types and scopes answers `probe` (empty probe lists = any)."""
    have = {expand_qname(t) for t in types}
    if not all(expand_qname(t) in have for t in probe.types):
        return False
    return all(any(scope_matches(s, t, probe.match_by) for t in scopes) for s in probe.scopes)


def scope_matches(probe_scope: str, target_scope: str, match_by: str = MATCH_BY_RFC2396) -> bool:
    """WS-Discovery 2005/04 scope matching; unsupported rules (e.g. ldap) match nothing."""
    if match_by == MATCH_BY_STRCMP0:
        return probe_scope == target_scope
    if match_by == MATCH_BY_UUID:
        wanted = _uuid_of(probe_scope)
        return wanted is not None and wanted == _uuid_of(target_scope)
    if match_by == MATCH_BY_RFC2396:
        return _rfc2396_matches(probe_scope, target_scope)
    return False


def _rfc2396_matches(probe_scope: str, target_scope: str) -> bool:
    # Scheme and authority compare case-insensitively, the path segment-wise as a prefix; query
    # and fragment are not compared, and dot segments never match.
    try:
        s, t = urlsplit(probe_scope), urlsplit(target_scope)
    except ValueError:
        return False
    if (s.scheme.lower(), s.netloc.lower()) != (t.scheme.lower(), t.netloc.lower()):
        return False
    s_segs, t_segs = _segments(s.path), _segments(t.path)
    if {".", ".."} & (set(s_segs) | set(t_segs)):
        return False
    return t_segs[: len(s_segs)] == s_segs


def _segments(path: str) -> list[str]:
    segments = path.split("/")
    # "/name/" and "/name" name the same scope; the leading "" is the root.
    return [seg for i, seg in enumerate(segments) if seg or 0 < i < len(segments) - 1]


def _uuid_of(scope: str) -> uuid.UUID | None:
    scheme, sep, rest = scope.partition(":")
    if not sep or scheme.lower() != "uuid":
        return None
    try:
        return uuid.UUID(rest)
    except ValueError:
        return None
