"""One raw setting (a TOML value, or text from MLCI_* and the command line) to its typed,
validated value, or one ConfigError that names the key, where the value came from and the fix.

pydantic checks types, bounds, finiteness and choices: one ``TypeAdapter`` per setting's type,
strict for values that arrive typed (TOML, Python values from a task), lax for text. Kept by
hand, each for one reason:

- the text forms ``a,b`` and ``k=v,k=v`` beside JSON: pydantic reads lists and tables as JSON only;
- booleans from text: pydantic also takes t/f/y/n, mlci takes only 1/0 true/false yes/no on/off;
- the URL checks: mlci's messages (a password in a URL, file stores, databricks) need the parts;
- the wording: pydantic's errors are turned into mlci's what / why / fix.
"""

from __future__ import annotations

import functools
import json
import math
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from mlci.errors import ConfigError

if TYPE_CHECKING:  # pydantic is imported when a value is first checked, not with mlci
    from pydantic import TypeAdapter
    from pydantic_core import ErrorDetails

    from mlci.settings.specs import _Spec

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
# How messages name a value of each JSON-schema type: (in "expected ...", in the fix).
_KINDS = {
    "array": ("a list", "a list (TOML array, JSON array or comma-separated text)"),
    "object": ("a table", "a table (TOML inline table, JSON object or key=value,key=value)"),
    "integer": ("a whole number", "a whole number"),
    "number": ("a number", "a number"),
    "boolean": ("true or false", "true or false"),
    "string": ("text", "text"),
}
# pydantic's errors for a value of the wrong type, and the JSON-schema type each expected.
_TYPE_ERRORS = {
    "list_type": "array",
    "dict_type": "object",
    "int_type": "integer",
    "float_type": "number",
    "bool_type": "boolean",
    "string_type": "string",
}


def show(value: Any) -> str:
    """A value as people write it: lists and tables as JSON, the rest as text."""
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _coerce(spec: _Spec, raw: Any, source: str, from_text: bool) -> Any:
    """``raw`` as the value of ``spec``; ``from_text``: it is text from the environment or a
    flag (parsed), else a typed value from TOML (checked as it is)."""
    from pydantic import ValidationError

    where = f"{spec.key} (from {source})"
    adapter = _adapter_for(spec, from_text)
    try:
        value = adapter.validate_python(_from_text(spec.type, raw) if from_text else raw)
    except ValueError as exc:
        if not isinstance(exc, ValidationError):  # the text itself: JSON, key=value, a word
            raise _invalid(spec, raw, where, str(exc)) from None
        raise _refusal(spec, raw, where, exc.errors()) from None
    if spec.meta.get("url") and value:
        _check_url(spec, value, where)
    return value


def _from_text(tp: Any, raw: Any) -> Any:
    """Text from the environment or a flag, in the shape of setting type ``tp``."""
    text = str(raw).strip()
    origin = typing.get_origin(tp)
    if origin is list:
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    if origin is dict:
        if text.startswith("{"):
            return json.loads(text)
        return dict(_split_pair(part) for part in text.split(",") if part.strip())
    if tp is bool:
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ValueError("expected true or false")
    return raw


