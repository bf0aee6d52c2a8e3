"""The docs and the code name the same things (psutil's test_contracts is the model).

Both directions, with the existing set taken from the code, so a command, flag, key or setting
added anywhere fails here until README.md or docs/ describe it:

- every `ctop …` / `agentd …` command line in the docs parses with the real argparse parsers,
  and every command, subcommand and flag those parsers define is named in the docs;
- every key binding of the UI (the BINDINGS of ctop.tui's screens and widgets) is in
  docs/ui.md, and every key docs/ui.md's Keys section names is bound;
- every agentd.toml key is in docs/agentd.md, every ctop.toml setting in docs/director.md, and
  every TOML example in the docs loads with the real config loaders.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import re
import tomllib
from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# -- the docs -----------------------------------------------------------------------------------


@cache
def text_of(path: Path) -> str:
    return path.read_text()


def all_docs() -> str:
    return "\n".join(text_of(p) for p in DOCS)


def code_of(text: str) -> Iterator[str]:
    """Inline code spans, and each line of fenced or indented code blocks."""
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            yield line.strip()
        else:
            yield from re.findall(r"`([^`]+)`", line)


def command_lines() -> Iterator[tuple[str, list[str]]]:
    """(where, words) of every documented ctop or agentd command line."""
    for path in DOCS:
        for code in code_of(text_of(path)):
            code = re.sub(r"^(\$ |# |sudo |\.venv/bin/|/usr/bin/)+", "", code.strip())
            for part in re.split(r"\s*(?:;|&&|\|\|?|>)\s*", code):
                words = part.split()
                # `ctop serve: ...` quotes an error message, `ctop recv/s` a table header
                if words and words[0] in ("ctop", "agentd") and not (
                        len(words) > 1 and re.search(r":$|/s$", words[1])):
                    yield f"{path.name}: `{part}`", words


# -- the code: parsers ----------------------------------------------------------------------------


def parsers() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every command path and its parser: ctop, ctop serve, ctop lb drain, agentd, ..."""
    from agentd.main import _parser as agentd_parser
    from ctop.cli import build_parser
    from ctop.lb.cli import _parser as lb_parser
    from probes.cli import _parser as probe_parser

    found: dict[tuple[str, ...], argparse.ArgumentParser] = {}

    def walk(path: tuple[str, ...], p: argparse.ArgumentParser) -> None:
        found[path] = p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk((*path, name), sub)

    walk(("ctop",), build_parser())
    walk(("ctop", "lb"), lb_parser())  # `ctop lb` and `ctop probe` hand over their arguments
    walk(("ctop", "probe"), probe_parser())
    walk(("agentd",), agentd_parser())
    return found


def long_options(p: argparse.ArgumentParser) -> set[str]:
    return {o for a in p._actions for o in a.option_strings if o.startswith("--")} - {"--help"}


def command_path(words: list[str], tree: dict) -> tuple[tuple[str, ...], list[str]]:
    """The longest command path the words start with, and the words after it."""
    path = (words[0],)
    rest = words[1:]
    while rest and (*path, rest[0]) in tree:
        path, rest = (*path, rest[0]), rest[1:]
    return path, rest


# -- commands and flags -------------------------------------------------------------------------


def test_every_documented_command_line_names_real_commands_and_flags() -> None:
    tree = parsers()
    wrong = []
    for where, words in command_lines():
        path, rest = command_path(words, tree)
        below = [q for q in tree if len(q) > len(path) and q[: len(path)] == path]
        subcommands = {q[len(path)] for q in below}
        head = " ".join(rest)
        # `ctop lb list / drain / maint`: alternatives, each must be a subcommand
        if subcommands and re.match(r"[a-z]{2,}(\s*/\s*[a-z]{2,})+", head):
            alternatives = re.match(r"[a-z]{2,}(\s*/\s*[a-z]{2,})+", head).group(0)
            wrong += [f"{where}: no command `{' '.join(path)} {w}`"
                      for w in re.split(r"\s*/\s*", alternatives) if w not in subcommands]
            continue
        if rest and subcommands and re.fullmatch(r"[a-z][a-z-]*", rest[0]):
            wrong.append(f"{where}: no command `{' '.join((*path, rest[0]))}`")
            continue
        known = long_options(tree[path])
        if len(path) > 1:  # a subcommand's parser may leave flags to its parent
            known |= long_options(tree[path[:-1]])
        if rest and rest[0] in ("…", "..."):  # `ctop lb … --dry-run`: any of its commands
            for q in below:
                known |= long_options(tree[q])
        for word in rest:
            flag = word.strip("[]()…,.").split("=")[0]
            if flag.startswith("--") and flag not in known:
                wrong.append(f"{where}: `{' '.join(path)}` has no {flag}")
    assert not wrong, "\n".join(wrong)


def test_every_command_and_flag_is_documented() -> None:
    docs = all_docs()
    missing = []
    for path, parser in parsers().items():
        name = " ".join(path)
        if len(path) > 1 and not re.search(rf"{re.escape(name)}\b|{re.escape(path[-2])}\s+"
                                            rf"[\w\s/]*\b{re.escape(path[-1])}\b", docs):
            missing.append(f"command `{name}`")
        missing += [f"`{name} {flag}`" for flag in sorted(long_options(parser))
                    if not re.search(rf"{re.escape(flag)}(?![\w-])", docs)]
    assert not missing, "not in README.md or docs/: " + ", ".join(missing)


# -- key bindings ---------------------------------------------------------------------------------

# how docs/ui.md writes Textual's key names
KEY_WORDS = {
    "slash": "/", "question_mark": "?", "colon": ":", "plus": "+", "minus": "-",
    "pageup": "pgup", "pagedown": "pgdn", "escape": "esc", "up": "arrows", "down": "arrows",
    "left": "arrows", "right": "arrows",
}


