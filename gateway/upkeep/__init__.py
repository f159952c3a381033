"""Detector upkeep (issue 17): test mode with records, calibration due dates, the in-use rate.

* :mod:`gateway.upkeep.store`: ``{store.path}/upkeep.sqlite3`` (tests and their records,
  recorded calibrations);
* :mod:`gateway.upkeep.testmode`: :class:`~gateway.upkeep.testmode.TestMode`, tags in test,
  expiry, the bump-test records;
* :mod:`gateway.upkeep.calibration`: due / overdue from the config and the records;
* :mod:`gateway.upkeep.inuse`: :class:`~gateway.upkeep.inuse.InUseRate`, 投用率 of gas detectors.

The supervisor builds them once per gateway (they survive reloads, like the live state) and
wires them in ``Gateway._wiring``; the API reaches them through the facade.
"""
