"""Versions made from configuration files: YAML configs composed by Hydra (with overrides, and
Hydra's sweep syntax ``lr=0.1,0.01`` expanding to one version each), and gin files.

Read where the script is imported, in a version's child, never in the daemon. Each version
keeps the files that configured it: their bytes go into its fingerprint (an edited file
reruns its version, as an edited script reruns all of its) and into its run record. A file
that cannot be read or parsed does not stop the script's import: its version fails when it
runs, with the file, line and parser's words.

Hydra and gin are the extras ``mlpipeline[hydra]`` and ``mlpipeline[gin]``, imported only here.
"""
from __future__ import annotations

import glob
import hashlib
import itertools
import os
import stat
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mlpipeline.script_support.extras import require
from mlpipeline.script_support.failures import ExplainedFailure

YAML_SUFFIXES = (".yaml", ".yml")
GIN_SUFFIX = ".gin"
UNREADABLE = "unreadable"
"""The fingerprint of a configuration file that cannot be read (gone, no regular file, too large)."""
MAX_FILE_BYTES = 1 << 20
"""The largest configuration file read: every child of the script reads every file it names,
and a version's parameters and record carry them."""
MAX_YAML_NODES = 100_000
"""The most nodes a YAML file may come to once its aliases are expanded (a few hundred bytes
of nested aliases can come to billions)."""
CONFIG_FILE_PARAMETER = "config_file"
"""The parameter naming the file a version was made from (relative to the script's folder)."""


class ConfigVersion:
    """One version made from configuration files: its name and parameters, the files whose
    bytes configured it (with their sha256, as read at import), what its run record keeps,
    and, for a file that could not be read, why."""

    def __init__(self, name: str, source: str, kind: str, overrides: Sequence[str] = ()) -> None:
        self.name = name
        self.source = source  # the file it was made from, as the script named it
        self.kind = kind  # "hydra" or "gin"
        self.overrides = list(overrides)
        self.parameters: Dict[str, Any] = {}
        self.files: List[Tuple[str, str]] = []  # (absolute path, sha256)
        # What the run record keeps in .mlpipeline/configs/: each file by its path from the
        # folder of the version's own file, and what the parsers made of them.
        self.record: Dict[str, bytes] = {}
        self.problem: Optional[str] = None

    def read(self, path: str) -> bytes:
        """The bytes of ``path``, fingerprinted and kept for the run record; a file that is
        no regular file (a FIFO would block the read), or larger than MAX_FILE_BYTES, is refused."""
        full = os.path.abspath(path)
        try:
            with open(path, "rb", opener=_opener_of_regular_files) as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                raise ExplainedFailure(f"{path} is over {MAX_FILE_BYTES >> 20} MiB; a configuration file is read up to that")
        except BaseException:
            # Still one of its files: the daemon fingerprints it alike, as unreadable.
            self.files.append((full, UNREADABLE))
            raise
        self.files.append((full, hashlib.sha256(data).hexdigest()))
        home = os.path.dirname(self.files[0][0])
        inside = os.path.relpath(full, home)
        self.record.setdefault(os.path.basename(full) if inside.startswith("..") else inside, data)
        return data


def version_fingerprint(script_sha256: str, file_sha256s: Sequence[str]) -> str:
    """A version's fingerprint: its script's sha256, combined with those of the files that
    configured it (the child and the daemon compute it alike)."""
    if not file_sha256s:
        return script_sha256
    return hashlib.sha256("\n".join((script_sha256, *file_sha256s)).encode("ascii")).hexdigest()


def folder_name(name: str) -> str:
    """``name`` as a model_dir's suffix: a plain name (no path separator), short enough for a
    folder name; a long one keeps its start and a hash of the whole, so two stay apart."""
    plain = name.replace("/", "_").replace("\\", "_")
    if plain in (".", ".."):
        plain = plain.replace(".", "_")
    if plain == name and len(plain.encode("utf-8", "surrogateescape")) <= 120:
        return plain
    # Changed or cut: a hash of the whole name keeps "c/d" and "c_d" in folders of their own.
    return f"{plain[:60]}-{hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


