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
from typing import Any, Callable, Dict, List, Optional, Tuple

from mlpipeline.queue.project_keys import MLP_KEYS
from mlpipeline.queue.config_files import (
    EXECUTION_QUEUE,
    PROJECT_CONFIG,
    TEST_QUEUE,
    ConfigError,
    parse_toml_text,
    tomllib,
)
from mlpipeline.records.files import read_regular_bytes

SCRIPT_LIST_SECTIONS = ("WHITELISTED_MODELS", "BLACKLISTED_MODELS")
# Release 1.1a3.post8 called models experiments: its names, and what they are now.
POST8_SECTIONS = {"WHITELISTED_EXPERIMENTS": "WHITELISTED_MODELS", "BLACKLISTED_EXPERIMENTS": "BLACKLISTED_MODELS"}
POST8_KEYS = {"experiments_dir": "models_dir"}
POST8_QUEUES = {EXECUTION_QUEUE: "experiments.config", TEST_QUEUE: "experiments_test.config"}
_ANY_SECTION = re.compile(r"^\s*\[(MLP|(?:WHITELISTED|BLACKLISTED)_(?:MODELS|EXPERIMENTS))\]", re.M)
_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
# What each key of [MLP] is in TOML, per file; a key not here is kept as a comment, since
# mlpipeline refuses keys it does not know.
_PROJECT_KEYS = {key.name: key.toml for key in MLP_KEYS.values() if key.toml is not None}
_QUEUE_KEYS = {"use_blacklist": "boolean"}
_SECTION = re.compile(r"^\[([^\]]+)\]\s*$")


# A line only TOML has: a value that is a string, an array or a table; an array's element or
# end on a line of its own; an array of tables.
_TOML_ONLY = re.compile(r"""^(?:[\w.-]+\s*=\s*["'\[{]|["'\]{}]|\[\[)""")
_TOML_LITERAL = re.compile(r"^(?:true|false|[+-]?\d[\d_]*(?:\.\d+)?(?:[eE][+-]?\d+)?)$")
_INI_ENTRY = re.compile(r"^([\w.-]+)\s*([=:])\s*(.*)$")


@dataclass
class _Section:
    name: str
    lines: List[Tuple[str, str, int]] = field(default_factory=list)  # ("comment"|"blank"|"entry", text, line)
    old_name: Optional[str] = None  # release 1.1a3.post8's name for it


def looks_like_ini(text: str) -> bool:
    """Whether ``text`` (which is not valid TOML) is in the original package's INI format.

    Only when every line is INI and one at least is not also TOML (a bare script name, a
    ``key: value``, an unquoted word as a value, a ``;`` comment): a TOML file with a slip in
    it (an unclosed list, a missing comma, a key set twice) is TOML with an error, not INI.
    """
    if not _ANY_SECTION.search(text):
        return False
    only_ini = False
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        header = _SECTION.match(line)
        if header:
            section = POST8_SECTIONS.get(header.group(1).strip(), header.group(1).strip())
        if not line or line.startswith("#") or header:
            continue
        if _TOML_ONLY.match(line):
            return False
        if line.startswith(";") or re.fullmatch(r"[\w./-]+", line):
            only_ini = True
            continue
        if section in SCRIPT_LIST_SECTIONS and "=" not in line:
            # A script's name as a bare key, whatever it holds (INI took "my model.py" as one).
            only_ini = True
            continue
        entry = _INI_ENTRY.match(line)
        if entry is None:
            return False
        if entry.group(2) == ":" or not _TOML_LITERAL.match(entry.group(3)):
            only_ini = True
    return only_ini


