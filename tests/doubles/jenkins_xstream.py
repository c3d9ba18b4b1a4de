"""How the Jenkins double re-saves a config.xml the way Jenkins' XStream writes it, including the
re-save a declarative Pipeline's ``properties``/``triggers``/``parameters`` cause.
"""

from __future__ import annotations

import copy
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping

from .jenkins_model import (
    _DECLARATIVE_JOB_ACTION,
    _DISABLE_CONCURRENT,
    _GWT_HEADER_VARIABLE,
    _GWT_REQUEST_VARIABLE,
    _GWT_TRIGGER,
    _GWT_VARIABLE,
    _PARAMETERS_PROPERTY,
    _PIPELINE_TRIGGERS,
    _PROPERTY_TRACKER,
    _STRING_PARAMETER,
    _TIMER_TRIGGER,
)
from .jenkins_xml import _java_hash_order, _text

# ----------------------------------------------------------------------------------------------
# XStream: how Jenkins writes a config.xml when it saves an item itself (XmlFile.write with
# XStream2's PrettyPrintWriter in XML 1.1 mode and RobustReflectionConverter).

_XSTREAM_DECLARATION = "<?xml version='1.1' encoding='UTF-8'?>\n"
_XSTREAM_ENTITIES = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    '"': "&quot;",
    "'": "&apos;",
    "\r": "&#xd;",
}
_WORKFLOW_JOB = "org.jenkinsci.plugins.workflow.job.WorkflowJob"
# Serialisable fields in XStream's order (superclass fields first, then declaration order).
# A default is what an absent primitive field reads as (XStream runs no constructor, so field
# initialisers do not apply); None: an absent object field stays absent.
_XSTREAM_FIELDS: dict[str, tuple[tuple[str, str | None], ...]] = {
    _WORKFLOW_JOB: (  # Actionable, AbstractItem, Job, WorkflowJob
        ("actions", None),
        ("description", None),
        ("displayName", None),
        ("logRotator", None),
        ("keepDependencies", "false"),
        ("properties", None),
        ("definition", None),
        ("triggers", None),
        ("quietPeriod", None),
        ("authToken", None),
        ("concurrentBuild", None),
        ("disabled", "false"),
    ),
    _PIPELINE_TRIGGERS: (("triggers", None),),
    _GWT_TRIGGER: (  # Trigger.spec, then GenericTrigger
        ("spec", None),
        ("genericVariables", None),
        ("regexpFilterText", None),
        ("regexpFilterExpression", None),
        ("genericRequestVariables", None),
        ("genericHeaderVariables", None),
        ("printPostContent", "false"),
        ("printContributedVariables", "false"),
        ("causeString", None),
        ("token", None),
        ("tokenCredentialId", None),
        ("silentResponse", "false"),
        ("overrideQuietPeriod", "false"),
        ("shouldNotFlattern", "false"),
        ("allowSeveralTriggersPerBuild", "false"),
    ),
    _GWT_VARIABLE: (
        ("expressionType", None),
        ("key", None),
        ("value", None),
        ("regexpFilter", None),
        ("defaultValue", None),
    ),
    _GWT_REQUEST_VARIABLE: (("key", None), ("regexpFilter", None)),
    _GWT_HEADER_VARIABLE: (("key", None), ("regexpFilter", None)),
    "jenkins.model.BuildDiscarderProperty": (("strategy", None),),
    "hudson.tasks.LogRotator": (
        ("daysToKeep", "0"),
        ("numToKeep", "0"),
        ("artifactDaysToKeep", None),
        ("artifactNumToKeep", None),
        ("removeLastBuild", "false"),
    ),
    _DISABLE_CONCURRENT: (("abortPrevious", "false"),),
    _TIMER_TRIGGER: (("spec", None),),  # Trigger.spec
    _PARAMETERS_PROPERTY: (("parameterDefinitions", None),),
    _STRING_PARAMETER: (  # ParameterDefinition, then StringParameterDefinition
        ("name", None),
        ("description", None),
        ("defaultValue", None),
        ("trim", "false"),
    ),
    _DECLARATIVE_JOB_ACTION: (),
    _PROPERTY_TRACKER: (
        ("jobProperties", None),
        ("triggers", None),
        ("parameters", None),
        ("options", None),
    ),
}
# Jenkins.onLoad gives a job without <properties> an empty list.
_XSTREAM_ALWAYS: dict[str, tuple[str, ...]] = {_WORKFLOW_JOB: ("properties",)}
# Fields holding collections or objects: written <x/> when empty (an empty string is <x></x>).
_XSTREAM_COLLECTIONS = frozenset(
    {
        "actions",
        "properties",
        "triggers",
        "genericVariables",
        "genericRequestVariables",
        "genericHeaderVariables",
        "parameterDefinitions",
        "userRemoteConfigs",
        "branches",
        "extensions",
        "submoduleCfg",
        "jobProperties",
        "parameters",
        "options",
    }
)
_ROOT_CLASSES = {"flow-definition": _WORKFLOW_JOB}
# PluginManager.whichPlugin for the packages the double knows; "" is Jenkins core.
_CLASS_OWNERS = (
    ("org.jenkinsci.plugins.workflow.job.", "workflow-job"),
    ("org.jenkinsci.plugins.workflow.cps.", "workflow-cps"),
    ("org.jenkinsci.plugins.gwt.", "generic-webhook-trigger"),
    ("org.jenkinsci.plugins.pipeline.modeldefinition.", "pipeline-model-definition"),
    ("hudson.plugins.git.", "git"),
    ("hudson.plugins.", None),
    ("hudson.", ""),
    ("jenkins.", ""),
)
_CLASS_TAG = re.compile(r"(?:[a-z_][\w]*\.)+[A-Z][\w-]*")


