"""Config checks that need the code's own lists, run by the workflow when the DAG is built
(before any job), without importing numpy, awkward or Keras into Snakemake's process.

The lists are read from the source files that define them (with :mod:`ast`), so there is one
definition: the dump's field names (:data:`flavourflow.dump.blocks.JET_DTYPE` and
``TRACK_DTYPE``), the PHYSLITE tagger outputs, and the options each architecture of
:mod:`flavourflow.train.models` takes (its builder function's keyword arguments).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
#: log_<field> and log1p_<field> are inputs computed from a field (flavourflow.core.inputs).
PREFIXES = ("log_", "log1p_")
#: Builder arguments that are not options.
_NOT_OPTIONS = {"shapes", "n_classes", "fast", "aux"}


def _module(relative: str) -> ast.Module:
    return ast.parse((PACKAGE / relative).read_text())


def _assigned(tree: ast.Module, name: str) -> ast.expr:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value:
            return node.value
    raise LookupError(f"{name} not assigned")


def _string(node: ast.expr, names: dict[str, str]) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    raise LookupError(ast.dump(node))


def _dtype_names(tree: ast.Module, name: str, names: dict[str, str]) -> tuple[str, ...]:
    call = _assigned(tree, name)  # np.dtype([(name, type), ...])
    assert isinstance(call, ast.Call)
    return tuple(_string(item.elts[0], names) for item in call.args[0].elts)


@cache
def dump_fields() -> tuple[frozenset[str], frozenset[str]]:
    """(jet fields, track fields) of every dump, whatever its input format."""
    label = _string(_assigned(_module("core/flavours.py"), "LABEL_FIELD"), {})
    blocks = _module("dump/blocks.py")
    names = {"LABEL_FIELD": label}
    return (frozenset(_dtype_names(blocks, "JET_DTYPE", names)),
            frozenset(_dtype_names(blocks, "TRACK_DTYPE", names)))


@cache
def truth_track_fields() -> frozenset[str]:
    """Track truth fields (``TRUTH_TRACK_DTYPE``) of dumps of generated (flavourflow-format)
    ntuples: the labels of the auxiliary tasks; PHYSLITE and mapped ntuples have none."""
    return frozenset(_dtype_names(_module("dump/blocks.py"), "TRUTH_TRACK_DTYPE", {}))


@cache
def physlite_tagger_fields() -> frozenset[str]:
    """``<tagger>_<output>`` jet fields a PHYSLITE dump may add (those the file has)."""
    tree = _module("dump/physlite.py")
    taggers = [_string(e, {}) for e in _assigned(tree, "TAGGERS").elts]
    outputs = [_string(e, {}) for e in _assigned(tree, "TAGGER_OUTPUTS").elts]
    return frozenset(f"{t}_{o}" for t in taggers for o in outputs)


@cache
def baselines() -> tuple[str, ...]:
    """The baseline discriminants evaluate and compare show next to the models."""
    return tuple(_string(e, {}) for e in _assigned(_module("core/flavours.py"), "BASELINES").elts)


@cache
def architecture_options() -> dict[str, frozenset[str]]:
    """Architecture -> the options its builder takes."""
    tree = _module("train/models.py")
    table = _assigned(tree, "ARCHITECTURES")
    assert isinstance(table, ast.Dict)
    builders = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    out = {}
    for key, value in zip(table.keys, table.values, strict=True):
        args = builders[value.id].args
        names = {a.arg for a in (*args.args, *args.kwonlyargs)}
        out[_string(key, {})] = frozenset(names - _NOT_OPTIONS)
    return out


@cache
def aux_architectures() -> frozenset[str]:
    """Architectures with auxiliary track tasks (their builder takes ``aux``)."""
    tree = _module("train/models.py")
    table = _assigned(tree, "ARCHITECTURES")
    assert isinstance(table, ast.Dict)
    builders = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    return frozenset(_string(key, {}) for key, value in zip(table.keys, table.values,
                                                             strict=True)
                     if "aux" in {a.arg for a in builders[value.id].args.args})


@cache
def onnx_only_architectures() -> frozenset[str]:
    """Architectures that lwtnn cannot express (``ONNX_ONLY``): deployed as ONNX alone."""
    table = _assigned(_module("train/models.py"), "ONNX_ONLY")
    assert isinstance(table, ast.Dict)
    return frozenset(_string(key, {}) for key in table.keys)


def missing_inputs(names: list[str], fields: frozenset[str]) -> list[str]:
    """Those of ``names`` that are neither a field nor log_/log1p_ of one."""
    def known(name: str) -> bool:
        return name in fields or any(name.startswith(p) and name[len(p):] in fields
                                     for p in PREFIXES)
    return [n for n in names if not known(n)]
