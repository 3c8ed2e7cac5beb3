"""The notebook experience: HTML reprs and DataFrame tables of the flow's objects, progress
callbacks, and the README's notebook section run as written."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hwgen
from hwgen.errors import HwgenError
from hwgen.notebook import (StepBar, plan_html, plan_table, progress_callback, sim_result_html,
                            sim_result_table)
from hwgen.sim.runner import Mismatch, SimResult

ROOT = Path(__file__).resolve().parents[1]
MLP = ROOT / "examples" / "digits_mlp"


@pytest.fixture(scope="module")
def flow():
    graph = hwgen.load(MLP / "digits_mlp.onnx")
    with np.load(MLP / "calib.npz") as calib:
        x = calib["x"]
    qgraph = hwgen.quantize(graph, x, "w4a8")
    plan = hwgen.make_plan(qgraph, multipliers=8)
    return graph, qgraph, plan, x


def _cells(html_text):
    return re.findall(r"<td>([^<]*)</td>", html_text)


def test_graph_and_qgraph_tables(flow):
    graph, qgraph, _, _ = flow
    table = graph.table()
    assert list(table["layer"]) == [layer.name for layer in graph.layers()]
    assert list(table["shape"])[-1] == "10"
    html_text = graph._repr_html_()
    assert html_text.startswith("<div>") and "gemm_4" in _cells(html_text)
    qtable = qgraph.table()
    assert list(qtable["layer"]) == [layer.name for layer in qgraph.layers]
    assert set(qtable["bits"]) == {"w4a8"}
    assert list(qtable["macs"]) == [layer.macs for layer in qgraph.layers]
    assert "QGraph" in qgraph._repr_html_() and "<table" in qgraph._repr_html_()


def test_plan_table_and_html(flow):
    _, _, plan, _ = flow
    table = plan_table(plan)
    assert list(table["cycles"]) == [layer.cycles for layer in plan.layers]
    assert table["multipliers"].sum() == plan.multipliers
    assert set(table["weights"]) <= {"auto", "bram", ""}
    assert f"II {plan.initiation_interval} cycles/frame" in plan_html(plan)


def test_design_html_and_generation_progress(flow):
    _, _, plan, x = flow
    lines = []
    design = hwgen.generate(plan, x, frames=2, progress=lines.append)
    assert len(lines) == 4 and "Verilog" in lines[2]
    table = design.table()
    assert list(table["cycles"]) == [layer["cycles_per_frame"]
                                     for layer in design.manifest["layers"]]
    assert "latency" in design._repr_html_()


def test_sim_result_html_escapes_and_lists_mismatches():
    result = SimResult(frames=3, outputs=np.zeros((3, 2), dtype=np.int64),
                       mismatches=(Mismatch(1, 0, 5, 6),), mismatch_count=1, latency=12,
                       initiation_interval=8.0, cycles=100, build_seconds=0.0, sim_seconds=1.0,
                       cached_build=True, simulator="verilator", error="<hang>")
    html_text = sim_result_html(result)
    assert "FAILED" in html_text and "&lt;hang&gt;" in html_text
    assert "frame 1, output 0: expected 5, got 6" in html_text
    assert sim_result_table(result)["mismatches"][0] == 1


def test_progress_callback():
    lines = []
    say, close = progress_callback(lines.append, "x")
    say("a")
    close()
    assert lines == ["a"]
    assert progress_callback(None, "x")[0] is None
    bar, close = progress_callback(True, "steps", total=2)
    assert isinstance(bar, StepBar)
    bar("one")
    bar("two")
    assert bar._bar.n == 2
    close()
    with pytest.raises(HwgenError, match="progress must be"):
        progress_callback(3, "x")


def _readme_notebook_code():
    """The Python blocks of the README's "From a notebook" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## From a notebook", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_notebook_section_runs(tmp_path, monkeypatch):
    """Every Python block of the README's notebook section runs as written, from the
    repository's root, except the Verilator simulation (the system tests cover it)."""
    blocks = _readme_notebook_code()
    assert len(blocks) >= 2
    calls = []
    monkeypatch.setattr(hwgen, "simulate", lambda *args, **kwargs: calls.append(args))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    namespace = {}
    for block in blocks:
        if "g = hwgen.Graph(" in block:   # the builder sketch needs weights: given below
            rng = np.random.default_rng(0)
            namespace.update(w1=rng.normal(size=(8, 64)), b1=np.zeros(8),
                             w2=rng.normal(size=(10, 8)), b2=np.zeros(10))
        exec(compile(block, "README.md", "exec"), namespace)
    assert calls and (tmp_path / "out" / "manifest.json").is_file()
    assert namespace["front"].table()["accuracy"].max() > 80


def test_explore_notebook_runs(tmp_path):
    """examples/explore.ipynb, executed by nbclient in a scratch copy of examples/: 27 points
    of the digits CNN, the Pareto tables and the plots."""
    nbclient = pytest.importorskip("nbclient")
    import nbformat

    notebook = nbformat.read(ROOT / "examples" / "explore.ipynb", as_version=4)
    (tmp_path / "digits_cnn").symlink_to(ROOT / "examples" / "digits_cnn")
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    texts = [output["data"].get("text/plain", "") for output in outputs if "data" in output]
    assert any(text.startswith("exploration: 27 points (27 computed") for text in texts)
    assert sum("image/png" in output.get("data", {}) for output in outputs) >= 2
    assert any("<table" in output["data"].get("text/html", "") for output in outputs
               if "data" in output)
    frame = pd.read_csv(tmp_path / "explore_out" / "results.csv", keep_default_na=False)
    assert len(frame) == 27 and frame["board"].nunique() == 3 and frame["bits"].nunique() == 3
    assert (tmp_path / "explore_out" / "report.html").is_file()
