# inspect: per-flavour input histograms and baseline ROCs of a sample, before any training.


rule inspect:
    input:
        sample="results/merge/{sample}.h5",
    output:
        summary="results/inspect/{sample}/summary.json",
        plots=expand(
            "results/inspect/{{sample}}/{name}.{ext}",
            name=["jet_inputs", "track_inputs", "ip_significance", "baselines_roc"],
            ext=["pdf", "png"],
        ),
    params:
        bins=config["inspect"]["bins"],
        code=code("inspect"),
        versions=versions("inspect"),
    log:
        "logs/inspect/{sample}.log",
    benchmark:
        benchmark("inspect", "{sample}")
    conda:
        "../envs/plot.yaml"
    shell:
        "{FLAVOURFLOW} inspect --input {input.sample:q} --outdir results/inspect/{wildcards.sample}"
        " --bins {params.bins} --title {wildcards.sample} > {log:q} 2>&1"
