"""The package's shape: no import cycle among lang_image's modules (imports inside functions
count too), and no module over 300 lines."""

import ast
import os

PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "lang_image")
MAX_LINES = 300


def module_files() -> dict[str, str]:
  """Dotted module name -> file, for every .py file under lang_image/."""
  modules = {}
  root = os.path.dirname(PACKAGE_DIR)
  for folder, _, files in os.walk(PACKAGE_DIR):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        dotted = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
        modules[dotted.removesuffix(".__init__")] = path
  return modules


def imported_modules(module: str, path: str, known: set[str]) -> set[str]:
  """The package's modules that `module` imports anywhere in its body."""
  package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
    names = []
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")
        parts = parts[:len(parts) - node.level + 1]
        base = ".".join(parts + ([node.module] if node.module else []))
      # `from a import b` imports the module a.b when there is one, else names from a.
      names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    for name in names:
      while name and name not in known:
        name = name.rpartition(".")[0]
      if name and name != module:
        found.add(name)
  return found


def import_graph() -> dict[str, set[str]]:
  files = module_files()
  return {m: imported_modules(m, p, set(files)) for m, p in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components with more than one module (Tarjan)."""
  index, low, on_stack, stack, found = {}, {}, set(), [], []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return found


def test_cycle_finder_finds_a_planted_cycle():
  graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
  assert cycles(graph) == [["a", "b", "c"]]
  assert cycles({"a": {"b"}, "b": set()}) == []


def test_graph_sees_imports_inside_functions(tmp_path):
  path = tmp_path / "m.py"
  path.write_text("def f():\n  from lang_image.x import y\n  import lang_image.z\n")
  known = {"lang_image.m", "lang_image.x", "lang_image.x.y", "lang_image.z"}
  assert imported_modules("lang_image.m", str(path), known) == {"lang_image.x.y",
                                                                 "lang_image.z"}


def test_no_import_cycles():
  graph = import_graph()
  assert len(graph) > 50  # the walk found the package
  found = cycles(graph)
  assert not found, "import cycles among lang_image modules: " + "; ".join(
      " <-> ".join(c) for c in found)


def test_every_module_is_short():
  long = {}
  for path in module_files().values():
    with open(path, encoding="utf-8") as f:
      lines = sum(1 for _ in f)
    if lines > MAX_LINES:
      long[os.path.relpath(path, os.path.dirname(PACKAGE_DIR))] = lines
  assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"
