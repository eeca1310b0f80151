"""Metric and MetricContainer: running averages a training loop keeps, as releases
1.1a3.post3 to post8 of the original package gave them to scripts (with the tracking delta
of post6 on: post3 to post5's was always 0).

A Metric sums the values it is given and the counts that go with them; ``avg()`` is one
over the other since the last ``reset()``, ``avg_epoc()`` the same since the last
``reset_epoc()``, which also pushes the epoch's average onto a window of the last
``track_average_epoc_count`` epochs. A MetricContainer is a dict of named Metrics that also
answers attribute access (``metrics.loss.update(0.3)``). Returned from ``evaluate_model``,
it is recorded as ``{name: avg_epoc()}``, what release post8 logged for it.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from mlpipeline.script_support import channel

MetricGroup = Dict[str, Any]
"""``{"metrics": [names], "track_average_epoc_count": n}``: names sharing their own window."""


class Metric:
    """One named quantity's running sums."""

    def __init__(self, track_average_epoc_count: int = 1) -> None:
        if track_average_epoc_count < 1:
            raise ValueError(f"track_average_epoc_count must be 1 or more, not {track_average_epoc_count!r}")
        self.track_average_epoc_count = track_average_epoc_count
        self.count: float = 0
        self.value: float = 0
        self.epoc_count: float = 0
        self.epoc_value: float = 0
        self.track_value_list: List[float] = []

    def update(self, value: Any, count: float = 1) -> None:
        """Add ``value`` (a number, or a tensor or numpy scalar) as ``count`` samples' worth.

        ``value`` is added as it is: pass a batch's sum with its size, or a batch's mean with
        count 1, whichever average you want ``avg()`` to be.
        """
        number = value
        if not isinstance(number, (int, float)):
            item = getattr(value, "item", None)  # a numpy or torch scalar
            number = item() if callable(item) else value
        if not isinstance(number, (int, float)):
            raise TypeError(f"Metric.update() takes a number, not {type(value).__name__}")
        self.count += count
        self.value += number
        self.epoc_count += count
        self.epoc_value += number

    def reset(self) -> None:
        """Start ``avg()`` again; the epoch's sums go on."""
        self.count = 0
        self.value = 0

    def reset_epoc(self) -> None:
        """End an epoch: its average joins the tracking window, and its sums start again."""
        self.track_value_list.append(self.avg_epoc())
        del self.track_value_list[: -self.track_average_epoc_count]
        self.epoc_count = 0
        self.epoc_value = 0

    def avg(self) -> float:
        """The average since the last ``reset()`` (0 before any update)."""
        return self.value / self.count if self.count else 0

    def _mlpipeline_plain_value_(self) -> float:  # channel.PLAIN_VALUE: what a record holds of it
        return self.avg_epoc()

    def avg_epoc(self) -> float:
        """The average since the last ``reset_epoc()`` (0 before any update)."""
        return self.epoc_value / self.epoc_count if self.epoc_count else 0

    def get_tracking_average(self) -> float:
        """The mean of the window of epoch averages; 0 until it is half full."""
        if not self.track_value_list or len(self.track_value_list) < self.track_average_epoc_count / 2:
            return 0
        import statistics  # here: most versions never ask, and every child imports this module

        return statistics.mean(self.track_value_list)

    def get_tracking_delta(self) -> float:
        """How much the epoch average moved across a full window (last minus first); 0 until full."""
        if len(self.track_value_list) < self.track_average_epoc_count:
            return 0
        return self.track_value_list[-1] - self.track_value_list[0]

    def get_tracking_stdev(self) -> float:
        """The standard deviation of the window of epoch averages; 0 with fewer than two."""
        if len(self.track_value_list) < 2:
            return 0
        import statistics

        return statistics.stdev(self.track_value_list)

    def __repr__(self) -> str:
        return f"Metric(avg={self.avg():.4g}, avg_epoc={self.avg_epoc():.4g})"


