"""The planner on convolutional graphs: engines, legality, the cycle model against the
hardware blocks' own figures, and FIFO depths."""

import gc
import math
from pathlib import Path

import numpy as np
import pytest

import hwgen
from hwgen.errors import HwgenError
from hwgen.hw.accelerator import make_block
from hwgen.plan import make_plan

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "cnn"


@pytest.fixture(scope="module")
def qgraphs():
    calib = np.load(EXAMPLES / "calib.npz")["x"]
    return {name: hwgen.quantize(hwgen.load(EXAMPLES / f"{name}.onnx"), calib, "w8a8")
            for name in ("lenet", "resnet", "dwsep")}


@pytest.mark.filterwarnings("ignore:.*created but never used")  # blocks only asked for figures
@pytest.mark.parametrize("model", ["lenet", "resnet", "dwsep"])
@pytest.mark.parametrize("multipliers", [4, 16, 64, 1000])
def test_cycle_model_equals_the_blocks(qgraphs, model, multipliers):
    plan = make_plan(qgraphs[model], multipliers=multipliers)
    for layer_plan in plan.layers:
        block = make_block(layer_plan)
        assert block.cycles_per_frame == layer_plan.cycles, layer_plan.name
    del block
    gc.collect()  # the unelaborated blocks warn when collected: here, under the filter


def test_engines_and_legality(qgraphs):
    plan = make_plan(qgraphs["dwsep"], {"pointwise": "systolic:4x8", "depthwise": "4",
                                        "gap": 8})
    assert [p.engine for p in plan.layers] == ["systolic", "depthwise", "systolic", "gap", "mac"]
    assert plan["pointwise"].multipliers == 32 and plan["depthwise"].multipliers == 4
    with pytest.raises(HwgenError, match="cannot run on a 'mac' engine; legal: systolic"):
        make_plan(qgraphs["lenet"], {"conv1": "mac:2x3"})
    with pytest.raises(HwgenError, match=r"simd=5 must divide the window size kh·kw·C=36"):
        make_plan(qgraphs["lenet"], {"conv2": "2x5"})
    with pytest.raises(HwgenError, match="3 lanes must divide its 8 channels"):
        make_plan(qgraphs["dwsep"], {"depthwise": "3"})
    with pytest.raises(HwgenError, match="sized by one number"):
        make_plan(qgraphs["resnet"], {"add": "2x4"})


def test_default_rule_balances_conv_engines(qgraphs):
    plan = make_plan(qgraphs["lenet"], multipliers=18)
    conv = [p for p in plan.layers if p.engine == "systolic"]
    assert all(p.cycles == plan.initiation_interval for p in conv)
    assert all(p.layer.macs / (p.multipliers * plan.initiation_interval) >= 0.9 for p in conv)


def test_fifo_depths(qgraphs):
    plan = make_plan(qgraphs["resnet"], multipliers=16)
    qgraph = plan.qgraph
    stem = qgraph["stem"]
    row = stem.out_shape[1] * stem.out_shape[2] // plan["stem"].out_lanes
    # the skip edge stem -> add holds the long path's lead on top of one row
    assert plan.skip_fifo_depth("stem", "add") > 0
    assert plan.fifo_depth("stem", "add") == row + plan.skip_fifo_depth("stem", "add")
    # in front of a padded window: at least what the stem emits, at the pipeline's pace,
    # while the window's front end emits the pad beats between two frames' images
    top, left, bottom, right = qgraph["conv1"].pads
    height, width, channels = stem.out_shape
    pad_cycles = (left + right + (top + bottom) * (left + width + right)) * (
        channels // plan["conv1"].in_lanes)
    emitted = height * width * channels * pad_cycles / plan.initiation_interval
    pad_run = math.ceil(emitted / plan["stem"].out_lanes) + 4
    assert plan.fifo_depth("stem", "conv1") == max(row, pad_run)
    assert plan.skip_fifo_depth("stem", "conv1") == 0
    frame = int(np.prod(stem.out_shape)) // plan["stem"].out_lanes
    assert plan.skip_fifo_depth("stem", "add") <= frame + 4
    assert plan.fifo_depth("gap", "fc") == 0  # vectors feed MAC units, which double-buffer
