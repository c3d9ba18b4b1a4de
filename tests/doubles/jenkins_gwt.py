"""The Generic Webhook Trigger plugin in the Jenkins double: whitelist, HMAC check, variable
resolution from the JSON body, headers and query, and the regexp filter.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import re
from typing import Any

from jsonpath_ng.ext import parse as parse_json_path

from .jenkins_model import (
    _HMAC_ALGORITHMS,
    _HMAC_PREFIXES,
    _GwtTrigger,
    _ServerError,
    _WhitelistError,
)
from .jenkins_xml import _java_map_string

# ----------------------------------------------------------------------------------------------
# Generic Webhook Trigger: the global whitelist (WhitelistVerifier, HostVerifier, WhitelistHost,
# HMACVerifier).


def _java_str(value: str | None) -> str:
    """A string as Java's concatenation writes it (null as "null")."""
    return "null" if value is None else value


def _java_split(text: str, separator: str) -> list[str]:
    """``String.split``: trailing empty strings are dropped."""
    parts = text.split(separator)
    while len(parts) > 1 and not parts[-1]:
        parts.pop()
    return parts


def _whitelist_host(text: str | None) -> tuple[str, str, Any]:
    """WhitelistHost: (kind ANY/CIDR/STATIC, trimmed text, parsed address or network)."""
    if text is None or not text.strip():
        return "ANY", "", None
    host = text.strip()
    parts = _java_split(host, "/")
    if len(parts) == 2 or len(_java_split(host, "-")) == 2:
        left = parts[0] if len(parts) == 2 else _java_split(host, "-")[0]
        try:
            version = ipaddress.ip_address(left).version
        except ValueError:
            raise _WhitelistError(f"{host} is not an Ipv4 string literal.") from None
        try:
            if len(parts) == 2:
                ranges = [ipaddress.ip_network(host, strict=False)]
            else:
                low, high = (ipaddress.ip_address(p) for p in host.split("-"))
                ranges = list(ipaddress.summarize_address_range(low, high))
        except (ValueError, TypeError):
            kind = "Ipv4" if version == 4 else "Ipv6"
            raise _WhitelistError(f"{host} cannot be parsed as {kind} string literal.") from None
        return "CIDR", host, ranges
    try:
        return "STATIC", host, ipaddress.ip_address(host)
    except ValueError:
        raise _WhitelistError(f"{host} is not a valid IP string literal.") from None


def _whitelist_host_verified(remote: str, item_host: str | None) -> None:
    kind, host, parsed = _whitelist_host(item_host)
    _, remote_text, remote_ip = _whitelist_host(remote)
    if host.lower() == remote_text.lower() or kind == "ANY":
        return
    family = f"Ipv{remote_ip.version}" if remote_ip is not None else "Ipv4"
    if kind == "CIDR":
        if parsed[0].version == getattr(remote_ip, "version", None):
            if any(remote_ip in network for network in parsed):
                return
            raise _WhitelistError(f"{remote_text} did not match {family} range.")
    elif parsed.version == getattr(remote_ip, "version", None):
        if parsed == remote_ip:
            return
        raise _WhitelistError(f"{remote_text} did not match statically defined {family}.")
    raise _WhitelistError(f"{remote_text} is not of same IP version as statically defined IP.")


def _hmac_header_value(name: str | None, headers: dict[str, list[str]]) -> str:
    for key, values in headers.items():
        if name is not None and key.lower() == name.lower() and len(values) == 1:
            value = values[0]
            for prefix in _HMAC_PREFIXES:
                if value.startswith(prefix):
                    return value[len(prefix) :]  # X-Hub-Signature: sha256=...
                if value.startswith("HMAC "):
                    return value[5:].strip()
            return value
    raise _WhitelistError(
        f'Was unable to find header with name "{_java_str(name)}" among {_java_map_string(headers)}'
    )


def _hmac_verify(
    headers: dict[str, list[str]],
    post_content: str,
    header: str | None,
    secret: str,
    algorithm: str | None,
) -> None:
    given = _hmac_header_value(header, headers)
    digest_name = _HMAC_ALGORITHMS.get((algorithm or "").lower())
    if digest_name is None:
        raise _ServerError(
            f"java.lang.RuntimeException: java.security.NoSuchAlgorithmException: "
            f"Algorithm {algorithm} not available"
        )
    if not secret:
        raise _ServerError("java.lang.IllegalArgumentException: Empty key")
    raw = hmac.new(secret.encode("utf-8"), post_content.encode("utf-8"), digest_name).digest()
    hex_upper = raw.hex().upper()
    candidates = (
        hex_upper,
        base64.b64encode(hex_upper.encode("utf-8")).decode("ascii"),
        base64.b64encode(raw).decode("ascii"),
    )
    if not any(given.lower() == candidate.lower() for candidate in candidates):
        raise _WhitelistError(
            f'HMAC verification failed with "{_java_str(header)}" as "{given}" and algorithm '
            f"{_java_str(algorithm)}"
        )


