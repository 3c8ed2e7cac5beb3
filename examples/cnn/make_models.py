"""Train the three small CNN examples on scikit-learn's 8×8 digits and export them to ONNX.

This script is only how ``lenet.onnx``, ``resnet.onnx``, ``dwsep.onnx`` and ``calib.npz`` were
made; hwgen itself needs neither PyTorch nor scikit-learn, and using the examples does not
require running it.

It needs ``torch`` (the CPU build is enough), ``scikit-learn`` and ``onnx``::

    python make_models.py    # writes the three .onnx files and calib.npz next to this file

The images are ``sklearn.datasets.load_digits`` (no download), pixels scaled to [0, 1] by
dividing by 16, shaped ``(N, 1, 8, 8)``. Training is seeded and takes well under a minute.
The models are kept tiny (under 25k multiply-accumulates per image) because the generated
accelerators get simulated cycle by cycle in Verilator.
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
EPOCHS = 40


class LeNet(nn.Module):
    """conv 3×3 (1→4) → relu → maxpool 2 → conv 3×3 (4→8) → relu → maxpool 2 → flatten →
    linear 32→16 → relu → linear 16→10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        # The flatten is in (C, H, W) order, which hwgen re-orders into fc1's weight columns.
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


class ResNet(nn.Module):
    """conv 3×3 stride 2 (1→8) → relu → [conv 3×3 → relu → conv 3×3] + skip → relu →
    global average pool → flatten → linear 8→10. The stride-2 stem keeps the block at 4×4."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, stride=2, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(x + self.conv2(torch.relu(self.conv1(x))))
        x = nn.functional.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class DepthwiseSeparable(nn.Module):
    """conv 3×3 (1→8, no padding) → relu → depthwise 3×3 → batch norm → relu6 → pointwise 1×1
    (8→16) → batch norm → relu → global average pool → flatten → linear 16→10."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.pointwise = nn.Conv2d(8, 16, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = nn.functional.relu6(self.bn1(self.depthwise(x)))
        x = torch.relu(self.bn2(self.pointwise(x)))
        x = nn.functional.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


def train(model, x_train, y_train):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    inputs, labels = torch.from_numpy(x_train), torch.from_numpy(y_train)
    generator = torch.Generator().manual_seed(SEED)
    for epoch in range(EPOCHS):
        model.train()
        for batch in torch.randperm(len(inputs), generator=generator).split(32):
            optimizer.zero_grad()
            loss = loss_fn(model(inputs[batch]), labels[batch])
            loss.backward()
            optimizer.step()
    model.eval()


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(torch.from_numpy(x)).argmax(1).numpy() == y).mean()


def main():
    torch.set_num_threads(1)  # reproducible float reductions
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=SEED, stratify=y)
    calib_x, calib_y = x_test[:CALIB_SIZE], y_test[:CALIB_SIZE]

    # The classic TorchScript exporter (deprecated since torch 2.9, but still shipped) writes one
    # small file with the weights inline; hwgen reads the dynamo exporter's output just as well.
    warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
    # Constant folding is safe here: the models are in eval mode (see PRESERVE below).
    warnings.filterwarnings("ignore", message=".*constant folding be turned off")
    for name, cls in [("lenet", LeNet), ("resnet", ResNet), ("dwsep", DepthwiseSeparable)]:
        torch.manual_seed(SEED)
        model = cls()
        train(model, x_train, y_train)
        print(f"{name:<7} train {accuracy(model, x_train, y_train):.4f}  "
              f"test {accuracy(model, x_test, y_test):.4f}  "
              f"calib {accuracy(model, calib_x, calib_y):.4f}")
        path = HERE / f"{name}.onnx"
        # TrainingMode.PRESERVE on a model in eval mode keeps BatchNormalization nodes (in their
        # inference form) instead of letting the exporter fold them into the convolutions, so the
        # files exercise hwgen's own folding.
        torch.onnx.export(
            model, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False, opset_version=17,
            training=torch.onnx.TrainingMode.PRESERVE,
            input_names=["x"], output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
        print(f"        wrote {path.name} ({path.stat().st_size} bytes)")

    calib = HERE / "calib.npz"
    np.savez_compressed(calib, x=calib_x, y=calib_y)
    print(f"wrote {calib.name} (x {calib_x.shape} float32, y {calib_y.shape} int64)")


if __name__ == "__main__":
    main()
