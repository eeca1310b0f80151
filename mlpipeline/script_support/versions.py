"""Versions: the named hyperparameter sets of one model script."""
from __future__ import annotations

import itertools
import os
import re
import sys
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Tuple, overload

from mlpipeline.records.files import BIDI_CONTROLS

if TYPE_CHECKING:
    from mlpipeline.script_support.config_files import ConfigVersion


class version_parameters:  # noqa: N801 - the original package's spelling, kept for scripts
    """Keys of a version's parameter dict."""

    NAME = "name"
    DATALOADER = "dataloader"
    BATCH_SIZE = "batch_size"
    EPOC_COUNT = "epoc_count"
    LEARNING_RATE = "learning_rate"
    MODEL_DIR_SUFFIX = "model_dir_suffix"
    ORDER = "order"
    # Release 1.1a3.post8's name for the suffix; the same key.
    EXPERIMENT_DIR_SUFFIX = "model_dir_suffix"
    # Keys the original's 1.x releases gave every version (None unless set).
    HOOKS = "hooks"
    CLASSES_COUNT = "classes_count"
    CLASSES_OFFSET = "classes_offset"
    USE_ALL_CLASSES = "use_all_classes"


_NOT_IN_NAMES = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff{BIDI_CONTROLS}]")

SHOWN_NAME_LIMIT = 60
"""Characters of a refused name shown in a message; the rest is counted, not printed."""


def name_problem(name: str) -> Optional[str]:
    """Why ``name`` cannot name a version (or a script), or None when it can.

    A name travels into log-<host> lines, the console, the child's environment and file
    names. A control character (C0 with NUL, DEL, C1) or a line or paragraph separator
    (U+2028, U+2029) would end a log line there and forge the next, redraw the terminal, or
    be refused by the OS (NUL); a bidirectional control (U+202E) makes it read as another
    name; a lone surrogate, which stands for a byte of a file name that is not UTF-8, cannot
    be written to a UTF-8 file at all.
    """
    found = _NOT_IN_NAMES.search(name)
    if found is None:
        return None
    code, where = ord(found.group()), found.start() + 1
    if 0xDC80 <= code <= 0xDCFF:  # how Python reads the bytes of a name that are not UTF-8
        return f"holds a byte that is not UTF-8 (0x{code - 0xDC00:02X} at character {where})"
    if 0xD800 <= code <= 0xDFFF:
        return f"holds a lone surrogate (U+{code:04X} at character {where}), which is no text"
    if code in (0x2028, 0x2029):
        what = "a line or paragraph separator"
    elif re.match(f"[{BIDI_CONTROLS}]", found.group()):
        what = "a bidirectional control, which makes a terminal show the name as another"
    else:
        what = "a control character"
    return f"holds {what} (U+{code:04X} at character {where})"


def shown_name(name: str) -> str:
    """``name`` as a message can show it: quoted, with every character that is not printable
    escaped as Python writes it (``'a\\nb'``), and cut after SHOWN_NAME_LIMIT characters."""
    if len(name) <= SHOWN_NAME_LIMIT:
        return repr(name)
    return f"{name[:SHOWN_NAME_LIMIT]!r}... ({len(name)} characters)"


REQUIRED_PARAMETERS = (
    version_parameters.DATALOADER,
    version_parameters.BATCH_SIZE,
    version_parameters.EPOC_COUNT,
)

_STANDARD = (
    version_parameters.DATALOADER,
    version_parameters.BATCH_SIZE,
    version_parameters.EPOC_COUNT,
    version_parameters.LEARNING_RATE,
    version_parameters.MODEL_DIR_SUFFIX,
    version_parameters.ORDER,
)

# Read as None when a version does not set them, as the 1.x releases stored them; not stored,
# so a script that never uses them does not carry four empty parameters in its records.
OLD_RELEASE_PARAMETERS = (
    version_parameters.HOOKS,
    version_parameters.USE_ALL_CLASSES,
    version_parameters.CLASSES_COUNT,
    version_parameters.CLASSES_OFFSET,
)

