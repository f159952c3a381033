"""Printable reports of ``hazardgw report ...`` (docs/cli.md).

* :mod:`gateway.reports.document`: the document model (:class:`~gateway.reports.document.Report`
  of key/value lists, tables, paragraphs, bar charts) rendered as A4 HTML or CSV;
* :mod:`gateway.reports.common`: periods in the site's time zone (``--month``, ``--from/--to``),
  time/duration/percent formatting, the header facts, the journal file;
* :mod:`gateway.reports.cli`: the ``report`` group; one line per report in ``REPORTS``;
* :mod:`gateway.reports.alarms`: ``hazardgw report alarms`` (monthly alarm report);
* :mod:`gateway.reports.tests`: ``hazardgw report tests`` (commissioning report: loop checks and
  bump tests per tag, calibration due dates).

A report builds a ``Report`` from the config and the gateway's records (read-only) and
calls ``document.write(report, path)``; the language is ``--lang`` or
``notification.language``.
"""
