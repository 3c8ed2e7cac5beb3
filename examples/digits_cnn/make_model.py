"""Train the digits CNN example (the model hwgen's automatic bit allocation is tested on) and
export it to ONNX.

This script is only how ``digits_cnn.onnx``, ``calib.npz`` and ``test.npz`` were made; hwgen
itself needs neither PyTorch nor scikit-learn, and using the example does not require running it.

It needs ``torch`` (the CPU build is enough), ``scikit-learn`` and ``onnx``::

    python make_model.py    # writes digits_cnn.onnx, calib.npz and test.npz next to this file

The images are ``sklearn.datasets.load_digits`` (no download), pixels scaled to [0, 1] by
dividing by 16, shaped ``(N, 1, 8, 8)``, split 70/30 (stratified, ``random_state=0``):

- ``calib.npz``: 256 images of the *training* split (``x``, and their labels ``y``), to set the
  activation ranges;
- ``test.npz``: all 540 images of the held-out split (``x``, ``y``), which neither trained the
  model nor set a range, to measure accuracy on.

Training is seeded and takes about ten seconds. The model is kept under 25k multiply-accumulates
per image so its accelerator can be simulated cycle by cycle in Verilator.
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


class DigitsCNN(nn.Module):
    """conv 3×3 pad 1 (1→8) → relu → maxpool 2 → conv 3×3 pad 1 (8→12) → relu → maxpool 2 →
    flatten → linear 48→32 → relu → linear 32→10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(48, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


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

    torch.manual_seed(SEED)
    model = DigitsCNN()
    train(model, x_train, y_train)
    print(f"train accuracy {accuracy(model, x_train, y_train):.4f} ({len(x_train)} images)")
    print(f"test accuracy  {accuracy(model, x_test, y_test):.4f} ({len(x_test)} images)")

    # The classic TorchScript exporter (deprecated since torch 2.9, but still shipped) writes one
    # small file with the weights inline; hwgen reads the dynamo exporter's output just as well.
    warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
    path = HERE / "digits_cnn.onnx"
    torch.onnx.export(
        model, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False, opset_version=17,
        input_names=["x"], output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    print(f"wrote {path.name} ({path.stat().st_size} bytes)")

    # train_test_split shuffles, so the first training images are a random sample of them.
    splits = {"calib": (x_train[:CALIB_SIZE], y_train[:CALIB_SIZE]), "test": (x_test, y_test)}
    for name, (images, labels) in splits.items():
        np.savez_compressed(HERE / f"{name}.npz", x=images, y=labels)
        print(f"wrote {name}.npz (x {images.shape} float32, y {labels.shape} int64)")


if __name__ == "__main__":
    main()
