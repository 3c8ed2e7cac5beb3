"""The smooth element-wise activations hwgen computes as lookup tables, in float.

Each function maps a real value to a real value, one element at a time. The graph keeps an
activation as ``(function, params)``; the float reference evaluates it here, and quantization
turns it into a table from input code to output code (:class:`~hwgen.qgraph.QTable`) that the
integer reference and the hardware both use as is (``docs/arithmetic.md``, "Lookup tables").

Functions and their parameters (ONNX's defaults, and PyTorch's):

=============  ===============  ===================================================
function       params           value
=============  ===============  ===================================================
sigmoid        ()               ``1 / (1 + e^−x)``
tanh           ()               ``tanh x``
hardsigmoid    (alpha, beta)    ``clip(alpha·x + beta, 0, 1)``; (0.2, 0.5) in ONNX
hardswish      ()               ``x · clip(x/6 + 1/2, 0, 1)``
elu            (alpha,)         ``x`` for ``x ≥ 0``, else ``alpha·(e^x − 1)``
selu           (alpha, gamma)   ``gamma · elu(x; alpha)``
celu           (alpha,)         ``max(0, x) + min(0, alpha·(e^(x/alpha) − 1))``
gelu           ()               ``x/2 · (1 + erf(x/√2))``
gelu_tanh      ()               ``x/2 · (1 + tanh(√(2/π)·(x + 0.044715·x³)))``
silu           ()               ``x · sigmoid(x)`` (also called swish)
mish           ()               ``x · tanh(softplus(x))``
softplus       ()               ``ln(1 + e^x)``
softsign       ()               ``x / (1 + |x|)``
leaky_relu     (alpha,)         ``x`` for ``x ≥ 0``, else ``alpha·x``
=============  ===============  ===================================================
"""

import math

import numpy as np
from scipy import special

from .errors import HwgenError

__all__ = ["FUNCTIONS", "DEFAULT_PARAMS", "evaluate", "check_activation", "describe"]


def _softplus(x):
    return np.logaddexp(0.0, x)


def _elu(x, alpha):
    return np.where(x >= 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


FUNCTIONS = {
    "sigmoid": lambda x: special.expit(x),
    "tanh": np.tanh,
    "hardsigmoid": lambda x, alpha, beta: np.clip(alpha * x + beta, 0.0, 1.0),
    "hardswish": lambda x: x * np.clip(x / 6.0 + 0.5, 0.0, 1.0),
    "elu": _elu,
    "selu": lambda x, alpha, gamma: gamma * _elu(x, alpha),
    "celu": lambda x, alpha: np.maximum(x, 0.0) + np.minimum(
        0.0, alpha * np.expm1(np.minimum(x, 0.0) / alpha)),
    "gelu": lambda x: 0.5 * x * (1.0 + special.erf(x / math.sqrt(2.0))),
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + np.tanh(
        math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))),
    "silu": lambda x: x * special.expit(x),
    "mish": lambda x: x * np.tanh(_softplus(x)),
    "softplus": _softplus,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "leaky_relu": lambda x, alpha: np.where(x >= 0, x, alpha * x),
}

DEFAULT_PARAMS = {
    "hardsigmoid": (0.2, 0.5),
    "elu": (1.0,),
    "selu": (1.6732632423543772, 1.0507009873554805),
    "celu": (1.0,),
    "leaky_relu": (0.01,),
}


def check_activation(function, params=None):
    """``(function, params)`` checked: a known function and finite parameters of the right
    count (``None`` gives the defaults); raises :class:`HwgenError` otherwise."""
    if function not in FUNCTIONS:
        raise HwgenError(f"activation {function!r} is not one hwgen knows; it knows "
                         f"{', '.join(FUNCTIONS)}")
    expected = DEFAULT_PARAMS.get(function, ())
    params = expected if params is None else tuple(float(p) for p in params)
    if len(params) != len(expected):
        raise HwgenError(f"activation {function!r} takes {len(expected)} parameters, "
                         f"not {len(params)}: {params}")
    if not all(math.isfinite(p) for p in params):
        raise HwgenError(f"activation {function!r}: parameters must be finite, not {params}")
    if function in ("celu",) and params[0] == 0:
        raise HwgenError(f"activation {function!r}: alpha must not be 0")
    return function, params


def evaluate(function, params, x):
    """``function(x; *params)`` elementwise, float64."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(FUNCTIONS[function](np.asarray(x, dtype=np.float64), *params),
                          dtype=np.float64)


def describe(function, params):
    """``"sigmoid"``, ``"leaky_relu(alpha=0.1)"``: how tables and reports name it."""
    if not params:
        return function
    names = {"hardsigmoid": ("alpha", "beta"), "selu": ("alpha", "gamma")}.get(
        function, ("alpha",))
    return f"{function}(" + ", ".join(f"{n}={p:g}" for n, p in zip(names, params)) + ")"
