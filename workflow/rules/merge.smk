# merge: the per-file dumps of one sample -> results/merge/<sample>.h5 (HDF5 virtual datasets
# over the dumps by default, see benchmarks/bench_merge.py); for a hybrid sample, a copy of
# the jets of one merged sample below a pT threshold and of another above it.


def merge_inputs(wildcards):
    entry = SAMPLES[wildcards.sample]
    if entry["source"] == "hybrid":
        return [f"results/merge/{entry['hybrid'][part]}.h5" for part in ("low", "high")]
    return expand("results/dump/{sample}/{file}.h5", sample=wildcards.sample,
                  file=sample_files(wildcards.sample))


def merge_windows(wildcards):
    entry = SAMPLES[wildcards.sample]
    if entry["source"] != "hybrid":
        return ""
    threshold = entry["hybrid"]["pt_threshold"]
    return f"--pt-windows 0:{threshold} {threshold}:inf"


rule merge:
    input:
        parts=merge_inputs,
        code=code("merge"),
    output:
        "results/merge/{sample}.h5",
    params:
        compression=config["dump"]["compression"],
        layout=config["dump"].get("merge_layout", "virtual"),
        windows=merge_windows,
    log:
        "logs/merge/{sample}.log",
    conda:
        "../envs/dump.yaml"
    shell:
        "{FLAVOURFLOW} merge --inputs {input.parts} --output {output} {params.windows}"
        " --compression {params.compression} --layout {params.layout} > {log} 2>&1"
