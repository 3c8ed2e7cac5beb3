"""QONNX models as plain ONNX that onnxruntime runs: every ``Quant`` node rewritten as the float
ops it stands for, so ``hwgen check`` has a golden model for Brevitas exports without qonnx.

A QONNX ``Quant(x, scale, zero_point, bit_width)`` with attributes ``signed``, ``narrow`` and
``rounding_mode`` computes, in float32 as qonnx's executor does::

    q = clip(round(x / scale + zero_point), lo, hi)     lo, hi from bit_width, signed, narrow
    y = (q − zero_point) · scale

``round`` is the rounding mode, as qonnx defines it: ``ROUND``/``HALF_EVEN`` (to nearest,
ties to even: ONNX ``Round``), ``FLOOR``, ``CEIL``, ``UP`` and ``DOWN`` (away from and toward
zero), ``HALF_UP`` and ``HALF_DOWN`` (to nearest, ties away from and toward zero:
``sign(v)·floor(|v| + ½)``, ``sign(v)·ceil(|v| − ½)``). The rewrite is checked against qonnx's own outputs stored with the examples
(``tests/test_qonnx_models.py``).
"""

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import HwgenError
from .frontends.onnx_quant import QONNX_DOMAINS

__all__ = ["has_qonnx_ops", "qonnx_to_onnx", "run_qonnx"]

# The default-domain opset the rewritten model needs (Round: 11; Clip with inputs: 11).
_MIN_OPSET = 13


def has_qonnx_ops(model):
    """Whether ``model`` has nodes of the QONNX domains."""
    return any(node.domain in QONNX_DOMAINS for node in model.graph.node)


def _constant(model, name):
    for tensor in model.graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    raise HwgenError(f"the QONNX Quant input {name!r} must be a constant")


def _rounding(mode, value, out, prefix):
    """Nodes rounding ``value`` into ``out`` by ``mode``."""
    if mode in ("ROUND", "HALF_EVEN"):
        return [helper.make_node("Round", [value], [out])]
    if mode == "FLOOR":
        return [helper.make_node("Floor", [value], [out])]
    if mode == "CEIL":
        return [helper.make_node("Ceil", [value], [out])]
    # The magnitude's rounding of the modes symmetric about zero: (offset, Floor or Ceil).
    symmetric = {"UP": (None, "Ceil"), "DOWN": (None, "Floor"), "HALF_UP": ("Add", "Floor"),
                 "HALF_DOWN": ("Sub", "Ceil")}
    if mode in symmetric:
        offset, op = symmetric[mode]
        nodes = [helper.make_node("Sign", [value], [f"{prefix}_sign"]),
                 helper.make_node("Abs", [value], [f"{prefix}_abs"])]
        magnitude = f"{prefix}_abs"
        if offset:
            nodes.append(helper.make_node(offset, [magnitude, f"{prefix}_half"],
                                          [f"{prefix}_abs_half"]))
            magnitude = f"{prefix}_abs_half"
        nodes += [helper.make_node(op, [magnitude], [f"{prefix}_rounded"]),
                  helper.make_node("Mul", [f"{prefix}_sign", f"{prefix}_rounded"], [out])]
        return nodes
    raise HwgenError(f"QONNX rounding_mode {mode!r} is not supported")


def qonnx_to_onnx(model):
    """A copy of the QONNX ``model`` with every ``Quant`` node replaced by float ops (see the
    module doc); other QONNX ops are an error."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    nodes, extra = [], []
    for index, node in enumerate(graph.node):
        if node.domain not in QONNX_DOMAINS:
            nodes.append(node)
            continue
        if node.op_type not in ("Quant", "IntQuant"):
            raise HwgenError(f"QONNX op {node.op_type!r} (node {node.name or node.output[0]!r}) "
                             "has no float emulation; install qonnx (pip install 'hwgen[qonnx]')")
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        signed, narrow = int(attributes.get("signed", 1)), int(attributes.get("narrow", 0))
        mode = attributes.get("rounding_mode", b"ROUND")
        mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
        bits = int(np.asarray(_constant(model, node.input[3])).reshape(()))
        lo = -(1 << (bits - 1)) + narrow if signed else 0
        hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1 - narrow
        x, scale, zero_point = node.input[:3]
        prefix = f"qonnx_quant{index}"
        extra += [numpy_helper.from_array(np.float32(lo), f"{prefix}_lo"),
                  numpy_helper.from_array(np.float32(hi), f"{prefix}_hi"),
                  numpy_helper.from_array(np.float32(0.5), f"{prefix}_half")]
        nodes += [helper.make_node("Div", [x, scale], [f"{prefix}_div"]),
                  helper.make_node("Add", [f"{prefix}_div", zero_point], [f"{prefix}_shift"])]
        nodes += _rounding(mode, f"{prefix}_shift", f"{prefix}_round", prefix)
        nodes += [helper.make_node("Clip", [f"{prefix}_round", f"{prefix}_lo", f"{prefix}_hi"],
                                   [f"{prefix}_clip"]),
                  helper.make_node("Sub", [f"{prefix}_clip", zero_point], [f"{prefix}_codes"]),
                  helper.make_node("Mul", [f"{prefix}_codes", scale], [node.output[0]])]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(extra)
    kept = [entry for entry in model.opset_import if entry.domain not in QONNX_DOMAINS]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx") and entry.version < _MIN_OPSET:
            entry.version = _MIN_OPSET
    return model


def run_qonnx(model, x):
    """The QONNX ``model``'s output on ``x`` (float32): qonnx's executor if qonnx is installed,
    else onnxruntime on :func:`qonnx_to_onnx`'s rewrite. Returns ``(output, which)``."""
    try:
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx
    except ImportError:
        ModelWrapper = None
    if ModelWrapper is not None:
        wrapper = ModelWrapper(model)
        name_in, name_out = wrapper.graph.input[0].name, wrapper.graph.output[0].name
        out = [execute_onnx(wrapper, {name_in: frame[None]})[name_out]
               for frame in np.asarray(x, np.float32)]
        return np.concatenate(out), "qonnx's executor"
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(qonnx_to_onnx(model).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    x = np.asarray(x, np.float32)
    batch = feed.shape[0] if feed.shape else None
    if isinstance(batch, int) and batch != len(x):
        out = np.concatenate([session.run(None, {feed.name: frame[None]})[0] for frame in x])
    else:
        out = session.run(None, {feed.name: x})[0]
    return out, "onnxruntime on hwgen's float emulation of Quant"
