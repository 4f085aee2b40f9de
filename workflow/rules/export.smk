# export: Keras -> lwtnn JSON and ONNX, and the closure gate: fails unless Keras, the numpy
# lwtnn evaluator and onnxruntime agree pairwise (and lwtnn's C++ test, when on PATH).


rule export:
    input:
        model="results/train/{model}/model.keras",
        variables="results/preprocess/{model}/variables.json",
        test=expand(
            "results/preprocess/{{model}}/test_{group}.npy",
            group=["jets", "tracks", "tracks_valid"],
        ),
        code=code("export"),
    output:
        network="results/export/{model}/network.json",
        onnx="results/export/{model}/model.onnx",
        closure="results/export/{model}/closure.json",
        inputs="results/export/{model}/inputs.json",
    params:
        export=config["export"],
    log:
        "logs/export/{model}.log",
    conda:
        "../envs/train.yaml"
    shell:
        "{FLAVOURFLOW} export --model {input.model} --variables {input.variables}"
        " --test-dir results/preprocess/{wildcards.model} --network {output.network}"
        " --closure {output.closure} --inputs-json {output.inputs}"
        " --onnx {output.onnx} --onnx-opset {params.export[onnx_opset]}"
        " --tolerance {params.export[tolerance]} --max-jets {params.export[max_jets]}"
        " --min-jets {params.export[min_jets]}"
        " > {log} 2>&1"
