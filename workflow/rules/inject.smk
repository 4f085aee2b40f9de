# inject: an exported network's scores written back next to each input ROOT file (one job per
# model and file): a friend tree aligned with the original events, and the same as h5.


rule inject:
    input:
        ntuple=dump_source,
        dump="results/dump/{sample}/{file}.h5",
        network="results/export/{model}/network.json",
        closure="results/export/{model}/closure.json",
        code=code("inject"),
    output:
        root="results/inject/{model}/{sample}/{file}.root",
        h5="results/inject/{model}/{sample}/{file}.h5",
    params:
        step_size=config["inject"]["step_size"],
        format=config["inject"]["format"],
        f_c=config["evaluate"]["f_c"],
    log:
        "logs/inject/{model}/{sample}/{file}.log",
    conda:
        "../envs/dump.yaml"
    shell:
        "{FLAVOURFLOW} inject --ntuple {input.ntuple} --dump {input.dump}"
        " --network {input.network} --model {wildcards.model}"
        " --tree-out {output.root} --h5-out {output.h5} --fc {params.f_c}"
        " --step-size {params.step_size} --format {params.format} > {log} 2>&1"
