"""Invoke entry point of this repository: assembles mlci's task collection, nothing more.

Run `invoke --list` to see the stages; each Jenkinsfile stage calls one of them.
"""

from mlci.tasks import namespace

ns = namespace
