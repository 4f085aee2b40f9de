#!/usr/bin/env bash
# Start (or check) a real single-node HTCondor pool for the cluster tests. Debian 12 has no
# HTCondor package and Debian 13 does (condor + minicondor: central manager, submit and
# execute on 127.0.0.1), so the pool runs in a Debian 13 chroot built with debootstrap.
# Idempotent: the chroot is kept and a running pool is only checked.
#
# Snakemake must run inside the chroot too (jobs run there, on the same paths). Instead of a
# second install of the project there, the host's Python and the checkout are bind-mounted
# into the chroot at the same paths, so the checkout's .venv runs inside it unchanged.
#
#   CONDOR_ROOT  the chroot (default /tmp/condor-root)
#   CONDOR_USER  the unprivileged submitter (default ci; HTCondor refuses root's jobs)
#   CONDOR_BIND  extra host directories to bind at the same path (space separated)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
R=${CONDOR_ROOT:-/tmp/condor-root}
U=${CONDOR_USER:-ci}
repo=$(cd "$(dirname "$0")/.." && pwd)
# the Python the checkout's venv is made from (pyenv's versions live under ~/.pyenv)
pyroot=$(python3 -c 'import sys; print(sys.base_prefix)')
case "$pyroot" in /root/.pyenv/*) pyroot=/root/.pyenv ;; esac

if [ ! -x "$R/usr/sbin/condor_master" ]; then
    command -v debootstrap >/dev/null || { apt-get update -qq; apt-get install -y -qq debootstrap >/dev/null; }
    [ -x "$R/usr/bin/apt-get" ] || debootstrap --variant=minbase trixie "$R" >/dev/null
fi

mountpoint -q "$R/proc" || mount -t proc proc "$R/proc"
mountpoint -q "$R/sys" || mount -t sysfs sys "$R/sys"
# Host directories bound into the chroot are read-only there: a `rm -rf` of the chroot (a
# cleaner of /tmp) then stops at them instead of deleting the host's /dev, Python or checkout.
bind_ro() {
    mkdir -p "$2"
    mountpoint -q "$2" || mount --bind "$1" "$2"
    mount -o remount,bind,ro "$2"
}
bind_ro /dev "$R/dev"
bind_ro /dev/pts "$R/dev/pts"
for dir in "$repo" "$pyroot" ${CONDOR_BIND:-}; do
    bind_ro "$dir" "$R$dir"
done
# the chroot's /root must be traversable for the submitter to reach the bound Python
chmod 0711 "$R/root"

CH=(chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
    DEBIAN_FRONTEND=noninteractive)
if [ ! -x "$R/usr/sbin/condor_master" ]; then
    cp /etc/resolv.conf "$R/etc/resolv.conf"
    # no service may start while packages install
    printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"
    chmod +x "$R/usr/sbin/policy-rc.d"
    "${CH[@]}" apt-get update -qq
    "${CH[@]}" apt-get install -y -qq --no-install-recommends condor minicondor ca-certificates >/dev/null
fi

# The sandbox's starter cannot unshare a mount namespace: no per-job /tmp mounts. One fake
# GPU (a name, no device) so that GPU requests match and can be checked.
conf=$'MOUNT_UNDER_SCRATCH =\nMACHINE_RESOURCE_GPUs = fakegpu0'
# the master runs if its pid file names a live condor_master (a pid file can outlive it)
up() { [ -s "$R/run/condor/master.pid" ] &&
       [ "$(cat "/proc/$(cat "$R/run/condor/master.pid")/comm" 2>/dev/null)" = condor_master ]; }
if [ "$(cat "$R/etc/condor/config.d/99-ci" 2>/dev/null)" != "$conf" ]; then
    printf '%s\n' "$conf" > "$R/etc/condor/config.d/99-ci"
    if up; then
        "${CH[@]}" condor_restart -daemon startd
        sleep 2
    fi
fi
if ! up; then
    "${CH[@]}" condor_master -pidfile /run/condor/master.pid
fi
for _ in $(seq 1 120); do
    "${CH[@]}" condor_status -af GPUs 2>/dev/null | grep -q '^[1-9]' && break
    sleep 0.5
done
if ! "${CH[@]}" condor_status -af GPUs 2>/dev/null | grep -q '^[1-9]'; then
    echo "htcondor-up: no slot with a GPU after 60 s" >&2
    "${CH[@]}" condor_status >&2 || true
    exit 1
fi

# The submitter, with an IDTOKEN: the PyPI bindings (24.x) fail the 23.x daemons' filesystem
# authentication ("Directory name doesn't match server's network address").
"${CH[@]}" id "$U" >/dev/null 2>&1 || "${CH[@]}" useradd -m -s /bin/bash "$U"
token=/home/$U/.condor/tokens.d/$U.token
if [ ! -s "$R$token" ]; then
    "${CH[@]}" bash -c "install -d -o $U -g $U -m 0700 /home/$U/.condor /home/$U/.condor/tokens.d &&
      condor_token_create -identity $U@\$(condor_config_val UID_DOMAIN) > $token &&
      chown $U:$U $token && chmod 0600 $token"
fi

# one trivial job through condor_submit, as the submitter
"${CH[@]}" runuser -u "$U" -- bash -c 'set -e; mkdir -p ~/up-check && cd ~/up-check && rm -f job.log job.out
  printf "executable = /bin/sh\narguments = \"-c \x27echo ok\x27\"\noutput = job.out\nerror = job.err\nlog = job.log\nrequest_cpus = 1\nrequest_memory = 100MB\nshould_transfer_files = NO\nqueue\n" > job.sub
  condor_submit -terse job.sub >/dev/null && condor_wait -wait 120 job.log >/dev/null && grep -qx ok job.out'
echo "htcondor-up: pool up in $R ($("${CH[@]}" condor_status -af Cpus GPUs | head -1 | awk '{print $1 " CPUs, " $2 " GPU (fake)"}')), submitter $U, bound: $repo $pyroot ${CONDOR_BIND:-}"
