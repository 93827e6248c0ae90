"""Monthly operational statistics from the SQL store (`build_report`), and their renderings."""

from probe.report.stats import Month, build_report

__all__ = ["Month", "build_report"]