_SET_BY_ADDV = frozenset(_STANDARD + OLD_RELEASE_PARAMETERS)
"""The parameters addV sets from its own arguments (or their defaults), not as extra defaults."""


class AttributeDict(dict):
    """A dict whose keys also read and write as attributes; a dict or list of dicts set as an
    attribute becomes AttributeDicts too, as release 1.1a3.post8's EasyDict versions did."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except MissingParameterError as exc:
            raise AttributeError(str(exc)) from None
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = with_attribute_access(value)


def with_attribute_access(value: Any) -> Any:
    """``value`` with every dict in it (through lists and tuples) an AttributeDict."""
    if isinstance(value, dict) and not isinstance(value, AttributeDict):
        return AttributeDict((key, with_attribute_access(item)) for key, item in value.items())
    if type(value) in (list, tuple):
        return type(value)(with_attribute_access(item) for item in value)
    return value


class MissingParameterError(KeyError):
    """A version asked for a parameter it does not have: a KeyError that says which it has."""

    def __init__(self, key: Any, message: str) -> None:
        super().__init__(key)
        self.message = message

    def __str__(self) -> str:
        return self.message


# Shown as the KeyError it is ("KeyError: version 'v' has no parameter ..."), not by the path
# of this module, which is nothing the user wrote; ``except KeyError`` catches it as ever.
MissingParameterError.__name__ = MissingParameterError.__qualname__ = "KeyError"
MissingParameterError.__module__ = "builtins"


class VersionParameters(AttributeDict):
    """A version's parameters: a dict that also answers attribute access (``version.batch_size``)."""

    def __missing__(self, key: Any) -> Any:
        if key in OLD_RELEASE_PARAMETERS:
            return None
        if key == "experiment_dir_suffix":  # release 1.1a3.post8's name
            return self.get(version_parameters.MODEL_DIR_SUFFIX)
        known = ", ".join(sorted(str(name) for name in self if name != version_parameters.NAME))
        name = self.get(version_parameters.NAME)
        raise MissingParameterError(key, f"version {name!r} has no parameter {key!r}; its parameters: {known or 'none'}") from None

    def missing_required(self) -> List[str]:
        """The required parameters (DATALOADER, BATCH_SIZE, EPOC_COUNT) this version lacks."""
        return [key for key in REQUIRED_PARAMETERS if self.get(key) is None]


def _readme_form(
    learning_rate: Any = None,
    dataloader: Any = None,
    batch_size: Optional[int] = None,
    epoc_count: Optional[float] = None,
    model_dir_suffix: Optional[str] = None,
    order: Optional[int] = None,
    hooks: Any = None,
    use_all_classes: Any = None,
    classes_count: Any = None,
    classes_offset: Any = None,
    **defaults: Any,
) -> Dict[str, Any]:
    """Versions(learning_rate, dataloader, batch_size, epoc_count, ...): the README's form."""
    return dict(locals())  # the arguments bound, in order: what inspect's bind gives, without importing it


def _experiment_form(
    dataloader: Any = None, batch_size: Optional[int] = None, epoc_count: Optional[float] = None, **defaults: Any
) -> Dict[str, Any]:
    """Versions(dataloader, batch_size, epoc_count, **defaults): release 1.1a3.post8's form."""
    return dict(locals())


def _form_of(args: Sequence[Any], kwargs: Dict[str, Any]) -> Any:
    """Which constructor form a call uses. The README form's second argument is the
    DataLoader, never a number, and its first is the learning rate, never a DataLoader."""
    if not args:
        return _readme_form
    loader_first = callable(getattr(args[0], "get_train_input", None)) and callable(
        getattr(args[0], "get_train_sample_count", None)
    )
    number_second = len(args) >= 2 and isinstance(args[1], (int, float)) and not isinstance(args[1], bool)
    if loader_first or number_second or version_parameters.LEARNING_RATE in kwargs:
        return _experiment_form
    return _readme_form


