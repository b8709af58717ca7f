"""The shape of the package: no import cycle between its modules (function-level imports included)."""
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


# Infrastructure never reaches up into training: finding $CLIPS_HOME or talking to a server must not import the
# training configuration (and through it the curricula, the models and torch).
INFRASTRUCTURE = ("clips.tracking", "clips.scaling", "clips.paths", "clips.errors", "clips.values")
ABOVE = ("clips.config", "clips.curricula", "clips.training", "clips.study", "clips.tuning", "clips.cli")


def _within(module: str, packages) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((m, t) for m, targets in graph.items() if _within(m, INFRASTRUCTURE)
                  for t in targets if _within(t, ABOVE))


def test_infrastructure_never_imports_training():
    assert upward_imports({"clips.tracking.x": {"clips.config"}, "clips.config": {"clips.paths"}}) == [
        ("clips.tracking.x", "clips.config")]  # the rule finds a planted violation
    found = upward_imports(import_graph())
    assert not found, "infrastructure imports training: " + ", ".join(f"{m} -> {t}" for m, t in found)


def test_conda_yaml_lists_exactly_the_packages_of_pyproject():
    """MLflow's environment managers read only conda.yaml's pip list: it must not drift from pyproject.toml."""
    import tomllib

    import yaml

    root = Path(__file__).resolve().parent.parent
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    conda = yaml.safe_load((root / "conda.yaml").read_text())["dependencies"]
    pip = next(d["pip"] for d in conda if isinstance(d, dict))
    assert [p for p in pip if p != "-e ."] == declared
