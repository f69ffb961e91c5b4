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
import json
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from shared import CHAPTER_MODULES
from shared.data import PROJECT_ROOT


PROJECT_PACKAGES = {"shared"} | {name.split(".")[0] for name in CHAPTER_MODULES}
INFRASTRUCTURE_MODULES = ("shared.checks", "shared.data", "shared.utils", "shared.plotting",
                          "shared.architecture", "shared.safe_files")

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
    local_imports: dict[str, tuple[str, str]] = field(default_factory=dict)  # as project_imports


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


def source_notebook(module_name: str) -> Path | None:
    """The notebook a generated module was exported from, read from its header's first line
    (`# Generated from ch05_pretraining/beyond_1_checkpoints.ipynb`); None for a
    hand-written module."""
    first = module_file(module_name).read_text(encoding="utf-8").partition("\n")[0]
    match = re.match(r"# Generated from (\S+\.ipynb)$", first)
    return PROJECT_ROOT / match.group(1) if match else None


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


def source_with_comments(lines: list[str], node: ast.stmt, skip=()) -> str:
    """The statement's source with its decorators and the comment lines right above it, less
    the statements in `skip` (each with a blank line after it)."""
    start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]) - 1
    while start > 0 and lines[start - 1].startswith("#"):
        start -= 1
    dropped = set()
    for statement in skip:
        dropped |= set(range(statement.lineno - 1, statement.end_lineno))
        if statement.end_lineno < len(lines) and not lines[statement.end_lineno].strip():
            dropped.add(statement.end_lineno)
    return "\n".join(line for i, line in enumerate(lines[start:node.end_lineno], start)
                     if i not in dropped)


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
            if isinstance(node, ast.Assign) and names_bound(node) == {"__all__"}:
                continue
            # A project import inside a definition (one that would make an import cycle at the
            # top) names a definition the one file holds anyway: it is dropped from the copy.
            nested = [n for n in ast.walk(node) if isinstance(n, ast.ImportFrom)
                      and is_project_module(n.module)]
            source = RELOCATED.get((module_name, next(iter(names_bound(node)), "")))
            info.definitions.append(Definition(
                module_name, order, names_bound(node), names_read(node) - names_bound(node),
                source or source_with_comments(lines, node, skip=nested),
                {alias.asname or alias.name: (n.module, alias.name)
                 for n in nested for alias in n.names}))
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
    # A chapter brings what its notebook uses from earlier chapters; one module named brings
    # the names it imports from the course's other chapter modules (GPTModel for gpt2_weights).
    if "." in str(chapter):
        earlier = [resolve(module, name) for module, name in
                   modules[target].project_imports.values()]
        brought = [(module, name) for module, name in earlier
                   if module in CHAPTER_MODULES and module != target]
    else:
        earlier = [origins.get(name, ("", "")) if module == "shared" else (module, name)
                   for module, name in lesson_imports(target)]
        brought = [(module, name) for module, name in earlier
                   if module in CHAPTER_MODULES and module.split(".")[0] < chapter_folder]
    pending = [(target, name) for d in modules[target].definitions for name in d.names
               if not name.startswith("_")] + brought
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
            elif used in definition.local_imports:
                pending.append(resolve(*definition.local_imports[used]))
            elif used in info.project_imports:
                pending.append(resolve(*info.project_imports[used]))
            elif used in info.imports:
                needed_imports.setdefault(module, set()).add(used)

    chosen = sorted(
        {id(d): d for info in modules.values() for d in info.definitions
         if any((d.module, n) in wanted for n in d.names)}.values(),
        key=lambda d: (list(modules).index(d.module), d.order))
    name_aliases(chosen, modules, resolve, rename_book_redefinitions(chosen))
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
    # A function may import a package only when called (progress_bar imports tqdm): those count
    # too; one guarded by `except ImportError` is optional, named with the functions using it.
    within = [(module, guarded, name) for d in chosen for name in sorted(d.names)[:1]
              for module, guarded in imports_within(d.source)]
    packages = pip_packages([line.split()[1] for line in third_party]
                            + [module for module, guarded, _ in within if not guarded])
    optional: dict[str, list[str]] = {}
    for module, guarded, name in within:
        for package in pip_packages([module]) if guarded else []:
            if package not in packages:
                optional.setdefault(package, []).append(name)
    offline = mirror_source() if "tiktoken" in packages else []
    if offline:
        third_party.update(dict.fromkeys(MIRROR_IMPORTS))
    given = target if "." in str(chapter) else chapter_folder
    what = ("Everything this module exports and the names it imports from the course's other "
            "chapter modules (in `__all__`), with what those use" if "." in str(chapter) else
            "Everything this chapter's lesson module exports and what its notebook uses from "
            "earlier chapters (in `__all__`), with what those use")
    header = [
        f'"""{target}, standalone.',
        "",
        f"Generated by `python -m shared.tooling.notebooks standalone {given}`.",
        "",
        *textwrap.wrap(f"{what} from earlier chapters and from the course's `shared` package, "
                       "in one file that imports nothing from the course. From:", 92),
        "",
        *[f"- {source_label(module)}" for module in sources],
        "",
        *(["Its imports beyond the standard library need:", "",
           f"    pip install {' '.join(packages)}"] if packages else
          ["It imports the standard library only."]),
        *[line for package, users in optional.items() for line in (
            "", *textwrap.wrap(f"Optional: `pip install {package}`, for "
                               f"{', '.join(dict.fromkeys(users))} only.", 92))],
        *(["", "Offline, it copies GPT-2's tokenizer files from $LLM_COURSE_DATA_MIRROR into",
           "tiktoken's cache where missing (less than the course does: see the code's comment)."]
          if offline else []),
        '"""',
        "",
    ]
    body = [*imports, ""] if imports else []
    for section in (0, 1):  # the standard library, then third-party packages
        lines = sorted((line for line in merge_from_imports(third_party)
                        if import_sort_key(line)[0] == section), key=import_sort_key)
        body += [*lines, ""] if lines else []
    body.append("")
    body += offline
    previous = last = None
    for definition in chosen:
        if definition.module != previous:  # two blank lines above a module's code, as below
            while body and not body[-1]:
                body.pop()
            body += ["", "", f"# ---- {source_label(definition.module)} " + "-" * 40, "", ""]
            previous = definition.module
        elif not (last and is_simple_assignment(definition) and is_simple_assignment(last)):
            body += ["", ""]
        body.append(definition.source.strip("\n"))
        last = definition
    body += ["", ""]
    # What `import *` gives: the chapter's (or module's) own exports, then what its notebook
    # uses from earlier chapters (GPTModel for chapter 5...), or what the module imports from
    # other chapter modules; not the helpers those bring (check, fetch, ...).
    public = public_names_of(modules[target]) + [
        name for d in chosen for name in sorted(d.names) if (d.module, name) in brought]
    public = list(dict.fromkeys(public))
    body.append("__all__ = [")
    body.extend(f"    {name!r}," for name in public)
    body.append("]")
    text = "\n".join(header + body) + "\n"
    ast.parse(text)  # never hand out a file that does not parse
    return text


