"""Automatic bit allocation: the knapsack solver against brute force, budget specs, sensitivity
measured on small Python graphs, prepared calibration, and the acceptance target on the digits
CNN (``examples/digits_cnn``), every accuracy re-measured here with quantize + the integer
reference (on the held-out confirmation samples for choose_bits; the split and the bound have
their own tests in test_precision_holdout.py)."""

import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

import hwgen
from hwgen.errors import HwgenError
from hwgen.graph import Graph
from hwgen.precision import (Budget, bit_ops, choose_bits, knapsack_front, measure_sensitivity,
                             parse_budget, pareto, weight_memory_bits)
from hwgen.precision_holdout import split_samples
from hwgen.quantize import PreparedCalibration, qgraph_to_arrays, quantize
from hwgen.reference import run_float, run_integer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SMALL_CHOICES = dict(weight_choices=(3, 4, 6, 8), act_choices=(3, 4, 6, 8))


# -- the solver against brute force ---------------------------------------------------------------

def _random_knapsack(seed, integer_drops=True):
    rng = np.random.default_rng(seed)
    layers = int(rng.integers(1, 5))
    options = [int(rng.integers(1, 6)) for _ in range(layers)]
    costs = [list(rng.integers(1, 40, size=n)) for n in options]
    if integer_drops:
        drops = [list(rng.integers(0, 15, size=n)) for n in options]
    else:
        drops = [list(rng.random(n) * 3) for n in options]
    return costs, drops


def _combinations(costs, drops):
    """Every choice with its summed cost and drop."""
    for picks in itertools.product(*[range(len(layer)) for layer in costs]):
        yield (picks, sum(int(costs[i][j]) for i, j in enumerate(picks)),
               sum(drops[i][j] for i, j in enumerate(picks)))


def _brute_pareto(costs, drops):
    pairs = {(cost, drop) for _, cost, drop in _combinations(costs, drops)}
    return sorted(p for p in pairs
                  if not any(q != p and q[0] <= p[0] and q[1] <= p[1] for q in pairs))


@pytest.mark.parametrize("seed", range(12))
def test_front_equals_the_brute_force_pareto_set(seed):
    costs, drops = _random_knapsack(seed)
    front = knapsack_front(costs, drops)
    assert front.exact
    assert list(zip(front.cost.tolist(), front.drop.tolist())) == _brute_pareto(costs, drops)
    for index in range(len(front)):
        picks = front.picks(index)
        assert sum(int(costs[i][j]) for i, j in enumerate(picks)) == front.cost[index]
        assert sum(drops[i][j] for i, j in enumerate(picks)) == front.drop[index]


