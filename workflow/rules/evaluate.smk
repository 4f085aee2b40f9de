# evaluate: the exported network (after its closure gate) on a sample's test split; a study
# (config `studies`) re-evaluates with its own f_c, working points, jet selection, samples
# or models into results/evaluate/<model>/<sample>.<study>/, beside the default outputs.

EVALUATE_PLOTS = ["roc", "discriminant", "training"]


def study_of(wildcards):
    """The study a job belongs to, or None for the default evaluation."""
    return getattr(wildcards, "study", None)


def evaluate_settings(wildcards):
    """The evaluation settings of the default evaluation, or of a study over them."""
    study = STUDIES[study_of(wildcards)] if study_of(wildcards) else {}
    return {"f_c": study.get("f_c", config["evaluate"]["f_c"]),
            "working_points": study.get("working_points", config["evaluate"]["working_points"]),
            "selection": as_json(study.get("selection", {}))}


rule evaluate:
    input:
        network=deployed,
        closure="results/export/{model}/closure.json",
        variables="results/preprocess/{model}/variables.json",
        history="results/train/{model}/history.csv",
        sample="results/merge/{sample}.h5",
    output:
        metrics="results/evaluate/{model}/{sample}/metrics.json",
        scores="results/evaluate/{model}/{sample}/scores.h5",
        plots=expand("results/evaluate/{{model}}/{{sample}}/{name}.{ext}",
                     name=EVALUATE_PLOTS, ext=["pdf", "png"]),
    params:
        settings=evaluate_settings,
        working_points=lambda wildcards: evaluate_settings(wildcards)["working_points"],
        outdir=lambda wildcards, output: os.path.dirname(output.metrics),
        title=lambda w: f"{w.model} on {w.sample}" + (f" ({study_of(w)})" if study_of(w) else ""),
        code=code("evaluate"),
        versions=versions("evaluate"),
    log:
        "logs/evaluate/{model}/{sample}.log",
    benchmark:
        benchmark("evaluate", "{model}/{sample}")
    conda:
        "../envs/plot.yaml"
    shell:
        "{FLAVOURFLOW} evaluate --network {input.network:q} --variables {input.variables:q}"
        " --sample {input.sample:q} --history {input.history:q} --outdir {params.outdir:q}"
        " --fc {params.settings[f_c]} --working-points {params.working_points}"
        " --selection {params.settings[selection]:q} --title {params.title:q} > {log:q} 2>&1"


# the same rule for a study: its params follow the study (evaluate_settings, study_of)
use rule evaluate as evaluate_study with:
    output:
        metrics="results/evaluate/{model}/{sample}.{study}/metrics.json",
        scores="results/evaluate/{model}/{sample}.{study}/scores.h5",
        plots=expand("results/evaluate/{{model}}/{{sample}}.{{study}}/{name}.{ext}",
                     name=EVALUATE_PLOTS, ext=["pdf", "png"]),
    log:
        "logs/evaluate/{model}/{sample}.{study}.log",
    benchmark:
        benchmark("evaluate", "{model}/{sample}.{study}")
