# generate: one Pythia 8 + fastjet shard of a generated sample -> ROOT ntuple.


def generator_params(wildcards):
    """Everything that fixes one shard's content (not the number of shards)."""
    gen = dict(SAMPLES[wildcards.sample]["generator"])
    gen.pop("shards")
    return gen


rule generate:
    output:
        "results/generate/{sample}/shard_{shard}.root",
    params:
        gen=generator_params,
        code=code("generate"),
        versions=versions("generate"),
    log:
        "logs/generate/{sample}/shard_{shard}.log",
    benchmark:
        benchmark("generate", "{sample}/shard_{shard}")
    conda:
        "../envs/generate.yaml"
    shell:
        "{FLAVOURFLOW} generate --process {params.gen[process]} --ecm {params.gen[ecm_gev]}"
        " --events {params.gen[events_per_shard]} --seed {params.gen[seed]}"
        " --shard {wildcards.shard} --jet-pt-min {params.gen[jet_pt_min]}"
        " --jet-eta-max {params.gen[jet_eta_max]} --pileup-tracks {params.gen[pileup_tracks]}"
        " --output {output:q} > {log:q} 2>&1"
