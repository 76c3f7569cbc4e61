"""The docs say only what exists: every relative link in README.md, docs/*.md and the model READMEs
resolves (to a file or folder, and to a heading when it names one), and every repository path the
prose names (`train/train_gan.py`, `python -m benchmarks.flux`) is there.

Links are read as GitHub renders them: inline links and images `[t](target "title")` and
`[t](<target>)`, reference definitions `[label]: target`, and HTML `href` / `src`; code blocks and
code spans are not links. A target starting with '/' is taken from the repository root, a bare
`#anchor` is a heading of the same file, and anchors follow GitHub's heading slugs.
"""
from __future__ import annotations

import importlib.util
import re
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # http:, https:, mailto:, data: ... are not files
FENCE = re.compile(r"^\s{0,3}(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE = re.compile(r"\]\(\s*(<[^>\n]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>\n]*>|\S+)", re.M)
HTML = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.I)
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"""<a\s[^>]*\b(?:name|id)\s*=\s*["']([^"']+)["']""", re.I)
# Repository paths named in prose or commands: a top-level folder of the repo, then a file.
REPO_PATH = re.compile(r"(?<![\w./-])((?:train|inference|evaluate|benchmarks|models|utils|tests|docs)/[\w./-]*\w\.(?:py|md))\b")
MODULE_RUN = re.compile(r"python -m ([A-Za-z_][\w.]*)")


def doc_files(root: Path = ROOT) -> list[Path]:
    files = sorted(root.glob("*.md")) + sorted((root / "docs").glob("*.md")) + sorted((root / "models").rglob("README.md"))
    return [f for f in files if f.is_file()]


def prose(text: str, spans: bool = False) -> str:
    """The text without fenced code blocks, and without code spans unless `spans` (line count kept)."""
    out, fence = [], None
    for line in text.splitlines():
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            out.append("")
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            out.append("")
        else:
            out.append(line if spans else CODE_SPAN.sub("", line))
    return "\n".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a markdown file defines: heading slugs (repeats get -1, -2...) and HTML name/id."""
    text = path.read_text(encoding="utf-8")
    seen: dict[str, int] = {}
    found = set(HTML_ANCHOR.findall(text))
    for line in prose(text, spans=True).splitlines():
        m = HEADING.match(line)
        if m:
            s = slug(m.group(1))
            found.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every link in a markdown file, code excluded."""
    text = prose(path.read_text(encoding="utf-8"))
    out = []
    for pattern in (INLINE, DEFINITION, HTML):
        for m in pattern.finditer(text):
            out.append((text.count("\n", 0, m.start()) + 1, m.group(1).strip("<>")))
    return sorted(out)


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """'file:line: target (why)' for each relative link of `path` that does not resolve."""
    bad = []
    for line, target in links(path):
        if SCHEME.match(target) or not target:
            continue
        where, _, fragment = urllib.parse.unquote(target).partition("#")
        dest = path if not where else (root / where.lstrip("/") if where.startswith("/") else path.parent / where)
        name = f"{path.relative_to(root)}:{line}: {target}"
        if not dest.exists():
            bad.append(f"{name} (no such file or folder)")
        elif fragment and dest.is_file() and dest.suffix == ".md" and fragment.lower() not in anchors(dest):
            bad.append(f"{name} (no heading '#{fragment}' in {dest.relative_to(root)})")
    return bad


def missing_mentions(path: Path, root: Path = ROOT) -> list[str]:
    """'file:line: name' for each repository path or `python -m` module the file names that does not exist."""
    text = path.read_text(encoding="utf-8")
    bad = []
    for i, line in enumerate(text.splitlines(), 1):
        for rel in REPO_PATH.findall(line):
            if not (root / rel).exists():
                bad.append(f"{path.relative_to(root)}:{i}: {rel}")
        for m in MODULE_RUN.finditer(line):
            module = m.group(1).rstrip(".")
            if line[m.end():].startswith("<"):  # a placeholder: `python -m benchmarks.<name>`
                continue
            parts = module.split(".")
            local = root.joinpath(*parts)
            if (root / parts[0]).is_dir():
                ok = local.with_suffix(".py").is_file() or (local / "__main__.py").is_file()
            else:
                ok = importlib.util.find_spec(parts[0]) is not None
            if not ok:
                bad.append(f"{path.relative_to(root)}:{i}: python -m {module}")
    return bad


# -- the repository --------------------------------------------------------------------------------


def test_the_docs_are_found():
    names = {str(p.relative_to(ROOT)) for p in doc_files()}
    assert "README.md" in names and any(n.startswith("docs/") for n in names)
    assert sum(n.startswith("models/") for n in names) >= 5


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    bad = broken_links(path)
    assert not bad, "broken links:\n" + "\n".join(bad)


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_named_path_and_module_exists(path):
    bad = missing_mentions(path)
    assert not bad, "the docs name what does not exist:\n" + "\n".join(bad)


# -- the checker bites -------------------------------------------------------------------------------


def test_checker_finds_broken_links_and_anchors(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "models" / "a").mkdir(parents=True)
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## Set up `cuda` (fast)\n\n## Set up `cuda` (fast)\n")
    (tmp_path / "models" / "a" / "README.md").write_text("# A\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Top\n"
        "[ok](docs/guide.md) [ok anchor](docs/guide.md#set-up-cuda-fast) [repeat](docs/guide.md#set-up-cuda-fast-1)\n"
        "[folder](models/a) ![img](<models/a/README.md> \"title\") [web](https://example.com/x.md) [self](#top)\n"
        "[gone](docs/missing.md) [bad anchor](docs/guide.md#nowhere) [bad self](#nope)\n"
        "`[in code](docs/nothing.md)`\n"
        "```\n[in a block](docs/nothing.md)\n```\n"
        "[ref]: models/b/README.md\n"
        '<img src="models/a/none.png">\n'
        "[root](/docs/guide.md) [escaped](docs/gu%69de.md)\n")
    bad = broken_links(readme, tmp_path)
    assert [b.split(": ", 1)[1] for b in bad] == [  # in line order
        "#nope (no heading '#nope' in README.md)",
        "docs/guide.md#nowhere (no heading '#nowhere' in docs/guide.md)",
        "docs/missing.md (no such file or folder)",
        "models/b/README.md (no such file or folder)",
        "models/a/none.png (no such file or folder)",
    ]
    assert bad[0].startswith("README.md:4: ") and bad[-1].startswith("README.md:10: ")
    assert doc_files(tmp_path) == [readme, tmp_path / "docs" / "guide.md", tmp_path / "models" / "a" / "README.md"]


def test_checker_finds_paths_and_modules_that_do_not_exist(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "train_gan.py").write_text("")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "flux.py").write_text("")
    doc = tmp_path / "README.md"
    doc.write_text("Run `python train/train_gan.py`, not train/train_diffusion.py.\n"
                   "python -m benchmarks.flux, python -m benchmarks.sora, python -m benchmarks.<name>, "
                   "python -m pytest, python -m no_such_tool_4711\n")
    assert missing_mentions(doc, tmp_path) == ["README.md:1: train/train_diffusion.py",
                                               "README.md:2: python -m benchmarks.sora",
                                               "README.md:2: python -m no_such_tool_4711"]