def _decode_tag(tag: str) -> str:
    # XmlFriendlyNameCoder: "$" is written "_-" and "_" is written "__".
    return re.sub(r"__|_-", lambda m: "_" if m.group(0) == "__" else "$", tag)


def _class_owner(class_name: str, posted_plugin: str | None) -> str | None:
    for prefix, owner in _CLASS_OWNERS:
        if class_name.startswith(prefix):
            if owner is not None:
                return owner
            break
    return posted_plugin.split("@", 1)[0] if posted_plugin else None


def _xstream_text(text: str, *, attribute: bool) -> str:
    out = []
    for char in text:
        code = ord(char)
        if char in _XSTREAM_ENTITIES:
            out.append(_XSTREAM_ENTITIES[char])
        elif char in "\t\n" and not attribute:
            out.append(char)
        elif code < 0x20 or 0x7F <= code <= 0x9F or unicodedata.category(char) == "Cn":
            out.append(f"&#x{code:x};")
        else:
            out.append(char)
    return "".join(out)


class _XStreamWriter:
    """Writes a parsed config the way XStream would after Jenkins loaded it.

    Only the classes in ``_XSTREAM_FIELDS`` are known field by field (reordered, unknown
    fields dropped, absent primitives filled in); other elements keep their children as
    posted. Comments vanish, CDATA becomes escaped text, ``plugin`` attributes are rewritten.
    """

    def __init__(self, plugin_versions: Mapping[str, str]) -> None:
        self.plugin_versions = plugin_versions

    def document(self, root: ET.Element) -> str:
        out: list[str] = []
        self._write(root, out, 0, [], root=True)
        return _XSTREAM_DECLARATION + "".join(out)

    def fragment(self, element: ET.Element, owners: list[str] | None = None) -> str:
        out: list[str] = []
        self._write(element, out, 0, list(owners or []), root=False)
        return "".join(out)

    def _children(self, element: ET.Element, class_name: str | None) -> list[ET.Element]:
        fields = _XSTREAM_FIELDS.get(class_name or "")
        if fields is None:
            return list(element)
        children: list[ET.Element] = []
        for name, default in fields:
            found = element.find(name)
            if found is None and (
                default is not None or name in _XSTREAM_ALWAYS.get(class_name or "", ())
            ):
                found = ET.Element(name)
                found.text = default
            if found is not None:
                children.append(found)
        return children

    def _write(
        self, element: ET.Element, out: list[str], depth: int, owners: list[str], *, root: bool
    ) -> None:
        tag = element.tag
        class_name = element.get("class")
        if root:
            class_name = _ROOT_CLASSES.get(tag, class_name)
        elif class_name is None and _CLASS_TAG.fullmatch(tag):
            class_name = _decode_tag(tag)
        attributes = [(k, v) for k, v in element.attrib.items() if k != "plugin"]
        attributes.sort(key=lambda item: item[0] != "class")
        pushed = False
        if class_name is not None:  # marshalled by RobustReflectionConverter
            posted = element.get("plugin")
            owner = _class_owner(class_name, posted)
            if owner:
                nearest = next((o for o in reversed(owners) if o), None)
                if nearest != owner:
                    version = self.plugin_versions.get(owner)
                    if version is not None:
                        attributes.append(("plugin", f"{owner}@{version}"))
                    elif posted:
                        attributes.append(("plugin", posted))
            owners.append(owner or "")
            pushed = True
        elif element.get("plugin") is not None:
            attributes.append(("plugin", element.get("plugin") or ""))
        start = (
            "<"
            + tag
            + "".join(
                f' {name}="{_xstream_text(value, attribute=True)}"' for name, value in attributes
            )
        )
        indent = "\n" + "  " * depth if not root and out else ""
        children = self._children(element, class_name)
        holder = class_name is not None or tag in _XSTREAM_COLLECTIONS
        text = element.text
        if holder and text is not None and not text.strip():
            text = None  # an empty list or object: the whitespace was only layout
        if children:
            out.append(f"{indent}{start}>")
            for child in children:
                self._write(child, out, depth + 1, owners, root=False)
            out.append("\n" + "  " * depth + f"</{tag}>")
        elif text:
            out.append(f"{indent}{start}>{_xstream_text(text, attribute=False)}</{tag}>")
        elif holder:
            out.append(f"{indent}{start}/>")
        else:
            out.append(f"{indent}{start}></{tag}>")
        if pushed:
            owners.pop()


