"""Dependencies point one way: zoo -> export -> build -> runners -> compare/bench -> report.

Every ``from deploykit... import`` counts, also those inside functions (a lazy import still
ties two modules together). A module may import its own layer or a lower one, never a
higher one, and no set of modules imports itself round.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "deploykit"

# Lowest first. A module belongs to the first layer with a prefix that names it.
LAYERS = [
    ("foundations", ["errors", "text", "progress", "clocks", "compare", "logs"]),
    ("files", ["files", "supervisor"]),
    ("inputs and outputs", ["model_io"]),
    ("operators and zoo", ["ops", "zoo"]),
    ("models and ONNX files", ["spec", "onnx_file"]),
    ("runners and engine build", ["backends"]),
    ("latency", ["latency"]),
    ("export and packaging", ["export", "localize", "package"]),
    ("check and bench", ["pipeline", "check", "bench", "matrix", "saved_outputs", "onnx_check"]),
    ("reports", ["report", "html_report"]),
    ("entry points", ["cli_options", "cli", "__main__", "ops.benchmark", "ops.strategy_benchmark",
                      "export.maxpool_benchmark"]),
]


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    modules = {_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "deploykit":
                found |= {a.name for a in node.names}  # from deploykit import zoo
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("deploykit."):
                target = node.module.removeprefix("deploykit.")
                found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name.removeprefix("deploykit.") for a in node.names if a.name.startswith("deploykit.")}
        graph[name] = {target for target in found if target in modules and target != name}
    return graph


def _layer(module: str) -> int:
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(f"{prefix}."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, f"deploykit.{module} is in no layer: add it to LAYERS"
    return best[0]


def test_every_import_points_to_the_same_or_a_lower_layer():
    upward = [f"deploykit.{module} ({LAYERS[_layer(module)][0]}) imports deploykit.{target} "
              f"({LAYERS[_layer(target)][0]})"
              for module, targets in sorted(_imports().items()) if module for target in sorted(targets)
              if _layer(target) > _layer(module)]
    assert upward == []


def test_no_modules_import_each_other_round():
    graph = _imports()
    on_path, done, cycles = [], set(), []

    def visit(module):
        if module in on_path:
            cycles.append(" -> ".join(on_path[on_path.index(module):] + [module]))
            return
        if module in done:
            return
        on_path.append(module)
        for target in sorted(graph[module]):
            visit(target)
        on_path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
    assert cycles == []


def test_reports_print_results_without_importing_what_computes_them():
    # report.py prints what check, bench, lint and the matrix hand it; importing them would
    # point a lower layer's printer at the stage it prints (MatrixReport carries its footnote).
    allowed = {"files", "model_io", "text"}
    assert _imports()["report"] <= allowed
