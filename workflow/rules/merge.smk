# merge: the per-file dumps of one sample -> results/merge/<sample>.h5.


rule merge:
    input:
        dumps=lambda w: expand("results/dump/{{sample}}/{file}.h5", file=sample_files(w.sample)),
        code=code("merge"),
    output:
        "results/merge/{sample}.h5",
    params:
        compression=config["dump"]["compression"],
    log:
        "logs/merge/{sample}.log",
    conda:
        "../envs/dump.yaml"
    shell:
        "{FLAVOURFLOW} merge --inputs {input.dumps} --output {output}"
        " --compression {params.compression} > {log} 2>&1"
