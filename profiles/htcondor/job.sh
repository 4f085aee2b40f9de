#!/bin/sh
# The executable of every HTCondor job of profiles/htcondor (resource `job_wrapper`): runs
# the job's own Snakemake command.
#
# Why a wrapper: with any Snakemake storage plugin installed (flavourflow's `fetch` extra
# installs three), Snakemake puts "pip install --target .snakemake/pip-deployments <plugins> &&"
# in front of each job's command, and snakemake-executor-plugin-htcondor 0.3.0 cannot run
# that (it takes the command apart at the first space: "python install --target ..."). The
# plugins are installed in the environment the jobs run in already (a shared filesystem),
# so only "<python> -m snakemake <arguments>" runs here.
#
# A job that asked for a GPU (train) and runs without one, after the profile's fallback, says
# so on its stderr, .snakemake/htcondor/<rule>/<rule>-<job>_<cluster>.err.
while [ $# -gt 2 ] && ! { [ "$2" = -m ] && [ "$3" = snakemake ]; }; do
    shift
done
if [ $# -lt 3 ]; then
    echo "profiles/htcondor/job.sh: no '<python> -m snakemake' in the job's command" >&2
    exit 2
fi
# Such a job's ad has RequestGPUs (evaluated: 0 after the fallback) and its slot's machine ad
# has GPUs = 0 or none (_CONDOR_AssignedGPUs may still say 10000, HTCondor's placeholder that
# hides a node's GPUs from a job).
if [ -n "${_CONDOR_JOB_AD:-}" ] && grep -q '^RequestGPUs = ' "$_CONDOR_JOB_AD" &&
   [ "$(awk '$1 == "GPUs" {n = $3} END {print n + 0}' "${_CONDOR_MACHINE_AD:-/dev/null}")" = 0 ]; then
    echo "profiles/htcondor: no GPU for this job (none free within the wait of" \
         "set-resources: train: request_gpus, or request_gpus 0): it runs on CPU" >&2
fi
exec "$@"
