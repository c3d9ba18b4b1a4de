#!/usr/bin/env bash
# Entry point of mlci's Jenkins image. Compose passes the controller's secrets as environment
# variables (from the env file `invoke platform.up` writes); left there, every build that runs
# on the controller would inherit them. This moves each variable whose name contains
# PASSWORD, TOKEN or SECRET into a file named after it in $SECRETS (a 0700 directory on the
# container's memory-backed /dev/shm), unsets it, and starts Jenkins as the image would.
# Configuration as Code reads `${NAME}` from those files when the environment lacks it
# (its Docker-secrets source: the file $SECRETS/NAME).
set -euo pipefail

secrets_dir=${SECRETS:?SECRETS must name the directory for the secret files}
umask 077
rm -rf "$secrets_dir"
mkdir -p "$secrets_dir"

for name in $(compgen -e); do
    case "$name" in
        SECRETS) ;;
        *PASSWORD* | *TOKEN* | *SECRET*)
            # printf is a shell builtin: the value never becomes a process argument.
            printf '%s' "${!name}" >"$secrets_dir/$name"
            unset "$name"
            ;;
    esac
done

exec /usr/bin/tini -- /usr/local/bin/jenkins.sh "$@"
