"""The original package's INI config files, read by hand and written out as TOML.

The original read its three files with the standard library's INI parser: ``key = value``
or ``key: value`` lines under ``[SECTION]`` headers, full-line ``#`` and ``;`` comments, and
the queues' script names as bare keys. This module turns such a text into the TOML
mlpipeline reads, keeping every comment where it stood, and ``mlpipeline migrate-config``
rewrites the files with ``.bak`` copies. That parser is not used (SPEC 3): it drops
comments, and the TOML form is not its output.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from mlpipeline.config import (
    EXECUTION_QUEUE,
    PROJECT_CONFIG,
    TEST_QUEUE,
    ConfigError,
    tomllib,
)

SCRIPT_LIST_SECTIONS = ("WHITELISTED_MODELS", "BLACKLISTED_MODELS")
_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
# What each key of [MLP] is in TOML, per file; a key not here is kept as a comment, since
# mlpipeline refuses keys it does not know.
_PROJECT_KEYS = {
    "models_dir": "string",
    "outputs_dir": "string",
    "on_script_change": "string",
    "workers": "integer",
    "retries": "integer",
    "version_timeout": "number",
}
_QUEUE_KEYS = {"use_blacklist": "boolean"}
_SECTION = re.compile(r"^\[([^\]]+)\]\s*$")


@dataclass
class _Section:
    name: str
    lines: List[Tuple[str, str]] = field(default_factory=list)  # ("comment"|"blank"|"entry", text)


def looks_like_ini(text: str) -> bool:
    """Whether ``text`` (which is not valid TOML) is in the original package's INI format."""
    return bool(re.search(r"^\s*\[(MLP|WHITELISTED_MODELS|BLACKLISTED_MODELS)\]", text, re.M)) and bool(
        re.search(r"^\s*[\w./-]+\s*$|^\s*\w+\s*[=:]\s*[^\"'\[\d\s]", text, re.M)
    )


