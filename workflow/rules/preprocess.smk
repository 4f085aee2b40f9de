# preprocess: split by event number, normalise, write memmaps + variables.json for a model.

SPLITS = ["train", "val", "test"]


rule preprocess:
    input:
        sample=lambda w: f"results/merge/{MODELS[w.model]['sample']}.h5",
        code=code("preprocess"),
    output:
        variables="results/preprocess/{model}/variables.json",
        arrays=expand(
            "results/preprocess/{{model}}/{split}_{group}.npy",
            split=SPLITS,
            group=["jets", "labels", "weights"],
        ),
    params:
        variables=lambda w: MODELS[w.model]["jet_variables"],
        split=as_json(config["preprocess"]["split"]),
        pre=config["preprocess"],
    log:
        "logs/preprocess/{model}.log",
    conda:
        "../envs/dump.yaml"
    shell:
        "{FLAVOURFLOW} preprocess --input {input.sample} --outdir results/preprocess/{wildcards.model}"
        " --model {wildcards.model} --variables {params.variables}"
        " --fractions {params.split:q} --split-seed {params.pre[split_seed]}"
        " --shuffle-seed {params.pre[shuffle_seed]} --block-size {params.pre[block_size]}"
        " > {log} 2>&1"
