"""Turn the exported graph's ``saphnet::PDFConv`` nodes into the requested op form.

The exporter always writes the custom node (see :mod:`saphnet.ops.onnx_symbolic`);
this module attaches the function that defines it (``custom``) or inlines that
function's standard-ONNX body into the graph (``deformconv``, ``decomposed``), so all
three forms come from one export and one definition of the maths.
"""

from __future__ import annotations

from collections import Counter

from onnx import ModelProto, inliner

from ..errors import SaphnetError
from ..pdf_identity import DOMAIN, OP_TYPE
from .pdf_function import DEFORMCONV_OPSET, GRIDSAMPLE_OPSET, pdf_function

OP_FORMS = ("custom", "deformconv", "decomposed")
EXPORTER_MIN_OPSET = 18  # torch.onnx's exporter writes opset 18 and converts from there
MIN_OPSET = {
    "custom": EXPORTER_MIN_OPSET,
    "deformconv": DEFORMCONV_OPSET,
    "decomposed": max(EXPORTER_MIN_OPSET, GRIDSAMPLE_OPSET),
}


def function_body(form: str, opset: int) -> str:
    """The body that defines the node: DeformConv where the opset has it (TensorRT maps
    it to a built-in plugin), else the GridSample decomposition."""
    if form == "decomposed" or opset < DEFORMCONV_OPSET:
        return "decomposed"
    return "deformconv"


def check_opset(form: str, opset: int, max_opset: int) -> None:
    """One-line error when ``form`` cannot be written at ``opset``."""
    if form not in OP_FORMS:
        raise SaphnetError(f"unknown PDF op form {form!r}; choose one of {', '.join(OP_FORMS)}")
    low = MIN_OPSET[form]
    if opset < low:
        why = (
            "DeformConv exists from opset 19"
            if form == "deformconv"
            else "the exporter writes opset 18 or newer"
        )
        raise SaphnetError(
            f"--pdf-op {form} needs opset >= {low} ({why}); pass --opset {max(low, 19)}"
        )
    if opset > max_opset:
        raise SaphnetError(
            f"opset {opset} is newer than this onnx package knows ({max_opset}); pass --opset 19"
        )


def count_pdf_nodes(model: ModelProto) -> int:
    return sum(n.domain == DOMAIN and n.op_type == OP_TYPE for n in model.graph.node)


def pdf_function_body(model: ModelProto) -> str | None:
    """The body of the model's ``saphnet::PDFConv`` function ("deformconv" or
    "decomposed", as :func:`function_body` chose it), None when the model has none."""
    for function in model.functions:
        if (function.domain, function.name) == (DOMAIN, OP_TYPE):
            uses_deformconv = any(n.op_type == "DeformConv" for n in function.node)
            return "deformconv" if uses_deformconv else "decomposed"
    return None


def strip_pdf_function(model: ModelProto) -> ModelProto:
    """Remove the ``saphnet::PDFConv`` function from ``model`` (in place) and return it.

    TensorRT's ONNX parser up to 10.6 imports a node through a model-local function of
    its name before it looks for a plugin (10.7 reversed the order), so a build that must
    run our plugin hands the parser the model without the function. The nodes, their
    attributes and the ``saphnet`` opset import stay: the parser finds the plugin by op
    type, ``plugin_version`` and ``plugin_namespace``.
    """
    kept = [f for f in model.functions if (f.domain, f.name) != (DOMAIN, OP_TYPE)]
    del model.functions[:]
    model.functions.extend(kept)
    return model


def apply_op_form(model: ModelProto, form: str, opset: int) -> ModelProto:
    """Attach the PDFConv function (``custom``) or inline its body (the other forms).

    Every PDF node comes out with a unique, non-empty name: TensorRT names a layer after
    its node and invents or suffixes names that are empty or repeated, and the engine
    builder finds our plugin layers by these names on TensorRT 10.0-10.3.
    """
    name_pdf_nodes(model)
    function = pdf_function(function_body(form, opset), opset)
    strip_pdf_function(model).functions.append(function)
    if form == "custom":
        return model
    callers = [
        (i, n.name)
        for i, n in enumerate(model.graph.node)
        if (n.domain, n.op_type) == (DOMAIN, OP_TYPE)
    ]
    model = inliner.inline_selected_functions(model, [(DOMAIN, OP_TYPE)], exclude=False)
    _name_inlined_bodies(model, callers, [n.op_type for n in function.node])
    kept_functions = [f for f in model.functions if f.domain != DOMAIN]
    del model.functions[:]
    model.functions.extend(kept_functions)
    kept = [o for o in model.opset_import if o.domain != DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return model


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3`` ... when taken; marks the result taken."""
    candidate, k = name, 1
    while candidate in taken:
        k += 1
        candidate = f"{name}_{k}"
    taken.add(candidate)
    return candidate


def name_pdf_nodes(model: ModelProto) -> None:
    """Give every ``saphnet::PDFConv`` node a unique, non-empty name (its own if it has
    one that no other node has), in place."""
    nodes = model.graph.node
    is_pdf = [(n.domain, n.op_type) == (DOMAIN, OP_TYPE) for n in nodes]
    taken = {n.name for n, pdf in zip(nodes, is_pdf, strict=True) if not pdf}
    for node, pdf in zip(nodes, is_pdf, strict=True):
        if pdf:
            node.name = _unique(node.name or OP_TYPE, taken)


def _name_inlined_bodies(
    model: ModelProto, callers: list[tuple[int, str]], body: list[str]
) -> None:
    """Name the nodes inlined for each PDFConv node after it (``<node>/DeformConv``,
    ``<node>/GridSample_3``): the inliner leaves the body's nodes unnamed and puts each
    call's copy of the body, in order, where the call was."""
    nodes = model.graph.node
    starts = {i + j * (len(body) - 1) for j, (i, _) in enumerate(callers)}
    inlined = {s + k for s in starts for k in range(len(body))}
    taken = {n.name for i, n in enumerate(nodes) if i not in inlined}
    repeated = {op for op, count in Counter(body).items() if count > 1}
    for j, (i, caller) in enumerate(callers):
        start = i + j * (len(body) - 1)
        copy = nodes[start : start + len(body)]
        if [n.op_type for n in copy] != body:
            raise RuntimeError(
                f"the ONNX inliner did not put {caller}'s function body in its place; "
                "the PDFConv naming in export/op_forms.py needs updating for this onnx version"
            )
        seen = Counter[str]()
        for node in copy:
            seen[node.op_type] += 1
            suffix = f"_{seen[node.op_type]}" if node.op_type in repeated else ""
            node.name = _unique(f"{caller}/{node.op_type}{suffix}", taken)
