# train: fit the model's network on the preprocess memmaps (GPU when TensorFlow sees one).


rule train:
    input:
        rules.preprocess.output,
    output:
        model="results/train/{model}/model.keras",
        history="results/train/{model}/history.csv",
        info="results/train/{model}/training.json",
    params:
        arch=lambda w: MODELS[w.model]["architecture"],
        options=lambda w: as_json(MODELS[w.model].get("options", {})),
        training=lambda w: as_json(MODELS[w.model]["training"]),
        aux=lambda w: as_json(MODELS[w.model].get("aux_tasks", {})),
        # recorded in training.json: the model's entry, its sample and its preprocessing (a
        # change to any of them reruns preprocess, hence this rule, anyway)
        code=code("train"),
        versions=versions("train"),
        record=lambda w: as_json({"model": MODELS[w.model],
                                  "sample": SAMPLES[MODELS[w.model]["sample"]],
                                  "preprocess": config["preprocess"]}),
    threads: 2
    resources:
        # one GPU per training job: `--resources gpu=N` runs at most N trainings at once on a
        # machine with N GPUs; on a cluster the profile turns it into the scheduler's request
        gpu=1,
    log:
        "logs/train/{model}.log",
    benchmark:
        benchmark("train", "{model}")
    conda:
        "../envs/train.yaml"
    shell:
        "{FLAVOURFLOW} train --preprocessed results/preprocess/{wildcards.model}"
        " --model {output.model} --history {output.history} --info {output.info}"
        " --architecture {params.arch} --options {params.options:q}"
        " --training {params.training:q} --aux-tasks {params.aux:q} --record {params.record:q} --threads {threads}"
        " > {log:q} 2>&1"
