"""Exports (SPEC section 13): the settlement sheet of offsets (结算单), a store's
redemptions and returns, and the scheme summary, as CSV or XLSX files.

`sheet.py`, `redemptions.py` and `summary.py` build rows (pure); `writers.py` writes
them to a temporary file; `service.py` reads each sheet in one read-only snapshot,
page by page, and hands back the finished file to send.
"""
