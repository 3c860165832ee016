"""MkDocs hooks: what the docs say about methods and results is made from the code and the committed results at build
time, never pasted by hand.

* ``on_files`` adds one page per method (``methods/<name>.md``): its paper, what it optimises and its parameters
  (from its config's docstring, TRL style), the defaults hf_unlearn declares, its recipe, and its rows in the
  committed benchmark results (quality, robustness, cost per step) with the machine that measured them;
* ``on_page_markdown`` replaces ``<!-- generated: NAME -->`` in a page with the table ``NAME`` rendered by the
  benchmark script that produces it, from ``benchmarks/results/``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _bench(name: str):
    """A benchmark script as a module (they import each other by plain name, from their folder)."""
    import importlib

    for path in (str(ROOT), str(ROOT / "benchmarks")):
        if path not in sys.path:
            sys.path.insert(0, path)
    return importlib.import_module(name)


# Methods without a trainer of their own: (title, the class or function that documents them, its recipe).
OTHER_METHODS = {
    "rmu": ("RMU", "hf_unlearn.callbacks.RMUCallback", "rmu_wmdp"),
    "adaptive_rmu": ("Adaptive RMU", "hf_unlearn.callbacks.AdaptiveRMUCallback", None),
    "attention_shifting": ("Attention Shifting", "hf_unlearn.callbacks.AttentionShiftingCallback", None),
    "task_vector": ("Task-vector negation", "hf_unlearn.task_arithmetic.negate_checkpoint", "task_vector_tofu"),
    "sta": ("Selective Task Arithmetic (STA)", "hf_unlearn.task_arithmetic.sta_masks", "sta_tofu"),
}


def method_names() -> list[str]:
    from hf_unlearn.registry import METHODS

    return [*METHODS, *OTHER_METHODS]


# ---------------------------------------------------------------------------------------------------- docstrings


def _object(dotted: str):
    import importlib

    module, name = dotted.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def _split_docstring(doc: str) -> tuple[str, str]:
    """``(preface, parameters)`` of a docstring: the text before its ``Parameters:`` (TRL style) or ``Args:``
    (Google style) section, and the section itself."""
    import inspect

    doc = inspect.cleandoc(doc or "")
    m = re.search(r"^(Parameters|Args):\s*$", doc, flags=re.M)
    if not m:
        return doc.strip(), ""
    return doc[: m.start()].strip(), doc[m.end() :]


def _markdown_text(text: str) -> str:
    """Docstring markup as Markdown: ``code`` -> `code`, TRL's [`~a.b.C`] links and Sphinx roles -> `C`."""
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    text = re.sub(r"\[`~?([\w.]+)`\]", lambda m: f"`{m.group(1).split('.')[-1]}`", text)
    return re.sub(r":(?:class|func|meth|data|mod|attr):`~?([\w.]+)`", lambda m: f"`{m.group(1).split('.')[-1]}`", text)


_ITEM = re.compile(r"^([A-Za-z_][\w, ]*?)(?: \((.*)\))?:(?:\s+(.*))?$")


def _parameters(section: str) -> str:
    """A ``Parameters:`` (TRL: ``name (`type`, *optional*, defaults to ...):`` then the description, ``> group``
    headings, ``> [!NOTE]`` notes) or ``Args:`` (Google: ``name: description``) section as Markdown."""
    out: list[str] = []
    item: list[str] | None = None
    note: list[str] | None = None

    def flush() -> None:
        nonlocal item, note
        if item is not None:
            head, desc = item[0], " ".join(x.strip() for x in item[1:] if x.strip())
            m = _ITEM.match(head)
            names_md = ", ".join(f"`{n.strip()}`" for n in m.group(1).split(","))
            kind = f" ({m.group(2)})" if m.group(2) else ""
            text = " ".join(x for x in (m.group(3) or "", desc) if x)
            out.append(f"- {names_md}{kind}: {_markdown_text(text)}")
        if note is not None:
            out.extend(["", '!!! note ""', "    " + _markdown_text(" ".join(note)), ""])
        item = note = None

    lines = section.split("\n")
    first = next((x for x in lines if x.strip()), "")
    indent = len(first) - len(first.lstrip())  # the section's own indentation (a note after it may have less)
    for line in lines:
        if not line.strip():
            continue
        line = line[indent:] if line[:indent].isspace() else line.lstrip()
        if line.startswith("> [!NOTE]"):
            flush()
            note = []
        elif line.startswith("> ") and note is not None:
            note.append(line[2:].strip())
        elif line.startswith("> "):
            flush()
            out.append(f"\n**{line[2:].strip()}**\n")
        elif not line[0].isspace() and _ITEM.match(line):
            flush()
            item = [line]
        elif item is not None:
            item.append(line)
        else:
            flush()
            out.append(_markdown_text(line.strip()))
    flush()
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------- results


