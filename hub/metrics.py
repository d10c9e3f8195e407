"""In-process counters and gauges, rendered in the Prometheus text format (version 0.0.4).

Counts that live in the store (runs, inbox, outbox, tokens) are read at scrape time by
``hub.web.ops``; this module holds what only the process knows: what its runs counted
(records, API calls, retries, throttled answers, ...), webhook deliveries, inbox items
processed. Use the shared metrics below::

    from hub import metrics
    metrics.RUN_COUNTS.inc(12, connection="crm", key="records")

Label values are free text; label names are fixed when the metric is declared.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

MetricType = Literal["counter", "gauge"]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class Sample:
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass
class Metric:
    """A family of samples; one per distinct set of label values."""

    name: str
    help: str
    type: MetricType = "counter"
    labelnames: tuple[str, ...] = ()
    _values: dict[tuple[str, ...], float] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _key(self, labels: dict[str, object]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def inc(self, amount: float = 1, **labels: object) -> None:
        if self.type == "counter" and amount < 0:
            raise ValueError(f"counter {self.name} cannot go down")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def set(self, value: float, **labels: object) -> None:
        if self.type != "gauge":
            raise ValueError(f"{self.name} is a counter; use inc()")
        key = self._key(labels)
        with self._lock:
            self._values[key] = value

    def value(self, **labels: object) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[Sample]:
        with self._lock:
            items = sorted(self._values.items())
        return [Sample(tuple(zip(self.labelnames, k, strict=True)), v) for k, v in items]

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


def render(metrics: Iterable[Metric]) -> str:
    """The text exposition format: HELP, TYPE, then one line per sample."""
    lines: list[str] = []
    for metric in metrics:
        sample_name = metric.name
        if metric.type == "counter" and not sample_name.endswith("_total"):
            sample_name += "_total"
        lines.append(f"# HELP {metric.name} {_escape(metric.help)}")
        lines.append(f"# TYPE {metric.name} {metric.type}")
        for sample in metric.samples():
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels)
            where = f"{{{labels}}}" if labels else ""
            lines.append(f"{sample_name}{where} {_number(sample.value)}")
    return "\n".join(lines) + "\n"


class Registry:
    """Named metrics; declaring the same name twice returns the first declaration."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._lock = threading.Lock()

    def _declare(self, name: str, help: str, type: MetricType, labelnames: Iterable[str]) -> Metric:
        with self._lock:
            found = self._metrics.get(name)
            if found is not None:
                if found.type != type or found.labelnames != tuple(labelnames):
                    raise ValueError(f"metric {name} is already declared differently")
                return found
            metric = Metric(name, help, type, tuple(labelnames))
            self._metrics[name] = metric
            return metric

    def counter(self, name: str, help: str, labelnames: Iterable[str] = ()) -> Metric:
        return self._declare(name, help, "counter", labelnames)

    def gauge(self, name: str, help: str, labelnames: Iterable[str] = ()) -> Metric:
        return self._declare(name, help, "gauge", labelnames)

    def metrics(self) -> list[Metric]:
        with self._lock:
            return list(self._metrics.values())

    def render(self) -> str:
        return render(self.metrics())


REGISTRY = Registry()

RUN_COUNTS = REGISTRY.counter(
    "crmhub_run_counts",
    "What the runs finished in this process counted, by connection and key: records, pages, "
    "created, updated, deleted, pushed_*, and http_calls, http_retries, http_throttled, "
    "http_errors, http_bytes_sent, http_bytes_received.",
    ("connection", "key"),
)
WEBHOOKS = REGISTRY.counter(
    "crmhub_webhook_deliveries",
    "Webhook requests answered, by connection and outcome "
    "(accepted, duplicate, handshake, malformed, rejected).",
    ("connection", "outcome"),
)
INBOX_PROCESSED = REGISTRY.counter(
    "crmhub_inbox_processed",
    "Inbox items processed by this process, by source and result (done, failed, dead).",
    ("source", "result"),
)

_START = time.time()


def process_metrics() -> list[Metric]:
    """CPU, memory, open files and start time of this process (cheap: one syscall each)."""
    out: list[Metric] = []
    cpu = Metric("process_cpu_seconds", "User and system CPU time spent.", "counter")
    times = os.times()
    cpu.inc(times.user + times.system)
    out.append(cpu)
    start = Metric("process_start_time_seconds", "Start time since the epoch.", "gauge")
    start.set(_START)
    out.append(start)
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
        rss = Metric("process_resident_memory_bytes", "Resident memory size.", "gauge")
        rss.set(resident_pages * os.sysconf("SC_PAGE_SIZE"))
        out.append(rss)
        fds = Metric("process_open_fds", "Open file descriptors.", "gauge")
        fds.set(len(os.listdir("/proc/self/fd")))
        out.append(fds)
    except (OSError, ValueError, IndexError):
        pass  # not Linux: the portable figures above still go out
    return out
