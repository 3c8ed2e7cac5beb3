"""What the ONNX frontends share: reading and checking a file, node attributes and windows,
constants, a stable topological order, and the layer names both derive from node names.

Layer names come from the module path where the exporter wrote one, made into unique
identifiers: PyTorch's TorchScript exporter writes it into node names (``/stage2/conv1/Conv``
→ ``stage2_conv1``, ``/fc/fc.0/Gemm`` → ``fc_0``), the dynamo exporter into the node's
``pkg.torch.onnx.name_scopes`` metadata (``['', 'stage2', 'stage2.conv1', 'conv1d']`` →
``stage2_conv1``), so both exporters give a model the same names. Without a module path:
``/Relu_1`` → ``relu_1``, ``node_linear_1`` → ``linear_1``, ``sequential/dense/MatMul``
(tf2onnx) → ``dense``. ``--bits`` and ``--folding`` also take the dotted module path
(``stage2.conv1``).
"""

import ast
import keyword
import os
import re
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import HwgenError

# Opset 7 is the first with numpy broadcasting for Add/Gemm (no `broadcast` attribute). Up to the
# maximum, the supported ops changed only in the types they accept or in attributes that are
# handled here (see REVIEWED_SCHEMAS in the tests: 27 and 28 only added types); onnxruntime 1.32
# runs 28. An older onnx package bounds it by what it knows.
MIN_OPSET = 7
MAX_OPSET = min(28, onnx.defs.onnx_opset_version())

_DEFAULT_DOMAINS = ("", "ai.onnx")


def _read(model):
    if isinstance(model, onnx.ModelProto):
        source = None
    elif isinstance(model, (str, os.PathLike)):
        source = Path(model)
        if not source.exists():
            raise HwgenError(f"ONNX file {str(source)!r} does not exist")
        if not source.is_file():
            raise HwgenError(f"{str(source)!r} is not a file; give the path of an .onnx file")
        try:
            model = onnx.load(source)
        # protobuf's DecodeError, external-data OSErrors and ValueErrors all mean "not readable".
        except Exception as error:
            raise HwgenError(f"cannot read {str(source)!r} as an ONNX model: {error}") from None
    else:
        raise HwgenError(f"model must be a path or an onnx.ModelProto, not {type(model).__name__}")

    where = f"{str(source)!r}" if source else "the model"
    if not model.HasField("graph") or not (model.graph.input or model.graph.node):
        raise HwgenError(f"{where} holds no ONNX graph; is it an .onnx file?")
    opsets = {entry.domain or "ai.onnx": entry.version for entry in model.opset_import}
    opset = opsets.get("ai.onnx")
    if opset is None:
        raise HwgenError(f"{where} declares no ai.onnx opset import")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise HwgenError(
            f"{where} uses ONNX opset {opset}; hwgen reads opsets {MIN_OPSET}..{MAX_OPSET}. "
            f"Re-export with opset_version=17, or convert it with "
            f"onnx.version_converter.convert_version(model, 17)")
    return model, source.stem if source else None


