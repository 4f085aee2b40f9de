#!/usr/bin/env bash
# Start (or check) a real single-node SLURM cluster for the cluster tests: munged, slurmctld
# and slurmd from Debian's packages, as root, without systemd, on 127.0.0.1. Idempotent: a
# second call finds the daemons up and only checks that the node takes jobs.
#
# No slurmdbd, so there is no accounting (`sacct` fails): clients query `squeue`, which keeps
# finished jobs for MinJobAge seconds (what tests/test_clusters.py reads to see what ran as a
# batch job), and jobcomp/filetxt logs every finished job in /var/log/slurm/jobcomp.log.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

# munge: the key comes with the package; munged runs as `munge`.
[ -s /etc/munge/munge.key ] || { mungekey --create; chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key; }
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || runuser -u munge -- /usr/sbin/munged
munge -n | unmunge >/dev/null

host=$(hostname -s)
# The node's memory as slurmd will measure it, less 5 %: declaring more drains the node.
mem=$(awk '/^MemTotal/ {printf "%d", $2 / 1024 * 0.95}' /proc/meminfo)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
conf=$(cat <<CONF
ClusterName=ci
SlurmctldHost=${host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# no usable cgroups here: track processes by their parent, no containment
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# every finished job, one line each (JobId, Name, JobState, WorkDir, ...): the scheduler's record
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
# a job no node can run is refused at submission instead of pending forever
EnforcePartLimits=ALL
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
# finished jobs stay visible to squeue (Snakemake's status queries) for an hour
MinJobAge=3600
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MailProg=/bin/true
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
Waittime=0
# one fake GPU (no device behind it) so that GPU requests are scheduled and can be checked
GresTypes=gpu
NodeName=${host} NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=${mem} Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
)
gres="NodeName=${host} Name=gpu File=/dev/null"
changed=0
[ "$(cat /etc/slurm/slurm.conf 2>/dev/null)" = "$conf" ] || { printf '%s\n' "$conf" > /etc/slurm/slurm.conf; changed=1; }
[ "$(cat /etc/slurm/gres.conf 2>/dev/null)" = "$gres" ] || { printf '%s\n' "$gres" > /etc/slurm/gres.conf; changed=1; }

# a daemon runs if its pid file names a live process of that name (a pid file can outlive it)
alive() { [ -s "$1" ] && [ "$(cat "/proc/$(cat "$1")/comm" 2>/dev/null)" = "$2" ]; }
if [ "$changed" = 1 ]; then  # a changed configuration needs fresh daemons
    for f in /run/slurmd.pid /run/slurmctld.pid; do
        if alive "$f" "$(basename "$f" .pid)"; then p=$(cat "$f"); kill "$p"; while kill -0 "$p" 2>/dev/null; do sleep 0.2; done; fi
    done
fi
alive /run/slurmctld.pid slurmctld || /usr/sbin/slurmctld
alive /run/slurmd.pid slurmd || /usr/sbin/slurmd
# a node drained by an earlier run stays drained (the state is saved): resume it
scontrol update nodename="${host}" state=resume 2>/dev/null || true

for _ in $(seq 1 60); do
    [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && break
    sleep 0.5
done
if [ "$(sinfo -h -o %T 2>/dev/null)" != idle ]; then
    echo "slurm-up: node ${host} is not idle: $(sinfo -h -o '%T %E' 2>&1)" >&2
    tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
    exit 1
fi
srun -N1 -n1 --time=1 true
echo "slurm-up: node ${host} idle ($(nproc) CPUs, ${mem} MB, gpu:1 fake)"