def ini_to_toml(text: str, file: str) -> str:
    """The TOML form of the INI ``text`` of ``file``, comments kept; a ConfigError where a line is
    neither a section, a comment nor an entry."""
    preamble: List[str] = []
    sections: List[_Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        header = _SECTION.match(line)
        if header:
            sections.append(_Section(header.group(1).strip()))
            continue
        if not line:
            kind = "blank"
        elif line[0] in "#;":
            kind = "comment"
        elif not sections:
            raise ConfigError(file, f"'{line}' stands before any [section]; an INI file starts with one", number)
        elif raw[:1].isspace() and sections[-1].lines and sections[-1].lines[-1][0] == "entry" and (
            sections[-1].name not in SCRIPT_LIST_SECTIONS
        ):
            # An INI continuation line: part of the value above.
            kind, previous = sections[-1].lines.pop()
            sections[-1].lines.append(("entry", f"{previous}\n{line}"))
            continue
        else:
            kind = "entry"
        text_of_line = "#" + line[1:] if kind == "comment" else line
        (sections[-1].lines if sections else preamble).append((kind, text_of_line))
    out: List[str] = [f"# {file}: converted from the original INI format by mlpipeline migrate-config"]
    out.extend(text for kind, text in preamble if kind == "comment")
    is_project = Path(file).name == PROJECT_CONFIG
    known = ("MLP",) if is_project else ("MLP", *SCRIPT_LIST_SECTIONS)
    for section in sections:
        out.append("")
        if section.name not in known:
            out.append(f"# [{section.name}]    # not a table mlpipeline knows in {file}; kept as a comment")
            out.extend(_commented(text) if kind == "entry" else text for kind, text in section.lines)
        elif section.name in SCRIPT_LIST_SECTIONS:
            out.append(f"[{section.name}]")
            out.extend(_script_list(section))
        else:
            out.append(f"[{section.name}]")
            out.extend(_key_values(section, _PROJECT_KEYS if is_project else _QUEUE_KEYS))
    return "\n".join(_squeeze_blank_lines(out)) + "\n"


def _script_list(section: _Section) -> List[str]:
    lines = list(section.lines)
    while lines and lines[-1][0] == "blank":
        lines.pop()
    # Comments above the first script describe the list: they stay above it.
    lead: List[str] = []
    while lines and lines[0][0] != "entry":
        kind, text = lines.pop(0)
        if kind == "comment":
            lead.append(text)
    if not lines:
        return lead + ["scripts = []"]
    body = ["scripts = ["]
    for kind, text in lines:
        if kind == "comment":
            body.append(f"  {text}")
        elif kind == "entry":
            # A script name was a bare key; "name = x" or "name: x" kept only the name.
            name = re.split(r"\s*=\s*|\s*:\s*(?=\s|$)", text, maxsplit=1)[0].strip()
            body.append(f"  {json.dumps(name, ensure_ascii=False)},")
    body.append("]")
    return lead + body


def _key_values(section: _Section, kinds: Dict[str, str]) -> List[str]:
    out: List[str] = []
    for kind, text in section.lines:
        if kind != "entry":
            out.append(text if kind == "comment" else "")
            continue
        match = re.match(r"^([^=:]+?)\s*[=:]\s*(.*)$", text, re.S)
        if not match:
            out.append(f"{_commented(text)}    # (no value in the INI file; not used by mlpipeline)")
            continue
        key, value = match.group(1).strip(), match.group(2).strip()
        out.append(_toml_line(kinds.get(key), key, value))
    return out


def _toml_line(kind: Optional[str], key: str, value: str) -> str:
    if kind == "boolean" and value.lower() in _BOOLEANS:
        return f"{key} = {'true' if _BOOLEANS[value.lower()] else 'false'}"
    if kind == "integer" and re.fullmatch(r"[+-]?\d+", value):
        return f"{key} = {int(value)}"
    if kind == "number" and re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", value):
        return f"{key} = {value}"
    if kind == "string":
        return f"{key} = {json.dumps(value, ensure_ascii=False)}"
    return f"# {key} = {json.dumps(value, ensure_ascii=False)}    # not a key mlpipeline knows here; kept as a comment"


def _commented(text: str) -> str:
    """``text`` as TOML comment lines; a value continued over several lines stays a comment."""
    return "\n".join(f"# {part}" for part in text.split("\n"))


def _squeeze_blank_lines(lines: List[str]) -> List[str]:
    out: List[str] = []
    for line in lines:
        if line == "" and (not out or out[-1] == ""):
            continue
        out.append(line)
    while out and out[-1] == "":
        out.pop()
    return out


@dataclass(frozen=True)
class Migration:
    """What migrate-config did with one file."""

    file: str
    action: str  # "migrated", "already TOML", "absent"
    backup: Optional[Path] = None


def migrate_project(project_dir: Path, say: Callable[[str], None]) -> List[Migration]:
    """Rewrite each INI config file of ``project_dir`` as TOML, keeping ``<file>.bak``.

    Every file is converted and checked before any is written, so a file that cannot be
    converted leaves all three untouched (a ConfigError naming it).
    """
    planned: List[Tuple[Path, str]] = []
    results: List[Migration] = []
    for name in (PROJECT_CONFIG, EXECUTION_QUEUE, TEST_QUEUE):
        path = project_dir / name
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            results.append(Migration(name, "absent"))
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(str(path), f"cannot be read: {exc}") from None
        try:
            tomllib.loads(text)
            results.append(Migration(name, "already TOML"))
            continue
        except tomllib.TOMLDecodeError:
            pass
        if not looks_like_ini(text):
            raise ConfigError(name, "is neither TOML nor the original package's INI format; nothing was changed")
        converted = ini_to_toml(text, name)
        try:
            tomllib.loads(converted)
        except tomllib.TOMLDecodeError as exc:  # a bug here, but the user's files stay as they are
            raise ConfigError(name, f"could not be converted ({exc}); nothing was changed") from None
        backup = path.with_name(path.name + ".bak")
        if backup.exists():
            raise ConfigError(str(backup), "exists already; move it away first (nothing was changed)")
        planned.append((path, converted))
    for path, converted in planned:
        backup = path.with_name(path.name + ".bak")
        try:
            shutil.copy2(path, backup)
            tmp = path.with_name(f".{path.name}.migrating")
            tmp.write_text(converted, encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            done = ", ".join(m.file for m in results if m.action == "migrated") or "none"
            raise ConfigError(
                str(exc.filename or path), f"cannot be written ({exc.strerror or exc}); files migrated before it: {done}"
            ) from None
        results.append(Migration(path.name, "migrated", backup))
        say(f"{path.name}: rewritten as TOML; the INI file is kept as {backup.name}")
    for migration in results:
        if migration.action != "migrated":
            say(f"{migration.file}: {migration.action}; left as it is")
    return results
