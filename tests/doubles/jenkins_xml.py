"""How the Jenkins double reads config.xml: the JDK identity transform Jenkins runs on a
submitted config, the fields the double models, and Java's hash order for maps and sets.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any
from xml.parsers import expat

from .jenkins_model import (
    _GWT_HEADER_VARIABLE,
    _GWT_REQUEST_VARIABLE,
    _GWT_TRIGGER,
    _GWT_VARIABLE,
    _ITEM_TYPES,
    _PARAMETERS_PROPERTY,
    _PIPELINE_TRIGGERS,
    _Config,
    _GwtTrigger,
    _GwtVariable,
    _ParamDef,
    _ServerError,
    _XmlError,
)

# ----------------------------------------------------------------------------------------------
# The JDK identity transform that Jenkins runs on every submitted config.xml.


def _escape_text(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def _escape_attribute(value: str) -> str:
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
        .replace("\t", "&#9;")
    )


def identity_transform(data: bytes, *, encoding: str | None = None) -> str:
    """What ``XMLUtils.safeTransform`` writes for ``data``: Jenkins' stored ``config.xml``.

    ``encoding`` overrides the document's declared encoding (a character-stream source).
    Raises ``ValueError`` for XML Jenkins would refuse.
    """
    parser = expat.ParserCreate(encoding)
    parser.ordered_attributes = True
    parser.buffer_text = True
    out: list[str] = []
    state = {"open": False, "cdata": False, "depth": 0}

    def close_start_tag() -> None:
        if state["open"]:
            out.append(">")
            state["open"] = False

    def start(name: str, attributes: list[str]) -> None:
        close_start_tag()
        out.append("<" + name)
        for index in range(0, len(attributes), 2):
            out.append(f' {attributes[index]}="{_escape_attribute(attributes[index + 1])}"')
        state["open"] = True
        state["depth"] += 1

    def end(name: str) -> None:
        state["depth"] -= 1
        if state["open"]:
            out.append("/>")
            state["open"] = False
        else:
            out.append(f"</{name}>")

    def characters(text: str) -> None:
        if state["depth"] == 0:
            return  # whitespace around the root element is not part of the SAX stream
        close_start_tag()
        out.append(text if state["cdata"] else _escape_text(text))

    def comment(text: str) -> None:
        close_start_tag()
        out.append(f"<!--{text}-->")

    def processing_instruction(target: str, data: str) -> None:
        close_start_tag()
        out.append(f"<?{target} {data}?>" if data else f"<?{target}?>")

    def start_cdata() -> None:
        close_start_tag()
        out.append("<![CDATA[")
        state["cdata"] = True

    def end_cdata() -> None:
        out.append("]]>")
        state["cdata"] = False

    def doctype(*_args: Any) -> None:
        raise _XmlError("DOCTYPE is disallowed when the feature is set to true")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    parser.CommentHandler = comment
    parser.ProcessingInstructionHandler = processing_instruction
    parser.StartCdataSectionHandler = start_cdata
    parser.EndCdataSectionHandler = end_cdata
    parser.StartDoctypeDeclHandler = doctype
    try:
        parser.Parse(data, True)
    except (expat.ExpatError, _XmlError) as error:
        raise ValueError(f"org.xml.sax.SAXParseException: {error}") from None
    return '<?xml version="1.0" encoding="UTF-8"?>' + "".join(out)


# ----------------------------------------------------------------------------------------------
# Reading a stored config.


def _text(element: ET.Element | None, path: str) -> str | None:
    if element is None:
        return None
    found = element.find(path)
    if found is None:
        return None
    return found.text or ""


def _flag(element: ET.Element | None, path: str) -> bool:
    return (_text(element, path) or "").strip() == "true"


def _parse_config(xml_text: str) -> _Config:
    root = ET.fromstring(xml_text.encode("utf-8"))
    if root.tag not in _ITEM_TYPES:
        raise _ServerError(
            "java.io.IOException: Unable to read config.xml: "
            f"com.thoughtworks.xstream.mapper.CannotResolveClassException: {root.tag}"
        )
    job_class, run_class = _ITEM_TYPES[root.tag]
    properties_element = root.find("properties")
    properties = (
        [child.tag for child in properties_element] if properties_element is not None else []
    )
    parameters: list[_ParamDef] = []
    for definition in root.findall(f"properties/{_PARAMETERS_PROPERTY}/parameterDefinitions/*"):
        kind = definition.tag.rsplit(".", 1)[-1]
        choices = [c.text or "" for c in definition.findall("choices//string")]
        default = _text(definition, "defaultValue")
        if kind == "ChoiceParameterDefinition":
            default = choices[0] if choices else None
        elif kind == "BooleanParameterDefinition":
            default = "true" if (default or "").strip() == "true" else "false"
        parameters.append(
            _ParamDef(
                kind=kind,
                name=_text(definition, "name") or "",
                default=default,
                description=_text(definition, "description") or "",
                choices=choices,
                trim=kind == "StringParameterDefinition" and _flag(definition, "trim"),
            )
        )
    trigger_element = root.find(f"properties/{_PIPELINE_TRIGGERS}/triggers/{_GWT_TRIGGER}")
    if trigger_element is None:
        trigger_element = root.find(f"triggers/{_GWT_TRIGGER}")
    return _Config(
        root=root.tag,
        job_class=job_class,
        run_class=run_class,
        disabled=_flag(root, "disabled"),
        description=_text(root, "description") or "",
        auth_token=_text(root, "authToken"),
        parameters=parameters,
        properties=properties,
        trigger=_parse_trigger(trigger_element) if trigger_element is not None else None,
    )


def _parse_trigger(element: ET.Element) -> _GwtTrigger:
    variables = [
        _GwtVariable(
            key=_text(v, "key") or "",
            expression=_text(v, "value") or "",
            expression_type=(_text(v, "expressionType") or "JSONPath").strip() or "JSONPath",
            regexp_filter=_text(v, "regexpFilter"),
            default_value=_text(v, "defaultValue"),
        )
        for v in element.findall(f"genericVariables/{_GWT_VARIABLE}")
    ]
    request_variables = [
        (_text(v, "key") or "", _text(v, "regexpFilter"))
        for v in element.findall(f"genericRequestVariables/{_GWT_REQUEST_VARIABLE}")
    ]
    header_variables = [
        (_text(v, "key") or "", _text(v, "regexpFilter"))
        for v in element.findall(f"genericHeaderVariables/{_GWT_HEADER_VARIABLE}")
    ]
    return _GwtTrigger(
        variables=variables,
        request_variables=request_variables,
        header_variables=header_variables,
        regexp_filter_text=_text(element, "regexpFilterText"),
        regexp_filter_expression=_text(element, "regexpFilterExpression"),
        cause_string=_text(element, "causeString"),
        token=_text(element, "token"),
        token_credential_id=_text(element, "tokenCredentialId"),
        silent_response=_flag(element, "silentResponse"),
        should_not_flatten=_flag(element, "shouldNotFlattern"),
        allow_several_triggers_per_build=_flag(element, "allowSeveralTriggersPerBuild"),
    )


# ----------------------------------------------------------------------------------------------
# Java collection order: what Jenkins writes from a HashMap / HashSet of strings.


def _java_string_hash(text: str) -> int:
    """``String.hashCode()`` as an unsigned 32-bit number (over UTF-16 code units)."""
    value = 0
    data = text.encode("utf-16-be")
    for index in range(0, len(data), 2):
        value = (31 * value + (data[index] << 8 | data[index + 1])) & 0xFFFFFFFF
    return value


def _java_hash_order(keys: Iterable[str], capacity: int = 16) -> list[str]:
    """Iteration order of a ``java.util.HashMap`` (or ``HashSet``) that got ``keys`` in order.

    Buckets are ``(h ^ h >>> 16) & (capacity - 1)``; the table doubles once it holds more than
    three quarters of its capacity; a bucket keeps insertion order (no treeified buckets).
    """
    ordered: list[str] = []
    for key in keys:
        if key not in ordered:
            ordered.append(key)
            if len(ordered) > capacity * 3 // 4:
                capacity *= 2

    def bucket(key: str) -> int:
        h = _java_string_hash(key)
        return (h ^ (h >> 16)) & (capacity - 1)

    return sorted(ordered, key=bucket)


def _java_map_string(values: dict[str, list[str]]) -> str:
    """``AbstractMap.toString()`` of a ``HashMap<String, List<String>>``."""
    entries = (f"{key}=[{', '.join(values[key])}]" for key in _java_hash_order(values))
    return "{" + ", ".join(entries) + "}"