@pytest.mark.parametrize("seed", range(12))
def test_both_objectives_equal_brute_force(seed):
    costs, drops = _random_knapsack(seed)
    front = knapsack_front(costs, drops)
    combos = list(_combinations(costs, drops))
    total_drops = sorted({drop for _, _, drop in combos})
    total_costs = sorted({cost for _, cost, _ in combos})
    for max_drop in total_drops[:: max(len(total_drops) // 6, 1)] + [-1]:
        feasible = [(cost, drop, picks) for picks, cost, drop in combos if drop <= max_drop]
        index = front.cheapest_within(max_drop)
        if not feasible:
            assert index is None
            continue
        best = min(feasible)  # fewest cost, then least drop
        assert (front.cost[index], front.drop[index]) == best[:2]
        if sum(1 for f in feasible if f[:2] == best[:2]) == 1:
            assert front.picks(index) == best[2]
    for budget in total_costs[:: max(len(total_costs) // 6, 1)] + [0]:
        feasible = [(drop, cost, picks) for picks, cost, drop in combos if cost <= budget]
        index = front.best_within(budget)
        if not feasible:
            assert index is None
            continue
        best = min(feasible)  # least drop, then fewest cost
        assert (front.drop[index], front.cost[index]) == best[:2]
        if sum(1 for f in feasible if f[:2] == best[:2]) == 1:
            assert front.picks(index) == best[2]


@pytest.mark.parametrize("seed", range(4))
def test_front_with_float_drops(seed):
    costs, drops = _random_knapsack(seed + 100, integer_drops=False)
    front = knapsack_front(costs, drops)
    expected = _brute_pareto(costs, drops)
    assert len(front) == len(expected)
    np.testing.assert_array_equal(front.cost, [cost for cost, _ in expected])
    np.testing.assert_allclose(front.drop, [drop for _, drop in expected], rtol=1e-12)


def test_ties_go_to_the_smaller_tiebreak():
    front = knapsack_front([[5, 5, 9]], [[1, 1, 0]], [[7, 3, 1]])
    assert front.cost.tolist() == [5, 9] and front.picks(0) == (1,)


def test_thinned_front_is_flagged_and_consistent():
    rng = np.random.default_rng(7)
    costs = [list(rng.integers(1, 1000, size=6)) for _ in range(5)]
    drops = [list(rng.random(6)) for _ in range(5)]
    full = knapsack_front(costs, drops)
    thin = knapsack_front(costs, drops, max_points=10)
    assert full.exact and not thin.exact and len(thin) <= 10 < len(full)
    for index in range(len(thin)):
        picks = thin.picks(index)
        assert sum(int(costs[i][j]) for i, j in enumerate(picks)) == thin.cost[index]


def test_knapsack_input_errors():
    with pytest.raises(HwgenError, match="one list of costs"):
        knapsack_front([], [])
    with pytest.raises(HwgenError, match="at least one option"):
        knapsack_front([[1], []], [[0], []])


# -- budgets --------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, kind, limit", [
    ("bops=50%", "bops", 500),
    ("bops=1.2M", "bops", 1_200_000),
    (" BOPS = 3k ", "bops", 3000),
    ("bops=250", "bops", 250),
    ("weights=16KiB", "weight_bits", 16 * 1024 * 8),
    ("weights=2kB", "weight_bits", 16000),
    ("weights=10B", "weight_bits", 80),
    ("weights=25%", "weight_bits", 250),
    ("weight_bits=100000", "weight_bits", 100000),
])
def test_budget_specs(spec, kind, limit):
    budget = parse_budget(spec)
    assert budget.kind == kind and budget.limit(1000) == limit
    assert parse_budget(budget) is budget


@pytest.mark.parametrize("spec, message", [
    ("bops", "a budget looks like"),
    ("bops=", "a budget looks like"),
    ("bops=-5", "a budget looks like"),
    ("flops=5M", "must be bops, weights or weight_bits, not 'flops'"),
    ("bops=0", "must be positive"),
    ("bops=5KiB", "the unit of bops must be"),
    ("weights=100", "the unit of weights must be %, 'b', 'kb'"),
    ("weights=3 parsecs", "the unit of weights must be .* not 'parsecs'"),
    (5000, "a budget looks like"),
])
def test_bad_budget_specs(spec, message):
    with pytest.raises(HwgenError, match=message):
        parse_budget(spec)


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="luts", amount=5), "kind must be one of bops, weight_bits, not 'luts'"),
    (dict(kind="bops"), "either an amount or a fraction"),
    (dict(kind="bops", amount=5, fraction=0.5), "either an amount or a fraction"),
    (dict(kind="bops", fraction=0), "must be positive"),
])
def test_bad_budgets(kwargs, message):
    with pytest.raises(HwgenError, match=message):
        Budget(**kwargs)


# -- small Python graphs --------------------------------------------------------------------------

def _mlp(seed=0, outputs=6, samples=200):
    rng = np.random.default_rng(seed)
    graph = Graph("mlp")
    x = graph.relu(graph.dense(graph.input((12,)), rng.normal(size=(16, 12)),
                               rng.normal(size=16) * 0.1, name="fc0"))
    graph.dense(x, rng.normal(size=(outputs, 16)), name="fc1")
    return graph, rng.normal(size=(samples, 12))


def _residual(seed=0):
    """A stem whose output both conv_a and the add read."""
    rng = np.random.default_rng(seed)
    graph = Graph("res")
    x = graph.relu(graph.conv2d(graph.input((5, 5, 2)), rng.normal(size=(4, 3, 3, 2)),
                                padding=1, name="stem"))
    y = graph.conv2d(x, rng.normal(size=(4, 3, 3, 4)) / 4, padding=1, name="conv_a")
    x = graph.global_avgpool(graph.relu(graph.add(y, x, name="skip")), name="gap")
    graph.dense(graph.flatten(x), rng.normal(size=(5, 4)), name="fc")
    return graph, rng.normal(size=(60, 5, 5, 2))


def _measured_correct(graph, x, bits, labels, calibration=None):
    """Samples right, measured independently of the module under test."""
    qgraph = quantize(graph, x if calibration is None else calibration, bits)
    return int((run_integer(qgraph, qgraph.input_codes(x)).argmax(axis=1) == labels).sum())


def _held_out(x, strata):
    """The confirmation samples of choose_bits's default split."""
    return split_samples(len(x), strata, 0.5, seed=0).confirmation


