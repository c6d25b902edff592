"""The auditor's questions at the edge: what GET /v1/audit/log, /v1/audit/overdue and /v1/audit/stats
answer, read from the store with the same code as `axis audit log`, `axis overdue` and `axis stats`.

Who may ask is decided in `service.py` (an auditor's credential only); here the query parameters are
read as the commands read their options (days and instants in the rules' time zone, agency codes
checked) and each answer is one page. The methods are synchronous: the service runs them in a thread.

Callers may rely on `QueryError` (a ValueError, one line) for a parameter that cannot be used, and on
the items being those of the commands' `--json` output.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from axis.auditor.calendar import CalendarError, parse_instant
from axis.auditor.deadlines import Rules
from axis.auditor.overdue import Cursor, OverdueReport, calendar_json, load_rules
from axis.auditor.stats import traffic
from axis.edxml import parse_agency_code
from axis.refusals import Refusal
from axis.settings import load
from axis.store import Store
from axis.store.audit import entry_json

_ACTION = re.compile(r"[A-Za-z0-9._:-]{1,255}")   # the audit log's action names


class QueryError(ValueError):
    """A query parameter that cannot be used; the message names it."""


class AuditQueries:
    def __init__(self, store: Store, rules: Rules | None = None) -> None:
        """`rules`: the overdue report's; None reads them from the settings when first needed."""
        self.store = store
        self._rules = rules

    @property
    def rules(self) -> Rules:
        if self._rules is None:
            self._rules = load_rules(load())
        return self._rules

    def _instant(self, name: str, text: str | None, *, end_of_day: bool = False) -> datetime | None:
        if text is None:
            return None
        try:
            return parse_instant(text, self.rules.calendar.zone, end_of_day=end_of_day)
        except CalendarError as exc:
            raise QueryError(f"query.{name}: {exc}") from None

    def log_page(self, *, agency: str | None, since: str | None, until: str | None, kinds: list[str],
                 after: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
        """A page of audit entries and the seq to continue after (None: no more)."""
        for kind in kinds:
            if not _ACTION.fullmatch(kind):
                raise QueryError(f"query.kind: {kind[:40]!r} is not an action name such as accepted or delivered")
        code = None
        if agency is not None:
            try:
                code = parse_agency_code(agency).text
            except Refusal as refusal:
                raise QueryError(f"query.agency: {refusal.detail}") from None
        entries = self.store.audit_page(after=after, agency=code, since=self._instant("since", since),
                                        until=self._instant("until", until, end_of_day=True), actions=kinds,
                                        limit=limit + 1)
        more = len(entries) > limit
        entries = entries[:limit]
        return [entry_json(e) for e in entries], entries[-1].seq if more else None

    def overdue_page(self, *, as_of: str | None, after: Cursor | None, limit: int
                     ) -> tuple[dict[str, Any], Cursor | None]:
        """The report's head and a page of its rows, and the cursor to continue after (None: no more)."""
        when = self._instant("as_of", as_of, end_of_day=True) or datetime.now(UTC)
        rules = self.rules
        report = OverdueReport(self.store, rules, when)
        rows = list(islice(report.rows(after), limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        return ({"as_of": rules.calendar.local(when).isoformat(), "time_zone": rules.calendar.zone.key,
                 "calendar": calendar_json(rules.calendar), "warnings": report.warnings,
                 "items": [row.as_json() for row in rows]}, rows[-1].cursor if more else None)

    def stats(self, *, by: str, since: str | None, until: str | None) -> dict[str, Any]:
        zone = self.rules.calendar.zone
        start, end = self._instant("since", since), self._instant("until", until, end_of_day=True)
        if by not in ("agency", "day"):
            raise QueryError(f"query.by: statistics are by agency or by day, not {by[:20]!r}")
        rows = traffic(self.store, by="agency" if by == "agency" else "day", zone=zone, since=start, until=end)
        return {"by": by, "since": start.isoformat() if start else None, "until": end.isoformat() if end else None,
                "time_zone": zone.key, "rows": [row.as_json() for row in rows]}
