"""Wiring the platform through the services' APIs: idempotent, and it reports drift.

Order (each step reads first and changes only what differs):

1. GitBucket: replace root's default password, the organisation, the repository, and push
   the local project's HEAD to ``main`` (skipped when GitBucket has that commit). The push
   comes before the hook exists, so the first push starts no build by itself. Then the
   account Jenkins clones with: a plain user with read access (a ``pull`` collaborator).
2. SonarQube: wait for UP, replace admin's default password, the project, a CI user with
   Execute Analysis and Browse on it, the token Jenkins uses (a PROJECT_ANALYSIS_TOKEN the CI
   user makes for itself: since 9.5 it can read the gate's status), the quality gate of
   sonarqube/quality-gate.toml. No webhook: ``invoke gate`` polls the API (an old one is
   removed).
3. MLflow (when its basic auth is on): the CI user with MANAGE on the experiment and the
   registered model (the models' slots need no MLflow login: the Deploy stage downloads
   the version for them).
4. Jenkins: prove the credentials (``get_whoami``), read the agent container's secret into
   the env file (and recreate the agent), create the job from jenkins/job.xml.template or
   update it when the part mlci owns differs (a build adds what the Jenkinsfile's options
   declare: that is not drift); the same for the nightly scoring job ``<job>-score``
   (jenkins/job-score.xml.template: jenkins/score.Jenkinsfile on a timer).
5. GitBucket: the push hook to the Generic Webhook Trigger (JSON, signed).
6. Jenkins: a first build when the job was just created (or when asked), through the same
   trigger endpoint GitBucket calls, signed as GitBucket signs, so the build has ``ref`` and
   ``commit``.

Every step returns a :class:`Change` (created, updated or unchanged). A failing step raises
:class:`WiringFailed`, which names the service and the step and carries the changes made
before it; nothing changed is left unreported. Secrets appear in no change, message or log
line: hook URLs are shown with the token masked.

Each product's steps live in a module of their own, mixed into :class:`Wiring`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlci import tools
from mlci.errors import WiringFailed
from mlci.platform.secrets import EnvFile
from mlci.platform.wire.core import BRANCH, CREATED, UNCHANGED, UPDATED, Change, change_table
from mlci.platform.wire.gitbucket import (
    GITBUCKET_ADMIN,
    GITBUCKET_DEFAULT_PASSWORD,
    GITBUCKET_JENKINS_USER,
    GITBUCKET_READ_ROLE,
    GitBucketSteps,
)
from mlci.platform.wire.jenkins import (
    AGENT_NODE,
    JENKINS_ADMIN,
    JOB_TEMPLATE,
    SCORE_JOB_SUFFIX,
    SCORE_JOB_TEMPLATE,
    JenkinsSteps,
)
from mlci.platform.wire.mlflow import MLFLOW_CI_USER, MLFLOW_SERVING_USER, MlflowSteps
from mlci.platform.wire.sonarqube import (
    SONAR_CI_PERMISSIONS,
    SONAR_CI_USER,
    SONAR_TOKEN_NAME,
    SONAR_WEBHOOK_NAME,
    SONARQUBE_ADMIN,
    SONARQUBE_DEFAULT_PASSWORD,
    SonarQubeSteps,
)
from mlci.platform.wire.templates import (
    BRANCH_SPEC,
    SCORE_BRANCH_SPEC,
    canonical_xml,
    filter_expression,
    owned_part,
    render_job,
    render_score_job,
    shown_url,
    webhook_url,
    without_query,
)
from mlci.settings import Settings

__all__ = [
    "AGENT_NODE",
    "BRANCH",
    "BRANCH_SPEC",
    "CREATED",
    "GITBUCKET_ADMIN",
    "GITBUCKET_DEFAULT_PASSWORD",
    "GITBUCKET_JENKINS_USER",
    "GITBUCKET_READ_ROLE",
    "JENKINS_ADMIN",
    "JOB_TEMPLATE",
    "MLFLOW_CI_USER",
    "MLFLOW_SERVING_USER",
    "SCORE_BRANCH_SPEC",
    "SCORE_JOB_SUFFIX",
    "SCORE_JOB_TEMPLATE",
    "SONARQUBE_ADMIN",
    "SONARQUBE_DEFAULT_PASSWORD",
    "SONAR_CI_PERMISSIONS",
    "SONAR_CI_USER",
    "SONAR_TOKEN_NAME",
    "SONAR_WEBHOOK_NAME",
    "UNCHANGED",
    "UPDATED",
    "Change",
    "Wiring",
    "WiringFailed",
    "canonical_xml",
    "change_table",
    "filter_expression",
    "owned_part",
    "render_job",
    "render_score_job",
    "shown_url",
    "webhook_url",
    "wire",
    "without_query",
]


class Wiring(GitBucketSteps, SonarQubeSteps, MlflowSteps, JenkinsSteps):
    """One run of the wiring: every product's steps, in the order of the module docstring."""

    def run(self) -> list[Change]:
        try:
            self.gitbucket_account_and_repository()
            self.gitbucket_jenkins_user()
            self.sonarqube()
            self.mlflow()
            self.jenkins_agent()
            self.jenkins_job()
            self.gitbucket_hook()
            self.jenkins_first_build()
        except WiringFailed as failure:
            self.log("wire: changes before the failure:")
            for line in change_table(list(failure.changes)) or ["(none)"]:
                self.log(line)
            raise
        return self.changes


def wire(
    settings: Settings,
    env: EnvFile,
    *,
    source: Path,
    runner: Callable[..., Any] = tools.run,
    log: Callable[[str], None] = print,
    recreate_jenkins: Callable[[], None] | None = None,
    recreate_agent: Callable[[], None] | None = None,
    build: bool = False,
) -> list[Change]:
    """Wire the services; the changes (created / updated / unchanged), in order."""
    wiring = Wiring(
        settings,
        env,
        source,
        runner=runner,
        log=log,
        recreate_jenkins=recreate_jenkins,
        recreate_agent=recreate_agent,
        build=build,
    )
    return wiring.run()
