# compare: every model and baseline evaluated on one sample, side by side (one ROC plot,
# one table), from the evaluate stage's scores; the same for a study's evaluations; and the
# ranking of a scan's variants.


def compared_models(wildcards):
    """Every model, or a study's."""
    return study_models(study_of(wildcards)) if study_of(wildcards) else list(MODELS)


def compared_scores(wildcards):
    folder = wildcards.sample + (f".{study_of(wildcards)}" if study_of(wildcards) else "")
    return [f"results/evaluate/{model}/{folder}/scores.h5" for model in compared_models(wildcards)]


def compare_report(folder):
    """The comparison's figure and table in the report, under "compare" and the sample."""
    sample = folder.rsplit("/", 1)[1]
    return {"table": report(f"{folder}/rejections.csv", caption="../report/compare_table.rst",
                            category="3. compare", subcategory=sample,
                            labels={"sample": sample, "figure": "rejections table"}),
            "figure": report(f"{folder}/roc.png", caption="../report/compare_roc.rst",
                             category="3. compare", subcategory=sample,
                             labels={"sample": sample, "figure": "rejection curves"})}


rule compare:
    input:
        scores=compared_scores,
    output:
        metrics="results/compare/{sample}/metrics.json",
        table="results/compare/{sample}/rejections.md",
        csv=compare_report("results/compare/{sample}")["table"],
        plots="results/compare/{sample}/roc.pdf",
        figure=compare_report("results/compare/{sample}")["figure"],
    params:
        scores=lambda w, input: [f"{model}={path}" for model, path in
                                 zip(compared_models(w), input.scores)],
        working_points=lambda w: evaluate_settings(w)["working_points"],
        outdir=lambda wildcards, output: os.path.dirname(output.metrics),
        title=lambda w: f"models and baselines" + (f" ({study_of(w)})" if study_of(w) else ""),
        label=lambda w: plot_label(w.sample, STUDIES[study_of(w)].get("selection")
                                   if study_of(w) else None),
        reference=reference_option,
        code=code("compare"),
        versions=versions("compare"),
    log:
        "logs/compare/{sample}.log",
    benchmark:
        benchmark("compare", "{sample}")
    conda:
        "../envs/plot.yaml"
    shell:
        "{FLAVOURFLOW} compare --scores {params.scores:q} --outdir {params.outdir:q}"
        " --working-points {params.working_points} --title {params.title:q}"
        " --label {params.label:q} {params.reference:q} > {log:q} 2>&1"


# the same rule for a study: its inputs and params follow the study (compared_models)
use rule compare as compare_study with:
    output:
        metrics="results/compare/{sample}.{study}/metrics.json",
        table="results/compare/{sample}.{study}/rejections.md",
        csv=compare_report("results/compare/{sample}.{study}")["table"],
        plots="results/compare/{sample}.{study}/roc.pdf",
        figure=compare_report("results/compare/{sample}.{study}")["figure"],
    log:
        "logs/compare/{sample}.{study}.log",
    benchmark:
        benchmark("compare", "{sample}.{study}")


rule rank:
    input:
        metrics=lambda w: [f"results/evaluate/{model}/{w.sample}/metrics.json"
                           for model in scan_points(w.scan)],
    output:
        table="results/compare/{sample}/scan_{scan}.md",
        json="results/compare/{sample}/scan_{scan}.json",
    params:
        metrics=lambda w, input: [f"{model}={path}" for model, path in
                                  zip(scan_points(w.scan), input.metrics)],
        grid=lambda w: as_json(scan_points(w.scan)),
        rank_by=lambda w: config["scan"][w.scan]["rank_by"],
        code=code("compare"),
        versions=versions("compare"),
    log:
        "logs/compare/{sample}.scan_{scan}.log",
    benchmark:
        benchmark("compare", "{sample}.scan_{scan}")
    conda:
        "../envs/plot.yaml"
    shell:
        "{FLAVOURFLOW} compare --rank {params.metrics:q} --grid {params.grid:q}"
        " --rank-by {params.rank_by} --table {output.table:q} --json {output.json:q}"
        " > {log:q} 2>&1"