MIRROR_IMPORTS = ("import hashlib", "import os", "import shutil", "import warnings",
                  "from pathlib import Path")


MIRROR_CODE = '''# ---- offline: the course's data mirror ----------------------------------------


# With $MIRROR_ENV set (a folder laid out as the course's data/), tiktoken reads
# GPT-2's files from it: tiktoken looks in $TIKTOKEN_CACHE_DIR (default here: data/tiktoken
# beside this file) for a file named by the sha1 of its URL, so one missing there is copied
# from the mirror. Less than the course's prepare_tiktoken_cache does: a damaged cached file
# is not replaced (tiktoken's hash check then downloads it), and a cache that cannot be
# written gets a warning, not another folder. Without the mirror variable, nothing here runs.
def _tiktoken_files_from_mirror() -> None:
    mirror = os.environ.get("MIRROR_ENV")
    if not mirror:
        return
    beside = Path(__file__).resolve().parent / "data" / "tiktoken"
    cache = os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(beside))
    if not cache:  # TIKTOKEN_CACHE_DIR empty: tiktoken's "no cache"
        return
    for path, url in {
FILES
    }.items():
        source = Path(mirror).expanduser() / path
        cached = Path(cache) / hashlib.sha1(url.encode()).hexdigest()
        if source.is_file() and not cached.is_file():
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                partial = cached.with_name(cached.name + ".partial")
                shutil.copyfile(source, partial)
                os.replace(partial, cached)  # tiktoken never finds half a file
            except OSError as error:  # tiktoken then downloads it, as without a mirror
                warnings.warn(f"could not copy {source} to {cached}: {error}", stacklevel=2)


_tiktoken_files_from_mirror()

'''


