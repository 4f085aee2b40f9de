# inspect: per-flavour input histograms and baseline ROCs of a sample, before any training.


def inspect_correlated(sample):
    """The jet inputs of the models trained or evaluated on ``sample`` (their correlation
    matrix per flavour is drawn), in config order."""
    evaluated = sample in config["evaluate"]["samples"]
    names = [v for entry in MODELS.values() if evaluated or entry["sample"] == sample
             for v in entry.get("jet_variables", [])]
    return list(dict.fromkeys(names)) or ["pt", "eta"]


rule inspect:
    input:
        sample="results/merge/{sample}.h5",
    output:
        summary="results/inspect/{sample}/summary.json",
        plots=expand("results/inspect/{{sample}}/{name}.pdf", name=INSPECT_PLOTS),
        figures=[report(f"results/inspect/{{sample}}/{name}.png",
                        caption=f"../report/inspect_{name}.rst", category="1. inspect",
                        subcategory="{sample}", labels={"sample": "{sample}", "figure": name})
                 for name in INSPECT_PLOTS],
    params:
        bins=config["inspect"]["bins"],
        working_points=config["evaluate"]["working_points"],
        correlated=lambda w: inspect_correlated(w.sample),
        label=lambda w: plot_label(w.sample),
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
        " --bins {params.bins} --working-points {params.working_points}"
        " --correlated {params.correlated} --title {wildcards.sample:q} --label {params.label:q}"
        " > {log:q} 2>&1"