def test_sensitivity_of_each_option_is_that_layer_alone():
    graph, x = _mlp()
    labels = run_float(graph, x).argmax(axis=1)
    labels[:20] = (labels[:20] + 1) % 6          # the float model gets 90 % right
    sensitivity = measure_sensitivity(graph, x, labels, **SMALL_CHOICES)
    assert [layer.name for layer in sensitivity.layers] == ["fc0", "fc1"]
    assert sensitivity.float_accuracy == pytest.approx(90.0)
    assert sensitivity.base_correct == _measured_correct(graph, x, "w8a8", labels)
    for layer in sensitivity.layers:
        assert len(layer.options) == 16
        for option in layer.options[::5]:
            bits = {layer.name: {"w": option.weight_bits, "a": option.requested_act_bits}}
            assert option.correct == _measured_correct(graph, x, bits, labels)
            assert option.bit_ops == layer.macs * option.weight_bits * option.act_bits
            assert option.weight_memory_bits == layer.weights * option.weight_bits
        by_bits = {(o.weight_bits, o.act_bits): o for o in layer.options}
        assert by_bits[8, 8].noise == sensitivity.base_noise
        assert by_bits[3, 8].noise > by_bits[6, 8].noise > by_bits[8, 8].noise
        assert by_bits[8, 3].noise > by_bits[8, 6].noise
    assert "fc0 (dense, 192 MACs, 192 weights)" in sensitivity.table()


def test_shared_tensor_keeps_the_wider_bits_and_its_cost():
    graph, x = _residual()
    sensitivity = measure_sensitivity(graph, x, **SMALL_CHOICES)
    assert sensitivity.float_accuracy == 100.0      # agreement with the float model
    conv_a = next(layer for layer in sensitivity.layers if layer.name == "conv_a")
    for option in conv_a.options:
        # The add reads the stem's output at 8 bits, so conv_a gets 8 whatever it asks for.
        assert option.act_bits == 8
        assert option.bit_ops == conv_a.macs * option.weight_bits * 8


def test_choose_bits_within_a_drop_is_what_quantize_gives():
    graph, x = _mlp(seed=1, samples=600)
    labels = run_float(graph, x).argmax(axis=1)
    choice = choose_bits(graph, x, labels, max_accuracy_drop=5, **SMALL_CHOICES)
    qgraph = quantize(graph, x, choice.bits)
    assert choice.bit_ops == bit_ops(qgraph) < choice.base_bit_ops
    assert choice.weight_memory_bits == weight_memory_bits(qgraph)
    held = _held_out(x, labels)
    correct = _measured_correct(graph, x[held], choice.bits, labels[held], calibration=x)
    assert choice.samples == len(held) == 300
    assert choice.accuracy == pytest.approx(100 * correct / len(held))
    assert choice.accuracy_drop <= choice.confirmation.drop_bound <= 5
    assert 1 <= choice.measurements <= 16
    assert json.loads(json.dumps(choice.to_json()))["bits"] == choice.bits
    assert "fewest bops" in repr(choice) and "fc1" in choice.table()


def test_choose_bits_within_a_budget():
    graph, x = _mlp(seed=2)
    labels = run_float(graph, x).argmax(axis=1)
    half = choose_bits(graph, x, labels, budget="bops=50%", **SMALL_CHOICES)
    assert half.bit_ops <= half.base_bit_ops // 2
    assert half.bit_ops == bit_ops(quantize(graph, x, half.bits))
    held = _held_out(x, labels)
    assert half.accuracy == pytest.approx(
        100 * _measured_correct(graph, x[held], half.bits, labels[held], x) / len(held))
    assert half.confirmation.confirmed is None     # a budget, no limit to confirm
    memory = choose_bits(graph, x, labels, budget=Budget("weight_bits", amount=1000),
                         **SMALL_CHOICES)
    assert memory.weight_memory_bits <= 1000
    with pytest.raises(HwgenError, match="below the cheapest choice"):
        choose_bits(graph, x, labels, budget="weight_bits=100", **SMALL_CHOICES)


def test_a_limit_no_bits_meet_is_explained():
    graph, x = _mlp(seed=3, samples=600)
    with pytest.raises(HwgenError, match="uniform w3a3 already loses .* more than the allowed 5"):
        choose_bits(graph, x, max_accuracy_drop=5, base_bits=3, weight_choices=(2, 3),
                    act_choices=(2, 3))


