"""Train the example models of the ops ordinary exports contain, and export each with both of
PyTorch's ONNX exporters.

This script is only how the ``.onnx`` files and ``data.npz`` here were made; hwgen itself needs
neither PyTorch nor scikit-learn. It needs ``torch`` (CPU build), ``onnxscript`` (the dynamo
exporter), ``scikit-learn`` and ``onnx``::

    python make_models.py     # writes <model>_classic.onnx, <model>_dynamo.onnx and data.npz

Every model classifies scikit-learn's bundled 8×8 digits (no download), pixels scaled to
[0, 1], and ends in ``nn.Softmax``, as most exported classifiers do:

- ``smooth``: MLP 64-32-32-24-10 with Sigmoid, Tanh and LeakyReLU(0.1).
- ``gelu``: MLP 64-32-32-24-10 with GELU, Hardswish and SiLU (the TorchScript exporter writes
  GELU as Div/Erf/Add/Mul/Mul and SiLU as Sigmoid·Mul; the dynamo exporter writes Gelu).
- ``concat``: a CNN over 1×8×8 whose 3×3 and 1×1 convolution branches are concatenated
  (``torch.cat``), then ReLU, max pool, flatten, linear.
- ``conv1d``: each image as a 1-D signal of 8 channels (its rows) × 8 samples: Conv1d, ReLU,
  MaxPool1d, a depthwise Conv1d, GELU (tanh form), AvgPool1d, flatten, linear.

``data.npz`` holds ``calib_x`` (256 training images, the calibration set), ``test_x`` and
``test_y`` (the 540 test images and labels); images are ``(N, 1, 8, 8)``; the 1-D model takes
``x.reshape(N, 8, 8)``. Training is seeded and takes about a minute on one core.
"""

import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

SEED = 0
HERE = Path(__file__).resolve().parent
CALIB_SIZE = 256


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.branch3 = nn.Conv2d(1, 6, 3, padding=1)
        self.branch1 = nn.Conv2d(1, 2, 1)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(8 * 4 * 4, 10)
        self.out = nn.Softmax(dim=1)

    def forward(self, x):
        y = torch.cat([self.branch3(x), self.branch1(x)], dim=1)
        y = self.pool(self.act(y))
        return self.out(self.head(torch.flatten(y, 1)))


class Conv1d(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(8, 16, 3, padding=1)
        self.act1 = nn.ReLU()
        self.pool1 = nn.MaxPool1d(2)
        self.dwconv = nn.Conv1d(16, 16, 3, padding=1, groups=16)
        self.act2 = nn.GELU(approximate="tanh")
        self.pool2 = nn.AvgPool1d(2)
        self.head = nn.Linear(16 * 2, 10)
        self.out = nn.Softmax(dim=1)

    def forward(self, x):
        y = self.pool1(self.act1(self.conv1(x)))
        y = self.pool2(self.act2(self.dwconv(y)))
        return self.out(self.head(torch.flatten(y, 1)))


def _mlp(*activations):
    sizes = (64, 32, 32, 24)
    layers = []
    for fan_in, fan_out, activation in zip(sizes, sizes[1:], activations):
        layers += [nn.Linear(fan_in, fan_out), activation]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], 10), nn.Softmax(dim=1))


MODELS = {
    "smooth": (lambda: _mlp(nn.Sigmoid(), nn.Tanh(), nn.LeakyReLU(0.1)), "vector"),
    "gelu": (lambda: _mlp(nn.GELU(), nn.Hardswish(), nn.SiLU()), "vector"),
    "concat": (Concat, "image"),
    "conv1d": (Conv1d, "signal"),
}


def _shaped(x, kind):
    if kind == "vector":
        return x.reshape(len(x), 64)
    return x.reshape(len(x), 8, 8) if kind == "signal" else x


def _train(model, x, y, kind, epochs=80):
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.NLLLoss()
    inputs, labels = torch.from_numpy(_shaped(x, kind)), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(inputs), generator=generator).split(32):
            optimizer.zero_grad()
            # The model ends in Softmax: train on its log.
            loss = loss_fn(torch.log(model(inputs[batch]) + 1e-9), labels[batch])
            loss.backward()
            optimizer.step()
    model.eval()


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=SEED, stratify=y)
    np.savez_compressed(HERE / "data.npz", calib_x=x_train[:CALIB_SIZE], test_x=x_test,
                        test_y=y_test)
    for name, (build, kind) in MODELS.items():
        torch.manual_seed(SEED)
        model = build()
        _train(model, x_train, y_train, kind)
        with torch.no_grad():
            accuracy = (model(torch.from_numpy(_shaped(x_test, kind))).argmax(1).numpy()
                        == y_test).mean()
        print(f"{name}: test accuracy {accuracy:.4f}")
        example = torch.from_numpy(_shaped(x_test[:1], kind))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), HERE / f"{name}_classic.onnx", dynamo=False,
                              opset_version=17, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
            torch.onnx.export(model, (example,), HERE / f"{name}_dynamo.onnx", dynamo=True,
                              input_names=["x"], output_names=["y"],
                              dynamic_shapes=({0: torch.export.Dim("batch")},),
                              external_data=False)


if __name__ == "__main__":
    main()