def mirror_source() -> list[str]:
    """A copy's small equivalent of shared.data.prepare_tiktoken_cache, run on the copy's import
    (a copy has no test run or notebook runner to call it): with the data mirror variable set,
    GPT-2's BPE files go from the mirror to tiktoken's cache."""
    from shared.data import DATASETS, MIRROR_ENV

    files = "\n".join(f"        {json.dumps(f.path)}:\n            {json.dumps(f.urls[0])},"
                      for f in (DATASETS["gpt2-encoder"], DATASETS["gpt2-vocab"]))
    return MIRROR_CODE.replace("MIRROR_ENV", MIRROR_ENV).replace("FILES", files).split("\n")


def pip_packages(module_names) -> list[str]:
    """The distributions to install for the third-party modules among `module_names`, by the
    installed packages' own metadata (the module `yaml` comes from PyYAML)."""
    from importlib.metadata import packages_distributions

    distributions = packages_distributions()
    modules = {name.split(".")[0] for name in module_names}
    modules -= {*sys.stdlib_module_names, "__future__"}
    return sorted({distributions.get(m, [m])[0] for m in modules}, key=str.lower)


def imports_within(source: str) -> list[tuple[str, bool]]:
    """(module, guarded) for each import in a definition's body, at any depth; guarded: inside
    a `try` whose handlers catch ImportError (the code runs, or says what to install, without
    it)."""
    tree = ast.parse(source)
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                handler.type is not None and {"ImportError", "ModuleNotFoundError"}
                & names_read(handler.type) for handler in node.handlers):
            guarded |= {id(n) for statement in node.body for n in ast.walk(statement)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in guarded) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, id(node) in guarded))
    return [(module, is_guarded) for module, is_guarded in found
            if not is_project_module(module)]


def lesson_imports(module_name: str) -> list[tuple[str, str]]:
    """(module, name) for each name the module's notebook imports from the course in its lesson:
    the cells it exports to this module and the cells it does not export at all."""
    notebook = source_notebook(module_name)
    if notebook is None or not notebook.exists():
        return []
    found = []
    for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
        source = "".join(cell["source"]) if cell["cell_type"] == "code" else ""
        marker = source.lstrip().partition("\n")[0].split()
        exported_to = (marker[2:] or [notebook.stem])[0] if marker[:2] == ["#|", "export"] else None
        if exported_to is not None and exported_to != module_name.rpartition(".")[2]:
            continue  # exported to another module of the chapter
        try:  # a line of notebook syntax (%timeit, !pip) is not Python: read it as `pass`
            tree = ast.parse(re.sub(r"^(\s*)[%!].*$", r"\1pass", source, flags=re.M))
        except SyntaxError:
            continue
        found += [(node.module, alias.name) for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and is_project_module(node.module)
                  for alias in node.names]
    return list(dict.fromkeys(found))


