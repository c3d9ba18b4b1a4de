#!/usr/bin/env python3
"""A stand-in for SonarSource's scanner engine, so tests can run the real ``pysonar`` offline.

What it stands in for: ``pysonar`` analyses nothing itself. It resolves a JRE and the scanner
engine JAR (downloading both from the server unless told where they are), runs
``<java> [<sonar.scanner.javaOpts>...] -jar <engine jar>``, writes
``{"scannerProperties": [{"key": ..., "value": ...}, ...]}`` to the engine's stdin, logs every
line the engine prints on stdout or stderr (a JSON ``{"level", "message", "stacktrace"}`` line,
or plain text as INFO) and exits with the engine's exit code. This script is that ``<java>``:
it ignores its arguments, reads the same JSON and does what a test can observe of the engine.

Pointing pysonar at it (no JRE, no engine download; pysonar then only calls
``GET api/v2/analysis/version`` before starting the engine):

* ``SONAR_SCANNER_JAVA_EXE_PATH`` = this file (property ``sonar.scanner.javaExePath``);
* ``SONAR_SCANNER_ENGINE_JAR_PATH`` = any existing readable file (``sonar.scanner.engineJarPath``;
  pysonar only checks that it is a readable file and passes it after ``-jar``);
* ``SONAR_USER_HOME`` = a temporary directory (pysonar creates its cache there);
* ``SONAR_HOST_URL`` and ``SONAR_TOKEN`` as usual.

The file must be executable (git keeps its mode; tests may ``chmod`` it again).

What it does, as the engine does it:

1. Reads the properties (values are strings, as the engine's JSON parsing makes them); a
   property without a key or a repeated key is a WARN. Unparsable input fails with
   "Error during SonarScanner Engine execution".
2. Server ``sonar.host.url`` (default ``http://localhost:9000`` like the engine); credentials
   ``sonar.token`` (or ``SONAR_TOKEN``), else ``sonar.login``/``sonar.password``, sent as HTTP
   basic with the token as user and an empty password (sonar-ws ``HttpConnector``).
3. Asks the server version (``GET api/v2/analysis/version``, authenticated).
4. Requires ``sonar.projectBaseDir`` and ``sonar.projectKey`` ("You must define the following
   mandatory properties for 'Unknown': sonar.projectKey"); every ``sonar.tests`` and then
   ``sonar.sources`` path must exist relative to the base directory ("Invalid value of
   sonar.sources for <key>", then "The folder '<path>' does not exist for '<key>' (base
   directory = <dir>)").
5. Like the Python sensor, a ``sonar.python.coverage.reportPaths`` or
   ``sonar.python.xunit.reportPath`` pattern that matches nothing is only a WARN ("No report
   was found for <property> using pattern <pattern>").
6. Uploads a zip report: ``POST api/ce/submit?projectKey=..&projectName=..`` with one multipart
   part ``report`` (``application/zip``, no file name).
7. Writes ``report-task.txt`` (``sonar.scanner.metadataFilePath``, else
   ``<sonar.working.directory, default .scannerwork>/report-task.txt`` under the base
   directory): ``projectKey``, ``serverUrl``, ``serverVersion``, ``dashboardUrl``, ``ceTaskId``,
   ``ceTaskUrl``, one ``key=value`` line each, in that order.

Any call answered 401/403 fails with the engine's messages ("Not authorized. Please check the
user token in the property 'sonar.token' or the credentials in the properties 'sonar.login' and
'sonar.password'." / "You're not authorized to analyze this project or the project doesn't
exist on SonarQube and you're not authorized to create it. Please contact an administrator."),
a 400 with the server's ``errors`` messages. A failure is one ERROR line and exit code 1;
success ends with "SonarScanner Engine completed successfully" and exit code 0.

Not modelled: the analysis itself (no files are read, no issues or measures are computed), the
engine's other server calls (settings, plugins, quality profiles, rules), branches, and
``sonar.qualitygate.wait`` (ignored with a WARN). The real engine asks ``api/ce/submit`` for
protobuf; this one asks for JSON.
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import sys
import time
import traceback
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlencode

DEFAULT_HOST_URL = "http://localhost:9000"
DEFAULT_WORK_DIR = ".scannerwork"
METADATA_FILE = "report-task.txt"
UNAUTHORIZED = (
    "Not authorized. Please check the user token in the property 'sonar.token' or the "
    "credentials in the properties 'sonar.login' and 'sonar.password'."
)
UNAUTHENTICATED = (
    "Not authorized. Analyzing this project requires authentication. Please check the user "
    "token in the property 'sonar.token' or the credentials in the properties 'sonar.login' "
    "and 'sonar.password'."
)
FORBIDDEN = (
    "You're not authorized to analyze this project or the project doesn't exist on SonarQube "
    "and you're not authorized to create it. Please contact an administrator."
)
REPORT_PROPERTIES = ("sonar.python.coverage.reportPaths", "sonar.python.xunit.reportPath")
TIMEOUT_SECONDS = 60


class MessageException(Exception):
    """An error the engine reports as its message alone (no stack trace)."""


class HttpFailure(Exception):
    def __init__(self, code: int, content: str) -> None:
        super().__init__(f"HTTP code {code}")
        self.code = code
        self.content = content


def log(level: str, message: str, stacktrace: str | None = None) -> None:
    line: dict[str, str] = {"level": level, "message": message}
    if stacktrace is not None:
        line["stacktrace"] = stacktrace
    print(json.dumps(line), flush=True)


def as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read_properties(raw: str) -> dict[str, str | None]:
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError("Failed to parse JSON input") from error
    properties: dict[str, str | None] = {}
    items = document.get("scannerProperties") if isinstance(document, dict) else None
    for item in items or []:
        if not isinstance(item, dict):
            log("WARN", "Ignoring null property")
            continue
        key, value = item.get("key"), as_text(item.get("value"))
        if key is None:
            log("WARN", f"Ignoring property with null key: '{value}'")
            continue
        if key in properties:
            log("WARN", f"Duplicated properties with key: '{key}'")
        properties[str(key)] = value
    return properties


def csv(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def error_messages(content: str) -> str | None:
    """The server's ``errors`` messages joined by ", " (DefaultScannerWsClient)."""
    try:
        errors = json.loads(content)["errors"]
        return ", ".join(str(error["msg"]) for error in errors)
    except (ValueError, KeyError, TypeError):
        return None


