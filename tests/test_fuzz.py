"""The fuzz generator (hwgen.fuzz): a seed gives one design, the seeds cover every engine and
multiplier kind, and a few seeds run end to end (Verilator, random stalls) with every output code
and the cycle model checked; ``benchmarks/fuzz.py`` runs the long campaign."""

import numpy as np
import pytest

from hwgen.fuzz import random_case, run_case
from hwgen.plan import make_plan


def _plan(case):
    return make_plan(case.quantize(), case.folding, engine=case.engine)


def test_a_seed_is_one_design():
    first, second = random_case(11), random_case(11)
    assert first.describe() == second.describe()
    assert (first.bits, first.folding, first.stall) == (second.bits, second.folding, second.stall)
    assert np.array_equal(first.inputs, second.inputs)
    for a, b in zip(first.graph.layers(), second.graph.layers()):
        assert a.name == b.name and a.shape == b.shape
    assert random_case(12).describe() != first.describe()


def test_the_seeds_cover_every_engine_and_multiplier_kind():
    seen = set()
    for seed in range(60):
        try:
            case = random_case(seed)
        except Exception:  # noqa: BLE001 - a graph the quantizer rejects is skipped, as in the campaign
            continue
        for layer in _plan(case).layers:
            kind = layer.multiplier if layer.multipliers else ""
            seen.add((layer.engine, kind))
    expected = {("mac", "dsp"), ("mac", "lut"), ("mac", "dsp-packed"), ("systolic", "dsp"),
                ("systolic", "lut"), ("systolic", "dsp-packed"), ("depthwise", "dsp"),
                ("depthwise", "lut"), ("unrolled", ""), ("pool", ""), ("gap", ""), ("add", ""),
                ("concat", ""), ("upsample", ""), ("table", ""), ("argmax", "")}
    assert expected <= seen, expected - seen


# Seeds with: a residual add and a concat beside an unrolled conv (11); a concat, a depthwise
# engine, LUT multipliers and two unrolled convs (8); unrolled convs and a table before a packed
# MAC unit and an argmax (6); a global average pool at the interval whose output burst a lane
# converter narrows (3059: it measured 87 cycles per frame against 84 before that edge had a
# FIFO).
@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 8, 6, 3059])
def test_fuzzed_designs_are_bit_exact_and_match_the_cycle_model(seed, tmp_path):
    outcome = run_case(random_case(seed), tmp_path, codes=1500)
    assert outcome.error is None, outcome
    assert outcome.codes >= 1500 and outcome.mismatches == 0, outcome
    assert outcome.ii_measured == outcome.ii_predicted, outcome


def test_a_narrowed_pool_burst_gets_a_fifo():
    """Seed 3059's pool emits its 4-beat frame in a burst that a 2→1 lane converter narrows:
    the edge gets a FIFO of those beats, so the pool never stalls its input."""
    from hwgen.plan import make_plan
    case = random_case(3059)
    plan = make_plan(case.quantize(), case.folding, engine=case.engine)
    assert plan["gap0"].engine == "gap" and plan["gap0"].out_lanes == 2
    assert plan["dense0"].in_lanes == 1
    assert plan.fifo_depth("gap0", "dense0") == 4


def test_later_seeds_share_engines():
    """From seed 3140 on, some designs put their dense chains (or every chain) on shared
    sequential engines; earlier seeds keep the designs the log recorded."""
    from hwgen.fuzz import SHARED_FROM_SEED
    shared = [seed for seed in range(SHARED_FROM_SEED, SHARED_FROM_SEED + 40)
              if any(p.engine == "sequential" for p in _plan(random_case(seed)).layers)]
    assert len(shared) >= 4, shared
    assert random_case(3167).engine == "sequential"
    assert all(p.engine != "sequential" for seed in (11, 3059)
               for p in _plan(random_case(seed)).layers)


def test_shared_cases_put_residual_blocks_on_one_engine():
    """``random_case(seed, shared=True)`` (``benchmarks/fuzz.py --shared``) runs every chain on
    shared engines: seed 30's residual block (its add reading the block's input from a third
    bank) is one engine; the seed's graph, bits and data are those of ``random_case(30)``."""
    case, plain = random_case(30, shared=True), random_case(30)
    assert case.engine == "sequential" and case.describe() == plain.describe()
    assert np.array_equal(case.inputs, plain.inputs) and case.bits == plain.bits
    shared = [p for p in _plan(case).layers if p.engine == "sequential"]
    assert any(layer.op == "add" for p in shared for layer in p.layer.layers)
    assert max(p.layer.slots.count for p in shared) == 3


def test_a_shared_engine_sends_its_frame_into_a_fifo_of_a_frame():
    """Shared seed 19: two shared engines feed a concat, which takes their codes in turn;
    each sends its frame in a burst, into a frame of FIFO, so neither waits into its next
    frame (without: 1,943 cycles per frame measured against the modelled 1,899)."""
    plan = _plan(random_case(19, shared=True))
    assert plan["conv2"].engine == plan["conv3"].engine == "sequential"
    assert plan.fifo_depth("conv2", "concat0") == 110 + 4
    assert plan.fifo_depth("conv3", "concat0") == 220 + 4


@pytest.mark.slow
@pytest.mark.parametrize("seed", [30, 19])
def test_shared_cases_are_bit_exact_and_match_the_cycle_model(seed, tmp_path):
    outcome = run_case(random_case(seed, shared=True), tmp_path, codes=1500)
    assert outcome.error is None and outcome.mismatches == 0, outcome
    assert outcome.ii_measured == outcome.ii_predicted, outcome
