"""Code, configs and docs cite only what ships with them: docs/, the papers and the official repositories.

The design notes the project was written from are not in the repository, so a comment such as
a section of a method's notes or a numbered "quirk" points nowhere. This test greps the tree for such
citations and fails on any, naming file and line.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CITATION = re.compile(
    r"(?<![\w/.-])(sat|ts_cam|scm|cam|metrics|datasets)\.md\b"  # a spec file; docs/<name>.md is fine
    r"|\bquirk\s+Q?\d"  # the spec files' numbered quirks
    r"|\u00a7\s*\d"  # a section sign with a number
    r"|shared/spec[s]|\bDESIGN\.md\b"
    r"|\bmethod cards?\b"
)
SUFFIXES = {".py", ".yaml", ".yml", ".md", ".toml", ".cfg", ".txt", ".html", ".sh"}
NAMES = {"Makefile"}
NOT_THE_PROJECT = {".git", ".venv", "runs", "data", "__pycache__", ".pytest_cache", ".ruff_cache"}
# Generated or third-party files: shipped metadata lists and the installed package's metadata.
THIRD_PARTY = ("datasets/wsolevaluation/", "wsolbench.egg-info/")


def project_files() -> list[Path]:
    """Every text file of the project that a user reads: code, configs, README and docs."""
    files = []
    for path in sorted(ROOT.rglob("*")):
        relative = path.relative_to(ROOT)
        if NOT_THE_PROJECT & set(relative.parts) or not path.is_file():
            continue
        if path.suffix not in SUFFIXES and path.name not in NAMES:
            continue
        if relative.as_posix().startswith(THIRD_PARTY):
            continue
        files.append(path)
    return files


def citations(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line that cites a document outside the repository."""
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if CITATION.search(line)]


def test_the_pattern_finds_citations_and_spares_our_docs() -> None:
    md, section = ".md", "\u00a7"  # split, so that this file does not cite anything itself
    cited = [f"# (sat{md} {section}6.1)", "# quirk" + " Q14", f"# see metrics{md}", f"# {section} 3.5",
             "# shared/" + "specs/x", "# the method" + " card", "DESIGN" + md]
    assert [number for number, _ in citations("\n".join(cited))] == [1, 2, 3, 4, 5, 6, 7]
    fine = "# docs/metrics.md case C4\n# see docs/datasets.md\n# Q: why?\n# \"\u00a7\": r\"\\S{}\"\n# cards.py"
    assert citations(fine) == []


def test_no_file_cites_documents_outside_the_repository() -> None:
    files = project_files()
    assert any(path.name == "README.md" for path in files) and any(path.suffix == ".yaml" for path in files)
    found = [f"{path.relative_to(ROOT)}:{number}: {line}" for path in files
             for number, line in citations(path.read_text(encoding="utf-8", errors="replace"))]
    assert not found, "cite docs/, the papers or the official repositories instead:\n" + "\n".join(found)
