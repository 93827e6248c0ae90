"""Monthly operational statistics from the SQL store (`monthly_report`, its shape in
`probe.report.models`), and their renderings (`probe.report.render`)."""

from probe.report.models import MonthlyReport
from probe.report.stats import Month, build_report, monthly_report

__all__ = ["Month", "MonthlyReport", "build_report", "monthly_report"]
