# evaluate: the exported network (after its closure gate) on a sample's test split.


rule evaluate:
    input:
        network="results/export/{model}/network.json",
        closure="results/export/{model}/closure.json",
        variables="results/preprocess/{model}/variables.json",
        history="results/train/{model}/history.csv",
        sample="results/merge/{sample}.h5",
        code=code("evaluate"),
    output:
        metrics="results/evaluate/{model}/{sample}/metrics.json",
        scores="results/evaluate/{model}/{sample}/scores.h5",
        plots=expand(
            "results/evaluate/{{model}}/{{sample}}/{name}.{ext}",
            name=["roc", "discriminant", "training"],
            ext=["pdf", "png"],
        ),
    params:
        f_c=config["evaluate"]["f_c"],
        working_points=config["evaluate"]["working_points"],
    log:
        "logs/evaluate/{model}/{sample}.log",
    conda:
        "../envs/plot.yaml"
    shell:
        "{FLAVOURFLOW} evaluate --network {input.network} --variables {input.variables}"
        " --sample {input.sample} --history {input.history}"
        " --outdir results/evaluate/{wildcards.model}/{wildcards.sample}"
        " --fc {params.f_c} --working-points {params.working_points}"
        " --title '{wildcards.model} on {wildcards.sample}' > {log} 2>&1"
