"""The platform under services/compose.yaml: its secrets, Compose, readiness, wiring, status.

One module per role: ``secrets`` (the env file), ``compose`` (the docker-compose command),
``readiness`` (waiting for the services), ``wire`` (configuring them through their APIs) and
``status`` (what runs and how it is wired). The Invoke tasks in ``mlci.tasks.platform`` only
parse arguments and print.
"""
