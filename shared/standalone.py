"""One self-contained module for a chapter: its exports and everything they use, nothing else.

A chapter module imports earlier chapters through `shared` (`from shared import GPTModel`),
so copying one file into another project is not enough. `standalone_source(chapter)` follows
those imports down to the definitions they name, and the definitions those use, and writes
them into one module that imports only the standard library and third-party packages.

It works on top-level definitions: a function, a class or an assignment is copied whole, in
the order of its source module, modules in reading order (the infrastructure in `shared`
first, then the chapters). The imports each copied definition needs come along; everything
unused is left out.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from shared import CHAPTER_MODULES
from shared.data import PROJECT_ROOT


PROJECT_PACKAGES = {"shared"} | {name.split(".")[0] for name in CHAPTER_MODULES}
INFRASTRUCTURE_MODULES = ("shared.checks", "shared.data", "shared.utils", "shared.plotting")

# Definitions whose meaning depends on where the file lives: in a standalone module, the
# folder holding the file plays the role of the project root (its data/ sits beside it).
RELOCATED = {
    ("shared.data", "PROJECT_ROOT"):
        "PROJECT_ROOT = Path(__file__).resolve().parent  # data/ is kept beside this file",
}


class StandaloneError(ValueError):
    """The chapter's code cannot be gathered into one module (the message says why)."""


@dataclass
class Definition:
    module: str
    order: int
    names: set[str]      # what it binds
    uses: set[str]       # the names it reads
    source: str


@dataclass
class ModuleInfo:
    name: str
    definitions: list[Definition] = field(default_factory=list)
    imports: dict[str, list[str]] = field(default_factory=dict)  # bound name -> import lines
    project_imports: dict[str, tuple[str, str]] = field(default_factory=dict)  # -> (module, name)
    future: list[str] = field(default_factory=list)


def chapter_module_name(chapter: str | Path) -> str:
    """'ch04_gpt_model' (or a path to it) -> 'ch04_gpt_model.gpt_model', the chapter's lesson
    module; a module name ('ch05_pretraining.gpt2_weights') names one of its other modules."""
    name = Path(chapter).name.rstrip("/")
    if name in CHAPTER_MODULES:
        return name
    for module_name in CHAPTER_MODULES:
        if module_name.split(".")[0] == name:
            return module_name
    known = ", ".join(dict.fromkeys(m.split(".")[0] for m in CHAPTER_MODULES))
    raise StandaloneError(f"no chapter folder {name!r}; the chapters are: {known}"
                          + (f" (and their modules: {', '.join(CHAPTER_MODULES)})"
                             if "." in name else ""))


def module_file(module_name: str) -> Path:
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None:
        raise StandaloneError(f"cannot find module {module_name}")
    return Path(spec.origin)


def names_read(node: ast.AST) -> set[str]:
    """Every plain name `node` reads, including inside annotations, defaults and bodies."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def names_bound(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    bound = set()
    for target in targets:
        bound |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return bound


def source_with_comments(lines: list[str], node: ast.stmt) -> str:
    """The statement's source with its decorators and the comment lines right above it."""
    start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]) - 1
    while start > 0 and lines[start - 1].startswith("#"):
        start -= 1
    return "\n".join(lines[start:node.end_lineno])