def test_close_metric_for_a_regression_output():
    graph, x = _mlp(seed=4, outputs=1)
    sensitivity = measure_sensitivity(graph, x, **SMALL_CHOICES)
    assert sensitivity.metric.startswith("outputs within 5%")
    assert sensitivity.float_accuracy == 100.0
    choice = choose_bits(graph, x, max_accuracy_drop=5, **SMALL_CHOICES)
    qgraph = quantize(graph, x, choice.bits)
    held = _held_out(x, None)         # no classes to stratify by
    outputs = qgraph.output.dequantize(run_integer(qgraph, qgraph.input_codes(x[held])))
    float_out = run_float(graph, x)
    span = float_out.max() - float_out.min()
    close = np.all(np.abs(outputs - float_out[held]) <= 0.05 * span, axis=1)
    assert choice.accuracy == pytest.approx(100 * close.mean()) and choice.accuracy >= 95
    with pytest.raises(HwgenError, match="top1 metric needs a model with several outputs"):
        measure_sensitivity(graph, x, metric="top1", **SMALL_CHOICES)


@pytest.mark.parametrize("kwargs, message", [
    (dict(), "exactly one of max_accuracy_drop"),
    (dict(max_accuracy_drop=1, budget="bops=50%"), "exactly one of max_accuracy_drop"),
    (dict(max_accuracy_drop=-1), "max_accuracy_drop must be a number of points in 0..100"),
    (dict(max_accuracy_drop="1"), "max_accuracy_drop must be a number"),
    (dict(max_accuracy_drop=1, cost="luts"), "cost must be one of bops, weight_bits"),
    (dict(max_accuracy_drop=1, rounds=0), "rounds must be a positive integer"),
    (dict(max_accuracy_drop=1, weight_choices=(4, 10)), r"must not exceed the base bits 8"),
    (dict(max_accuracy_drop=1, act_choices=()), "act_choices must be a non-empty list"),
    (dict(max_accuracy_drop=1, weight_choices=(1, 4)), "weight_choices must be in 2..16"),
    (dict(max_accuracy_drop=1, metric="f1"), "metric must be one of auto, top1, close"),
    (dict(max_accuracy_drop=1, labels=np.zeros(3)), r"labels must have shape \(200,\)"),
    (dict(max_accuracy_drop=1, labels=np.full(200, 7)), "class indices in 0..5"),
])
def test_bad_arguments_are_explained(kwargs, message):
    graph, x = _mlp()
    labels = kwargs.pop("labels", None)
    with pytest.raises(HwgenError, match=message):
        choose_bits(graph, x, labels, **kwargs)


def test_a_quantized_model_is_refused():
    graph, x = _mlp()
    with pytest.raises(HwgenError, match="already quantized"):
        choose_bits(quantize(graph, x), x, max_accuracy_drop=1)


def test_inputs_and_labels_from_an_npz(tmp_path):
    graph, x = _mlp(seed=5)
    labels = run_float(graph, x).argmax(axis=1)
    path = tmp_path / "data.npz"
    np.savez(path, x=x, y=labels)
    from_file = measure_sensitivity(graph, path, **SMALL_CHOICES)
    assert from_file.metric == "top-1 accuracy against the labels"
    assert from_file.base_correct == measure_sensitivity(graph, x, labels,
                                                         **SMALL_CHOICES).base_correct


# -- prepared calibration -------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["minmax", "percentile", "mse"])
def test_prepared_calibration_gives_the_same_qgraph(method):
    graph, x = _residual(seed=1)
    prepared = PreparedCalibration(graph, x, method)
    for bits in ["w8a8", "w4a6", {"stem": "w3a5", "conv_a": {"a": 4}}]:
        direct = qgraph_to_arrays(quantize(graph, x, bits, calibration_method=method))
        reused = qgraph_to_arrays(quantize(graph, prepared, bits, calibration_method=method))
        assert direct.keys() == reused.keys()
        for key in direct:
            np.testing.assert_array_equal(direct[key], reused[key])


def test_prepared_calibration_must_match():
    graph, x = _mlp()
    prepared = PreparedCalibration(graph, x, "percentile", percentile=99.9)
    with pytest.raises(HwgenError, match="prepared with method 'percentile'"):
        quantize(graph, prepared)
    with pytest.raises(HwgenError, match="prepared for model 'mlp', not for this"):
        quantize(_mlp()[0], prepared, calibration_method="percentile", percentile=99.9)
    with pytest.raises(HwgenError, match="calibration method must be one of"):
        PreparedCalibration(graph, x, "kl")


