"""The wiring's Jenkins steps: the admin's credentials, the agent's secret, the job and the
nightly scoring job from their templates, and the first build."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlci.platform.secrets import set_value
from mlci.platform.wire.core import BRANCH, CREATED, UNCHANGED, UPDATED, WiringBase
from mlci.platform.wire.templates import canonical_xml, owned_part, render_job, render_score_job
from mlci.resources import platform_file

if TYPE_CHECKING:
    from mlci.clients.jenkins import JenkinsClient

JENKINS_ADMIN = "admin"
AGENT_NODE = "docker-agent"
JOB_TEMPLATE = "jenkins/job.xml.template"
# The nightly scoring job: jenkins/score.Jenkinsfile of main's head, on a timer.
SCORE_JOB_TEMPLATE = "jenkins/job-score.xml.template"
SCORE_JOB_SUFFIX = "-score"

SERVICE = "Jenkins"


class JenkinsSteps(WiringBase):
    def _jenkins(self) -> JenkinsClient:
        from mlci.clients.jenkins import jenkins_client

        return jenkins_client(
            self.platform.jenkins_url,
            JENKINS_ADMIN,
            self.env["JENKINS_ADMIN_PASSWORD"],
            self.platform.timeout,
        )

    def _job_template(self, relative: str) -> str:
        template_path = platform_file(self.settings, relative)
        try:
            return template_path.read_text()
        except OSError as exc:
            from mlci.errors import ConfigError

            raise ConfigError(
                f"Jenkins: cannot read the job template {template_path}",
                str(exc),
                "run the task from the mlci checkout (MLCI_PROJECT_ROOT)",
            ) from None

    def wanted_job_xml(self) -> str:
        clone_url = self._repo_http_url(self.platform.gitbucket_internal_url)
        return render_job(
            self._job_template(JOB_TEMPLATE),
            clone_url,
            self.platform.ref_filter,
            self.env["JENKINS_WEBHOOK_TOKEN"],
        )

    def wanted_score_job_xml(self) -> str:
        clone_url = self._repo_http_url(self.platform.gitbucket_internal_url)
        return render_score_job(self._job_template(SCORE_JOB_TEMPLATE), clone_url)

    @property
    def score_job(self) -> str:
        return f"{self.platform.job}{SCORE_JOB_SUFFIX}"

    def jenkins_job(self) -> None:
        with self.step(SERVICE, "credentials"):
            client = self._jenkins()
            me = client.whoami("checking admin's credentials (get_whoami)")
            who = me.get("id") or me.get("fullName") or JENKINS_ADMIN
            self.record(SERVICE, "credentials", UNCHANGED, f"logged in as {who}")
        with self.step(SERVICE, "job"):
            wanted = self.wanted_job_xml()
            self._job_created = self._ensure_job(
                client, "job", self.platform.job, wanted, JOB_TEMPLATE
            )
        with self.step(SERVICE, "scoring job"):
            wanted = self.wanted_score_job_xml()
            self._ensure_job(client, "scoring job", self.score_job, wanted, SCORE_JOB_TEMPLATE)

    def _ensure_job(
        self, client: JenkinsClient, step: str, name: str, wanted: str, template: str
    ) -> bool:
        """Create job ``name`` from ``wanted``, or update it where the part mlci owns differs;
        True when it was created."""
        from mlci.clients.jenkins import JenkinsError

        lib = client.lib
        if not client.call(f"looking up the {step}", lib.job_exists, name):
            client.call(f"creating the {step}", lib.create_job, name, wanted)
            outcome, detail = CREATED, f"{name} from {template}"
        else:
            stored = client.call(f"reading the {step}'s config.xml", lib.get_job_config, name)
            if canonical_xml(owned_part(stored, wanted)) == canonical_xml(wanted):
                self.record(SERVICE, step, UNCHANGED, f"{name} matches {template}")
                return False
            client.call(f"updating the {step}", lib.reconfig_job, name, wanted)
            outcome, detail = UPDATED, f"{name}: config.xml differed from {template}"
        stored = client.call(f"reading the {step} back", lib.get_job_config, name)
        if canonical_xml(owned_part(stored, wanted)) != canonical_xml(wanted):
            raise JenkinsError(
                f"Jenkins: the job {name} reads back different from what was sent",
                "a plugin of the template is missing, so Jenkins dropped its elements",
                "install the plugins of jenkins/plugins.txt (rebuild the image: "
                "invoke platform.up) and run `invoke platform.wire` again",
            )
        self.record(SERVICE, step, outcome, detail)
        return outcome == CREATED

    def jenkins_agent(self) -> None:
        """The agent container connects with the secret Jenkins derives for its node."""
        from mlci.platform.secrets import JENKINS_AGENT_SECRET

        step = "agent secret"
        if self.platform.kind == "kubernetes":
            detail = "agents are pods of the Kubernetes cloud: no permanent agent to connect"
            self.record(SERVICE, "agent", UNCHANGED, detail)
            return
        with self.step(SERVICE, step):
            secret = self._jenkins().agent_secret(AGENT_NODE)
            if self.env.values.get(JENKINS_AGENT_SECRET) == secret:
                self.record(SERVICE, step, UNCHANGED, f"{AGENT_NODE}'s secret is in the env file")
                return
            created = self.env.is_placeholder(JENKINS_AGENT_SECRET)
            set_value(self.env.path, JENKINS_AGENT_SECRET, secret)
            self.env.values[JENKINS_AGENT_SECRET] = secret
            detail = f"{AGENT_NODE}'s secret stored as JENKINS_AGENT_SECRET"
            self.record(SERVICE, step, CREATED if created else UPDATED, detail)
        if self.recreate_agent is not None:
            with self.step(SERVICE, "recreating the agent"):
                self.recreate_agent()
            self.record(SERVICE, "agent", UPDATED, f"recreated to connect as {AGENT_NODE}")
        else:
            detail = "recreate the agent to connect: docker-compose ... up -d agent"
            self.record(SERVICE, "agent", UNCHANGED, detail)

    def jenkins_first_build(self) -> None:
        """A first build of the pushed commit, started the way GitBucket's push starts one
        (so the build has ``ref`` and ``commit``)."""
        from mlci.clients.jenkins import trigger_build

        step = "first build"
        if not (self._job_created or self.build) or self._pushed_commit is None:
            return
        commit = self._pushed_commit
        payload = {
            "ref": f"refs/heads/{BRANCH}",
            "after": commit,
            "repository": {"clone_url": self._repo_http_url(self.platform.gitbucket_internal_url)},
        }
        with self.step(SERVICE, step):
            queue_id = trigger_build(
                self.platform.jenkins_url,
                self.platform.job,
                payload,
                secret=self.env["GITBUCKET_WEBHOOK_SECRET"],
                token=self.env["JENKINS_WEBHOOK_TOKEN"],
                timeout=self.platform.timeout,
            )
            number, url = self._jenkins().follow_queue(
                queue_id, self.platform.ready_timeout, sleep=self.sleep
            )
            self.record(SERVICE, step, CREATED, f"#{number} of {commit[:12]}: {url}")
