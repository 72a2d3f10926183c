"""Citations a reader can follow: every "fidelity n.m" and "quirk N" in the code, the tests and the README names a
heading of docs/fidelity.md, every README link into it names an anchor it has, nothing cites the reference's
specification (a document outside the repository), and the files, functions and flags docs/fidelity.md names exist."""

from __future__ import annotations

import dataclasses
import importlib
import re
import typing
from pathlib import Path

from ginr import config as config_lib

ROOT = Path(__file__).resolve().parents[1]
FIDELITY = ROOT / "docs" / "fidelity.md"

NUMBER = r"\d+(?:\.\d+)?"
SECTION_CITATION = re.compile(rf"\bfidelity(?:\.md)?\s+({NUMBER}(?:\s*(?:-|/|,|and)\s*{NUMBER})*)", re.IGNORECASE)
QUIRK_CITATION = re.compile(r"\bquirks?\s+(\d+(?:\s*(?:-|/|,|and)\s*\d+)*)", re.IGNORECASE)
POLICY_CITATION = re.compile(r"\bfidelity policy\b", re.IGNORECASE)
OUTSIDE_CITATION = re.compile(r"\bSPEC\b")
README_LINK = re.compile(r"\]\(docs/fidelity\.md#([^)]*)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
SECTIONS = {
    "data": (config_lib.DataConfig,),
    "optim": (config_lib.OptimConfig,),
    "train": (config_lib.TrainConfig,),
    "render": (config_lib.RenderConfig,),
    "model": (config_lib.MetaINRConfig, config_lib.HypernetINRConfig),
}
"""The config dataclass(es) behind each flag prefix."""


def cited_files() -> list[Path]:
    """The files whose citations must resolve: the package, the recipes, the tests (this one aside) and the README."""
    found = [
        path
        for folder in ("ginr", "recipes", "tests")
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in (".py", ".sh", ".md") and path.resolve() != Path(__file__).resolve()
    ]
    return [*found, ROOT / "README.md"]


def headings() -> list[str]:
    return re.findall(r"^#{2,4} (.+?)\s*$", FIDELITY.read_text(), flags=re.MULTILINE)


def sections() -> set[str]:
    """Section numbers with a heading ("2.4" from "### 2.4 ...", "8" from "## 8. Quirks")."""
    return {match.group(1) for title in headings() if (match := re.match(rf"({NUMBER})\.? ", title))}


def quirks() -> list[int]:
    return [int(match.group(1)) for title in headings() if (match := re.match(r"Quirk (\d+): ", title))]


def anchor(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation other than hyphens dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def expand(refs: str) -> list[str]:
    """Every number a list such as ``2.1, 3.1``, ``1.4/1.5``, ``2.1-2.3`` or ``20-21`` names."""
    names = []
    for part in re.split(r"\s*(?:,|/|and)\s*", refs):
        ends = re.findall(NUMBER, part)
        if len(ends) == 2 and "." in ends[0] and ends[0].split(".")[0] == ends[1].split(".")[0]:
            major, first, last = ends[0].split(".")[0], int(ends[0].split(".")[1]), int(ends[1].split(".")[1])
            names += [f"{major}.{minor}" for minor in range(first, last + 1)]
        elif len(ends) == 2 and "." not in ends[0] + ends[1]:
            names += [str(k) for k in range(int(ends[0]), int(ends[1]) + 1)]
        else:
            names += ends
    return names


def citations(pattern: re.Pattern) -> list[tuple[str, str]]:
    """(where, number) for every number cited by ``pattern`` in :func:`cited_files`."""
    found = []
    for path in cited_files():
        text = path.read_text()
        for match in pattern.finditer(text):
            where = f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}"
            found += [(where, name) for name in expand(match.group(1))]
    return found


def test_quirks_are_numbered_1_to_30():
    assert quirks() == list(range(1, 31))


def test_section_citations_resolve():
    found = citations(SECTION_CITATION)
    assert found, "no fidelity citations found"
    known = sections()
    missing = [f"{where}: fidelity {name}" for where, name in found if name not in known]
    assert not missing, "cited sections without a heading in docs/fidelity.md:\n" + "\n".join(missing)


def test_quirk_citations_resolve():
    found = citations(QUIRK_CITATION)
    assert found, "no quirk citations found"
    known = set(quirks())
    missing = [f"{where}: quirk {name}" for where, name in found if int(name) not in known]
    assert not missing, "cited quirks without an entry in docs/fidelity.md:\n" + "\n".join(missing)


def test_policy_citations_resolve():
    if any(POLICY_CITATION.search(path.read_text()) for path in cited_files()):
        assert "Fidelity policy" in headings()


def test_readme_links_resolve():
    anchors = {anchor(title) for title in headings()}
    links = README_LINK.findall((ROOT / "README.md").read_text())
    assert links, "the README does not link to docs/fidelity.md"
    assert not set(links) - anchors, f"README links to anchors docs/fidelity.md lacks: {sorted(set(links) - anchors)}"


def test_no_outside_citation():
    outside = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in cited_files()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if OUTSIDE_CITATION.search(line)
    ]
    assert not outside, (
        "citations of the reference's specification, a document outside the repository (cite docs/fidelity.md "
        "instead):\n" + "\n".join(outside)
    )


def importable(dotted: str) -> bool:
    """``ginr.a.b.C.d`` names a module (the longest importable prefix) and attributes within it."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(value, name):
                return False
            value = getattr(value, name)
        return True
    return False


def is_flag(section: str, path: str) -> bool:
    """``--section.path`` is a field of that section's config (``no-`` negates a boolean, as tyro spells it)."""

    def field_of(cls, names: list[str]) -> bool:
        hints = typing.get_type_hints(cls)
        fields = {f.name for f in dataclasses.fields(cls)}
        name = names[0].replace("-", "_")
        if name not in fields and name.startswith("no_") and len(names) == 1:
            name = name.removeprefix("no_")
        if name not in fields:
            return False
        if len(names) == 1:
            return True
        return dataclasses.is_dataclass(hints[name]) and field_of(hints[name], names[1:])

    return any(field_of(cls, path.split(".")) for cls in SECTIONS[section])


def test_named_code_exists():
    """The paths, modules, functions and flags docs/fidelity.md names in code spans exist (a rename shows up here)."""
    missing = []
    for span in CODE_SPAN.findall(FIDELITY.read_text()):
        if re.fullmatch(r"(?:ginr|recipes|tests|docs)/[\w/.-]+", span) and not (ROOT / span).exists():
            missing.append(span)
        dotted = re.match(r"ginr(?:\.\w+)+", span)
        if dotted and not importable(dotted.group(0)):
            missing.append(span)
        for section, path in re.findall(r"--(data|optim|train|render|model)\.([\w.-]+)", span):
            if not is_flag(section, path.rstrip(".")):  # a trailing dot: a prefix such as --model.hyponet.
                missing.append(f"--{section}.{path}")
    assert not missing, f"docs/fidelity.md names what the code does not have: {missing}"