def _parse_ini(text: str, file: str) -> Tuple[List[Tuple[str, str, int]], List[_Section]]:
    """The lines before the first section, and the sections with their lines."""
    preamble: List[Tuple[str, str, int]] = []
    sections: List[_Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        header = _SECTION.match(line)
        if header:
            name = header.group(1).strip()
            sections.append(_Section(POST8_SECTIONS.get(name, name), old_name=name if name in POST8_SECTIONS else None))
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
            kind, previous, first = sections[-1].lines.pop()
            sections[-1].lines.append(("entry", f"{previous}\n{line}", first))
            continue
        else:
            kind = "entry"
        text_of_line = "#" + line[1:] if kind == "comment" else line
        (sections[-1].lines if sections else preamble).append((kind, text_of_line, number))
    return preamble, sections


def _known_tables(file: str) -> Tuple[str, ...]:
    return ("MLP",) if Path(file).name == PROJECT_CONFIG else ("MLP", *SCRIPT_LIST_SECTIONS)


def ini_to_toml(text: str, file: str) -> str:
    """The TOML form of the INI ``text`` of ``file``, comments kept; a ConfigError where a line is
    neither a section, a comment nor an entry, or a value is not of its key's type."""
    preamble, sections = _parse_ini(text, file)
    out: List[str] = [f"# {file}: converted from the original INI format by mlpipeline migrate-config"]
    out.extend(text for kind, text, _ in preamble if kind == "comment")
    kinds = _PROJECT_KEYS if Path(file).name == PROJECT_CONFIG else _QUEUE_KEYS
    for section in sections:
        out.append("")
        if section.name not in _known_tables(file):
            out.append(f"# [{section.name}]    # not a table mlpipeline knows in {file}; kept as a comment")
            out.extend(_commented(text) if kind == "entry" else text for kind, text, _ in section.lines)
        elif section.name in SCRIPT_LIST_SECTIONS:
            out.append(f"[{section.name}]" + (f"    # [{section.old_name}] in release 1.1a3.post8" if section.old_name else ""))
            out.extend(_script_list(section))
        else:
            out.append(f"[{section.name}]")
            out.extend(_key_values(section, kinds, file))
    return "\n".join(_squeeze_blank_lines(out)) + "\n"


def ini_values(text: str, file: str) -> Dict[str, Dict[str, Any]]:
    """What the INI ``text`` of ``file`` sets, as tomllib would read its TOML form: what a
    migration must come back to, read again."""
    _, sections = _parse_ini(text, file)
    kinds = _PROJECT_KEYS if Path(file).name == PROJECT_CONFIG else _QUEUE_KEYS
    values: Dict[str, Dict[str, Any]] = {}
    for section in sections:
        if section.name not in _known_tables(file):
            continue
        table = values.setdefault(section.name, {})
        entries = [(text, number) for kind, text, number in section.lines if kind == "entry"]
        if section.name in SCRIPT_LIST_SECTIONS:
            table.setdefault("scripts", []).extend(_script_name(text) for text, _ in entries)
            continue
        for text, number in entries:
            match = re.match(r"^([^=:]+?)\s*[=:]\s*(.*)$", text, re.S)
            key = POST8_KEYS.get(match.group(1).strip(), match.group(1).strip()) if match else ""
            if match and kinds.get(key):
                table[key] = _typed_value(kinds[key], key, match.group(2).strip(), file, number)
    return values


def _script_list(section: _Section) -> List[str]:
    lines = list(section.lines)
    while lines and lines[-1][0] == "blank":
        lines.pop()
    # Comments above the first script describe the list: they stay above it.
    lead: List[str] = []
    while lines and lines[0][0] != "entry":
        kind, text, _ = lines.pop(0)
        if kind == "comment":
            lead.append(text)
    if not lines:
        return lead + ["scripts = []"]
    body = ["scripts = ["]
    for kind, text, _ in lines:
        if kind == "comment":
            body.append(f"  {text}")
        elif kind == "entry":
            body.append(f"  {json.dumps(_script_name(text), ensure_ascii=False)},")
    body.append("]")
    return lead + body


def _script_name(entry: str) -> str:
    """A script name was a bare key; "name = x" or "name: x" keeps only the name."""
    return re.split(r"\s*=\s*|\s*:\s*(?=\s|$)", entry, maxsplit=1)[0].strip()


def _key_values(section: _Section, kinds: Dict[str, str], file: str) -> List[str]:
    out: List[str] = []
    seen: Dict[str, int] = {}
    for kind, text, number in section.lines:
        if kind != "entry":
            out.append(text if kind == "comment" else "")
            continue
        match = re.match(r"^([^=:]+?)\s*[=:]\s*(.*)$", text, re.S)
        if not match:
            out.append(f"{_commented(text)}    # (no value in the INI file; not used by mlpipeline)")
            continue
        key, value = match.group(1).strip(), match.group(2).strip()
        named = POST8_KEYS.get(key, key) if Path(file).name == PROJECT_CONFIG else key
        if named in seen:
            raise ConfigError(file, f"[{section.name}] sets {named} twice (lines {seen[named]} and {number}); keep one, then migrate", number)
        seen[named] = number
        if key in POST8_KEYS and Path(file).name == PROJECT_CONFIG:
            typed = _typed_value(kinds[POST8_KEYS[key]], key, value, file, number)
            out.append(f"{POST8_KEYS[key]} = {json.dumps(typed, ensure_ascii=False)}    # {key} in release 1.1a3.post8")
            continue
        if key not in kinds:
            out.append(f"# {key} = {json.dumps(value, ensure_ascii=False)}    # not a key mlpipeline knows here; kept as a comment")
            continue
        out.append(f"{key} = {json.dumps(_typed_value(kinds[key], key, value, file, number), ensure_ascii=False)}")
    return out


def _typed_value(kind: str, key: str, value: str, file: str, line: int) -> Any:
    """``value`` of ``key`` as its TOML type; a ConfigError when it is not one (nothing is
    converted into something that means another thing)."""
    if kind == "boolean" and value.lower() in _BOOLEANS:
        return _BOOLEANS[value.lower()]
    if kind == "integer" and re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    if kind == "number" and re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", value):
        return float(value) if re.search(r"[.]", value) else int(value)
    if kind == "string":
        return value
    wanted = {"boolean": "true or false", "integer": "a whole number", "number": "a number"}[kind]
    raise ConfigError(file, f"{key} = {value} is not {wanted}; correct it, then migrate", line)


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

    A project of release 1.1a3.post8 has experiments.config and experiments_test.config:
    where models.config (or models_test.config) is absent, it is written from them, and
    they are left as they are. Every file is converted and checked before any is written,
    so a file that cannot be converted leaves all of them untouched (a ConfigError naming it).
    """
    planned: List[Tuple[Path, Path, str]] = []  # (read from, written to, TOML)
    results: List[Migration] = []
    for name in (PROJECT_CONFIG, EXECUTION_QUEUE, TEST_QUEUE):
        path = source = project_dir / name
        old_name = POST8_QUEUES.get(name)
        if old_name and not path.exists() and (project_dir / old_name).exists():
            source = project_dir / old_name
        try:
            text = read_regular_bytes(source).decode("utf-8")
        except FileNotFoundError:
            results.append(Migration(name, "absent"))
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(str(source), f"cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
        try:
            tomllib.loads(text)
            is_toml = True
        except tomllib.TOMLDecodeError:
            is_toml = False
        if is_toml and source == path:
            results.append(Migration(name, "already TOML"))
            continue
        converted = text if is_toml else _converted(text, name, source.name)
        if source == path:
            backup = path.with_name(path.name + ".bak")
            if backup.exists():
                raise ConfigError(str(backup), "exists already; move it away first (nothing was changed)")
        planned.append((source, path, converted))
    for source, path, converted in planned:
        backup = path.with_name(path.name + ".bak") if source == path else None
        try:
            if backup is not None:
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
        if backup is not None:
            say(f"{path.name}: rewritten as TOML; the INI file is kept as {backup.name}")
        else:
            say(f"{path.name}: written as TOML from {source.name} (release 1.1a3.post8's name), which is left as it is")
    for migration in results:
        if migration.action != "migrated":
            say(f"{migration.file}: {migration.action}; left as it is")
    return results


def _converted(text: str, name: str, read_from: str) -> str:
    """The TOML for ``name`` from the INI ``text`` of the file ``read_from``; a ConfigError
    when it is not INI, or when its TOML would not say what it says."""
    if not looks_like_ini(text):
        if _ANY_SECTION.search(text):
            try:
                parse_toml_text(text, read_from)
            except ConfigError as exc:
                raise ConfigError(
                    exc.file, f"{exc.message} (TOML with a mistake, not the original INI format); nothing was changed", exc.line
                ) from None
        raise ConfigError(read_from, "is neither TOML nor the original package's INI format; nothing was changed")
    converted = ini_to_toml(text, name)
    try:
        read_back = tomllib.loads(converted)
    except tomllib.TOMLDecodeError as exc:  # a bug here, but the user's files stay as they are
        raise ConfigError(read_from, f"could not be converted ({exc}); nothing was changed") from None
    if read_back != ini_values(text, name):
        # Written only when the TOML says what the INI said, read back: never a lossy rewrite.
        raise ConfigError(read_from, "could not be converted faithfully; nothing was changed") from None
    return converted
