# dump: one ROOT file -> one TDD-layout HDF5 file (one job per input file or shard), in the
# sample's format (flavourflow, physlite or mapping); remote files are fetched first.


def dump_source(wildcards):
    entry = SAMPLES[wildcards.sample]
    if entry["source"] == "generator":
        return f"results/generate/{wildcards.sample}/{wildcards.file}.root"
    item = {file_entry(f)["stem"]: file_entry(f) for f in entry["files"]}[wildcards.file]
    if item["remote"]:
        return f"resources/fetch/{wildcards.sample}/{wildcards.file}.root"
    return item["location"]


def dump_format(wildcards):
    entry = SAMPLES[wildcards.sample]
    return "flavourflow" if entry["source"] == "generator" else entry.get("format", "flavourflow")


def dump_mapping(wildcards):
    entry = SAMPLES[wildcards.sample]
    return [entry["mapping"]] if dump_format(wildcards) == "mapping" else []


rule dump:
    input:
        root=dump_source,
        mapping=dump_mapping,
        code=code("dump"),
    output:
        "results/dump/{sample}/{file}.h5",
    params:
        # the keys the dump reads (not merge_layout: a merge setting must not redo the dumps)
        dump={k: v for k, v in config["dump"].items() if k != "merge_layout"},
        format=dump_format,
        mapping=lambda wildcards: " ".join(f"--mapping {m}" for m in dump_mapping(wildcards)),
    log:
        "logs/dump/{sample}/{file}.log",
    conda:
        "../envs/dump.yaml"
    shell:
        "{FLAVOURFLOW} dump --input {input.root} --output {output} --format {params.format}"
        " {params.mapping}"
        " --pt-min {params.dump[selection][pt_min]}"
        " --abs-eta-max {params.dump[selection][abs_eta_max]}"
        " --max-tracks {params.dump[max_tracks]} --step-size {params.dump[step_size]}"
        " --compression {params.dump[compression]} > {log} 2>&1"
