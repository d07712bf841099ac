"""Turn the exported graph's ``saphnet::PDFConv`` nodes into the requested op form.

The exporter always writes the custom node (see :mod:`saphnet.ops.onnx_symbolic`);
this module attaches the function that defines it (``custom``) or inlines that
function's standard-ONNX body into the graph (``deformconv``, ``decomposed``), so all
three forms come from one export and one definition of the maths.
"""

from __future__ import annotations

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
    """Attach the PDFConv function (``custom``) or inline its body (the other forms)."""
    strip_pdf_function(model).functions.append(pdf_function(function_body(form, opset), opset))
    if form == "custom":
        return model
    model = inliner.inline_selected_functions(model, [(DOMAIN, OP_TYPE)], exclude=False)
    kept_functions = [f for f in model.functions if f.domain != DOMAIN]
    del model.functions[:]
    model.functions.extend(kept_functions)
    kept = [o for o in model.opset_import if o.domain != DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return model
