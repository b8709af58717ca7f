"""The shape of the package: no import cycle between its modules, every import down the layers (function-level
imports included), the run schema in one place, and a command line that only wires."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "clips"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the clips modules it imports anywhere in its body (``from a import b`` counts a.b if a module)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_clips():
    graph = import_graph()
    assert "clips.values" in graph["clips.config"] and "clips.values" in graph["clips.curricula.base"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# The layers, bottom-up (statistics beside the metrics: numbers in, numbers out): a module imports only from its
# own layer or those below (function-level imports included). The root package (clips/__init__.py: the version) and
# the leaf utilities are the floor; infrastructure (tracking, scaling) sits below training, so that finding
# $CLIPS_HOME or talking to a server never imports the training configuration (and through it the curricula, the
# models and torch); the command line is the roof.
LAYERS = (
    ("clips", "clips.values", "clips.paths", "clips.errors", "clips.progress", "clips.disk"),
    ("clips.data", "clips.metrics", "clips.models", "clips.losses", "clips.stats"),
    ("clips.curricula",),
    ("clips.tracking", "clips.scaling"),
    ("clips.config", "clips.training", "clips.inference"),
    ("clips.study", "clips.tuning", "clips.peers", "clips.export", "clips.registry"),
    ("clips.cli", "clips.__main__"),
)


def layer_of(module: str) -> int | None:
    """The layer of the most specific package that holds ``module`` (None: in no layer)."""
    found = [(len(p), i) for i, packages in enumerate(LAYERS) for p in packages
             if module == p or module.startswith(p + ".")]
    return max(found)[1] if found else None


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((m, t) for m, targets in graph.items() for t in targets
                  if layer_of(m) is not None and layer_of(t) is not None and layer_of(t) > layer_of(m))


def test_every_import_points_down_the_layers():
    assert upward_imports({"clips.tracking.x": {"clips.config"}, "clips.config": {"clips.paths"},
                           "clips.data.y": {"clips.training.step", "clips"}, "clips.inference.z": {"clips.registry"}}
                          ) == [("clips.data.y", "clips.training.step"), ("clips.inference.z", "clips.registry"),
                                ("clips.tracking.x", "clips.config")]  # the rule finds planted violations
    graph = import_graph()
    assert not [m for m in graph if layer_of(m) is None], "modules in no layer: add their package to LAYERS"
    found = upward_imports(graph)
    assert not found, "imports against the layers: " + ", ".join(f"{m} -> {t}" for m, t in found)


def test_conda_yaml_lists_exactly_the_packages_of_pyproject():
    """MLflow's environment managers read only conda.yaml's pip list: it must not drift from pyproject.toml."""
    import tomllib

    import yaml

    root = Path(__file__).resolve().parent.parent
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    conda = yaml.safe_load((root / "conda.yaml").read_text())["dependencies"]
    pip = next(d["pip"] for d in conda if isinstance(d, dict))
    assert [p for p in pip if p != "-e ."] == declared


def _schema_strings() -> list[str]:
    """The tags, tag prefixes and artifact paths of clips/tracking/schema.py (CHECKPOINTS, one plain word that
    prose uses too, is left out)."""
    from clips.tracking import schema

    return sorted({v for k, v in vars(schema).items() if k.isupper() and isinstance(v, str)
                   and (v.startswith(schema.PREFIX) and v != schema.PREFIX or "/" in v)})


def string_constants(source: str):
    """(line, text) of every string constant of a module but its docstrings (prose, not schema)."""
    tree = ast.parse(source)
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def literals_outside_schema(sources: dict[str, str], names: list[str]) -> list[tuple[str, int, str]]:
    """(module, line, name) for each string constant outside the schema that spells one of ``names`` out
    (docstrings and comments are prose, not schema)."""
    import re

    pattern = re.compile("|".join(f"(?<![\\w.]){re.escape(n)}(?![\\w/])" for n in names))
    found = []
    for module, text in sources.items():
        for line, value in string_constants(text):
            hit = pattern.search(value)
            if hit:
                found.append((module, line, hit.group(0)))
    return found


def test_the_runs_schema_is_written_in_one_place():
    names = _schema_strings()
    assert "clips.role" in names and "tables/test_per_patient.json" in names and "data/split.csv" in names
    planted = {"clips/x.py": 'client.set_tag(run, "clips.failure", "x")\nf = "tags.`clips.role` = \'a\'"\n'}
    assert sorted(n for _, _, n in literals_outside_schema(planted, names)) == [
        "clips.failure", "clips.role"]  # the scan finds planted ones, in a filter string too
    sources = {str(p.relative_to(PACKAGE.parent)): p.read_text() for p in PACKAGE.rglob("*.py")
               if p.name != "schema.py"}
    found = literals_outside_schema(sources, names)
    assert not found, "schema strings outside clips/tracking/schema.py: " + ", ".join(
        f"{m}:{line} {n}" for m, line, n in found)


def names_outside_schema(sources: dict[str, str]) -> list[tuple[str, int, str]]:
    """(module, line, text) for each string constant outside the schema that spells a parameter or metric name
    read back: a prefix alone (the constant part of ``f"cfg.{k}"``), a whole ``cfg.x`` / ``study.x`` name, a
    ``time/`` metric, or one of the per-epoch metrics (docstrings are prose, not schema)."""
    import re

    from clips.tracking import schema

    exact = {schema.CFG, schema.STUDY, schema.TRAIN, schema.TIME, schema.VAL_DICE, schema.SAMPLES_SEEN}
    pattern = re.compile(r"^(cfg|study)\.[a-z_]+$|^time/|`(cfg|study|train)\.")  # the last: a filter string
    found = []
    for module, text in sources.items():
        for line, value in string_constants(text):
            if value in exact or pattern.search(value):
                found.append((module, line, value))
    return found


def test_the_parameters_and_metrics_read_back_are_named_in_one_place():
    planted = {"clips/x.py": 'p = {f"cfg.{k}": v}\nq = params["study.folds"]\nm = "time/steps_s"\nlog = "train.log"\n'
                             'f = f"params.`cfg.seed` = \'{s}\'"\n'}
    assert sorted(t for _, _, t in names_outside_schema(planted)) == ["cfg.", "params.`cfg.seed` = '", "study.folds",
                                                                      "time/steps_s"]
    sources = {str(p.relative_to(PACKAGE.parent)): p.read_text() for p in PACKAGE.rglob("*.py")
               if p.name != "schema.py"}
    found = names_outside_schema(sources)
    assert not found, "parameter or metric names outside clips/tracking/schema.py: " + ", ".join(
        f"{m}:{line} {n!r}" for m, line, n in found)


def mlflow_calls(source: str) -> set[str]:
    """The ``mlflow.<name>`` attributes a module's code uses (``mlflow.MlflowClient``, ``mlflow.start_run``, ...)."""
    return {n.attr for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name) and n.value.id == "mlflow"}


