# fetch: a remote input file (https/http, root://, rucio://scope/name) -> a local copy,
# through the Snakemake storage plugin of its scheme, run inside the job so that transient
# failures are retried and the checksum verified (see src/flavourflow/fetch/core.py).
# The copy depends on the URL and checksum only: a code change does not download it again.

_FETCH = config.get("fetch", {})
FETCH_OPTIONS = f"--retries {_FETCH.get('retries', 3)} --backoff {_FETCH.get('backoff_s', 5.0)}"


def remote_entry(wildcards):
    entries = {file_entry(f)["stem"]: file_entry(f) for f in SAMPLES[wildcards.sample]["files"]}
    return entries[wildcards.file]


def checksum_options(wildcards):
    checksum = remote_entry(wildcards)["checksum"]
    return " ".join(f"--{algorithm} {value}" for algorithm, value in sorted(checksum.items()))


rule fetch:
    output:
        "resources/fetch/{sample}/{file}.root",
    params:
        url=lambda wildcards: remote_entry(wildcards)["location"],
        checksum=checksum_options,
    log:
        "logs/fetch/{sample}/{file}.log",
    conda:
        "../envs/dump.yaml"
    shell:
        "{FLAVOURFLOW} fetch --url {params.url:q} --output {output} {params.checksum}"
        " {FETCH_OPTIONS} > {log} 2>&1"
