"""flavourflow: from a HEP sample to a deployed b-tagging network, as one Snakemake DAG."""

__version__ = "0.1.0"