def _machine(data: dict) -> str:
    m = data.get("machine") or {}
    gpu = m.get("gpu") or "no GPU"
    return f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {gpu}; torch {m.get('torch', '?')}"


def _quality_rows(method: str | None = None) -> list[dict]:
    _method_of = _bench("model_cards")._method_of

    rows = []
    for path in sorted((RESULTS / "quality").glob("*.json")):
        row = json.loads(path.read_text())
        row.setdefault("method", path.stem)
        if method is None or (path.stem not in ("retain", "target") and _method_of(path.stem) == method):
            rows.append(row)
    return rows


def table_quality(method: str | None = None) -> str:
    quality = _bench("quality")

    machine = _machine(json.loads((RESULTS / "quality.json").read_text()))
    rows = _quality_rows(method)
    if method is not None:
        refs = [json.loads((RESULTS / "quality" / f"{r}.json").read_text()) for r in ("target", "retain")]
        rows = [*[{**r, "method": r.get("method", n)} for r, n in zip(refs, ("target", "retain"), strict=True)], *rows]
    if not rows:
        return "_No committed quality row._"
    return (
        quality._table(rows)
        + f"\n\nMeasured by `python benchmarks/quality.py` on the built-in benchmark (40 authors) with the bundled "
        f"SmolLM2-135M-Instruct; {machine}."
    )


def table_robustness(method: str | None = None) -> str:
    robustness = _bench("robustness")

    rows = []
    paths = sorted((RESULTS / "robustness").glob("*.json"), key=lambda p: (p.stem not in ("retain", "target"), p.stem))
    for path in paths:
        if "." in path.stem:  # retain.full.json: the reference's full result, not a row
            continue
        row = json.loads(path.read_text())
        row.setdefault("method", path.stem)
        if method is None or path.stem == method or path.stem.startswith(f"{method}_") or path.stem == "retain":
            rows.append(row)
    if method is not None and len(rows) <= 1:
        return "_No committed robustness row._"
    return robustness._table(rows) + "\n\nMeasured by `python benchmarks/robustness.py`."


def table_cost(method: str | None = None) -> str:
    lines = [
        "| method | setting | seconds per step | vs a supervised step | peak memory (MiB) |",
        "|---|---|---|---|---|",
    ]
    machine = ""
    for name, setting in (("cost.json", "full fine-tuning"), ("cost_lora.json", "LoRA")):
        path = RESULTS / name
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        machine = _machine(data)
        for r in data["rows"]:
            if method is None or r["method"] == method:
                ratio = r.get("time_vs_sft")
                lines.append(
                    f"| {r['method']} | {setting} | {r['seconds_per_step']:.2f} | "
                    f"{'-' if ratio is None else f'{ratio:.2f}x'} | {r['peak_mib']:.0f} |"
                )
    if len(lines) == 2:
        return "_No committed cost row._"
    return "\n".join(lines) + f"\n\nMeasured by `python benchmarks/cost.py` (`--lora`); {machine}."


def table_reasoning() -> str:
    reasoning = _bench("reasoning")

    data = json.loads((RESULTS / "reasoning.json").read_text())
    return (
        reasoning.table(data["rows"] if isinstance(data, dict) else data)
        + "\n\nMeasured by `python benchmarks/reasoning.py`."
    )


def table_continual() -> str:
    continual = _bench("continual")

    rows = json.loads((RESULTS / "continual.json").read_text())
    return continual.table(rows) + "\n\nMeasured by `python benchmarks/continual.py`."


def table_detectors() -> str:
    continual = _bench("continual")

    data = json.loads((RESULTS / "continual_detectors.json").read_text())
    return (
        continual.detectors_table(data)
        + f"\n\nMeasured by `python benchmarks/continual.py --detectors`; {_machine(data)}."
    )


def table_documents() -> str:
    documents = _bench("documents")

    data = json.loads((RESULTS / "documents.json").read_text())
    return documents.table(data["rows"]) + f"\n\nMeasured by `python benchmarks/documents.py`; {_machine(data)}."


def table_shared_parameters() -> str:
    from hf_unlearn.trainers import UnlearnConfigMixin

    return _parameters(_split_docstring(UnlearnConfigMixin.__doc__)[1])


