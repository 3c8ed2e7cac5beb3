"""The float ONNX importer's tensors, and the ops that only move or pick their values:
Flatten/Reshape/Identity, Concat, and Softmax/LogSoftmax/ArgMax at the output (mixed into
:class:`hwgen.frontends.onnx._Importer`)."""

import dataclasses
import math

import numpy as np
import onnx

from ..errors import HwgenError
from .onnx_common import _attributes, _label

__all__ = ["ShapeImporter", "OUTPUT_OPS"]

# Ops that only pick the class at the output: removed at import (order preserving).
OUTPUT_OPS = ("Softmax", "LogSoftmax", "ArgMax")


@dataclasses.dataclass
class _Layer:
    """A layer being collected; ``weight`` and ``bias`` stay mutable so that a following ``Add``
    or ``BatchNormalization`` can fold into them. ``inputs`` index the layers it reads (-1: the
    input); ``options`` are the remaining keyword arguments of the :class:`Graph` method;
    ``source`` describes the node it came from."""

    name: str
    op: str
    inputs: tuple
    source: str
    weight: np.ndarray = None
    bias: np.ndarray = None
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class _Activation:
    """A tensor computed from the input.

    ``(batch, features)``; ``(features, 1)`` if ``column`` (then the batch is 1); an image
    ``(batch, C, H, W)`` if ``image`` is ``(C, H, W)`` (``features`` is then ``C·H·W``).
    ``batch`` is None when symbolic. ``layer`` indexes the layer that produced it (-1: the
    input). ``chw`` is the ``(C, H, W)`` of the image a vector was flattened from while its
    ONNX order differs from hwgen's HWC order. ``shared`` lists the other readers of the
    layer's output reached through elided ops (so nothing folds into a layer others read).
    ``one_d``: the image is a 1-D signal ``(batch, C, L)``, held as ``(C, 1, L)``. ``chain``:
    a pending element-wise function ``(origin tensor, nodes)`` of the tensor ``layer`` made
    (see :class:`~hwgen.frontends.onnx_elementwise.ChainImporter`)."""

    layer: int
    features: int
    batch: object
    column: bool = False
    image: tuple = None
    chw: tuple = None
    shared: tuple = ()
    one_d: bool = False
    chain: tuple = None

    def shape(self, batch):
        if self.image:
            if self.one_d:
                return (batch, self.image[0], self.image[2])
            return (batch, *self.image)
        return (self.features, 1) if self.column else (batch, self.features)

    def __str__(self):
        if self.column:
            return f"({self.features}, 1)"
        batch = "batch" if self.batch is None else str(self.batch)
        return "(" + ", ".join(map(str, (batch, *self.shape(batch)[1:]))) + ")"