# ----------------------------------------------------------------------------------------------
# Generic Webhook Trigger: variable resolution, flattening and the filter.


def _gson(value: Any) -> str:
    # Gson's default output: compact, non-ASCII kept, HTML-sensitive characters escaped.
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("=", "\\u003d"),
        ("'", "\\u0027"),
    ):
        text = text.replace(char, escape)
    return text


def _variable_name(name: str) -> str:
    return re.sub(r"\s", "_", name).replace("-", "_")


def _regexp_filter(value: str, pattern: str | None) -> str:
    if not pattern:
        return value
    return re.sub(pattern, "", value)


def _flatten(key: str, pattern: str | None, resolved: Any, out: dict[str, str]) -> None:
    if isinstance(resolved, list):
        for index, item in enumerate(resolved):
            _flatten(f"{key}_{index}", pattern, item, out)
    elif isinstance(resolved, dict):
        for child_key, child in resolved.items():
            _flatten(f"{key}_{child_key}", pattern, child, out)
    elif resolved is not None:
        text = resolved if isinstance(resolved, str) else _gson(resolved)
        out[_variable_name(key)] = _regexp_filter(text, pattern)


def _flatten_json(key: str, pattern: str | None, resolved: Any, flatten: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    if flatten:
        _flatten(key, pattern, resolved, out)
    elif isinstance(resolved, str):
        out[_variable_name(key)] = _regexp_filter(resolved, pattern)
    if resolved is not None and not isinstance(resolved, str):
        out[_variable_name(key)] = _regexp_filter(_gson(resolved), pattern)
    return out


_INDEFINITE = re.compile(r"\*|\.\.|\[\?|\[[^\]]*[,:][^\]]*\]")


def _json_path(document: Any, expression: str) -> tuple[bool, Any]:
    """Evaluate like Jayway's ``JsonPath.read``: (found, value)."""
    matches = [m.value for m in parse_json_path(expression).find(document)]
    if _INDEFINITE.search(expression):
        return True, matches
    if not matches:
        return False, None
    return True, matches[0]


def _resolve_variables(
    trigger: _GwtTrigger,
    headers: dict[str, list[str]],
    parameters: dict[str, list[str]],
    post_content: str,
) -> dict[str, str]:
    resolved: dict[str, str] = {}
    for key, pattern in trigger.header_variables:
        values = headers.get(key.lower())
        if not values:
            continue
        name = _variable_name(key.lower())
        for index, value in enumerate(values):
            resolved[f"{name}_{index}"] = _regexp_filter(value, pattern)
        if len(values) == 1:
            resolved[name] = _regexp_filter(values[0], pattern)
    for key, pattern in trigger.request_variables:
        values = parameters.get(key)
        if not values:
            continue
        name = _variable_name(key)
        for index, value in enumerate(values):
            resolved[f"{name}_{index}"] = _regexp_filter(value, pattern)
        if len(values) == 1:
            resolved[name] = _regexp_filter(values[0], pattern)
    document: Any = None
    document_ok = False
    if post_content:
        try:
            document = json.loads(post_content)
            document_ok = True
        except ValueError:
            document_ok = False
    for variable in trigger.variables:
        found: dict[str, str] = {}
        if post_content and variable.expression and variable.expression_type == "JSONPath":
            try:
                if document_ok:
                    ok, value = _json_path(document, variable.expression)
                    if ok:
                        found = _flatten_json(
                            variable.key,
                            variable.regexp_filter,
                            value,
                            not trigger.should_not_flatten,
                        )
                        if variable.expression.strip() == "$":
                            found[variable.key] = post_content
            except Exception:
                found = {}  # the plugin logs "Unable to resolve ..." and goes on
        not_resolved = not found or found.get(variable.key) == ""
        if not_resolved and variable.default_value is not None:
            found[variable.key] = variable.default_value
        resolved.update(found)
    return dict(sorted(resolved.items()))


def _render(text: str | None, variables: dict[str, str]) -> str:
    if not text:
        return ""
    order = sorted(variables, key=lambda name: (-len(name), name))
    for name in order:
        text = text.replace("$" + name, variables[name])
        text = text.replace("${" + name + "}", variables[name])
    return text


def _is_matching(text: str, expression: str | None) -> bool:
    if not text and not expression:
        return True
    return re.search(expression or "", text) is not None