def bindings() -> dict[str, str]:
    """Every key bound in ctop.tui -> the class that binds it."""
    from textual.binding import Binding

    import ctop.tui

    keys: dict[str, str] = {}
    for info in pkgutil.walk_packages(ctop.tui.__path__, "ctop.tui."):
        module = importlib.import_module(info.name)
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            for attr in ("BINDINGS", "LB_BINDINGS"):
                for b in cls.__dict__.get(attr, ()):
                    key = b.key if isinstance(b, Binding) else b[0]
                    for k in key.split(","):
                        keys.setdefault(k.strip(), cls.__name__)
    return keys


def doc_form(key: str) -> str:
    return KEY_WORDS.get(key, key)


def test_every_key_binding_is_in_the_ui_doc() -> None:
    ui = text_of(ROOT / "docs" / "ui.md")
    spans = set(re.findall(r"`([^`]+)`", ui))
    words = {w.lower() for w in re.findall(r"[\w+]+", ui)}
    missing = []
    for key, where in sorted(bindings().items()):
        form = doc_form(key)
        if len(form) == 1:
            ranges = re.findall(r"`(\d)`–`(\d)`", ui)
            in_range = key.isdigit() and any(a <= key <= b for a, b in ranges)
            documented = form in spans or in_range or (key in "hjkl" and "hjkl" in words)
        else:
            documented = form.lower() in words or f"`{form}`" in ui
        if not documented:
            missing.append(f"{key} ({where})")
    assert not missing, "bound but not in docs/ui.md: " + ", ".join(missing)


def test_every_key_the_ui_doc_names_is_bound() -> None:
    ui = text_of(ROOT / "docs" / "ui.md")
    keys_section = ui.split("## Keys", 1)[1].split("\n## ", 1)[0]
    bound = {doc_form(k) for k in bindings()} | set(bindings())
    named = set(re.findall(r"`([!-~])`", keys_section))  # single characters in code spans
    for first, last in re.findall(r"`(\d)`–`(\d)`", keys_section):
        named |= {str(d) for d in range(int(first), int(last) + 1)}
    unbound = sorted(k for k in named if k not in bound)
    assert not unbound, f"docs/ui.md names keys nothing binds: {unbound}"


# -- configuration keys --------------------------------------------------------------------------


def test_every_agentd_setting_is_in_the_agentd_doc() -> None:
    from agentd.config import KEYS

    doc = text_of(ROOT / "docs" / "agentd.md")
    missing = [k for k in KEYS if f"`{k}`" not in doc]
    assert not missing, f"agentd.toml keys not in docs/agentd.md: {missing}"


def director_settings() -> set[str]:
    """Dotted ctop.toml settings from the config dataclasses (nested ones as table.key)."""
    from ctop.config import DirectorConfig

    # not settings of the file: where it came from, what flags overrode, raw tables parsed
    # elsewhere ([[alert]], [[hook]], [lb]: docs/director.md and docs/loadbalancer.md)
    internal = {"source", "overrides", "alerts", "hooks", "lb"}
    renamed = {"prometheus": "prometheus.listen", "control_group": "control.group",
               "receive_workers": "receive.workers"}
    out = set()
    for f in fields(DirectorConfig):
        if f.name in internal:
            continue
        default = getattr(DirectorConfig(), f.name)
        if is_dataclass(default):
            out |= {f"{f.name}.{g.name}" for g in fields(default)}
        else:
            out.add(renamed.get(f.name, f.name))
    return out


def test_every_director_setting_is_documented() -> None:
    """In docs/director.md, or in contrib/ctop.toml.example, which README points to."""
    doc = text_of(ROOT / "docs" / "director.md")
    example = (ROOT / "contrib" / "ctop.toml.example").read_text()

    def documented(setting: str) -> bool:
        table, _, key = setting.rpartition(".")
        if f"`{setting}`" in doc or f"`{key}`" in doc:
            return True
        section = example
        if table:  # the key inside its [table] of the example
            parts = re.split(r"^\[" + re.escape(table) + r"\]$", example, flags=re.M)
            section = parts[1].split("\n[", 1)[0] if len(parts) > 1 else ""
        return re.search(rf"^#?\s*{re.escape(key)}\s*=", section, re.M) is not None

    missing = sorted(s for s in director_settings() if not documented(s))
    assert not missing, f"ctop.toml settings in neither docs/director.md nor the example: {missing}"


def toml_examples() -> Iterator[tuple[str, str]]:
    """(where, text) of each fenced toml block in the docs."""
    for path in DOCS:
        for i, block in enumerate(re.findall(r"```toml\n(.*?)```", text_of(path), re.S)):
            yield f"{path.name} toml block {i + 1}", block


EXAMPLES = list(toml_examples()) or [("none", "")]


@pytest.mark.parametrize(("where", "block"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_every_toml_example_loads(where: str, block: str, tmp_path: Path) -> None:
    if where == "none":
        pytest.skip("no toml examples in the docs")
    data = tomllib.loads(block)
    path = tmp_path / "example.toml"
    path.write_text(block)
    agent_keys = {"director", "probes", "node_id", "interval", "addresses", "watch"}
    if agent_keys & set(data) and "listen" not in data and "lb" not in data:
        from agentd.config import load as load_agent

        load_agent(str(path), required=True)
    else:
        from ctop.config import TomlSource, from_source

        if "key_file" not in data and "master_key_file" not in data:  # a snippet
            path.write_text('key_file = "/etc/ctop/cluster.key"\n' + block)
        from_source(TomlSource.load(path))
