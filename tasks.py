"""Invoke entry point: mlci's tasks, so that `invoke <stage>` runs here as in Jenkins.

Run `invoke --list` to see the stages; each Jenkinsfile stage calls one of them.
"""

from mlci.tasks import namespace

ns = namespace
