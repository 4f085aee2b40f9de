# inspect: per-flavour input histograms and baseline ROCs of a sample, before any training.


rule inspect:
    input:
        sample="results/merge/{sample}.h5",
        code=code("inspect"),
    output:
        summary="results/inspect/{sample}/summary.json",
        plots=expand(
            "results/inspect/{{sample}}/{name}.{ext}",
            name=["jet_inputs", "track_inputs", "ip_significance", "baselines_roc"],
            ext=["pdf", "png"],
        ),
    params:
        bins=config["inspect"]["bins"],
    log:
        "logs/inspect/{sample}.log",
    conda:
        "../envs/plot.yaml"
    shell:
        "{FLAVOURFLOW} inspect --input {input.sample} --outdir results/inspect/{wildcards.sample}"
        " --bins {params.bins} --title {wildcards.sample} > {log} 2>&1"