def _descriptor_id(element: ET.Element) -> str:
    # Descriptor.getId() defaults to the class name: the element's (decoded) tag.
    return _decode_tag(element.tag)


def _string_set(element: ET.Element | None, name: str) -> set[str]:
    if element is None:
        return set()
    return {item.text or "" for item in element.findall(f"{name}/string")}


def _parameter_name(element: ET.Element) -> str:
    return _text(element, "name") or ""


def _parameter_description(element: ET.Element) -> str | None:
    # ParameterDefinition.getDescription(): null when the element is absent, "" when empty.
    found = element.find("description")
    return None if found is None else found.text or ""


def _triggers_to_apply(
    declared: list[ET.Element], existing: list[ET.Element], previous: set[str]
) -> list[ET.Element]:
    """``Utils.getTriggersToApply``: a TreeSet by descriptor id holding the job's triggers
    (the first of an id stays), less those the previous Jenkinsfile declared, then the
    declared ones whose id is not held yet: a trigger set outside the Jenkinsfile wins."""
    to_apply: dict[str, ET.Element] = {}
    for trigger in existing:
        to_apply.setdefault(_descriptor_id(trigger), trigger)
    for key in previous:
        to_apply.pop(key, None)
    for trigger in declared:
        to_apply.setdefault(_descriptor_id(trigger), trigger)
    return [to_apply[key] for key in sorted(to_apply)]


def _triggers_equal(
    current: list[ET.Element], existing: list[ET.Element], writer: _XStreamWriter
) -> bool:
    """``Utils.isTriggersListEquals``: the same size and, per descriptor id, XStream-equal."""
    if len(current) != len(existing):
        return False
    by_id = {_descriptor_id(t): t for t in current}
    return all(
        _descriptor_id(t) in by_id
        and writer.fragment(t) == writer.fragment(by_id[_descriptor_id(t)])
        for t in existing
    )


def _parameters_to_apply(
    declared: list[ET.Element], existing: list[ET.Element], previous: set[str]
) -> list[ET.Element]:
    """``Utils.getParametersToApply``: the declared parameters, then the job's own whose name
    is neither declared now nor was by the previous Jenkinsfile."""
    names = {_parameter_name(p) for p in declared}
    return list(declared) + [
        p
        for p in existing
        if _parameter_name(p) not in names and _parameter_name(p) not in previous
    ]


def _parameters_equal(
    current: list[ET.Element], existing: list[ET.Element], writer: _XStreamWriter
) -> bool:
    """``Utils.isParametersListEquals``: the same names and, per name, the same type and
    description and XStream-equal."""
    if len(current) != len(existing):
        return False
    mine = {_parameter_name(p): p for p in current}
    theirs = {_parameter_name(p): p for p in existing}
    if set(mine) != set(theirs):
        return False
    return all(
        _descriptor_id(p) == _descriptor_id(theirs[name])
        and _parameter_description(p) == _parameter_description(theirs[name])
        and writer.fragment(p) == writer.fragment(theirs[name])
        for name, p in mine.items()
    )


def _replace_property(
    properties: ET.Element, tag: str, holder: str, items: list[ET.Element]
) -> None:
    """``job.removeProperty(class)`` then, with items, ``job.addProperty`` (appended)."""
    for old in properties.findall(tag):
        properties.remove(old)
    if items:
        prop = ET.SubElement(properties, tag)
        inner = ET.SubElement(prop, holder)
        inner.extend(copy.deepcopy(item) for item in items)