def expand_patterns(patterns: Sequence[str], base: str) -> Tuple[List[str], List[Tuple[str, List[str]]]]:
    """The files ``patterns`` name (paths or globs, relative to ``base``), in order, each once;
    and each glob with what it matched, which the daemon looks at again to see files come and go."""
    files: List[str] = []
    globs: List[Tuple[str, List[str]]] = []
    for pattern in patterns:
        if isinstance(pattern, os.PathLike):
            pattern = os.fspath(pattern)
        if not isinstance(pattern, str) or not pattern:
            raise TypeError(f"add_config_files takes file names or glob patterns, not {pattern!r}")
        full = os.path.join(base, os.path.expanduser(pattern))
        if glob.has_magic(full):
            # Only the files it can make versions of: a README.md beside the configs is no version.
            matched = sorted(path for path in glob.glob(full) if path.lower().endswith(YAML_SUFFIXES + (GIN_SUFFIX,)))
            globs.append((full, matched))
            if not matched:
                # Said, not raised: the script's other versions still run (and a file added later is found).
                print(f"mlpipeline: add_config_files({pattern!r}): no YAML or gin file matches it (in {base})", file=sys.stderr)
        else:
            matched = [full]
        for path in matched:
            if path not in files:
                files.append(path)
    return files, globs


def read_config_versions(files: Sequence[str], overrides: Sequence[str], base: str, several: bool) -> List[ConfigVersion]:
    """The versions the config ``files`` make: a gin file one; a YAML file one, or one for
    each combination of the sweeps in ``overrides``. ``several``: the patterns may name more
    than one file (a glob), so a sweep's versions are named with their file's stem too, and
    keep their names when a second file comes."""
    if isinstance(overrides, str) or not isinstance(overrides, (list, tuple)) or not all(isinstance(item, str) for item in overrides):
        raise TypeError(f"add_config_files: overrides is a list of strings such as ['lr=0.1,0.01'], not {overrides!r}")
    made: List[ConfigVersion] = []
    for path in files:
        suffix = os.path.splitext(path)[1].lower()
        if suffix == GIN_SUFFIX:
            if overrides:
                raise TypeError("add_config_files: overrides apply to YAML (Hydra) configs; a gin file takes none")
            made.append(_gin_version(path, base))
        elif suffix in YAML_SUFFIXES:
            made.extend(_hydra_versions(path, overrides, base, several=several or len(files) > 1))
        else:
            version = ConfigVersion(_stem(path), os.path.relpath(path, base), "none")
            version.problem = f"{version.source} is neither YAML (.yaml, .yml) nor gin (.gin)"
            made.append(version)
    for version in made:
        version.name = version.name.replace(":", "_")  # models.config names a version after a ':'
    return _named_apart(made)


def _named_apart(made: List[ConfigVersion]) -> List[ConfigVersion]:
    """Versions whose names would be the same (x.yaml and x.gin, a/x.yaml and b/x.yaml, a:b
    and a_b) named by their file's path instead, each of them."""
    sources: Dict[str, set] = {}
    for version in made:
        sources.setdefault(version.name, set()).add(version.source)
    for version in made:
        if len(sources[version.name]) > 1:  # the same name from other files: named by their paths
            stem = _stem(version.source)
            # What a sweep added after the stem; a single file's sweep names its versions
            # by their overrides alone.
            tail = version.name[len(stem):] if version.name == stem or version.name.startswith(stem + ",") else "," + version.name
            version.name = (version.source + tail).replace(":", "_")
    # Still the same (a:b and a_b, swept in one file): numbered, in the order they were made.
    seen: Dict[str, int] = {}
    for version in made:
        seen[version.name] = seen.get(version.name, 0) + 1
        if seen[version.name] > 1:
            version.name = f"{version.name}#{seen[version.name]}"
    return made


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


# -- Hydra -------------------------------------------------------------------------------------


def sweep_jobs(overrides: Sequence[str]) -> List[List[str]]:
    """Hydra's multirun: one list of overrides for each combination of the sweeps in
    ``overrides`` (``lr=0.1,0.01`` is two values), the last varying fastest, as Hydra's basic
    sweeper orders them."""
    if not overrides:
        return [[]]
    require("hydra", "hydra", "add_config_files with overrides")
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise ExplainedFailure(f"add_config_files overrides: {exc}") from None
    axes = []
    for override in parsed:
        if not override.is_sweep_override():
            axes.append([override.input_line])
            continue
        try:
            values = list(override.sweep_string_iterator())
        except HydraException:
            raise ExplainedFailure(
                f"add_config_files overrides: {override.input_line!r} cannot be expanded here; "
                "a sweep is a list of values (a=1,2), range() or choice()"
            ) from None
        axes.append([f"{override.get_key_element()}={value}" for value in values])
    # A value swept twice (a=1,1,2) is one job: the same configuration is one version.
    return [list(job) for job in dict.fromkeys(itertools.product(*axes))]