def is_project_module(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in PROJECT_PACKAGES


def parse_module(module_name: str) -> ModuleInfo:
    path = module_file(module_name)
    text = path.read_text(encoding="utf-8")
    tree, lines = ast.parse(text, filename=str(path)), text.splitlines()
    info = ModuleInfo(module_name)
    for order, node in enumerate(tree.body):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the module docstring
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            info.future.append(ast.unparse(node))
        elif isinstance(node, ast.ImportFrom) and is_project_module(node.module):
            for alias in node.names:
                info.project_imports[alias.asname or alias.name] = (node.module, alias.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if isinstance(node, ast.Import) and is_project_module(alias.name):
                    raise StandaloneError(f"{module_name}: `import {alias.name}` is not supported")
                single = (ast.Import(names=[alias]) if isinstance(node, ast.Import) else
                          ast.ImportFrom(module=node.module, names=[alias], level=node.level))
                bound = alias.asname or alias.name.split(".")[0]
                info.imports.setdefault(bound, []).append(ast.unparse(single))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                               ast.Assign, ast.AnnAssign)):
            nested = [n for n in ast.walk(node) if isinstance(n, ast.ImportFrom)
                      and is_project_module(n.module)]
            if nested:
                raise StandaloneError(f"{module_name}: a local import from {nested[0].module} "
                                      "inside a definition; import it at the top of the module")
            if isinstance(node, ast.Assign) and names_bound(node) == {"__all__"}:
                continue
            source = RELOCATED.get((module_name, next(iter(names_bound(node)), "")))
            info.definitions.append(Definition(
                module_name, order, names_bound(node), names_read(node) - names_bound(node),
                source or source_with_comments(lines, node)))
        elif isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'":
            continue
        else:
            line = ast.unparse(node).splitlines()[0]
            raise StandaloneError(f"{module_name}: a top-level statement the standalone "
                                  f"export cannot place: {line}")
    return info


def facade_origins() -> dict[str, tuple[str, str]]:
    """What `from shared import X` means: X's defining module and its name there."""
    import shared

    origins = {name: (module, name) for name, module in shared.chapter_exports().items()}
    facade = ast.parse((PROJECT_ROOT / "shared" / "__init__.py").read_text(encoding="utf-8"))
    for node in facade.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shared."):
            for alias in node.names:
                origins[alias.asname or alias.name] = (node.module, alias.name)
    return origins


def standalone_source(chapter: str | Path) -> str:
    """The text of one module holding `chapter`'s exports and all they use from this project."""
    target = chapter_module_name(chapter)
    chapter_folder = target.split(".")[0]
    last = max(i for i, m in enumerate(CHAPTER_MODULES) if m.split(".")[0] == chapter_folder)
    in_reach = (*INFRASTRUCTURE_MODULES, *CHAPTER_MODULES[:last + 1])  # its chapter, earlier ones
    modules = {name: parse_module(name) for name in in_reach
               if importlib.util.find_spec(name) is not None}
    origins = facade_origins()

    def resolve(module: str, name: str) -> tuple[str, str]:
        """Follow a project import to the module that defines `name`."""
        if module == "shared":
            if name not in origins:
                raise StandaloneError(f"`shared` has no export {name!r}")
            module, name = origins[name]
        if module not in modules:
            raise StandaloneError(f"{module} is not part of the standalone export")
        return module, name

    wanted: set[tuple[str, str]] = set()          # (module, name) definitions needed
    needed_imports: dict[str, set[str]] = {}     # module -> bound import names used
    pending = [(target, name) for d in modules[target].definitions for name in d.names
               if not name.startswith("_")]
    while pending:
        module, name = pending.pop()
        if (module, name) in wanted:
            continue
        info = modules[module]
        definition = next((d for d in info.definitions if name in d.names), None)
        if definition is None:
            raise StandaloneError(f"{module} does not define {name!r}")
        wanted |= {(module, bound) for bound in definition.names}
        for used in definition.uses:
            if any(used in d.names for d in info.definitions):
                pending.append((module, used))
            elif used in info.project_imports:
                pending.append(resolve(*info.project_imports[used]))
            elif used in info.imports:
                needed_imports.setdefault(module, set()).add(used)

    chosen = sorted(
        {id(d): d for info in modules.values() for d in info.definitions
         if any((d.module, n) in wanted for n in d.names)}.values(),
        key=lambda d: (list(modules).index(d.module), d.order))
    rename_book_redefinitions(chosen)
    defined: dict[str, str] = {}
    for definition in chosen:
        for name in definition.names:
            if name in defined and defined[name] != definition.module:
                raise StandaloneError(f"{name!r} is defined in both {defined[name]} and "
                                      f"{definition.module}; rename one of them")
            defined[name] = definition.module

    third_party: dict[str, None] = {}
    for module, bound_names in needed_imports.items():
        for bound in sorted(bound_names):
            if bound in defined:
                raise StandaloneError(f"{bound!r} is both imported in {module} and defined "
                                      f"in {defined[bound]}")
            third_party.update(dict.fromkeys(modules[module].imports[bound]))
    sources = sorted({d.module for d in chosen}, key=list(modules).index)
    imports = dict.fromkeys(line for module in sources for line in modules[module].future)
    what = "module" if "." in target else "chapter's lesson module"
    header = [
        f'"""{target}, standalone.',
        "",
        f"Generated by `python -m shared.notebooks standalone {target}`.",
        "",
        f"Everything this {what} exports, with what it uses from earlier chapters and from",
        "the course's `shared` package, in one file that imports nothing from the course. From:",
        "",
        *[f"- {source_label(module)}" for module in sources],
        '"""',
        "",
    ]
    body = [*imports, ""] if imports else []
    for section in (0, 1):  # the standard library, then third-party packages
        lines = sorted((line for line in merge_from_imports(third_party)
                        if import_sort_key(line)[0] == section), key=import_sort_key)
        body += [*lines, ""] if lines else []
    body.append("")
    previous = last = None
    for definition in chosen:
        if definition.module != previous:
            body += [f"# ---- {source_label(definition.module)} " + "-" * 40, "", ""]
            previous = definition.module
        elif not (last and is_simple_assignment(definition) and is_simple_assignment(last)):
            body += ["", ""]
        body.append(definition.source.strip("\n"))
        last = definition
    body += ["", ""]
    # The chapter's own exports first, then what it brought along (GPTModel for chapter 5...).
    public = public_names_of(modules[target]) + [
        name for d in chosen if d.module != target for name in sorted(d.names)
        if not name.startswith("_")]
    public = list(dict.fromkeys(public))
    body.append("__all__ = [")
    body.extend(f"    {name!r}," for name in public)
    body.append("]")
    text = "\n".join(header + body) + "\n"
    ast.parse(text)  # never hand out a file that does not parse
    return text


