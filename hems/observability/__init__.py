"""Prometheus metrics (one registry per home), structured logging, sd_notify and the watchdog."""

from hems.observability.logging_setup import JsonFormatter, KeyValueFormatter, setup_logging, stderr_is_journal
from hems.observability.metrics import (DEFAULT_METRICS_ADDRESS, DEFAULT_METRICS_PORT, HomeMetrics,
                                        MetricsExporter, start_exporter)
from hems.observability.notify import Notifier, Watchdog, send_notify, watchdog_interval_s

__all__ = [
    "DEFAULT_METRICS_ADDRESS", "DEFAULT_METRICS_PORT", "HomeMetrics", "JsonFormatter", "KeyValueFormatter",
    "MetricsExporter", "Notifier", "Watchdog", "send_notify", "setup_logging", "start_exporter",
    "stderr_is_journal", "watchdog_interval_s",
]