def _hydra_versions(path: str, overrides: Sequence[str], base: str, several: bool) -> List[ConfigVersion]:
    require("hydra", "hydra", "add_config_files with a YAML file")
    stem = os.path.splitext(os.path.basename(path))[0]
    made = []
    for job in sweep_jobs(overrides):
        version = ConfigVersion(stem, os.path.relpath(path, base), "hydra", job)
        try:
            _check_composed_files(path, job)
            _compose(version, path, job)
        except Exception as exc:  # noqa: BLE001 - Hydra, OmegaConf and YAML raise many kinds
            # Hydra's message, without the search path it lists after it (its own package first).
            message = str(exc).split("\nConfig search path")[0]
            version.problem = f"{version.source}: {' '.join(message.split())}"
        # Named as Hydra names a multirun job's folder (override_dirname): its overrides sorted.
        dirname = ",".join(sorted(job))
        if dirname:
            version.name = f"{stem},{dirname}" if several else dirname
        made.append(version)
    return made


def _compose(version: ConfigVersion, path: str, job: List[str]) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    folder = os.path.dirname(os.path.abspath(path))
    stem = os.path.splitext(os.path.basename(path))[0]
    version.read(path)
    with initialize_config_dir(config_dir=folder, version_base=None):
        config = compose(config_name=stem, overrides=job, return_hydra_config=True)
    choices = OmegaConf.to_container(config.hydra.runtime.choices)
    with open_dict(config):
        del config["hydra"]
    resolved = OmegaConf.to_container(config, resolve=True)
    version.record["config.resolved.yaml"] = OmegaConf.to_yaml(config, resolve=True).encode("utf-8")
    # What composing it read, so that editing one of them reruns it (and no other file does):
    # the chosen option of each group, and what each file read names in its defaults list.
    loaded = [os.path.abspath(path)]
    for group, choice in sorted(choices.items()):
        if choice is None or group.startswith("hydra/") or group == "hydra":
            continue
        chosen = _yaml_file(os.path.join(folder, group.split("@")[0], str(choice)))
        if chosen is not None and chosen not in loaded:
            loaded.append(chosen)
    for file in loaded:  # grows as the defaults lists name more
        if file != loaded[0]:
            version.read(file)
        for named in _plain_defaults(file, folder):
            if named not in loaded:
                loaded.append(named)
    if not isinstance(resolved, dict):
        raise ExplainedFailure("its config is not a mapping of parameters")
    version.parameters = {str(key): value for key, value in resolved.items()}


def _yaml_file(stem: str) -> Optional[str]:
    """The YAML file ``stem`` names (None: none is there); one that is there but is no regular
    file (a folder, a FIFO, a link that loops) is named, where Hydra would say it finds none."""
    for suffix in YAML_SUFFIXES:
        if os.path.isfile(stem + suffix):
            return os.path.abspath(stem + suffix)
        if os.path.lexists(stem + suffix):
            raise ExplainedFailure(f"{stem + suffix} is no regular file")
    return None


def _plain_defaults(file: str, root: str) -> List[str]:
    """The configs the defaults list of ``file`` names that are no group option (``- base``,
    ``- /shared/base``), as files: beside ``file``, or from ``root`` for one that starts with '/'.
    The options of groups are in Hydra's choices."""
    import yaml  # OmegaConf's, installed with Hydra

    try:
        with open(file, "rb", opener=_opener_of_regular_files) as handle:
            data = yaml.safe_load(handle.read(MAX_FILE_BYTES + 1))
    except (OSError, yaml.YAMLError, ValueError, ExplainedFailure):
        return []
    entries = data.get("defaults") if isinstance(data, dict) else None
    found = []
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, str):
            continue
        name = entry.strip()
        if name.startswith("optional "):
            name = name[len("optional ") :].strip()
        if not name or name == "_self_" or "=" in name or name.startswith("override "):
            continue
        named = _yaml_file(os.path.join(root, name[1:]) if name.startswith("/") else os.path.join(os.path.dirname(file), name))
        if named is not None:
            found.append(named)
    return found