def rename_book_redefinitions(chosen: list[Definition]) -> None:
    """A book name that a later chapter defines again (shared.BOOK_NAMES_REDEFINED, such as
    chapter 6's calc_loss_batch): in one file the earlier chapter's copy, where it is defined
    and used, becomes private, `_calc_loss_batch`, and the later chapter's keeps the name."""
    from shared import BOOK_NAMES_REDEFINED

    for name in BOOK_NAMES_REDEFINED:
        modules = list(dict.fromkeys(d.module for d in chosen if name in d.names))
        for module in modules[:-1]:
            private = f"_{name}"  # one character longer: the lines still fit
            for d in chosen:
                if d.module == module and name in d.names | d.uses:
                    d.source = re.sub(rf"(?<![\w.]){name}\b", private, d.source)
                    d.names = {private if n == name else n for n in d.names}
                    d.uses = {private if n == name else n for n in d.uses}


def public_names_of(info: ModuleInfo) -> list[str]:
    names = []
    for definition in sorted(info.definitions, key=lambda d: d.order):
        names.extend(sorted(n for n in definition.names if not n.startswith("_")))
    return names


def source_label(module_name: str) -> str:
    """The file a reader should look at: the notebook for chapters, the module otherwise."""
    path = module_file(module_name)
    notebook = path.with_suffix(".ipynb")
    shown = notebook if notebook.exists() else path
    try:
        return shown.resolve().relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return shown.name


def import_sort_key(line: str) -> tuple[int, int, str]:
    """Standard library, then third-party; `import x` before `from x import y` (as isort)."""
    module = line.split()[1]
    stdlib = module.split(".")[0] in sys.stdlib_module_names
    return (0 if stdlib else 1, line.startswith("from"), module.lower())


def merge_from_imports(lines) -> list[str]:
    """`from m import a` and `from m import b` -> `from m import a, b`."""
    merged: dict[str, list[str]] = {}
    for line in lines:
        if line.startswith("from ") and " as " not in line:
            module, name = line[len("from "):].split(" import ")
            merged.setdefault(f"from {module} import ", []).append(name)
        else:
            merged[line] = []
    return [head + ", ".join(sorted(names)) if names else head for head, names in merged.items()]


def is_simple_assignment(definition: Definition) -> bool:
    """A one-line constant: printed without blank lines between its neighbours."""
    return "\n" not in definition.source.strip() and not definition.source.startswith(
        ("def ", "class ", "@"))
