"""Every PDF node of every export has a unique, non-empty name.

TensorRT's ONNX parser names each layer after its node and invents or suffixes names
that are empty or repeated; the engine builder counts our plugin layers by these names
on TensorRT 10.0-10.3, where the Python bindings cannot name a V3 plugin
(:mod:`saphnet.runtime.pdf_layers`). The op forms are rewrites of the traced custom
node (:func:`~saphnet.export.op_forms.apply_op_form`), so one real export per
precision and shape kind, rewritten into each form, covers every combination.
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import onnx
import pytest

from saphnet.export import export_onnx
from saphnet.export.op_forms import OP_FORMS, apply_op_form
from saphnet.model import SAPHNet

pytestmark = pytest.mark.slow

PDF_OP_TYPES = {"custom": "PDFConv", "deformconv": "DeformConv", "decomposed": "GridSample"}


@pytest.fixture(scope="module")
def exports(
    tiny_onnx: Path, tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, bool], onnx.ModelProto]:
    """(precision, static) -> the tiny network exported in the custom form."""
    model = SAPHNet.load(tiny_weights)
    folder = tmp_path_factory.mktemp("names")
    files = {("fp32", False): tiny_onnx}
    for precision, static in (("fp32", True), ("fp16", False), ("fp16", True)):
        files[precision, static] = export_onnx(
            model,
            folder / f"{precision}_{static}.onnx",
            precision=precision,
            static_shape=(64, 64) if static else None,
        )
    return {key: onnx.load(str(path)) for key, path in files.items()}


@pytest.mark.parametrize("form", OP_FORMS)
def test_every_pdf_node_has_a_unique_non_empty_name(form: str, exports) -> None:
    for (precision, static), traced in exports.items():
        model = apply_op_form(copy.deepcopy(traced), form, 19)
        where = f"{form}, {precision}, {'static' if static else 'dynamic'}"
        pdf = [n.name for n in model.graph.node if n.op_type == PDF_OP_TYPES[form]]
        assert len(pdf) == 6, where  # 3 levels x (encoder + decoder) blocks
        assert all(pdf) and len(set(pdf)) == len(pdf), f"{where}: {pdf}"
        names = Counter(n.name for n in model.graph.node)
        assert not names[""] and names.most_common(1)[0][1] == 1, where  # every node, too
        if form != "custom":
            assert all(name.endswith(f"/PDFConv/{PDF_OP_TYPES[form]}") for name in pdf), pdf


def test_names_are_made_unique_where_the_exporter_left_them_empty_or_repeated(
    exports,
) -> None:
    traced = copy.deepcopy(exports["fp32", False])
    pdf = [n for n in traced.graph.node if n.op_type == "PDFConv"]
    pdf[0].name, pdf[1].name, pdf[2].name = "", "twice", "twice"
    pdf[3].name = next(n.name for n in traced.graph.node if n.op_type == "Conv")
    model = apply_op_form(traced, "deformconv", 19)
    names = [n.name for n in model.graph.node if n.op_type == "DeformConv"]
    assert names[:3] == ["PDFConv/DeformConv", "twice/DeformConv", "twice_2/DeformConv"]
    assert len(set(names)) == 6 and all(names)
    assert not [k for k, v in Counter(n.name for n in model.graph.node).items() if v > 1]