def test_the_cli_only_wires():
    """The CLI (clips/cli/) reads its defaults from their owners and leaves tracking work to the packages that do
    it."""
    from clips.cli import cli
    from clips.metrics.settings import EvalSettings
    from clips.tracking.server import ServerConfig

    assert mlflow_calls("import mlflow\nmlflow.start_run()\nmlflow.get_tracking_uri()") == {
        "start_run", "get_tracking_uri"}  # the check sees a planted call
    for module in sorted((PACKAGE / "cli").glob("*.py")):
        assert mlflow_calls(module.read_text()) <= {"get_tracking_uri"}, module.name

    evaluate = {p.name: p.default for p in cli.commands["evaluate"].params}
    ev = EvalSettings()
    assert (evaluate["tolerance_mm"], float(evaluate["suv_threshold"]), int(evaluate["connectivity"]),
            evaluate["lesion_threshold"]) == (ev.tolerance_mm, ev.suv_threshold, ev.connectivity, ev.lesion_threshold)
    start = {p.name: p.default for p in cli.commands["server"].commands["start"].params}
    sc = ServerConfig()
    for name in ("backend_store_uri", "artifacts_destination", "host", "port", "workers", "auth", "admin_username",
                 "default_permission"):
        assert start[name] == getattr(sc, name), name


BROAD = {"Exception", "BaseException"}


def unexplained_broad_excepts(sources: dict[str, str]) -> list[tuple[str, int]]:
    """``except:``, ``except Exception`` and ``except BaseException`` sites whose line does not say why it must be
    broad (a comment beyond the linter's bare ``noqa``): a broad catch hides the error it did not expect."""
    found = []
    for name, source in sources.items():
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.ExceptHandler):
                continue
            caught = node.type
            names = {caught.id} if isinstance(caught, ast.Name) else set()
            if caught is not None and not names & BROAD:
                continue
            comment = lines[node.lineno - 1].partition("#")[2]
            reason = comment.replace("noqa: BLE001", "").strip(" -:")
            if len(reason) < 10:
                found.append((name, node.lineno))
    return found


def test_every_broad_except_says_why_it_is_broad():
    planted = {"x.py": "try:\n    f()\nexcept Exception:  # noqa: BLE001\n    pass\n"
                       "try:\n    f()\nexcept Exception:  # noqa: BLE001 - the server raises many types\n    pass\n"
                       "try:\n    f()\nexcept (OSError, ValueError):\n    pass\n"}
    assert unexplained_broad_excepts(planted) == [("x.py", 3)]
    sources = {str(p.relative_to(PACKAGE)): p.read_text() for p in PACKAGE.rglob("*.py")}
    assert unexplained_broad_excepts(sources) == []
