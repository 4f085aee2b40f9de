# evaluate: the exported network (after its closure gate) on a sample's test split; a study
# (config `studies`) re-evaluates with its own f_c, working points, jet selection, samples
# or models into results/evaluate/<model>/<sample>.<study>/, beside the default outputs.

def study_of(wildcards):
    """The study a job belongs to, or None for the default evaluation."""
    return getattr(wildcards, "study", None)


def evaluate_settings(wildcards):
    """The evaluation settings of the default evaluation, or of a study over them."""
    study = STUDIES[study_of(wildcards)] if study_of(wildcards) else {}
    return {"f_c": study.get("f_c", config["evaluate"]["f_c"]),
            "working_points": study.get("working_points", config["evaluate"]["working_points"]),
            "selection": as_json(study.get("selection", {})),
            "reference": config["evaluate"].get("reference")}


def reference_option(wildcards):
    """`--reference <tagger>` when evaluate.reference names one that this job has (a
    baseline; the evaluated model itself is "network"; a compare job's models); else none:
    the best baseline."""
    reference = evaluate_settings(wildcards)["reference"]
    if not reference:
        return []
    if hasattr(wildcards, "model"):  # evaluate: the network and the baselines
        if reference == wildcards.model:
            return ["--reference", "network"]
        return ["--reference", reference] if reference not in MODELS else []
    return ["--reference", reference] if reference not in MODELS or \
        reference in compared_models(wildcards) else []


def evaluate_figures(folder):
    """The PNGs of an evaluation (``folder``: results/evaluate/{model}/{sample}[.{study}]),
    each in the report under its model and sample, with its caption."""
    return [report(f"{folder}/{name}.png", caption=f"../report/evaluate_{name}.rst",
                   category="2. evaluate {model}", subcategory=folder.rsplit("/", 1)[1],
                   labels={"model": "{model}", "sample": folder.rsplit("/", 1)[1],
                           "figure": name})
            for name in EVALUATE_PLOTS]


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
        plots=expand("results/evaluate/{{model}}/{{sample}}/{name}.pdf", name=EVALUATE_PLOTS),
        figures=evaluate_figures("results/evaluate/{model}/{sample}"),
    params:
        settings=evaluate_settings,
        reference=reference_option,
        working_points=lambda wildcards: evaluate_settings(wildcards)["working_points"],
        outdir=lambda wildcards, output: os.path.dirname(output.metrics),
        title=lambda w: f"{w.model}" + (f" ({study_of(w)})" if study_of(w) else ""),
        label=lambda w: plot_label(w.sample, STUDIES[study_of(w)].get("selection")
                                   if study_of(w) else None),
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
        " --selection {params.settings[selection]:q} --title {params.title:q}"
        " --label {params.label:q} --model {wildcards.model}"
        " {params.reference:q} > {log:q} 2>&1"


# the same rule for a study: its params follow the study (evaluate_settings, study_of)
use rule evaluate as evaluate_study with:
    output:
        metrics="results/evaluate/{model}/{sample}.{study}/metrics.json",
        scores="results/evaluate/{model}/{sample}.{study}/scores.h5",
        plots=expand("results/evaluate/{{model}}/{{sample}}.{{study}}/{name}.pdf",
                     name=EVALUATE_PLOTS),
        figures=evaluate_figures("results/evaluate/{model}/{sample}.{study}"),
    log:
        "logs/evaluate/{model}/{sample}.{study}.log",
    benchmark:
        benchmark("evaluate", "{model}/{sample}.{study}")