class MetricContainer(dict):
    """Named Metrics, read as keys or attributes.

    ``MetricContainer(["loss", "accuracy"], track_average_epoc_count=5)`` gives each name a
    window of 5 epochs; ``MetricContainer([{"metrics": ["loss"]}, {"metrics": ["acc"],
    "track_average_epoc_count": 10}])`` gives each group its own. Only Metrics may be set.
    """

    def __init__(
        self,
        metrics: Optional[Union[List[str], List[MetricGroup]]] = None,
        track_average_epoc_count: int = 1,
        **_ignored: Any,
    ) -> None:
        super().__init__()
        if metrics is None:
            return
        if not isinstance(metrics, list):
            raise TypeError(f"MetricContainer takes a list of metric names or of groups, not {type(metrics).__name__}")
        for item in metrics:
            if isinstance(item, dict):
                if "metrics" not in item:
                    raise ValueError(f"a metric group needs a 'metrics' list of names: {item!r}")
                window = item.get("track_average_epoc_count", track_average_epoc_count)
                for name in item["metrics"]:
                    self[name] = Metric(window)
            else:
                self[item] = Metric(track_average_epoc_count)

    def __setitem__(self, name: str, value: Metric) -> None:
        if not isinstance(value, Metric):
            raise TypeError(f"a MetricContainer holds Metrics; {name!r} was given a {type(value).__name__}")
        super().__setitem__(name, value)

    def __getattr__(self, name: str) -> Metric:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no metric named {name!r}; the metrics are: {', '.join(map(repr, self)) or 'none'}") from None

    def __setattr__(self, name: str, value: Metric) -> None:
        self[name] = value

    def _subset(self, metrics: Optional[Iterable[str]]) -> List[Tuple[str, Metric]]:
        if metrics is None:
            return list(self.items())
        wanted = {metrics} if isinstance(metrics, str) else set(metrics)
        return [(name, metric) for name, metric in self.items() if name in wanted]

    def reset(self, metrics: Optional[Iterable[str]] = None) -> None:
        """``reset()`` every metric, or those named."""
        for _, metric in self._subset(metrics):
            metric.reset()

    def reset_epoc(self, metrics: Optional[Iterable[str]] = None) -> None:
        """``reset_epoc()`` every metric, or those named."""
        for _, metric in self._subset(metrics):
            metric.reset_epoc()

    def log_metrics(
        self,
        metrics: Optional[Iterable[str]] = None,
        log_to_file: bool = True,
        complete_epoc: bool = False,
        items_per_row: int = 3,
        charachters_per_row: int = 50,
        name_prefix: str = "",
        **_ignored: Any,
    ) -> str:
        """Log ``name: avg`` for every metric (or those named), a few to a line; returns the text.

        With ``complete_epoc`` the epoch averages are logged instead. A line holds at most
        ``items_per_row`` metrics and about ``charachters_per_row`` characters.
        """
        rows: List[str] = []
        row = ""
        in_row = 0
        for name, metric in self._subset(metrics):
            value = metric.avg_epoc() if complete_epoc else metric.avg()
            item = f"{name_prefix}{name}: {value:.4f}    "
            if row and (in_row >= items_per_row or len(row) + len(item) > charachters_per_row):
                rows.append(row)
                row, in_row = "", 0
            row += item
            in_row += 1
        if row:
            rows.append(row)
        for text in rows:
            channel.log(text.rstrip())
        return "".join(rows)

    def _mlpipeline_plain_value_(self) -> Dict[str, float]:  # channel.PLAIN_VALUE
        return self.as_record()

    def as_record(self) -> Dict[str, float]:
        """``{name: avg_epoc()}``: what the records keep of a container a hook returned."""
        return {name: metric.avg_epoc() for name, metric in self.items()}

    def __repr__(self) -> str:
        return f"MetricContainer({', '.join(f'{name}={metric.avg():.4g}' for name, metric in self.items())})"
