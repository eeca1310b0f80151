"""Versions: the named hyperparameter sets of one model script."""
from __future__ import annotations

import itertools
from typing import Any, Dict, Iterable, List, Optional, Sequence


class version_parameters:  # noqa: N801 - the original package's spelling, kept for scripts
    """Keys of a version's parameter dict."""

    NAME = "name"
    DATALOADER = "dataloader"
    BATCH_SIZE = "batch_size"
    EPOC_COUNT = "epoc_count"
    LEARNING_RATE = "learning_rate"
    MODEL_DIR_SUFFIX = "model_dir_suffix"
    ORDER = "order"


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


class VersionParameters(dict):
    """A version's parameters: a dict that also answers attribute access (``version.batch_size``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def missing_required(self) -> List[str]:
        """The required parameters (DATALOADER, BATCH_SIZE, EPOC_COUNT) this version lacks."""
        return [key for key in REQUIRED_PARAMETERS if self.get(key) is None]


class Versions:
    """Defaults shared by every version, and the versions added with :meth:`addV`.

    Versions run in ORDER; a version without an explicit order runs in declaration order.
    """

    def __init__(
        self,
        learning_rate: Any = None,
        dataloader: Any = None,
        batch_size: Optional[int] = None,
        epoc_count: Optional[int] = None,
        model_dir_suffix: Optional[str] = None,
        order: Optional[int] = None,
    ) -> None:
        self._defaults: Dict[str, Any] = {
            version_parameters.LEARNING_RATE: learning_rate,
            version_parameters.DATALOADER: dataloader,
            version_parameters.BATCH_SIZE: batch_size,
            version_parameters.EPOC_COUNT: epoc_count,
            version_parameters.MODEL_DIR_SUFFIX: model_dir_suffix,
        }
        self._default_order = order
        self._versions: Dict[str, VersionParameters] = {}

    def addV(  # noqa: N802 - original API name
        self,
        name: str,
        dataloader: Any = None,
        batch_size: Optional[int] = None,
        epoc_count: Optional[int] = None,
        learning_rate: Any = None,
        model_dir_suffix: Optional[str] = None,
        order: Optional[int] = None,
        custom_paramters: Optional[Dict[str, Any]] = None,
        custom_parameters: Optional[Dict[str, Any]] = None,
        **extra_parameters: Any,
    ) -> VersionParameters:
        """Add the version ``name``; unset parameters take the defaults.

        ``custom_paramters`` (the original spelling), ``custom_parameters`` and any extra
        keyword arguments all become custom parameters of the version.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a version name must be a non-empty string, not {name!r}")
        if ":" in name:
            raise ValueError(f"version name {name!r} contains ':', which models.config uses to name versions")
        if name in self._versions:
            raise ValueError(f"version {name!r} is defined twice")
        given = {
            version_parameters.DATALOADER: dataloader,
            version_parameters.BATCH_SIZE: batch_size,
            version_parameters.EPOC_COUNT: epoc_count,
            version_parameters.LEARNING_RATE: learning_rate,
            version_parameters.MODEL_DIR_SUFFIX: model_dir_suffix,
        }
        version = VersionParameters()
        version[version_parameters.NAME] = name
        for key, value in given.items():
            version[key] = self._defaults[key] if value is None else value
        for custom in (custom_paramters, custom_parameters, extra_parameters):
            for key, value in (custom or {}).items():
                if key in (version_parameters.NAME, version_parameters.ORDER):
                    raise ValueError(f"version {name!r}: {key!r} cannot be a custom parameter")
                version[key] = value
        if order is None:
            order = len(self._versions) if self._default_order is None else self._default_order
        version[version_parameters.ORDER] = order
        self._versions[name] = version
        return version

    add_version = addV

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
            names = [",".join(f"{key}={value}" for key, value in zip(combining, combo)) for combo in grid]
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

    def getVersion(self, name: str) -> VersionParameters:  # noqa: N802 - original API name
        """The parameters of version ``name``; ValueError naming the known versions otherwise."""
        try:
            return self._versions[name]
        except KeyError:
            known = ", ".join(repr(n) for n in self._versions) or "none"
            raise ValueError(f"no version named {name!r}; the versions are: {known}") from None

    get_version = getVersion

    def get_versions(self) -> List[VersionParameters]:
        """The versions in the order they run: by ORDER, then by declaration."""
        indexed = list(enumerate(self._versions.values()))
        # The declaration index breaks ties, so equal ORDER values keep declaration order.
        indexed.sort(key=lambda item: (item[1][version_parameters.ORDER], item[0]))
        return [version for _, version in indexed]

    def get_version_names(self) -> List[str]:
        """Version names in run order."""
        return [version[version_parameters.NAME] for version in self.get_versions()]

    def __len__(self) -> int:
        return len(self._versions)

    def __contains__(self, name: object) -> bool:
        return name in self._versions


def _as_list(value: Any) -> List[Any]:
    if isinstance(value, (list, tuple, range)):
        return list(value)
    return [value]

