# compare: every evaluated model of a sample and the baselines, side by side (one ROC plot,
# one table), from the evaluate stage's scores.


rule compare:
    input:
        scores=expand("results/evaluate/{model}/{{sample}}/scores.h5", model=MODELS),
        code=code("compare"),
    output:
        metrics="results/compare/{sample}/metrics.json",
        table="results/compare/{sample}/rejections.md",
        plots=expand("results/compare/{{sample}}/roc.{ext}", ext=["pdf", "png"]),
    params:
        scores=lambda w, input: " ".join(
            f"{model}={path}" for model, path in zip(MODELS, input.scores)
        ),
        working_points=config["evaluate"]["working_points"],
    log:
        "logs/compare/{sample}.log",
    conda:
        "../envs/plot.yaml"
    shell:
        "{FLAVOURFLOW} compare --scores {params.scores} --outdir results/compare/{wildcards.sample}"
        " --working-points {params.working_points}"
        " --title 'models and baselines on {wildcards.sample}' > {log} 2>&1"