def _check_composed_files(path: str, job: Sequence[str]) -> None:
    """Refuse, before Hydra builds anything, a composition that would read a YAML file whose
    aliases expand past MAX_YAML_NODES nodes (or that is too large, or nested too deep): the
    file ``path`` and those its defaults lists name, each group's option as ``job`` chooses
    it. What Hydra alone could find (an interpolated option) is not seen here."""
    root = os.path.dirname(os.path.abspath(path))
    chosen, pending, seen = {}, [(os.path.abspath(path), "")], set()
    for override in job:
        key, equals, value = override.lstrip("+~").partition("=")
        key = key.split("@")[0].strip()
        if equals:
            chosen[key] = value.strip()
            if override.startswith("+"):  # a group added that no defaults list names
                pending.append((_yaml_file(os.path.join(root, key, value.strip())), key))
    pending = [(file, group) for file, group in pending if file is not None]
    while pending:
        file, group = pending.pop()
        if file in seen:
            continue
        seen.add(file)
        try:
            node = _checked_yaml(file)
        except ExplainedFailure as exc:
            if file == os.path.abspath(path):
                raise
            raise ExplainedFailure(f"{os.path.relpath(file, root)}, which its defaults list names: {exc}") from None
        for name, option in _defaults_entries(node):
            if name is None:  # a config of its own: beside the file, or from the root with "/"
                where = os.path.join(root, option[1:]) if option.startswith("/") else os.path.join(os.path.dirname(file), option)
                named = [(_yaml_file(where), group)]
            else:  # a group's option (or options): the group beside the file's, or from the root
                full = name[1:] if name.startswith("/") else "/".join(filter(None, (group, name)))
                options = chosen.get(full, option)
                folder = os.path.join(root, full)
                named = [(_yaml_file(os.path.join(folder, item)), full) for item in (options if isinstance(options, list) else [options])]
            pending.extend((found, its_group) for found, its_group in named if found is not None and found not in seen)


def _checked_yaml(path: str) -> Any:
    """The node graph of the YAML file ``path`` (None when it does not parse: Hydra's parser
    says what is wrong, with the line); ExplainedFailure for a file too large, nested too deep,
    or whose aliases expand past MAX_YAML_NODES nodes (counted on the graph, aliases shared,
    without building anything)."""
    import yaml

    with open(path, "rb", opener=_opener_of_regular_files) as handle:
        text = handle.read(MAX_FILE_BYTES + 1)
    if len(text) > MAX_FILE_BYTES:
        raise ExplainedFailure(f"it is over {MAX_FILE_BYTES >> 20} MiB; a configuration file is read up to that")
    try:
        text.decode("utf-8")  # as Hydra reads it; the error would name the file that chose this one
    except UnicodeDecodeError as exc:
        raise ExplainedFailure(f"it is not UTF-8 text (byte {exc.start})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return None
    sizes: Dict[int, int] = {}

    def size(node: Any, depth: int = 0) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if depth > 200:
            raise ExplainedFailure("it is nested more than 200 levels deep")
        sizes[id(node)] = 1  # a node that holds itself counts once
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(item, depth + 1) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(key, depth + 1) + size(value, depth + 1) for key, value in node.value)
        sizes[id(node)] = min(total, MAX_YAML_NODES + 1)
        return sizes[id(node)]

    if root is not None and size(root) > MAX_YAML_NODES:
        raise ExplainedFailure(f"its aliases expand to more than {MAX_YAML_NODES:,} values; a configuration file may come to that many")
    return root


def _defaults_entries(root: Any) -> List[Tuple[Optional[str], Any]]:
    """The defaults list of a YAML node graph as (None, config) for a config of its own and
    (group, option or list of options) for a group's choice; what is neither is left out."""
    import yaml

    entries = []
    if not isinstance(root, yaml.MappingNode):
        return entries
    for key, value in root.value:
        if not (isinstance(key, yaml.ScalarNode) and key.value == "defaults" and isinstance(value, yaml.SequenceNode)):
            continue
        for item in value.value:
            if isinstance(item, yaml.ScalarNode):
                name = _entry_name(item.value)
                if name and name != "_self_":
                    entries.append((None, name))
            elif isinstance(item, yaml.MappingNode) and len(item.value) == 1 and isinstance(item.value[0][0], yaml.ScalarNode):
                group, option = _entry_name(item.value[0][0].value).split("@")[0].strip(), item.value[0][1]
                if isinstance(option, yaml.ScalarNode) and option.value not in ("", "null", "~"):
                    entries.append((group, option.value))
                elif isinstance(option, yaml.SequenceNode):
                    entries.append((group, [one.value for one in option.value if isinstance(one, yaml.ScalarNode)]))
    return entries


