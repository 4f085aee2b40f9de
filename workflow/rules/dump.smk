# dump: one ROOT file -> one TDD-layout HDF5 file (one job per input file or shard), in the
# sample's format (flavourflow, physlite or mapping); remote files are fetched first.

# Read-block size: it changes memory and speed, not the dump's content (tested), so it is
# not a param: changing it reruns nothing.
DUMP_STEP = config["dump"]["step_size"]


def dump_source(wildcards):
    entry = SAMPLES[wildcards.sample]
    if entry["source"] == "generator":
        return f"results/generate/{wildcards.sample}/{wildcards.file}.root"
    item = file_entries(wildcards.sample)[wildcards.file]
    if item["remote"]:
        return f"resources/fetch/{wildcards.sample}/{wildcards.file}.root"
    return item["location"]


def dump_format(wildcards):
    entry = SAMPLES[wildcards.sample]
    return "flavourflow" if entry["source"] == "generator" else entry.get("format", "flavourflow")


def dump_mapping(wildcards):
    entry = SAMPLES[wildcards.sample]
    return [entry["mapping"]] if dump_format(wildcards) == "mapping" else []


def mapping_options(wildcards, input):
    """`--mapping FILE` for a mapping sample (the rule's `mapping` input), else nothing."""
    return [a for m in input.mapping for a in ("--mapping", m)]


rule dump:
    input:
        root=dump_source,
        mapping=dump_mapping,
    output:
        "results/dump/{sample}/{file}.h5",
    params:
        # what the dump's content depends on (step_size and merge_layout do not change it)
        dump={k: v for k, v in config["dump"].items() if k not in ("step_size", "merge_layout")},
        format=dump_format,
        mapping=mapping_options,
        code=code("dump"),
        versions=versions("dump"),
    log:
        "logs/dump/{sample}/{file}.log",
    benchmark:
        benchmark("dump", "{sample}/{file}")
    conda:
        "../envs/dump.yaml"
    shell:
        "{FLAVOURFLOW} dump --input {input.root:q} --output {output:q} --format {params.format}"
        " {params.mapping:q}"
        " --pt-min {params.dump[selection][pt_min]}"
        " --abs-eta-max {params.dump[selection][abs_eta_max]}"
        " --max-tracks {params.dump[max_tracks]} --step-size {DUMP_STEP}"
        " --compression {params.dump[compression]} > {log:q} 2>&1"