class Versions:
    """Defaults shared by every version, and the versions added with :meth:`addV`.

    ``Versions(learning_rate, dataloader, batch_size=None, epoc_count=None,
    model_dir_suffix=None, order=None)`` is the documented form. Scripts of release
    1.1a3.post8 wrote ``Versions(dataloader, batch_size, epoc_count, learning_rate=..., ...)``:
    a call whose first argument is a DataLoader, whose second is a number, or that gives
    ``learning_rate`` by keyword beside positional arguments is read in that form. Keyword
    arguments beyond the named ones are defaults for a custom parameter of every version.

    Versions run in ORDER; a version without an explicit order runs in declaration order.
    """

    @overload
    def __init__(
        self,
        learning_rate: Any = None,
        dataloader: Any = None,
        batch_size: Optional[int] = None,
        epoc_count: Optional[float] = None,
        model_dir_suffix: Optional[str] = None,
        order: Optional[int] = None,
        **defaults: Any,
    ) -> None: ...

    @overload
    def __init__(self, dataloader: Any, batch_size: Optional[int] = None, epoc_count: Optional[float] = None, **defaults: Any) -> None: ...

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        form = _form_of(args, kwargs)
        try:
            values = form(*args, **kwargs)
        except TypeError as exc:
            # Python names the form's function; the user wrote Versions(...).
            raise TypeError(f"{form.__doc__.split(':')[0]}: {str(exc).replace(form.__name__ + '() ', '')}") from None
        extra = values.pop("defaults")
        suffix = extra.pop("experiment_dir_suffix", None)
        if form is _experiment_form:
            # That release gave each version a folder of its own unless add_version() named a
            # suffix, and ignored one given here; a shared default would make them one folder.
            extra.pop(version_parameters.MODEL_DIR_SUFFIX, None)
            extra = with_attribute_access(extra)
        elif values.get(version_parameters.MODEL_DIR_SUFFIX) is None:
            values[version_parameters.MODEL_DIR_SUFFIX] = suffix
        for key in (*_STANDARD, *OLD_RELEASE_PARAMETERS):
            values.setdefault(key, extra.pop(key, None))
        values.update(extra)
        self._defaults = _Defaults(values)
        self._versions: Dict[str, VersionParameters] = {}
        self._template: Dict[str, Any] = {}
        self._template_of = -1  # the defaults' change count the template was made at
        self._configs: Dict[str, "ConfigVersion"] = {}
        self._config_globs: List[Tuple[str, List[str]]] = []

    @property
    def versions(self) -> Dict[str, VersionParameters]:
        """Every version by name, in declaration order (the original's public mapping)."""
        return self._versions

    @property
    def versions_defaults(self) -> Dict[str, Any]:
        """The defaults a version takes for what it does not set; changing one affects later addV()."""
        return self._defaults

    def addV(  # noqa: N802 - original API name
        self,
        name: str,
        dataloader: Any = None,
        batch_size: Optional[int] = None,
        epoc_count: Optional[float] = None,
        learning_rate: Any = None,
        model_dir_suffix: Optional[str] = None,
        order: Optional[int] = None,
        custom_paramters: Optional[Dict[str, Any]] = None,
        hooks: Any = None,
        use_all_classes: Any = None,
        classes_count: Any = None,
        classes_offset: Any = None,
        *,
        custom_parameters: Optional[Dict[str, Any]] = None,
        **extra_parameters: Any,
    ) -> VersionParameters:
        """Add the version ``name``; unset parameters take the defaults.

        ``custom_paramters`` (the original spelling), ``custom_parameters`` and any extra
        keyword arguments all become custom parameters of the version. ``hooks`` to
        ``classes_offset`` are the original 1.x releases' parameters, in their places.

        A name :func:`name_problem` refuses (a control character, say) is kept here, so the
        script still imports; the daemon refuses that one version where versions are listed.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a version name must be a non-empty string, not {name!r}")
        if ":" in name:
            raise ValueError(f"version name {name!r} contains ':', which models.config uses to name versions")
        if name in self._versions:
            raise ValueError(f"version {name!r} is defined twice")
        # Every child imports its script, so a script of 10,000 versions runs this 10,000 times
        # before each version starts: each version is a copy of a template made from the
        # defaults (once, until they change), with what this call sets written over it.
        if hooks is None and use_all_classes is None and classes_count is None and classes_offset is None:
            if self._template_of != self._defaults.changes:
                self._template, self._template_of = _version_template(self._defaults, {}), self._defaults.changes
            version = VersionParameters(self._template)
        else:
            given = dict(zip(OLD_RELEASE_PARAMETERS, (hooks, use_all_classes, classes_count, classes_offset)))
            version = VersionParameters(_version_template(self._defaults, given))
        version["name"] = name
        if dataloader is not None:
            version["dataloader"] = dataloader
        if batch_size is not None:
            version["batch_size"] = batch_size
        if epoc_count is not None:
            version["epoc_count"] = epoc_count
        if learning_rate is not None:
            version["learning_rate"] = learning_rate
        if model_dir_suffix is not None:
            version["model_dir_suffix"] = model_dir_suffix
        for custom in (custom_paramters, custom_parameters, extra_parameters):
            if not custom:
                continue
            for key, value in custom.items():
                if key in (version_parameters.NAME, version_parameters.ORDER):
                    raise ValueError(f"version {name!r}: {key!r} cannot be a custom parameter")
                version[key] = value
        if order is None:
            default_order = self._defaults.get(version_parameters.ORDER)
            order = len(self._versions) if default_order is None else default_order
        version[version_parameters.ORDER] = order
        self._versions[name] = version
        return version

    def add_version(
        self,
        name: str,
        dataloader: Any = None,
        batch_size: Optional[int] = None,
        epoc_count: Optional[float] = None,
        experiment_dir_suffix: Optional[str] = None,
        order: Optional[int] = None,
        custom_paramters: Optional[Dict[str, Any]] = None,
        **parameters: Any,
    ) -> VersionParameters:
        """Release 1.1a3.post8's addV: the same, with its positional order and suffix name;
        dicts among the parameters read as attributes too, as that release's did."""
        if experiment_dir_suffix is not None:
            parameters[version_parameters.MODEL_DIR_SUFFIX] = experiment_dir_suffix
        return self.addV(
            name,
            dataloader,
            batch_size,
            epoc_count,
            order=order,
            custom_paramters=with_attribute_access(custom_paramters),
            **with_attribute_access(parameters),
        )

    def rangeOnParameters(  # noqa: N802 - original API name
        self,
        names: Optional[Sequence[str]] = None,
        combining_parameters: Iterable[str] = (),
        parameters: Optional[Dict[str, Any]] = None,
    ) -> List[str]:
        """Add one version for every combination of the values of ``combining_parameters``.

        ``parameters`` maps a parameter name to its value; for each name in
        ``combining_parameters`` the value is a list of values to range over (a single value
        counts as a list of one). The grid is their Cartesian product, the last parameter
        varying fastest. Parameters not combined apply to every version; those not given at
        all take the defaults. ``names`` names the versions in grid order; without it a name
        is made from the combined values, e.g. ``learning_rate=0.1,width=8``.

        With ``combining_parameters=["learning_rate", "width"]`` and
        ``parameters={"learning_rate": [0.1, 0.01], "width": [8, 16], "batch_size": 32}``
        four versions are added, each with batch_size 32. Returns the names added.
        """
        parameters = dict(parameters or {})
        combining = list(combining_parameters)
        for key in combining:
            if key not in parameters:
                raise ValueError(f"combining parameter {key!r} has no values in `parameters`")
        axes = [_as_list(parameters[key]) for key in combining]
        grid = list(itertools.product(*axes))
        if names is None:
            names = [",".join(f"{key}={_name_part(value)}" for key, value in zip(combining, combo)) for combo in grid]
            made: set = set()
            for name in names:
                problem = (
                    name_problem(name)
                    or ("holds ':', which separates a script from its version" if ":" in name else None)
                    or ("is made twice: values that read alike" if name in made else None)
                )
                made.add(name)
                if problem:
                    raise ValueError(
                        f"rangeOnParameters: the version name {shown_name(name)} made from the values {problem}; "
                        "pass names=[...] to name the versions of the grid, one for each combination"
                    )
        else:
            names = list(names)
            if len(names) != len(grid):
                raise ValueError(f"{len(names)} names given for {len(grid)} combinations")
        added = []
        for name, combo in zip(names, grid):
            values = dict(parameters)
            values.update(zip(combining, combo))
            standard = {key: values.pop(key) for key in _STANDARD if key in values}
            self.addV(name, custom_parameters=values, **standard)
            added.append(name)
        return added

    def add_config_files(self, *patterns: str, overrides: Sequence[str] = ()) -> List[str]:
        """Add a version for each configuration file that ``patterns`` name (paths or globs,
        relative to the script's folder); returns the names added.

        A YAML file (``.yaml``, ``.yml``) is composed by Hydra (its defaults list, config
        groups, interpolations resolved): its top-level keys become the version's parameters,
        and it is named by the file's stem. ``overrides`` are Hydra's (``lr=0.01``,
        ``model=large``, ``+extra=1``); a sweep (``lr=0.1,0.01``) makes one version for each
        combination, named as Hydra names its multirun jobs (``lr=0.1,model=large``, with the
        stem first when several files are given). A gin file makes one version whose
        parameters are its bindings (``Configurable.argument``); it is bound by gin in the
        version's own run. Every version also gets ``config_file``, the file it came from.

        The files' bytes are part of each version's fingerprint, so editing a file reruns its
        versions, and they are kept in the run record (``.mlpipeline/configs/``). A file that
        cannot be parsed makes a version that fails, when it runs, with the parser's message.
        Needs ``mlpipeline[hydra]`` for YAML and ``mlpipeline[gin]`` for gin files.
        """
        from mlpipeline.script_support import config_files

        caller = sys._getframe(1).f_globals.get("__file__")
        base = os.path.dirname(os.path.abspath(caller)) if isinstance(caller, str) else os.getcwd()
        files, globs = config_files.expand_patterns(patterns, base)
        added = []
        for config in config_files.read_config_versions(files, overrides, base, several=bool(globs)):
            # Nested sections read as attributes too (cfg.model.width), as OmegaConf's do.
            parameters = with_attribute_access(dict(config.parameters))
            for key in (version_parameters.NAME, version_parameters.ORDER):
                if key in parameters and config.problem is None:
                    config.problem = (
                        f"{config.source}: its key {key!r} is mlpipeline's own parameter (the version's "
                        f"{'name' if key == 'name' else 'place in the queue'}); rename the key in the file"
                    )
                parameters.pop(key, None)
            parameters[config_files.CONFIG_FILE_PARAMETER] = config.source
            standard = {key: parameters.pop(key) for key in _STANDARD if key in parameters}
            if standard.get(version_parameters.MODEL_DIR_SUFFIX) is None and self._defaults.get(version_parameters.MODEL_DIR_SUFFIX) is None:
                # A model_dir of its own, as a version made from a file is a model of its own.
                standard[version_parameters.MODEL_DIR_SUFFIX] = config_files.folder_name(config.name)
            self.addV(config.name, custom_parameters=parameters, **standard)
            self._configs[config.name] = config
            added.append(config.name)
        self._config_globs.extend(globs)
        return added

    def config_version(self, name: str) -> Optional["ConfigVersion"]:
        """What configured version ``name`` when it came from a configuration file, else None."""
        return getattr(self, "_configs", {}).get(name)

    @property
    def config_globs(self) -> List[Tuple[str, List[str]]]:
        """Each glob add_config_files expanded, with the files it matched then."""
        return list(getattr(self, "_config_globs", []))

    def getVersion(self, name: str) -> VersionParameters:  # noqa: N802 - original API name
        """The parameters of version ``name``; ValueError naming the known versions otherwise."""
        found = self._versions.get(name) if isinstance(name, str) else None
        if not (isinstance(found, VersionParameters) and found.get(version_parameters.NAME) == name):
            # Only then: a walk of every version is 5 ms at 10,000, paid before each of them.
            self._check_mapping()
        try:
            return self._versions[name]
        except KeyError:
            known = ", ".join(repr(n) for n in self._versions) or "none"
            raise ValueError(f"no version named {name!r}; the versions are: {known}") from None

    get_version = getVersion

    def get_versions(self) -> List[VersionParameters]:
        """The versions in the order they run: by ORDER, then by declaration."""
        self._check_mapping()
        indexed = list(enumerate(self._versions.values()))
        # The declaration index breaks ties, so equal ORDER values keep declaration order;
        # a version put into the mapping by hand without one runs where it was put.
        indexed.sort(key=lambda item: (_order_or(item[1], item[0]), item[0]))
        return [version for _, version in indexed]

    def get_version_names(self) -> List[str]:
        """Version names in run order."""
        return [version[version_parameters.NAME] for version in self.get_versions()]

    def _check_mapping(self) -> None:
        """Versions a script put into ``versions`` by hand (the original's scripts could) as
        VersionParameters, each named by its key."""
        for name, version in list(self._versions.items()):
            if isinstance(version, VersionParameters) and version.get(version_parameters.NAME) == name:
                continue
            if not isinstance(name, str) or not name or ":" in name:
                raise ValueError(f"Versions.versions has a version named {name!r}; a name is a non-empty string without ':'")
            if not isinstance(version, dict):
                raise ValueError(f"Versions.versions[{name!r}] is a {type(version).__name__}, not a dict of parameters")
            version = VersionParameters(version)
            version[version_parameters.NAME] = name
            self._versions[name] = version

    def __len__(self) -> int:
        return len(self._versions)

    def __contains__(self, name: object) -> bool:
        return name in self._versions