def _split_pair(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{text.strip()!r} is not key=value")
    value = value.strip()
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _adapter_for(spec: _Spec, text: bool) -> TypeAdapter[Any]:
    meta = spec.meta
    return _adapter(
        spec.type,
        tuple(meta.get("choices", ())),
        tuple(meta.get("value_choices", ())),
        meta.get("minimum"),
        meta.get("maximum"),
        text,
    )


@functools.cache
def _adapter(
    tp: Any,
    choices: tuple[str, ...],
    value_choices: tuple[str, ...],
    minimum: float | None,
    maximum: float | None,
    text: bool,
) -> TypeAdapter[Any]:
    """The pydantic adapter of one setting type and its validation facts (built once)."""
    from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints, TypeAdapter
    from pydantic_core import PydanticKnownError

    def number(kind: type) -> Any:
        def refuse_bool(value: Any) -> Any:
            # JSON true in a table from text; pydantic's lax mode would count it as 1.
            if isinstance(value, bool):
                raise PydanticKnownError("float_type" if kind is float else "int_type")
            return value

        bounds = Field(ge=minimum, le=maximum, allow_inf_nan=False if kind is float else None)
        return typing.Annotated[kind, BeforeValidator(refuse_bool), bounds]

    # Entries of lists and text tables: numbers are taken as their text, like str(1) == "1".
    entry: Any = typing.Annotated[str, Field(strict=False, coerce_numbers_to_str=True)]
    if value_choices:
        entry = Literal[value_choices]
    origin = typing.get_origin(tp)
    target: Any
    if origin is list:
        target = list[entry]
    elif origin is dict:
        value_type = typing.get_args(tp)[1]
        leaf: Any = {float: number(float), str: entry}.get(value_type, value_type)
        target = dict[str, leaf]
    elif choices:  # text is compared stripped, as a str setting would be
        strip = BeforeValidator(lambda v: v.strip() if isinstance(v, str) else v)
        target = typing.Annotated[Literal[choices], strip]
    elif tp is int or tp is float:
        target = number(tp)
    elif tp is str:
        target = typing.Annotated[str, StringConstraints(strip_whitespace=True)]
    else:
        target = tp
    return TypeAdapter(target, config=ConfigDict(strict=not text))


@functools.cache
def _number_adapter(kind: type) -> TypeAdapter[float]:
    from pydantic import TypeAdapter

    return TypeAdapter(kind)


def _refusal(spec: _Spec, raw: Any, where: str, errors: Sequence[ErrorDetails]) -> ConfigError:
    """pydantic's errors about one setting as mlci's ConfigError."""
    meta = spec.meta
    first = next((e for e in errors if e["type"] == "finite_number"), errors[0])
    kind, loc, given = first["type"], first["loc"], first["input"]
    if kind in ("greater_than_equal", "less_than_equal") and not loc:
        # The error holds the input as given (text from the environment): parse it to show
        # the number, and because a bound is checked before finiteness for NaN or inf.
        number = _number_adapter(spec.type).validate_python(given)
        if math.isfinite(number):
            low, high = meta.get("minimum"), meta.get("maximum")
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            return ConfigError(f"{where} is {number}", f"it must be {bounds}", spec.help)
        kind = "finite_number"
    if kind == "literal_error" and not loc and isinstance(given, str):
        return ConfigError(
            f"{where} is {given!r}",
            f"it must be one of: {', '.join(meta['choices'])}",
            f"set it to one of those ({spec.help})",
        )
    if kind == "literal_error" and loc:
        wrong = [(e["loc"][0], e["input"]) for e in errors if e["type"] == "literal_error"]
        choices = ", ".join(meta["value_choices"])
        if typing.get_origin(spec.type) is dict:
            listed = ", ".join(f"{k} = {v!r}" for k, v in sorted(wrong, key=lambda kv: str(kv[0])))
            why = f"each value must be one of: {choices}"
        else:
            listed = ", ".join(repr(v) for _, v in wrong)
            why = f"each entry must be one of: {choices}"
        return ConfigError(f"{where} has {listed}", why, f"fix it ({spec.help})")
    expected = _KINDS[_TYPE_ERRORS.get(kind.replace("_parsing", "_type"), "string")][0]
    if kind == "finite_number":
        why = f"{given!r} is not a finite number"
    elif kind.endswith("_parsing"):  # text that is no number: 'abc', '1.5' for a whole one
        why = f"{given!r} is not {expected}"
    elif kind == "bool_type":
        why = "expected true or false"
    elif kind in _TYPE_ERRORS or kind == "literal_error":
        why = f"expected {expected}, got {type(given).__name__}"
    else:
        why = first["msg"]
    if loc:  # an entry of a list or table: name it
        why = f"{'.'.join(str(part) for part in loc)}: {why}"
    return _invalid(spec, raw, where, why)


def _invalid(spec: _Spec, raw: Any, where: str, why: str) -> ConfigError:
    schema_type = str(_adapter_for(spec, False).json_schema().get("type", ""))
    wanted = _KINDS.get(schema_type, ("", str(spec.type)))[1]
    return ConfigError(
        f"{where} has an invalid value {show(raw)!r}", why, f"give {wanted}; {spec.help}"
    )


def _check_url(spec: _Spec, value: str, where: str) -> None:
    if value.startswith(("http://", "https://")):
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError as exc:
            raise ConfigError(
                f"{where} is {value!r}, not a valid URL", str(exc), f"fix {spec.env}"
            ) from None
        if parts.username or parts.password:
            # Never echo the value: it holds a password.
            login = (
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
                if spec.key == "mlflow.tracking_uri"
                else "the matching *_USERNAME / *_PASSWORD settings"
            )
            raise ConfigError(
                f"{where} has a user name or password in it",
                "credentials in a URL end up in logs, reports and process lists",
                f"give the URL without them ({parts.scheme}://{parts.hostname}...) and set {login}",
            )
        if not parts.hostname:
            raise ConfigError(
                f"{where} is {value!r}, which names no host",
                "mlci connects to the host a URL names",
                f"fix {spec.env}, e.g. http://mlflow.example:5000",
            )
        return
    if spec.key == "mlflow.tracking_uri" and value.startswith("databricks"):
        return
    why = "mlci talks to servers over HTTP(S)"
    if spec.key == "mlflow.tracking_uri":
        why = "mlci trains against an MLflow tracking server, not a file or database store"
    raise ConfigError(
        f"{where} is {value!r}, not an http(s) URL",
        why,
        f"set {spec.env} to a URL such as http://mlflow.example:5000, or leave it empty "
        "to let mlci start a local server",
    )
