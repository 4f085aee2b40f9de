# fetch: a remote input file (https/http, root://, rucio://scope/name) -> a local copy,
# through the Snakemake storage plugin of its scheme, run inside the job so that transient
# failures are retried and the checksum verified (see src/flavourflow/fetch/core.py).
# The copy depends on the URL and checksum only: neither a code change nor the retry
# settings download it again.

_FETCH = config.get("fetch", {})
FETCH_OPTIONS = (f"--retries {_FETCH.get('retries', default('fetch.retries'))}"
                 f" --backoff {_FETCH.get('backoff_s', default('fetch.backoff_s'))}")


def checksum_options(wildcards):
    checksum = file_entries(wildcards.sample)[wildcards.file]["checksum"]
    return [a for algorithm, value in sorted(checksum.items())
            for a in (f"--{algorithm}", value)]


rule fetch:
    output:
        "resources/fetch/{sample}/{file}.root",
    params:
        url=lambda wildcards: file_entries(wildcards.sample)[wildcards.file]["location"],
        checksum=checksum_options,
    log:
        "logs/fetch/{sample}/{file}.log",
    benchmark:
        benchmark("fetch", "{sample}/{file}")
    conda:
        "../envs/dump.yaml"
    shell:
        "{FLAVOURFLOW} fetch --url {params.url:q} --output {output:q} {params.checksum:q}"
        " {FETCH_OPTIONS} > {log:q} 2>&1"