class ShapeImporter:
    """Converters of the ops that move values without computing new ones."""

    def _output_op(self, node, what):
        """Softmax, LogSoftmax and ArgMax keep the order of the values along the classes, so
        at the output they change no decision: removed, with a note."""
        tensor = node.input[0]
        x = self._activations[tensor]
        attributes = _attributes(node)
        default = 0 if node.op_type == "ArgMax" else -1
        axis = attributes.get("axis", default)
        vector = x.image is None or x.image[1:] == (1, 1) and not x.one_d
        if not vector or x.column or axis not in (1, -1) and not (x.image and axis == 1):
            raise HwgenError(f"{what} works along axis {axis} of {x}; hwgen removes it at the "
                             "output only over the classes of a (batch, classes) vector")
        self._removed[node.output[0]] = node
        self._activations[node.output[0]] = x
        if node.op_type == "ArgMax":
            self._notes.append(
                f"removed the output ArgMax (node {_label(node)!r}): the accelerator outputs "
                "the values it picks from; --argmax (argmax=True) builds an argmax unit that "
                "outputs the class index")
        else:
            self._notes.append(
                f"removed the output {node.op_type} (node {_label(node)!r}): it keeps the order "
                "of the outputs, so the class they pick is unchanged; the accelerator outputs "
                "the values before it")

    def _concat(self, node, what):
        tensors = list(node.input)
        constants = [t for t in tensors if t not in self._activations]
        if constants:
            raise HwgenError(f"{what} joins the constant {constants[0]!r}; hwgen concatenates "
                             "activations only")
        parts = [self._activations[t] for t in tensors]
        first = parts[0]
        rank = len(first.shape(first.batch))
        axis = _attributes(node).get("axis")
        if axis is None or axis % rank != 1 or any(p.column for p in parts):
            raise HwgenError(f"{what} joins along axis {axis}; hwgen concatenates along the "
                             "channels (axis 1)")
        if any(p.shape(1)[2:] != first.shape(1)[2:] or p.one_d != first.one_d
               or bool(p.image) != bool(first.image) for p in parts):
            shapes = ", ".join(str(p) for p in parts)
            raise HwgenError(f"{what} joins {shapes}; all but the channels must agree")
        features = sum(p.features for p in parts)
        image = None
        if first.image:
            image = (sum(p.image[0] for p in parts), *first.image[1:])
        layer = self._add_layer(node, "concat", tuple(p.layer for p in parts))
        batch = next((p.batch for p in parts if p.batch is not None), None)
        self._activations[node.output[0]] = _Activation(layer, features, batch, image=image,
                                                        one_d=first.one_d)

    def _resize(self, node, what):
        """Resize with mode ``nearest`` and integer scales of the height and width (or the
        length): every pixel repeated, as the coordinate mapping of the node's attributes
        gives it (checked for every output index)."""
        x = self._image(node, what)
        attributes = _attributes(node)
        if attributes.get("mode", "nearest") != "nearest":
            raise HwgenError(f"{what}: mode {attributes['mode']!r} interpolates; hwgen resizes "
                             "with mode 'nearest' only (integer scale factors)")
        shape = list(x.shape(1))
        rank = len(shape)
        inputs = list(node.input) + [""] * 4
        scales, sizes = (inputs[1], "") if len(node.input) == 2 else (inputs[2], inputs[3])
        role = "sizes" if sizes else "scales"
        values = [float(v) for v in np.ravel(self._resize_constant(sizes or scales, what,
                                                                       role))]
        axes = [axis % rank for axis in attributes.get("axes", range(rank))]
        if len(values) != len(axes):
            raise HwgenError(f"{what}: {role} {values} must have one value per axis of {x}")
        full = [float(size) if sizes else 1.0 for size in shape]
        for axis, value in zip(axes, values):
            full[axis] = value
        batch = x.batch
        if sizes:
            batch = int(full[0])  # the model then runs at the batch the sizes fix
            full = [target / size for target, size in zip(full, shape)]
            full[0] = 1.0
        factors = full[2:]
        if full[:2] != [1.0, 1.0] or any(f < 1 or f != int(f) for f in factors):
            raise HwgenError(f"{what} scales the axes of {x} by {full}; hwgen resizes the "
                             "height and width (or the length) by integer factors only")
        spatial = shape[2:]
        factors = [int(f) for f in factors]
        for size, factor in zip(spatial, factors):
            if not _nearest_is_repeat(attributes, size, factor):
                raise HwgenError(
                    f"{what}: with coordinate_transformation_mode "
                    f"{attributes.get('coordinate_transformation_mode', 'half_pixel')!r} and "
                    f"nearest_mode {attributes.get('nearest_mode', 'round_prefer_floor')!r}, "
                    f"a scale of {factor} does not repeat each pixel {factor} times; export "
                    "with nn.Upsample(scale_factor=k, mode='nearest')")
        factor = (1, factors[0]) if x.one_d else tuple(factors)
        layer = self._add_layer(node, "upsample", (x.layer,), factor=factor, mode="nearest")
        channels, height, width = x.image
        image = (channels, height * factor[0], width * factor[1])
        self._activations[node.output[0]] = _Activation(layer, math.prod(image), batch,
                                                        image=image, one_d=x.one_d)

    def _resize_constant(self, tensor, what, role):
        if tensor not in self._constants:
            raise HwgenError(f"{what}: its {role} must be a constant (an initializer or a "
                             "Constant node); export with constant folding")
        return self._constants[tensor]

    def _identity(self, node, what):
        self._alias(node, self._activations[node.input[0]])

    def _reshape(self, node, what):
        """Flatten and Reshape: elided if the result is still a vector of the same batch; an
        image flattened to (batch, C·H·W) becomes a flatten layer."""
        x = self._activations[node.input[0]]
        shape = _flatten_shape if node.op_type == "Flatten" else _reshape_shape
        shape = shape(self, node)

        def result(batch):
            try:
                return shape(x.shape(batch))
            except ValueError:
                return None

        if x.image:
            self._reshape_image(node, what, x, result)
            return
        batch = x.batch
        if batch is None:
            # A symbolic batch: the op must keep (b, K) for any b, or work only for b = 1
            # (e.g. Reshape to [1, K]), which fixes the batch to 1.
            trials = {b: result(b) for b in (2, 3)}
            if all(trials[b] == (b, x.features) for b in trials):
                self._alias(node, x)
                return
            wrong = [(b, trials[b]) for b in trials if trials[b] not in (None, (b, x.features))]
            if wrong:
                raise HwgenError(f"{what} turns the activation {x} into {wrong[0][1]} at batch "
                                 f"{wrong[0][0]}; it mixes the batch into the features, which is "
                                 "not supported")
            batch = 1
        out = result(batch)
        if out == (batch, x.features):
            self._alias(node, x, batch=batch, column=False)
        elif batch == 1 and out == (x.features, 1):
            self._alias(node, x, batch=1, column=True)
        else:
            into = "an invalid shape" if out is None else str(out)
            raise HwgenError(f"{what} turns the activation {x} into {into}; hwgen only elides "
                             "Flatten/Reshape that keep a (batch, features) vector")

    def _reshape_image(self, node, what, x, result):
        """An image flattened to (batch, C·H·W) becomes a flatten layer; kept as it is, the op
        is elided."""
        batch = x.batch
        outs = {b: result(b) for b in ((2, 3) if batch is None else (batch,))}
        if batch is None and None in outs.values():
            batch, outs = 1, {1: result(1)}  # works only at batch 1 (e.g. Reshape to [1, K])
        if all(out == x.shape(b) for b, out in outs.items()):
            self._alias(node, x, batch=batch)
            return
        if not all(out == (b, x.features) for b, out in outs.items()):
            b, out = next((b, out) for b, out in outs.items() if out != (b, x.features))
            into = "an invalid shape" if out is None else str(out)
            into += f" at batch {b}" if batch is None else ""
            raise HwgenError(f"{what} turns the image {x} into {into}; hwgen supports "
                             "Flatten/Reshape of an image only to (batch, C·H·W) = "
                             f"({'batch' if batch is None else batch}, {x.features})")
        channels, height, width = x.image
        layer = self._add_layer(node, "flatten", (x.layer,), kind="flatten")
        # The orders (C, H, W) and (H, W, C) coincide when C = 1 or H·W = 1.
        chw = x.image if channels > 1 and height * width > 1 else None
        self._activations[node.output[0]] = _Activation(layer, x.features, batch, chw=chw)