class Server:
    def __init__(self, properties: dict[str, str | None]) -> None:
        self.url = (properties.get("sonar.host.url") or DEFAULT_HOST_URL).rstrip("/")
        token = properties.get("sonar.token") or os.environ.get("SONAR_TOKEN") or None
        login = properties.get("sonar.login") or token
        password = properties.get("sonar.password") or ""
        self.authorization = None
        if login:
            pair = f"{login}:{password}".encode()
            self.authorization = "Basic " + base64.b64encode(pair).decode("ascii")
        app = properties.get("sonar.scanner.app") or "ScannerEngineStandIn"
        version = properties.get("sonar.scanner.appVersion") or ""
        self.user_agent = f"{app}/{version}" if version else app

    def call(
        self, method: str, path: str, *, params: dict[str, str] | None = None, **kwargs: Any
    ) -> tuple[int, bytes]:
        url = f"{self.url}/{path}"
        if params:
            url += "?" + urlencode(params)
        headers = {"Accept": "application/json", "Accept-Charset": "UTF-8"}
        headers["User-Agent"] = self.user_agent
        if self.authorization:
            headers["Authorization"] = self.authorization
        headers.update(kwargs.get("headers", {}))
        request = urllib.request.Request(
            url, data=kwargs.get("data"), headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            code, content = error.code, error.read()
        except (urllib.error.URLError, OSError) as error:
            raise RuntimeError(f"Fail to request {url}: {error}") from error
        text = content.decode("utf-8", "replace")
        # DefaultScannerWsClient.failIfUnauthorized, for every call.
        if code == 401:
            raise MessageException(UNAUTHORIZED if self.authorization else UNAUTHENTICATED)
        if code == 403:
            raise MessageException(FORBIDDEN)
        if code == 400:
            messages = error_messages(text)
            if messages is not None:
                raise MessageException(messages)
        raise HttpFailure(code, text)


def resolve(base_dir: Path, path: str) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else base_dir / candidate


def check_paths(key: str, base_dir: Path, property_name: str, value: str | None) -> None:
    for path in csv(value):
        if not resolve(base_dir, path).exists():
            log("ERROR", f"Invalid value of {property_name} for {key}")
            raise MessageException(
                f"The folder '{path}' does not exist for '{key}' (base directory = "
                f"{base_dir.absolute()})"
            )


def find_reports(base_dir: Path, properties: dict[str, str | None]) -> None:
    for name in REPORT_PROPERTIES:
        for pattern in csv(properties.get(name)):
            found = sorted(p for p in base_dir.glob(pattern) if p.is_file())
            if not found and Path(pattern).is_absolute() and Path(pattern).exists():
                found = [Path(pattern)]
            if not found:
                log("WARN", f"No report was found for {name} using pattern {pattern}")
            elif name == "sonar.python.coverage.reportPaths":
                for report in found:
                    log("INFO", f"Parsing report '{report.absolute()}'")


def visible_files(root: Path) -> list[Path]:
    """Files under ``root``, without hidden files and folders (.scannerwork, .git, .venv)."""
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        found += [Path(folder) / n for n in sorted(names) if not n.startswith(".")]
    return found


def build_report(key: str, base_dir: Path, properties: dict[str, str | None]) -> bytes:
    sources = []
    for folder in csv(properties.get("sonar.sources")):
        root = resolve(base_dir, folder)
        files = [root] if root.is_file() else visible_files(root)
        sources += [str(p.relative_to(base_dir)) for p in files if base_dir in p.parents]
    metadata = {
        "projectKey": key,
        "analysisDate": int(time.time() * 1000),
        "sources": sources,
        "analysisProperties": {
            k: v for k, v in properties.items() if k.startswith("sonar.analysis.")
        },
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", json.dumps(metadata, indent=2))
    return buffer.getvalue()


def upload(server: Server, key: str, name: str, report: bytes) -> str:
    boundary = secrets.token_hex(16)
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="report"\r\n'
            "Content-Type: application/zip\r\n"
            f"Content-Length: {len(report)}\r\n\r\n"
        ).encode()
        + report
        + f"\r\n--{boundary}--\r\n".encode()
    )
    started = time.monotonic()
    try:
        _, content = server.call(
            "POST",
            "api/ce/submit",
            params={"projectKey": key, "projectName": name},
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
    except HttpFailure as failure:
        detail = error_messages(failure.content)
        if detail is None:
            detail = f"HTTP code {failure.code}: {failure.content[:128]}"
        raise MessageException(
            f"Server failed to process report. Please check server logs: {detail}"
        ) from failure
    elapsed = int((time.monotonic() - started) * 1000)
    log("INFO", f"Analysis report uploaded in {elapsed}ms")
    return str(json.loads(content)["taskId"])


def write_metadata(
    properties: dict[str, str | None], base_dir: Path, metadata: list[tuple[str, str]]
) -> Path:
    configured = properties.get("sonar.scanner.metadataFilePath")
    if configured:
        target = Path(configured)
    else:
        work_dir = resolve(base_dir, properties.get("sonar.working.directory") or DEFAULT_WORK_DIR)
        target = work_dir / METADATA_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8", newline="\n") as output:
        for key, value in metadata:
            output.write(f"{key}={value}\n")
    log("DEBUG", f"Report metadata written to {target}")
    return target


def run(properties: dict[str, str | None]) -> None:
    server = Server(properties)
    _, version_bytes = server.call("GET", "api/v2/analysis/version")
    server_version = version_bytes.decode("utf-8").strip()
    missing = [k for k in ("sonar.projectBaseDir", "sonar.projectKey") if not properties.get(k)]
    if missing:
        key = properties.get("sonar.projectKey") or "Unknown"
        raise MessageException(
            f"You must define the following mandatory properties for '{key}': " + ", ".join(missing)
        )
    key = str(properties["sonar.projectKey"])
    base_dir = Path(str(properties["sonar.projectBaseDir"]))
    log("INFO", "Process project properties")
    check_paths(key, base_dir, "sonar.tests", properties.get("sonar.tests"))
    check_paths(key, base_dir, "sonar.sources", properties.get("sonar.sources"))
    if (properties.get("sonar.qualitygate.wait") or "").lower() == "true":
        log("WARN", "sonar.qualitygate.wait is not supported by this stand-in engine: ignored")
    find_reports(base_dir, properties)
    report = build_report(key, base_dir, properties)
    task_id = upload(server, key, properties.get("sonar.projectName") or key, report)
    dashboard_url = f"{server.url}/dashboard?id={quote_plus(key, safe='*')}"
    task_url = f"{server.url}/api/ce/task?id={quote_plus(task_id)}"
    write_metadata(
        properties,
        base_dir,
        [
            ("projectKey", key),
            ("serverUrl", server.url),
            ("serverVersion", server_version),
            ("dashboardUrl", dashboard_url),
            ("ceTaskId", task_id),
            ("ceTaskUrl", task_url),
        ],
    )
    log("INFO", f"ANALYSIS SUCCESSFUL, you can find the results at: {dashboard_url}")
    log(
        "INFO",
        "Note that you will be able to access the updated dashboard once the server has "
        "processed the submitted analysis report",
    )
    log("INFO", f"More about the report processing at {task_url}")


def main() -> int:
    log("INFO", "Starting SonarScanner Engine...")
    try:
        properties = read_properties(sys.stdin.read())
        run(properties)
    except MessageException as error:
        log("ERROR", str(error))
        return 1
    except Exception:
        log("ERROR", "Error during SonarScanner Engine execution", traceback.format_exc())
        return 1
    log("INFO", "SonarScanner Engine completed successfully")
    return 0


if __name__ == "__main__":
    sys.exit(main())
