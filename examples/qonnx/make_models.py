"""Train the Brevitas example models, export them to QONNX, and store qonnx's outputs.

This script is only how the files here were made; hwgen itself needs neither PyTorch, Brevitas
nor qonnx. It needs ``torch`` (CPU build), ``brevitas``, ``qonnx`` and ``scikit-learn``::

    python make_models.py   # writes mlp_w2a2.onnx, cnn_w4a4.onnx and data.npz

Both models classify scikit-learn's bundled 8×8 digits, pixels scaled to [0, 1], and keep
Brevitas' default **float biases** (no ``Int32Bias``), the FINN ecosystem's ordinary input:

- ``mlp_w2a2``: ``QuantIdentity`` (2 bits) then 64-64-64-10 ``QuantLinear`` (2-bit weights)
  with ``QuantReLU`` (2 bits) between them, and an 8-bit ``QuantIdentity`` on the output.
- ``cnn_w4a4``: ``QuantIdentity`` (4 bits), ``QuantConv2d`` 1→8 3×3, ``QuantReLU``,
  ``MaxPool2d`` 2, ``QuantConv2d`` 8→16 3×3, ``QuantReLU``, ``MaxPool2d`` 2 (a QuantReLU →
  MaxPool2d → QuantConv2d pattern), flatten, ``QuantLinear`` 64→10, an 8-bit ``QuantIdentity``;
  4-bit weights and activations.

``data.npz`` holds ``calib_x`` (256 training images), ``test_x`` (300 test images) and, per
model, ``<model>_qonnx``: qonnx's executor (``qonnx.core.onnx_exec.execute_onnx``, FINN's
golden model) on the test images, the dequantized 8-bit output; images are
``(N, 1, 8, 8)``, the MLP takes ``x.reshape(N, 64)``. Training is seeded.
"""

import warnings
from pathlib import Path

import numpy as np
import torch
from brevitas import nn as qnn
from brevitas.export import export_qonnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

SEED = 0
HERE = Path(__file__).resolve().parent


def mlp_w2a2():
    layers = [qnn.QuantIdentity(bit_width=2, return_quant_tensor=True)]
    sizes = (64, 64, 64, 64)
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        layers += [qnn.QuantLinear(fan_in, fan_out, bias=True, weight_bit_width=2),
                   qnn.QuantReLU(bit_width=2, return_quant_tensor=True)]
    layers += [qnn.QuantLinear(64, 10, bias=True, weight_bit_width=2),
               qnn.QuantIdentity(bit_width=8)]
    return nn.Sequential(*layers)


class CnnW4A4(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = qnn.QuantIdentity(bit_width=4, return_quant_tensor=True)
        self.conv1 = qnn.QuantConv2d(1, 8, 3, padding=1, bias=True, weight_bit_width=4)
        self.act1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = qnn.QuantConv2d(8, 16, 3, padding=1, bias=True, weight_bit_width=4)
        self.act2 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
        self.pool2 = nn.MaxPool2d(2)
        self.fc = qnn.QuantLinear(16 * 2 * 2, 10, bias=True, weight_bit_width=4)
        self.out = qnn.QuantIdentity(bit_width=8)

    def forward(self, x):
        y = self.pool1(self.act1(self.conv1(self.inp(x))))
        y = self.pool2(self.act2(self.conv2(y)))
        return self.out(self.fc(torch.flatten(y, 1)))


def _train(model, x, y, epochs):
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(inputs), generator=generator).split(32):
            optimizer.zero_grad()
            loss_fn(model(inputs[batch]), labels[batch]).backward()
            optimizer.step()
    model.eval()


def _inline(path):
    """The model with its weights inside the .onnx file (the exporter writes them beside it)."""
    import onnx
    model = onnx.load(path)
    onnx.save(model, path, save_as_external_data=False)
    data = path.with_name(path.name + ".data")
    if data.exists():
        data.unlink()


def _qonnx_outputs(path, x):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    model = ModelWrapper(str(path))
    name_in, name_out = model.graph.input[0].name, model.graph.output[0].name
    return np.concatenate([execute_onnx(model, {name_in: frame[None]})[name_out]
                           for frame in x.astype(np.float32)])


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=SEED, stratify=y)
    x_test, y_test = x_test[:300], y_test[:300]
    stored = {"calib_x": x_train[:256], "test_x": x_test, "test_y": y_test}
    for name, build, shape, epochs in (("mlp_w2a2", mlp_w2a2, (64,), 60),
                                       ("cnn_w4a4", CnnW4A4, (1, 8, 8), 30)):
        torch.manual_seed(SEED)
        model = build()
        _train(model, x_train.reshape(-1, *shape), y_train, epochs)
        with torch.no_grad():
            accuracy = (model(torch.from_numpy(x_test.reshape(-1, *shape))).argmax(1).numpy()
                        == y_test).mean()
        print(f"{name}: test accuracy {accuracy:.4f}")
        path = HERE / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_qonnx(model, torch.from_numpy(x_test[:1].reshape(1, *shape)),
                         export_path=str(path))
        _inline(path)
        stored[f"{name}_qonnx"] = _qonnx_outputs(path, x_test.reshape(-1, *shape))
    np.savez_compressed(HERE / "data.npz", **stored)


if __name__ == "__main__":
    main()
