# export: Keras -> lwtnn JSON and ONNX (rule export), then the closure gate (rule closure):
# it fails unless Keras, the numpy lwtnn evaluator and onnxruntime agree pairwise (and
# lwtnn's C++ test, when on PATH). Evaluation and inject wait for the gate. The gate's
# settings are not the conversion's: changing export.tolerance reruns the closure and what it
# gates, never the conversion (network.json and model.onnx keep their bytes).
# Models lwtnn cannot express (attention: ONNX_ONLY_MODELS) have the same two steps with ONNX
# alone (rules export_onnx and closure_onnx: Keras vs onnxruntime); the model's architecture
# picks the rules (wildcard constraints), and evaluate and inject read `deployed(model)`.

EXPORT_TEST = expand("results/preprocess/{{model}}/test_{group}.npy",
                     group=["jets", "tracks", "tracks_valid"])


rule export:
    wildcard_constraints:
        model=models_regex(LWTNN_MODELS),
    input:
        model="results/train/{model}/model.keras",
        variables="results/preprocess/{model}/variables.json",
        test=EXPORT_TEST,
    output:
        network="results/export/{model}/network.json",
        onnx="results/export/{model}/model.onnx",
    params:
        opset=config["export"]["onnx_opset"],
        code=code("export"),
        versions=versions("export"),
    log:
        "logs/export/{model}.log",
    benchmark:
        benchmark("export", "{model}")
    conda:
        "../envs/train.yaml"
    shell:
        "{FLAVOURFLOW} export --model {input.model:q} --variables {input.variables:q}"
        " --test-dir results/preprocess/{wildcards.model} --network {output.network:q}"
        " --onnx {output.onnx:q} --onnx-opset {params.opset} > {log:q} 2>&1"


rule closure:
    wildcard_constraints:
        model=models_regex(LWTNN_MODELS),
    input:
        model="results/train/{model}/model.keras",
        variables="results/preprocess/{model}/variables.json",
        test=EXPORT_TEST,
        network="results/export/{model}/network.json",
        onnx="results/export/{model}/model.onnx",
    output:
        closure="results/export/{model}/closure.json",
        inputs="results/export/{model}/inputs.json",
    params:
        tolerance=config["export"]["tolerance"],
        max_jets=config["export"]["max_jets"],
        min_jets=config["export"]["min_jets"],
        code=code("export"),
        versions=versions("export"),
    log:
        "logs/export/{model}.closure.log",
    benchmark:
        benchmark("export", "{model}.closure")
    conda:
        "../envs/train.yaml"
    shell:
        "{FLAVOURFLOW} export --check --model {input.model:q} --variables {input.variables:q}"
        " --test-dir results/preprocess/{wildcards.model} --network {input.network:q}"
        " --onnx {input.onnx:q} --closure {output.closure:q} --inputs-json {output.inputs:q}"
        " --tolerance {params.tolerance} --max-jets {params.max_jets}"
        " --min-jets {params.min_jets} > {log:q} 2>&1"



rule export_onnx:
    wildcard_constraints:
        model=models_regex(ONNX_ONLY_MODELS),
    input:
        model="results/train/{model}/model.keras",
        variables="results/preprocess/{model}/variables.json",
        test=EXPORT_TEST,
    output:
        onnx="results/export/{model}/model.onnx",
    params:
        opset=config["export"]["onnx_opset"],
        # stored in the ONNX metadata (a change of the model's entry retrains it anyway)
        record=lambda w: as_json(MODELS[w.model]),
        code=code("export"),
        versions=versions("export"),
    log:
        "logs/export/{model}.log",
    benchmark:
        benchmark("export", "{model}")
    conda:
        "../envs/train.yaml"
    shell:
        "{FLAVOURFLOW} export --model {input.model:q} --variables {input.variables:q}"
        " --test-dir results/preprocess/{wildcards.model} --onnx {output.onnx:q}"
        " --onnx-opset {params.opset} --record {params.record:q} > {log:q} 2>&1"


rule closure_onnx:
    wildcard_constraints:
        model=models_regex(ONNX_ONLY_MODELS),
    input:
        model="results/train/{model}/model.keras",
        variables="results/preprocess/{model}/variables.json",
        test=EXPORT_TEST,
        onnx="results/export/{model}/model.onnx",
    output:
        closure="results/export/{model}/closure.json",
    params:
        tolerance=config["export"]["tolerance"],
        max_jets=config["export"]["max_jets"],
        min_jets=config["export"]["min_jets"],
        code=code("export"),
        versions=versions("export"),
    log:
        "logs/export/{model}.closure.log",
    benchmark:
        benchmark("export", "{model}.closure")
    conda:
        "../envs/train.yaml"
    shell:
        "{FLAVOURFLOW} export --check --model {input.model:q} --variables {input.variables:q}"
        " --test-dir results/preprocess/{wildcards.model} --onnx {input.onnx:q}"
        " --closure {output.closure:q} --tolerance {params.tolerance}"
        " --max-jets {params.max_jets} --min-jets {params.min_jets} > {log:q} 2>&1"