TABLES = {
    "shared_parameters": table_shared_parameters,
    "quality": table_quality,
    "robustness": table_robustness,
    "cost": table_cost,
    "reasoning": table_reasoning,
    "continual": table_continual,
    "detectors": table_detectors,
    "documents": table_documents,
}


# ---------------------------------------------------------------------------------------------------- pages


def render_method(name: str) -> str:
    import inspect

    from hf_unlearn.papers import PAPERS
    from hf_unlearn.registry import METHODS

    if name in METHODS:
        spec = METHODS[name]
        trainer, config = spec.trainer_class, spec.config_class
        title, paper = trainer._name, trainer._paper
        preface, params = _split_docstring(config.__doc__)
        preface = re.sub(r"^Configuration (?:for|of) \[`\w+`\]\.?\s*", "", preface)
        summary = inspect.cleandoc(trainer.__doc__ or "").split("\n\n")[0]
        recipe = spec.recipe
        api = f"`hf_unlearn.{trainer.__name__}` and `hf_unlearn.{config.__name__}`"
        defaults = _declared_defaults(config)
    else:
        title, dotted, recipe_name = OTHER_METHODS[name]
        obj = _object(dotted)
        paper = PAPERS[name]
        preface, params = _split_docstring(obj.__doc__)
        summary, preface = preface.split("\n\n")[0], "\n\n".join(preface.split("\n\n")[1:])
        recipe = recipe_name
        api = f"`{dotted}`"
        defaults = ""
    parts = [
        f"# {title}",
        "",
        _markdown_text(summary),
        "",
        f"**Paper**: [{paper['title']}](https://arxiv.org/abs/{paper['id']}) (arXiv:{paper['id']}). **API**: {api}.",
        "",
    ]
    if preface:
        parts += ["## What it optimises", "", _markdown_text(preface), ""]
    if params.strip():
        parts += ["## Parameters", "", _parameters(params), ""]
    if defaults:
        parts += ["## Defaults hf_unlearn declares", "", defaults, ""]
    parts += ["## On the built-in benchmark", "", table_quality(name), ""]
    robust = table_robustness(name)
    if not robust.startswith("_"):
        parts += ["### Robustness", "", robust, ""]
    cost = table_cost(name)
    if not cost.startswith("_"):
        parts += ["### Cost per optimizer step", "", cost, ""]
    parts += [
        "What these numbers mean at this scale, method by method, is in [the quality benchmark's findings]"
        "(../benchmarks/quality.md).",
        "",
    ]
    if recipe is not None:
        from hf_unlearn.recipes import resolve_config

        command = "task-vector" if name in ("task_vector", "sta") else "train"
        parts += [
            "## Recipe",
            "",
            f"`hf-unlearn {command} --config {recipe}` (shipped with the package; `hf-unlearn recipes {recipe} "
            "--copy_to my.yaml` writes a copy to edit):",
            "",
            "```yaml",
            resolve_config(recipe).read_text().rstrip(),
            "```",
            "",
        ]
    parts += ["## Citation", "", "```bibtex", paper["citation"], "```", ""]
    return "\n".join(parts)


def _declared_defaults(config) -> str:
    from hf_unlearn.objective import declared_fields

    own = [f for f in dataclasses.fields(config) if f.name in declared_fields(config.__new__(config))]
    rows = ["| parameter | default | what it does |", "|---|---|---|"]
    for f in own:
        default = f.default if f.default is not dataclasses.MISSING else "(computed)"
        help_text = (f.metadata or {}).get("help", "").replace("|", "\\|")
        rows.append(f"| `{f.name}` | `{default!r}` | {help_text} |")
    return "\n".join(rows)


def on_files(files, config):
    from mkdocs.structure.files import File

    for name in method_names():
        files.append(File.generated(config, f"methods/{name}.md", content=render_method(name)))
    for plot in sorted(RESULTS.glob("*.png")):  # the benchmarks' committed plots, served under results/
        files.append(File.generated(config, f"results/{plot.name}", abs_src_path=str(plot)))
    return files


def on_page_markdown(markdown, page, config, files):
    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in TABLES:
            raise ValueError(f"{page.file.src_uri}: no generated table {name!r}; known: {', '.join(TABLES)}.")
        return TABLES[name]()

    markdown = re.sub(r"<!-- generated: (\w+) -->", replace, markdown)
    up = "../" * page.file.src_uri.count("/")
    return re.sub(r"\]\((?:\.\./)*benchmarks/results/([\w.-]+\.png)\)", rf"]({up}results/\1)", markdown)