def _declarative_resave(
    root: ET.Element,
    declared: list[ET.Element],
    writer: _XStreamWriter,
    triggers: list[ET.Element] | None = None,
    parameters: list[ET.Element] | None = None,
) -> bool:
    """Apply what the pipeline-model-definition plugin does to a job when a declarative run
    starts (``Utils.updateRunAndJobActions`` and ``Utils.updateJobProperties`` for the
    ``options {}`` job properties, the ``triggers {}`` and the ``parameters {}``): change
    ``root`` in place; True when the job is saved."""
    triggers, parameters = list(triggers or ()), list(parameters or ())
    actions = root.find("actions")
    if actions is None:
        actions = ET.Element("actions")
        root.insert(0, actions)
    if actions.find(_DECLARATIVE_JOB_ACTION) is None:  # job.addAction: saved with the job
        actions.append(ET.Element(_DECLARATIVE_JOB_ACTION))
    properties = root.find("properties")
    if properties is None:
        properties = ET.SubElement(root, "properties")
    handled = (_PIPELINE_TRIGGERS, _PARAMETERS_PROPERTY)  # triggers {} / parameters {}
    existing = [p for p in properties if _descriptor_id(p) not in handled]
    tracker = actions.find(_PROPERTY_TRACKER)
    previous = _string_set(tracker, "jobProperties")
    existing_triggers = properties.findall(f"{_PIPELINE_TRIGGERS}/triggers/*")
    existing_parameters = properties.findall(f"{_PARAMETERS_PROPERTY}/parameterDefinitions/*")
    current_triggers = _triggers_to_apply(
        triggers, existing_triggers, _string_set(tracker, "triggers")
    )
    current_parameters = _parameters_to_apply(
        parameters, existing_parameters, _string_set(tracker, "parameters")
    )

    # getPropertiesToApply: a TreeSet by descriptor id, so the first instance of an id stays;
    # a property the Jenkinsfile set before gives way, one it did not set is kept as it is.
    to_apply: dict[str, ET.Element] = {}
    for prop in existing:
        to_apply.setdefault(_descriptor_id(prop), prop)
    for key in previous:
        to_apply.pop(key, None)
    for prop in declared:
        to_apply.setdefault(_descriptor_id(prop), prop)
    current = [to_apply[key] for key in sorted(to_apply)]
    by_id = {_descriptor_id(p): p for p in existing}
    counts = Counter(_descriptor_id(p) for p in existing)
    to_remove = [p for p in existing if _descriptor_id(p) not in to_apply]
    to_update = [
        p
        for p in current
        if _descriptor_id(p) not in by_id
        or counts[_descriptor_id(p)] > 1
        or writer.fragment(p) != writer.fragment(by_id[_descriptor_id(p)])
    ]
    changed = False
    # The order of updateJobProperties: triggers, parameters, then the other properties.
    if not _triggers_equal(current_triggers, existing_triggers, writer):
        _replace_property(properties, _PIPELINE_TRIGGERS, "triggers", current_triggers)
        changed = True
    if not _parameters_equal(current_parameters, existing_parameters, writer):
        _replace_property(
            properties, _PARAMETERS_PROPERTY, "parameterDefinitions", current_parameters
        )
        changed = True
    for prop in to_remove:
        properties.remove(prop)
        changed = True
    for prop in to_update:
        for old in [p for p in properties if p.tag == prop.tag]:
            properties.remove(old)
        properties.append(copy.deepcopy(prop))
        changed = True

    # DeclarativeJobPropertyTrackerAction: property and trigger descriptor ids, parameter names.
    recorded = {
        "jobProperties": [_descriptor_id(p) for p in declared],
        "triggers": [_descriptor_id(t) for t in triggers],
        "parameters": [_parameter_name(p) for p in parameters],
        "options": [],
    }
    if tracker is None or any(
        _string_set(tracker, name) != set(values) for name, values in recorded.items()
    ):
        for old in actions.findall(_PROPERTY_TRACKER):  # replaceAction
            actions.remove(old)
        tracker = ET.SubElement(actions, _PROPERTY_TRACKER)
        for name, values in recorded.items():
            holder = ET.SubElement(tracker, name)
            for value in _java_hash_order(values):
                ET.SubElement(holder, "string").text = value
        changed = True
    return changed
