# merge: the per-file dumps of one sample -> results/merge/<sample>.h5 (HDF5 virtual datasets
# over the dumps by default, see benchmarks/bench_merge.py); for a hybrid sample, a copy of
# the jets of one merged sample below a pT threshold and of another above it.

# virtual or concat: the same jets and tracks either way, so not a param (switching it
# reruns nothing; `snakemake --forcerun merge` rewrites the merged files in the new layout).
MERGE_LAYOUT = config["dump"].get("merge_layout", "virtual")


def merge_inputs(wildcards):
    entry = SAMPLES[wildcards.sample]
    if entry["source"] == "hybrid":
        return [f"results/merge/{entry['hybrid'][part]}.h5" for part in ("low", "high")]
    return [f"results/dump/{wildcards.sample}/{file}.h5" for file in sample_files(wildcards.sample)]


def merge_windows(wildcards):
    entry = SAMPLES[wildcards.sample]
    if entry["source"] != "hybrid":
        return []
    threshold = entry["hybrid"]["pt_threshold"]
    return ["--pt-windows", f"0:{threshold}", f"{threshold}:inf"]


rule merge:
    input:
        parts=merge_inputs,
    output:
        "results/merge/{sample}.h5",
    params:
        compression=config["dump"]["compression"],
        windows=merge_windows,
        code=code("merge"),
        versions=versions("merge"),
    log:
        "logs/merge/{sample}.log",
    benchmark:
        benchmark("merge", "{sample}")
    conda:
        "../envs/dump.yaml"
    shell:
        "{FLAVOURFLOW} merge --inputs {input.parts:q} --output {output:q} {params.windows:q}"
        " --compression {params.compression} --layout {MERGE_LAYOUT} > {log:q} 2>&1"
