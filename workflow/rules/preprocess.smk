# preprocess: split by event number, resample in (pT, |eta|), normalise, write shuffled
# memmaps + variables.json + before/after kinematics plots for a model. Every model gets the
# same files: the groups it has no inputs of are zero-width ([N, 0] jets, [N, 0, 0] tracks).

SPLITS = ["train", "val", "test"]
PREPROCESS_GROUPS = ["jets", "tracks", "tracks_valid", "labels", "weights", "tracks_origin",
                     "tracks_vertex"]


def _preprocess_params(w):
    """The model's preprocessing settings (what a change of reruns its preprocessing)."""
    entry = MODELS[w.model]
    tracks = entry.get("track_variables", [])
    return {
        "jet_variables": entry.get("jet_variables", []),
        "track_variables": tracks,
        # a jets-only model reads no tracks (0). A change of dump.max_tracks still reruns
        # it: it rewrites the dumps, and Snakemake reruns whatever reads a rewritten file;
        # models.<model>.max_tracks changes one model's tracks alone.
        "max_tracks": entry.get("max_tracks", config["dump"]["max_tracks"]) if tracks else 0,
        "log_variables": entry.get("log_variables", []),
        "log1p_variables": entry.get("log1p_variables", []),
        # the per-track truth targets of the auxiliary tasks, when the model has any
        "truth": "--truth" if any(entry.get("aux_tasks", {}).values()) else "",
    }


rule preprocess:
    input:
        sample=lambda w: f"results/merge/{MODELS[w.model]['sample']}.h5",
    output:
        variables="results/preprocess/{model}/variables.json",
        plots=expand("results/preprocess/{{model}}/kinematics.{ext}", ext=["pdf", "png"]),
        arrays=expand(
            "results/preprocess/{{model}}/{split}_{group}.npy",
            split=SPLITS,
            group=PREPROCESS_GROUPS,
        ),
    params:
        model=_preprocess_params,
        code=code("preprocess"),
        versions=versions("preprocess"),
        resampling=lambda w: as_json(MODELS[w.model].get("resampling", {})),
        split=as_json(config["preprocess"]["split"]),
        pre=config["preprocess"],
    log:
        "logs/preprocess/{model}.log",
    benchmark:
        benchmark("preprocess", "{model}")
    conda:
        "../envs/plot.yaml"
    shell:
        "{FLAVOURFLOW} preprocess --input {input.sample:q} --outdir results/preprocess/{wildcards.model}"
        " --model {wildcards.model} --variables {params.model[jet_variables]:q}"
        " --track-variables {params.model[track_variables]:q}"
        " --max-tracks {params.model[max_tracks]} --log-variables {params.model[log_variables]:q}"
        " --log1p-variables {params.model[log1p_variables]:q}"
        " --resampling {params.resampling:q}"
        " --fractions {params.split:q} --split-seed {params.pre[split_seed]}"
        " --shuffle-seed {params.pre[shuffle_seed]} --block-size {params.pre[block_size]}"
        " {params.model[truth]} > {log:q} 2>&1"
