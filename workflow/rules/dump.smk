# dump: one ROOT ntuple -> one TDD-layout HDF5 file (one job per input file or shard).


def dump_source(wildcards):
    entry = SAMPLES[wildcards.sample]
    if entry["source"] == "generator":
        return f"results/generate/{wildcards.sample}/{wildcards.file}.root"
    by_stem = {Path(f).stem: f for f in entry["files"]}
    return by_stem[wildcards.file]


rule dump:
    input:
        root=dump_source,
        code=code("dump"),
    output:
        "results/dump/{sample}/{file}.h5",
    params:
        dump=config["dump"],
    log:
        "logs/dump/{sample}/{file}.log",
    conda:
        "../envs/dump.yaml"
    shell:
        "{FLAVOURFLOW} dump --input {input.root} --output {output}"
        " --pt-min {params.dump[selection][pt_min]}"
        " --abs-eta-max {params.dump[selection][abs_eta_max]}"
        " --max-tracks {params.dump[max_tracks]} --step-size {params.dump[step_size]}"
        " --compression {params.dump[compression]} > {log} 2>&1"
