"""Prometheus metrics of an indexing run: live on an HTTP port while it runs, and/or written to a file at the
end for node_exporter's textfile collector (the usual way for batch jobs such as the indexer CronJob)."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, start_http_server, write_to_textfile

from latentdex.indexer.pipeline import IndexProgress, IndexReport

OUTCOMES = ("new", "changed", "unchanged", "moved", "deleted", "failed")


class IndexerMetrics:
    """Progress, outcome counts, rate and duration of one `latentdex index` run."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.done = Gauge(
            "latentdex_indexer_files_done", "Files decoded so far in this run.", registry=self.registry
        )
        self.total = Gauge(
            "latentdex_indexer_files_total", "Files this run has to decode.", registry=self.registry
        )
        self.images = Gauge(
            "latentdex_indexer_images",
            "Files by outcome in the last run.",
            ["outcome"],
            registry=self.registry,
        )
        self.rate = Gauge(
            "latentdex_indexer_images_per_second",
            "Files decoded per second over the last run.",
            registry=self.registry,
        )
        self.seconds = Gauge(
            "latentdex_indexer_run_seconds", "Duration of the last run.", registry=self.registry
        )
        self.finished = Gauge(
            "latentdex_indexer_last_run_timestamp_seconds",
            "When the last run ended (Unix time); alert when it grows old.",
            registry=self.registry,
        )
        self.interrupted = Gauge(
            "latentdex_indexer_interrupted", "1 if the last run was interrupted.", registry=self.registry
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Expose the metrics at http://host:port/metrics while the run lasts; returns the port."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)

    def progress(self, progress: IndexProgress) -> None:
        if progress.stage == "indexing":
            self.done.set(progress.done)
            if progress.total is not None:
                self.total.set(progress.total)

    def report(self, report: IndexReport) -> None:
        for outcome in OUTCOMES:
            self.images.labels(outcome).set(getattr(report.counts, outcome))
        self.rate.set(report.images_per_second)
        self.seconds.set(report.seconds)
        self.interrupted.set(int(report.interrupted))
        self.finished.set(time.time())

    def write(self, path: Path) -> None:
        """Write the metrics in the text format, atomically (what the textfile collector expects)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), self.registry)