def _nearest_is_repeat(attributes, size, factor):
    """Whether ONNX Resize's nearest mapping of ``attributes`` sends output index ``i`` of an
    axis of ``size`` scaled by the integer ``factor`` to input ``i // factor``, for every ``i``
    (onnx's reference formulas)."""
    out = size * factor
    index = np.arange(out, dtype=np.float64)
    mode = attributes.get("coordinate_transformation_mode", "half_pixel")
    if mode in ("half_pixel", "half_pixel_symmetric"):
        x = (index + 0.5) / factor - 0.5
    elif mode == "pytorch_half_pixel":
        x = (index + 0.5) / factor - 0.5 if out > 1 else np.zeros(out)
    elif mode == "asymmetric":
        x = index / factor
    elif mode == "tf_half_pixel_for_nn":
        x = (index + 0.5) / factor
    elif mode == "align_corners":
        x = index * (size - 1) / (out - 1) if out > 1 else np.zeros(out)
    else:
        return False
    rounding = attributes.get("nearest_mode", "round_prefer_floor")
    nearest = {"round_prefer_floor": lambda v: np.ceil(v - 0.5),
               "round_prefer_ceil": lambda v: np.floor(v + 0.5),
               "floor": np.floor, "ceil": np.ceil}.get(rounding)
    if nearest is None:
        return False
    source = np.clip(nearest(x), 0, size - 1).astype(np.int64)
    return bool(np.array_equal(source, np.arange(out) // factor))


def _order_error(subject, x):
    channels, height, width = x.chw
    return HwgenError(
        f"{subject} is an image flattened in ONNX's (C, H, W) = ({channels}, {height}, {width}) "
        "order, while hwgen streams tensors in (H, W, C) order; hwgen re-orders the features "
        "only into the weight of a Gemm/MatMul right after the Flatten")


# -- shapes ---------------------------------------------------------------------------------------

def _flatten_shape(importer, node):
    """The function ``shape → shape`` that ``node`` (Flatten) computes; ValueError if invalid."""
    axis = next((onnx.helper.get_attribute_value(attribute) for attribute in node.attribute
                 if attribute.name == "axis"), 1)

    def shape(before):
        index = axis + len(before) if axis < 0 else axis
        if not 0 <= index <= len(before):
            raise ValueError(f"axis {axis} is out of range for rank {len(before)}")
        return (math.prod(before[:index]), math.prod(before[index:]))
    return shape


def _reshape_shape(importer, node):
    """The function ``shape → shape`` that ``node`` (Reshape) computes; ValueError if invalid."""
    what = f"node {_label(node)!r} (op Reshape)"
    if len(node.input) < 2 or node.input[1] not in importer._constants:
        raise HwgenError(f"{what}: its target shape must be a constant (an initializer or a "
                         "Constant node); export with constant folding")
    target = importer._constants[node.input[1]]
    if target.dtype.kind not in "iu" or target.ndim != 1:
        raise HwgenError(f"{what}: the target shape must be a 1-D integer tensor, not "
                         f"{target.dtype} {target.shape}")
    target = [int(d) for d in target]
    allow_zero = any(attribute.name == "allowzero" and attribute.i for attribute in node.attribute)

    def shape(before):
        after = list(target)
        for index, size in enumerate(after):
            if size == 0 and not allow_zero:
                if index >= len(before):
                    raise ValueError(f"shape {target} copies dimension {index} of {before}")
                after[index] = before[index]
        total = math.prod(before)
        if after.count(-1) > 1 or any(size < -1 for size in after):
            raise ValueError(f"invalid target shape {target}")
        if -1 in after:
            known = math.prod(size for size in after if size != -1)
            if known == 0 or total % known:
                raise ValueError(f"cannot reshape {before} to {target}")
            after[after.index(-1)] = total // known
        if math.prod(after) != total:
            raise ValueError(f"cannot reshape {before} to {target}")
        return tuple(after)
    return shape