class _Defaults(dict):
    """The defaults of every version: a dict that counts its changes, so that addV can copy
    one template for each version until a script changes a default (``versions_defaults``)."""

    changes = 0

    def __setitem__(self, key: Any, value: Any) -> None:
        self.changes += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self.changes += 1
        super().__delitem__(key)

    def __ior__(self, other: Any) -> "_Defaults":
        self.changes += 1
        return super().__ior__(other)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.changes += 1
        super().update(*args, **kwargs)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self.changes += 1
        return super().setdefault(key, default)

    def pop(self, *args: Any) -> Any:
        self.changes += 1
        return super().pop(*args)

    def popitem(self) -> Any:
        self.changes += 1
        return super().popitem()

    def clear(self) -> None:
        self.changes += 1
        super().clear()


def _version_template(defaults: Dict[str, Any], old_release: Dict[str, Any]) -> Dict[str, Any]:
    """A version's parameters before addV's own arguments are written over them, in the order
    every version's record shows them: name, the standard parameters, the 1.x releases' (those
    set, by ``old_release`` or a default), the other defaults set, then (by addV) custom ones."""
    template: Dict[str, Any] = {version_parameters.NAME: None}
    for key in _STANDARD[:-1]:  # ORDER is added last, by addV
        template[key] = defaults.get(key)
    for key in OLD_RELEASE_PARAMETERS:
        value = old_release.get(key)
        if value is None:
            value = defaults.get(key)
        if value is not None:
            template[key] = value
    for key, default in defaults.items():
        if default is not None and key not in _SET_BY_ADDV:
            template[key] = default
    return template


def _order_or(version: Dict[str, Any], index: int) -> Any:
    order = version.get(version_parameters.ORDER)
    return index if order is None else order


def _as_list(value: Any) -> List[Any]:
    if isinstance(value, (list, tuple, range)):
        return list(value)
    return [value]


def _name_part(value: Any) -> str:
    """A grid value as its version's name shows it: as printed, or by its class name where the
    print would hold a memory address (which differs in every process, so no run could find
    its version again) or fails."""
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - a value of the script's own whose __str__ raises
        return type(value).__name__
    return type(value).__name__ if " at 0x" in text else text
