# inject: an exported network's scores written back next to each input ROOT file (one job per
# model and file): a friend tree aligned with the original events, and the same as h5. The
# original is read in the sample's format, as the dump read it (same format and mapping).

# Events per read: memory and speed, not content, so not a param.
INJECT_STEP = config["inject"]["step_size"]


rule inject:
    input:
        ntuple=dump_source,
        dump="results/dump/{sample}/{file}.h5",
        network=deployed,
        closure="results/export/{model}/closure.json",
        mapping=dump_mapping,
    output:
        root="results/inject/{model}/{sample}/{file}.root",
        h5="results/inject/{model}/{sample}/{file}.h5",
    params:
        format=config["inject"]["format"],
        input_format=dump_format,
        mapping=mapping_options,
        f_c=config["evaluate"]["f_c"],
        code=code("inject"),
        versions=versions("inject"),
    log:
        "logs/inject/{model}/{sample}/{file}.log",
    benchmark:
        benchmark("inject", "{model}/{sample}/{file}")
    conda:
        "../envs/dump.yaml"
    shell:
        "{FLAVOURFLOW} inject --ntuple {input.ntuple:q} --input-format {params.input_format}"
        " {params.mapping:q} --dump {input.dump:q}"
        " --network {input.network:q} --model {wildcards.model}"
        " --tree-out {output.root:q} --h5-out {output.h5:q} --fc {params.f_c}"
        " --step-size {INJECT_STEP} --format {params.format} > {log:q} 2>&1"
