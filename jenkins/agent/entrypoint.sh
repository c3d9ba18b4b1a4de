#!/bin/sh
# Starts the inbound agent once `invoke platform.wire` has given it its secret. Until then
# the env file holds a placeholder: say so and exit, and Compose restarts the container
# (with a growing delay) until wiring recreates it with the real secret.
set -eu
if [ "${JENKINS_SECRET:-}" = "created-by-invoke-platform-wire" ] || [ -z "${JENKINS_SECRET:-}" ]; then
    echo "mlci agent: no agent secret yet; run \`invoke platform.wire\` (it reads the secret" \
         "of node ${JENKINS_AGENT_NAME:-docker-agent} from Jenkins and recreates this container)" >&2
    sleep 30
    exit 1
fi
exec /usr/local/bin/jenkins-agent "$@"
