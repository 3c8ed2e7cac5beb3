"""Train the digits MLP example and export it to ONNX.

This script is only how ``digits_mlp.onnx`` and ``calib.npz`` were made; hwgen itself needs
neither PyTorch nor scikit-learn, and using the example does not require running it.

It needs ``torch`` (CPU build is enough), ``scikit-learn`` and ``onnx``::

    python train.py          # writes digits_mlp.onnx and calib.npz next to this file

The model is a 64-48-24-10 MLP (Linear-ReLU-Linear-ReLU-Linear) over scikit-learn's bundled 8×8
digits (no download), pixels scaled to [0, 1]. Training is seeded and takes a few seconds.
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


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # reproducible float reductions
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=SEED, stratify=y)

    model = nn.Sequential(
        nn.Linear(64, 48), nn.ReLU(),
        nn.Linear(48, 24), nn.ReLU(),
        nn.Linear(24, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    inputs, labels = torch.from_numpy(x_train), torch.from_numpy(y_train)
    generator = torch.Generator().manual_seed(SEED)
    for epoch in range(60):
        model.train()
        for batch in torch.randperm(len(inputs), generator=generator).split(32):
            optimizer.zero_grad()
            loss = loss_fn(model(inputs[batch]), labels[batch])
            loss.backward()
            optimizer.step()

    model.eval()
    with torch.no_grad():
        train_accuracy = (model(inputs).argmax(1) == labels).float().mean().item()
        test_accuracy = (model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()
    print(f"train accuracy {train_accuracy:.4f} ({len(x_train)} images)")
    print(f"test accuracy  {test_accuracy:.4f} ({len(x_test)} images)")

    # The classic TorchScript exporter (deprecated since torch 2.9, but still shipped) writes one
    # small file with the weights inline; hwgen reads the dynamo exporter's output just as well.
    warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
    onnx_path = HERE / "digits_mlp.onnx"
    torch.onnx.export(
        model, (torch.zeros(1, 64),), str(onnx_path), dynamo=False, opset_version=17,
        input_names=["x"], output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    calib = HERE / "calib.npz"
    np.savez_compressed(calib, x=x_test[:CALIB_SIZE], y=y_test[:CALIB_SIZE])
    print(f"wrote {onnx_path.name} ({onnx_path.stat().st_size} bytes) and {calib.name} "
          f"(x {x_test[:CALIB_SIZE].shape} float32, y {y_test[:CALIB_SIZE].shape} int64)")


if __name__ == "__main__":
    main()
