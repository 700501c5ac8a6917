"""The repository's layout rules (docs/DESIGN.md): no import cycle between the modules of
netgen, data_prep, tools and bench (imports at module level and inside functions alike), thin
command lines at the top of tools/, no function over 60 lines, bench run as modules."""

import ast
import os
import subprocess

import pytest

from tests.support import ROOT

PACKAGES = ('netgen', 'data_prep', 'tools', 'bench')
MAX_FUNCTION_LINES = 60
MAX_TOOLS_TOP_LEVEL = 10


def modules(root=ROOT, packages=PACKAGES):
    """{dotted module name: path} of every .py file of `packages` under `root`."""
    found = {}
    for package in packages:
        for folder, _, files in os.walk(os.path.join(root, package)):
            for name in files:
                if name.endswith('.py'):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, root)[:-3].replace(os.sep, '.')
                    found[dotted[: -len('.__init__')] if dotted.endswith('.__init__') else dotted] = path
    return found


def _resolve(module, node, known):
    """Project modules an Import / ImportFrom node of `module` names (relative imports too)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ''
        if node.level:
            parts = module.split('.')
            is_package = module in known and known[module].endswith('__init__.py')
            anchor = parts[: len(parts) - node.level + (1 if is_package else 0)]
            base = '.'.join(anchor + ([base] if base else []))
        # `from pkg import mod` imports pkg.mod; `from pkg import name` imports pkg
        names = [
            '%s.%s' % (base, alias.name) if '%s.%s' % (base, alias.name) in known else base for alias in node.names
        ]
    out = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition('.')[0]
        if name and name != module:
            out.add(name)
    return out


def import_graph(found):
    """{module: set of project modules it imports anywhere in its body}."""
    graph = {}
    for module, path in found.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        graph[module] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[module] |= _resolve(module, node, found)
    return graph


def find_cycle(graph):
    """One import cycle as a list of modules, or None (iterative depth-first search)."""
    state = {}
    for start in sorted(graph):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path, state[start] = [start], 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(child) == 1:
                return path[path.index(child) :] + [child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph.get(child, ())))))
    return None


def long_functions(found, limit=MAX_FUNCTION_LINES):
    out = []
    for path in found.values():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    out.append('%s:%d %s (%d lines)' % (os.path.relpath(path, ROOT), node.lineno, node.name, length))
    return out


def test_the_cycle_finder_finds_cycles_through_function_level_imports(tmp_path):
    (tmp_path / 'pkg').mkdir()
    (tmp_path / 'pkg' / '__init__.py').write_text('')
    (tmp_path / 'pkg' / 'a.py').write_text('from pkg import b\n')
    (tmp_path / 'pkg' / 'b.py').write_text('def f():\n    from . import c\n')
    (tmp_path / 'pkg' / 'c.py').write_text('def g():\n    import pkg.a\n')
    cycle = find_cycle(import_graph(modules(str(tmp_path), ('pkg',))))
    assert cycle is not None and set(cycle) == {'pkg.a', 'pkg.b', 'pkg.c'}
    (tmp_path / 'pkg' / 'c.py').write_text('def g():\n    import os\n')
    assert find_cycle(import_graph(modules(str(tmp_path), ('pkg',)))) is None


def test_no_import_cycle():
    graph = import_graph(modules())
    assert set(PACKAGES) <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)


def test_no_function_over_60_lines():
    assert long_functions(modules()) == []


def test_tools_top_level_holds_command_lines_and_packages():
    top = sorted(n for n in os.listdir(os.path.join(ROOT, 'tools')) if n.endswith('.py'))
    assert len(top) <= MAX_TOOLS_TOP_LEVEL, top
    for package in ('core', 'training', 'evaluation', 'porting'):
        init = os.path.join(ROOT, 'tools', package, '__init__.py')
        with open(init) as f:
            assert ast.get_docstring(ast.parse(f.read())), '%s has no docstring saying what it owns' % init


@pytest.mark.parametrize('package', ['bench', 'tools'])
def test_no_sys_path_hacks(package):
    for path in modules(packages=(package,)).values():
        with open(path) as f:
            assert 'sys.path.insert' not in f.read(), path


def test_data_prep_does_not_import_tools_or_netgen():
    graph = import_graph(modules())
    for module, imports in graph.items():
        if module.startswith('data_prep'):
            assert not {i for i in imports if i.split('.')[0] in ('tools', 'netgen', 'bench')}, module


def test_ruff_finds_nothing_to_lint_or_format():
    """pyproject.toml's ruff configuration, applied to the whole tree."""
    ruff = os.path.join(ROOT, '.venv', 'bin', 'ruff')
    for command in ([ruff, 'check', '--no-cache', '.'], [ruff, 'format', '--check', '--no-cache', '.']):
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
