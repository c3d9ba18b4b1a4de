"""Stands in for pysonar in tests: records how mlci started it, then writes report-task.txt
for an analysis the test already queued on the SonarQube double (FAKE_SCANNER_TASK_ID)."""

import json
import os
import sys
from pathlib import Path

record = {"argv": sys.argv[1:], "env_token": os.environ.get("SONAR_TOKEN", "")}
Path(os.environ["FAKE_SCANNER_RECORD"]).write_text(json.dumps(record))
props = dict(arg[2:].split("=", 1) for arg in sys.argv[1:] if arg.startswith("-D"))
if os.environ.get("FAKE_SCANNER_EXIT"):
    print("ERROR: Error during SonarScanner execution (simulated)")
    sys.exit(int(os.environ["FAKE_SCANNER_EXIT"]))
workdir = Path(props["sonar.projectBaseDir"]) / props["sonar.working.directory"]
workdir.mkdir(parents=True, exist_ok=True)
url = props["sonar.host.url"]
key = props["sonar.projectKey"]
task = os.environ["FAKE_SCANNER_TASK_ID"]
(workdir / "report-task.txt").write_text(
    f"projectKey={key}\nserverUrl={url}\nserverVersion=10.7\n"
    f"dashboardUrl={url}/dashboard?id={key}\nceTaskId={task}\n"
    f"ceTaskUrl={url}/api/ce/task?id={task}\n"
)
print(f"INFO: Analysis report uploaded, task {task}")