def rename_book_redefinitions(chosen: list[Definition]) -> dict[tuple[str, str], str]:
    """A book name defined again later (shared.BOOK_NAMES_REDEFINED, such as chapter 6's
    calc_loss_batch, or BOOK_NAMES_EXTENDED, chapter 4's GPTModel, which a companion
    subclasses): in one file the earlier module's copy, where it is defined and used, becomes
    private, `_calc_loss_batch`, and the later one keeps the name. Returns the renames."""
    from shared import BOOK_NAMES_EXTENDED, BOOK_NAMES_REDEFINED

    renamed = {}
    for name in BOOK_NAMES_REDEFINED + BOOK_NAMES_EXTENDED:
        modules = list(dict.fromkeys(d.module for d in chosen if name in d.names))
        for module in modules[:-1]:
            private = renamed[module, name] = f"_{name}"
            for d in chosen:
                if d.module == module and name in d.names | d.uses:
                    d.source = fit_lines(re.sub(rf"(?<![\w.]){name}\b", private, d.source))
                    d.names = {private if n == name else n for n in d.names}
                    d.uses = {private if n == name else n for n in d.uses}
    return renamed


def name_aliases(chosen: list[Definition], modules: dict[str, ModuleInfo], resolve,
                 renamed: dict[tuple[str, str], str]) -> None:
    """A name imported under another (`from ch04_gpt_model.gpt_model import GPTModel as
    GPTModel_book`) is, in one file, the name its definition has there: `_GPTModel`."""
    for d in chosen:
        imported = {**modules[d.module].project_imports, **d.local_imports}
        for used in sorted(d.uses):
            if used not in imported or any(used in other.names for other in
                                           modules[d.module].definitions):
                continue
            origin = resolve(*imported[used])
            there = renamed.get(origin, origin[1])
            if there != used:
                d.source = fit_lines(re.sub(rf"(?<![\w.]){used}\b", there, d.source))
                d.uses = (d.uses - {used}) | {there}


LINE_LENGTH = 100  # the project's (pyproject.toml's ruff line-length)


def fit_lines(source: str) -> str:
    """Break each line a rename made too long after its last comma that fits, continuing
    below the bracket open at that point (or at the line's own indent)."""
    lines = []
    for line in source.splitlines():
        while len(line) > LINE_LENGTH and ", " in line[:LINE_LENGTH]:
            cut = line.rindex(", ", 0, LINE_LENGTH) + 1
            opened = [i for i, c in enumerate(line[:cut]) if c in "([{"]
            closed = sum(c in ")]}" for c in line[:cut])
            indent = (opened[len(opened) - closed - 1] + 1 if len(opened) > closed
                      else len(line) - len(line.lstrip()))
            lines.append(line[:cut])
            line = " " * indent + line[cut:].lstrip()
        lines.append(line)
    text = "\n".join(lines)
    try:
        ast.parse(text)
    except SyntaxError as error:
        raise StandaloneError(f"a renamed line does not fit in {LINE_LENGTH} characters and "
                              f"cannot be broken after a comma: {error}") from None
    return text


def public_names_of(info: ModuleInfo) -> list[str]:
    names = []
    for definition in sorted(info.definitions, key=lambda d: d.order):
        names.extend(sorted(n for n in definition.names if not n.startswith("_")))
    return names


def source_label(module_name: str) -> str:
    """The file a reader should look at: the notebook for chapters, the module otherwise."""
    path = module_file(module_name)
    notebook = source_notebook(module_name)
    shown = notebook if notebook is not None and notebook.exists() else path
    try:
        return shown.resolve().relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return shown.name


def import_sort_key(line: str) -> tuple[int, int, str, str]:
    """Standard library, then third-party; `import x` before `from x import y`; the same
    module's lines by what they import (`from m import A` before `from m import B as C`), as
    isort."""
    module = line.split()[1]
    stdlib = module.split(".")[0] in sys.stdlib_module_names
    return (0 if stdlib else 1, line.startswith("from"), module.lower(), line)


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
