#!/usr/bin/env bash
# Install a single-node Slurm (slurmctld + slurmd + munge) from Debian packages, for the tests that
# start a real local cluster (tests/slurm_cluster.py). Idempotent: does nothing when it is already there.
# Needs root (CI runs as root). Usage from .ci/run:  bash .ci/install-slurm.sh
set -euo pipefail

die() { echo "install-slurm: $*" >&2; exit 1; }

# Look on PATH and in the sbin directories (a non-login root shell may not have /usr/sbin on PATH).
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

if have sbatch && have slurmctld && have slurmd && have munged; then
    echo "install-slurm: slurm and munge already installed"
else
    [ "$(id -u)" -eq 0 ] || die "must run as root to apt-get install slurm-wlm"
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found (this script expects Debian/Ubuntu)"
    export DEBIAN_FRONTEND=noninteractive
    echo "install-slurm: installing slurm-wlm (apt-get)"
    apt-get update -q || die "apt-get update failed"
    # Debian's package scripts do not start services without an init system (no systemd here), so this
    # only installs binaries, the munge user and /etc/munge/munge.key.
    apt-get install -y -q --no-install-recommends slurm-wlm munge \
        || die "apt-get install slurm-wlm failed"
    for b in sbatch slurmctld slurmd munged; do
        have "$b" || die "$b still missing after installing slurm-wlm"
    done
fi

# The munge package normally creates the key; make one if it is missing (tests copy it, munged needs it).
key=/etc/munge/munge.key
if [ ! -s "$key" ]; then
    [ "$(id -u)" -eq 0 ] || die "$key is missing and creating it needs root"
    echo "install-slurm: creating $key"
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null 2>&1 || [ -x /usr/sbin/mungekey ]; then
        PATH="$PATH:/usr/sbin" mungekey --create --keyfile="$key" --force || die "mungekey failed"
    else
        dd if=/dev/urandom of="$key" bs=1024 count=1 status=none || die "could not write $key"
    fi
    if id munge >/dev/null 2>&1; then chown munge:munge "$key"; fi
    chmod 400 "$key"
fi
echo "install-slurm: ok ($(PATH="$PATH:/usr/sbin" slurmctld -V 2>/dev/null || echo 'slurmctld version unknown'))"