def _entry_name(text: str) -> str:
    for word in ("optional ", "override "):
        if text.strip().startswith(word):
            return text.strip()[len(word) :].strip()
    return text.strip()


def _opener_of_regular_files(path: str, flags: int) -> int:
    """os.open for a regular file only: a FIFO or a device named as a config file would block
    the read or never end; it is refused at once (without blocking on the open either)."""
    fd = os.open(path, flags | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ExplainedFailure(f"{path} is no regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


# -- gin ---------------------------------------------------------------------------------------


def _gin_version(path: str, base: str) -> ConfigVersion:
    require("gin", "gin", "add_config_files with a gin file")
    stem = os.path.splitext(os.path.basename(path))[0]
    version = ConfigVersion(stem, os.path.relpath(path, base), "gin")
    try:
        version.parameters = _gin_bindings(version, path, os.path.dirname(os.path.abspath(path)), seen=[])
    except Exception as exc:  # noqa: BLE001 - gin's parser raises SyntaxError and others
        version.problem = f"{version.source}: {_gin_message(exc)}"
    return version


def _gin_bindings(version: ConfigVersion, path: str, home: str, seen: List[str]) -> Dict[str, Any]:
    """The bindings of the gin file at ``path`` (and those it includes) as parameters:
    ``scope/Configurable.argument`` and macro names, with references written as gin writes
    them (``@name``, ``@name()``, ``%MACRO``). Parsed with gin's own parser, which binds
    nothing: that happens in the version's run (:func:`apply_gin`). An include is found as
    gin finds it there: from ``home``, the folder of the version's own file."""
    from gin import config_parser

    class AsWritten(config_parser.ParserDelegate):
        def configurable_reference(self, scoped_name: str, evaluate: bool) -> str:
            return f"@{scoped_name}()" if evaluate else f"@{scoped_name}"

        def macro(self, name: str) -> str:
            return f"%{name}"

    full = os.path.abspath(path)
    if full in seen:
        raise ExplainedFailure(f"{path} includes itself (through {' -> '.join(seen)})")
    try:
        text = version.read(full).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExplainedFailure(f"{os.path.relpath(full, home)} is not UTF-8 text (byte {exc.start})") from None
    bindings: Dict[str, Any] = {}
    try:
        for statement in config_parser.ConfigParser(text, AsWritten()):
            if isinstance(statement, config_parser.IncludeStatement):
                bindings.update(_gin_bindings(version, os.path.join(home, statement.filename), home, seen + [full]))
            elif isinstance(statement, config_parser.BindingStatement):
                scope = f"{statement.scope}/" if statement.scope else ""
                key = f"{scope}{statement.selector}" + (f".{statement.arg_name}" if statement.arg_name else "")
                bindings[key] = statement.value
    except ExplainedFailure:
        raise
    except Exception as exc:  # noqa: BLE001 - gin's parser raises SyntaxError, tokenize's TokenError and others
        if not seen:
            raise  # the version's own file, which its message names
        raise ExplainedFailure(f"{os.path.relpath(full, home)}, which it includes: {_gin_message(exc)}") from None
    return bindings


def _gin_message(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"line {exc.lineno}: {exc.msg}"
    where = exc.args[1] if len(exc.args) == 2 else None
    if isinstance(exc.args[0] if exc.args else None, str) and isinstance(where, tuple) and where and isinstance(where[0], int):
        return f"line {where[0]}: {exc.args[0]}"  # tokenize's TokenError: (message, (line, column))
    return " ".join(str(exc).split()) or type(exc).__name__


def apply_gin(version: ConfigVersion) -> None:
    """Bind the version's gin file, in its run: gin's config is cleared first, so a process
    that ran another version binds only this one's."""
    require("gin", "gin", "a version made from a gin file")
    import gin

    path = version.files[0][0]  # the version's own file, read first
    gin.clear_config()
    # From the file's folder, so that gin finds what it includes there, as the bindings were read.
    working = os.getcwd()
    os.chdir(os.path.dirname(path))
    try:
        gin.parse_config_file(path)
    except Exception as exc:  # noqa: BLE001 - an unknown configurable, a bad value: gin says which
        raise ExplainedFailure(f"{version.source}: {_gin_message(exc)}") from None
    finally:
        os.chdir(working)
    version.record["config.bindings.gin"] = gin.config_str().encode("utf-8")