def _attributes(node):
    """``node``'s attributes as Python values (strings decoded)."""
    values = {}
    for attribute in node.attribute:
        value = onnx.helper.get_attribute_value(attribute)
        values[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return values


def _check_kernel(attributes, kernel, what, source):
    """The ``(kh, kw)`` kernel: from ``kernel_shape``, which must agree with ``kernel`` (the
    weight's) if both are known. Dilations must be 1."""
    if "kernel_shape" in attributes:
        shape = tuple(attributes["kernel_shape"])
        if len(shape) != 2 or min(shape) < 1:
            raise HwgenError(f"{what}: kernel_shape {list(shape)} must be two positive sizes "
                             "(hwgen supports 2-D windows)")
        if kernel is not None and shape != kernel:
            raise HwgenError(f"{what}: kernel_shape {list(shape)} disagrees with {source} "
                             f"({kernel[0]}×{kernel[1]})")
        kernel = shape
    dilations = list(attributes.get("dilations", [1, 1]))
    if any(d != 1 for d in dilations):
        raise HwgenError(f"{what}: dilations {dilations} are not supported; hwgen's windows are "
                         "dense (dilations 1)")
    return kernel


def _window(attributes, size, kernel, what):
    """``(stride, pads)`` of a windowed op from ``strides``, ``pads`` and ``auto_pad``; pads are
    ``(top, left, bottom, right)``, which is ONNX's 2-D order ``(y_begin, x_begin, y_end,
    x_end)``."""
    stride = tuple(attributes.get("strides", (1, 1)))
    if len(stride) != 2 or min(stride) < 1:
        raise HwgenError(f"{what}: strides {list(stride)} must be two positive integers")
    auto_pad = attributes.get("auto_pad", "NOTSET")
    if auto_pad == "NOTSET":
        pads = tuple(attributes.get("pads", (0, 0, 0, 0)))
        if len(pads) != 4 or min(pads) < 0:
            raise HwgenError(f"{what}: pads {list(pads)} must be four non-negative integers")
    elif auto_pad == "VALID":
        pads = (0, 0, 0, 0)
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        # Output ceil(size / stride); an odd total puts the extra pixel at the end (UPPER) or
        # the beginning (LOWER).
        totals = [max((-(-extent // s) - 1) * s + k - extent, 0)
                  for extent, k, s in zip(size, kernel, stride)]
        small = [total // 2 for total in totals]
        large = [total - half for total, half in zip(totals, small)]
        pads = tuple(small + large) if auto_pad == "SAME_UPPER" else tuple(large + small)
    else:
        raise HwgenError(f"{what}: auto_pad {auto_pad!r} must be NOTSET, VALID, SAME_UPPER or "
                         "SAME_LOWER")
    return stride, pads


def _window_output(size, kernel, stride, pads, what):
    """Output ``(H, W)`` of a windowed op (floors, like ``ceil_mode=0``)."""
    out = []
    for extent, k, s, before, after in zip(size, kernel, stride, pads[:2], pads[2:]):
        if extent + before + after < k:
            raise HwgenError(f"{what}: the kernel {kernel[0]}×{kernel[1]} is larger than the "
                             f"padded input {size[0]}×{size[1]} (pads {list(pads)})")
        out.append((extent + before + after - k) // s + 1)
    return tuple(out)


# -- graph helpers --------------------------------------------------------------------------------

def constant_value(node, what):
    """The array a ``Constant`` node holds (``value`` or ``value_float(s)``/``value_int(s)``)."""
    if len(node.attribute) != 1 or len(node.output) != 1:
        raise HwgenError(f"{what} must have one value attribute and one output")
    attribute = node.attribute[0]
    if attribute.name == "value":
        return _to_array(attribute.t, what)
    if attribute.name in ("value_float", "value_floats", "value_int", "value_ints"):
        return np.array(onnx.helper.get_attribute_value(attribute))
    raise HwgenError(f"{what}: a constant given as {attribute.name} is not supported; "
                     "use value, value_float(s) or value_int(s)")


def input_dims(tensor_type):
    """The dimensions of a graph input (None where unknown) and their text, e.g. ``(?, 64)``."""
    dims = [dim.dim_value if dim.HasField("dim_value") else None
            for dim in tensor_type.shape.dim]
    return dims, "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def _to_array(tensor, what):
    try:
        return numpy_helper.to_array(tensor)
    except Exception as error:  # external data not found, unsupported storage: all unreadable
        raise HwgenError(f"cannot read {what}: {error}; if its data lives in an external file, "
                         "pass the path of the .onnx file instead of a loaded model") from None


def _label(node):
    return node.name or (node.output[0] if node.output else node.op_type)


def _topological(nodes, available):
    """``nodes`` in an order where every input is available before it is read (Kahn's algorithm,
    stable: exporters already write nodes in order, so this is one pass in practice)."""
    available = set(available) | {""}  # "" is an omitted optional input
    pending, ordered = list(nodes), []
    while pending:
        ready = [node for node in pending if all(t in available for t in node.input)]
        if not ready:
            node = pending[0]
            missing = next(t for t in node.input if t not in available)
            raise HwgenError(f"node {_label(node)!r} (op {node.op_type}) reads {missing!r}, which "
                             "is neither the input, an initializer nor any node's output "
                             "(or the graph has a cycle)")
        for node in ready:
            available.update(node.output)
        ready_ids = set(map(id, ready))
        pending = [node for node in pending if id(node) not in ready_ids]
        ordered += ready
    return ordered


# -- names ----------------------------------------------------------------------------------------

def _identifier(text, prefix):
    """``text`` as an identifier: runs of other characters become ``_``; a leading digit gets
    ``prefix_``; a Python keyword gets a trailing ``_``."""
    text = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")
    text = re.sub(r"_+", "_", text)
    if not text:
        return prefix
    if text[0].isdigit():
        text = f"{prefix}_{text}"
    return text + "_" if keyword.iskeyword(text) else text


_SHORT_NAMES = {"GlobalAveragePool": "gap", "ReduceMean": "mean"}


def _name_scopes(node):
    """The dynamo exporter's ``pkg.torch.onnx.name_scopes`` of ``node`` (without the empty
    root), or ``None``."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                return [str(scope) for scope in ast.literal_eval(prop.value) if scope]
            except (ValueError, SyntaxError, TypeError):
                return None
    return None


def module_path(node):
    """The dotted path of the PyTorch module ``node`` came from (``"stage2.conv1"``), from the
    dynamo exporter's ``pkg.torch.onnx.name_scopes`` metadata or the TorchScript exporter's
    ``/stage2/conv1/Conv`` node name; ``None`` where neither says."""
    scopes = _name_scopes(node)
    if scopes is not None:
        return scopes[-2] if len(scopes) >= 2 else None  # the last is the op's own
    if not node.name.startswith("/"):
        return None
    path = ""
    for part in [part for part in node.name.split("/") if part][:-1]:
        # Containers write qualified children ("/fc/fc.0/Gemm"); modules write bare ones
        # ("/stage2/conv1/Conv").
        path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
    return path or None


def _base_name(node, kind=None):
    """A readable name for ``node``: its module path (a numbered container child gets
    ``kind``, default the op's name, in front: ``gemm_0``), else its innermost scope without
    the op's own name (an op's own name is ``kind`` if given)."""
    op = node.op_type
    short = kind or _SHORT_NAMES.get(op, op.lower())
    path = module_path(node)
    if path:
        return _identifier(path.replace(".", "_"), prefix=kind or op.lower())
    scopes = _name_scopes(node)
    if scopes:
        # A function at the top of forward(): the exporter's own name for it ("cat_1") is not
        # the TorchScript exporter's ("Concat_1"); the ONNX op's is common to both.
        number = re.search(r"_(\d+)$", scopes[-1])
        return _identifier(short + (f"_{number[1]}" if number else ""), prefix=op.lower())
    parts = [part for part in (node.name or node.output[0]).split("/") if part]
    if len(parts) > 1 and re.fullmatch(rf"{op}(_\d+)?", parts[-1], re.IGNORECASE):
        parts.pop()  # "sequential/dense/MatMul" → "dense"
    text = parts[-1] if parts else op
    if re.fullmatch(rf"{op}(_\d+)?", text, re.IGNORECASE):
        # "/Relu_1" → "relu_1", "/GlobalAveragePool" → "gap"
        text = short + text[len(op):]
    text = re.sub(r"^node_", "", text)  # the dynamo exporter's "node_linear_1"
    return _identifier(text, prefix=op.lower())


class _Namer:
    """Hands out unique names: the base, else ``base_op`` (``dense`` → ``dense_relu``), else
    ``base_1``, ``base_2``, …"""

    def __init__(self):
        self._used = set()

    def release(self, name):
        """Give ``name`` back (a layer built and then discarded)."""
        self._used.discard(name)

    def claim(self, base, op):
        candidates = [base] if op in base.lower() else [base, f"{base}_{op}"]
        index = 1
        while all(candidate in self._used for candidate in candidates):
            candidates = [f"{base}_{index}"]
            index += 1
        name = next(candidate for candidate in candidates if candidate not in self._used)
        self._used.add(name)
        return name