# -- the Pareto front -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mlp_front():
    graph = hwgen.load(EXAMPLES / "digits_mlp" / "digits_mlp.onnx")
    with np.load(EXAMPLES / "digits_mlp" / "calib.npz") as data:
        x, y = data["x"], data["y"]
    return graph, x, y, pareto(graph, x, y, points=6)


def test_pareto_points_are_measured(mlp_front):
    graph, x, y, front = mlp_front
    costs = [point.bit_ops for point in front.points]
    assert costs == sorted(costs) and len(set(costs)) == len(costs) >= 3
    assert costs[-1] <= front.base_bit_ops
    for point in front.points[1::2]:
        correct = _measured_correct(graph, x, point.bits, y)
        assert point.accuracy == pytest.approx(100 * correct / len(x))
    for point in front.points:
        beaten = any(o.bit_ops <= point.bit_ops and o.accuracy >= point.accuracy
                     and (o.bit_ops, o.accuracy) != (point.bit_ops, point.accuracy)
                     for o in front.points)
        assert point.dominated == beaten
    assert not front.points[0].dominated
    assert "gemm_0 gemm_2 gemm_4" in front.text() and str(front) == front.text()
    table = front.table()
    assert list(table["bit_ops"]) == costs and list(table["dominated"]) == [
        point.dominated for point in front.points]
    assert list(table["gemm_0"]) == [f"w{p.bits['gemm_0']['w']}a{p.bits['gemm_0']['a']}"
                                     for p in front.points]
    assert "<table" in front._repr_html_() and "gemm_4" in front._repr_html_()
    assert len(json.loads(json.dumps(front.to_json()))["points"]) == len(front.points)


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                    reason="matplotlib is not installed")
def test_pareto_plot(mlp_front):
    import matplotlib
    matplotlib.use("Agg")
    ax = mlp_front[3].plot()
    assert ax.get_xlabel() == "bit-operations per inference"
    assert len(ax.lines) >= 3


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is not None,
                    reason="matplotlib is installed")
def test_pareto_plot_without_matplotlib_says_how_to_get_it(mlp_front):
    with pytest.raises(HwgenError, match="pip install matplotlib"):
        mlp_front[3].plot()


# -- acceptance: the digits CNN -------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_cnn():
    folder = EXAMPLES / "digits_cnn"
    graph = hwgen.load(folder / "digits_cnn.onnx")
    with np.load(folder / "calib.npz") as calib, np.load(folder / "test.npz") as test:
        calibration, x, y = calib["x"], test["x"], test["y"]
    choice = choose_bits(graph, x, y, calibration=calibration, max_accuracy_drop=1)
    return graph, calibration, x, y, choice


def test_digits_cnn_meets_the_target(digits_cnn):
    """Ranges from 256 training images; bits selected on half of the 540 held-out test images
    and confirmed on the other 270, where the 95 % bound on the drop must be within 1 point.
    The confirmation's margin costs bits: ≥ 40 % fewer bit-operations than w8a8 still holds,
    mean weight bits ≤ 5 (the target before the confirmation) no longer does (5.1 and 5.25)."""
    graph, calibration, x, y, choice = digits_cnn
    held = _held_out(x, y)
    float_right = run_float(graph, x[held]).argmax(axis=1) == y[held]
    qgraph = quantize(graph, calibration, choice.bits)
    right = run_integer(qgraph, qgraph.input_codes(x[held])).argmax(axis=1) == y[held]
    assert choice.samples == choice.confirmation.selection_samples == 270
    assert choice.accuracy == pytest.approx(100 * right.mean())
    assert choice.float_accuracy == pytest.approx(100 * float_right.mean())
    lost, gained = int(np.sum(float_right & ~right)), int(np.sum(right & ~float_right))
    assert (choice.confirmation.lost, choice.confirmation.gained) == (lost, gained)
    assert choice.confirmation.confirmed and choice.confirmation.drop_bound <= 1
    assert choice.accuracy_drop <= choice.confirmation.drop_bound
    uniform = quantize(graph, calibration, "w8a8")
    uniform_bit_ops = sum(layer.macs * 64 for layer in uniform.layers)
    assert bit_ops(qgraph) == choice.bit_ops
    assert bit_ops(qgraph) <= 0.6 * uniform_bit_ops
    weighted = [(layer.weight.size, layer.weight_bits) for layer in qgraph.layers
                if layer.op in ("dense", "conv")]
    assert sum(n * bits for n, bits in weighted) / sum(n for n, _ in weighted) <= 5.5
    assert sum(bits for _, bits in weighted) / len(weighted) <= 5.5
    assert choice.mean_weight_bits <= 5.5 and choice.mean_weight_bits_per_layer <= 5.5
