"""Models the benchmarks build in Python with random weights (no training, no download)."""

import numpy as np

import hwgen


def resnet8(seed=0):
    """MLPerf Tiny's image-classification ResNet-8 (CIFAR-10 shape, 3×32×32 in, 10 out):
    a 3×3 conv of 16 channels, three residual stacks of 16, 32 and 64 channels (the last two
    strided, with 1×1 convolutions on the skip path), global average pool, dense 10; about
    12.5 M MACs. Random weights, He-scaled so activations keep their range. Returns
    ``(graph, calibration images)``."""
    rng = np.random.default_rng(seed)
    graph = hwgen.Graph("resnet8")

    def conv(x, channels, out_channels, kernel, stride, name):
        weight = rng.normal(size=(out_channels, kernel, kernel, channels)) * np.sqrt(
            2 / (kernel * kernel * channels))
        return graph.conv2d(x, weight, rng.normal(size=out_channels) * 0.1, stride=stride,
                            padding=kernel // 2, name=name)

    x = graph.relu(conv(graph.input((32, 32, 3)), 3, 16, 3, 1, "conv0"))
    channels = 16
    for stack, width in enumerate((16, 32, 64), start=1):
        stride = 1 if stack == 1 else 2
        y = graph.relu(conv(x, channels, width, 3, stride, f"s{stack}_conv1"))
        y = conv(y, width, width, 3, 1, f"s{stack}_conv2")
        skip = x if stack == 1 else conv(x, channels, width, 1, stride, f"s{stack}_skip")
        x = graph.relu(graph.add(y, skip, name=f"s{stack}_add"))
        channels = width
    x = graph.flatten(graph.global_avgpool(x, name="pool"))
    graph.dense(x, rng.normal(size=(10, 64)) * 0.1, rng.normal(size=10) * 0.1, name="fc")
    return graph, rng.normal(size=(32, 32, 32, 3))


def ds_cnn(seed=0):
    """MLPerf Tiny's keyword-spotting DS-CNN (1×49×10 MFCC in, 12 out): a 10×4 conv of 64
    channels at stride 2 (padding 5/1 top/left, 4/2 bottom/right: 25×5 out), four
    depthwise-separable blocks (3×3 depthwise and 1×1 pointwise, 64 channels, ReLU after
    each), global average pool, dense 12; about 23 k weights and 2.7 M MACs. Random weights,
    He-scaled. Returns ``(graph, calibration inputs)``."""
    rng = np.random.default_rng(seed)
    graph = hwgen.Graph("ds_cnn")

    def conv(x, channels, out_channels, kernel, stride, padding, groups, name):
        per_group = channels // groups
        weight = rng.normal(size=(out_channels, *kernel, per_group)) * np.sqrt(
            2 / (kernel[0] * kernel[1] * per_group))
        return graph.relu(graph.conv2d(x, weight, rng.normal(size=out_channels) * 0.1,
                                       stride=stride, padding=padding, groups=groups,
                                       name=name))

    x = conv(graph.input((49, 10, 1)), 1, 64, (10, 4), (2, 2), (5, 1, 4, 2), 1, "conv1")
    for block in range(1, 5):
        x = conv(x, 64, 64, (3, 3), 1, 1, 64, f"dw{block}")
        x = conv(x, 64, 64, (1, 1), 1, 0, 1, f"pw{block}")
    x = graph.flatten(graph.global_avgpool(x, name="pool"))
    graph.dense(x, rng.normal(size=(12, 64)) * 0.1, rng.normal(size=12) * 0.1, name="fc")
    return graph, rng.normal(size=(64, 49, 10, 1))
