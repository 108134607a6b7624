"""The time condition kind: time of day and days of the week, in a time zone."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from thoth.policy.cond_base import CHECK, Check, CompilerBase, Kind
from thoth.policy.context import CallContext, SessionHistory
from thoth.policy.loader import Path

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class TimeConditions(CompilerBase):
    def check_time(self, value: Any, path: Path) -> Check | None:
        if not isinstance(value, dict) or not ({"between", "days"} & set(value)):
            self.err(path, "time takes {between: ['22:00', '06:00']?, days: [sat, sun]?, tz: 'UTC'?}")
            return None
        extra = set(value) - {"between", "days", "tz"}
        if extra:
            self.err(path, f"unknown time field(s) {sorted(extra)}")
            return None
        try:
            zone = ZoneInfo(str(value.get("tz", "UTC")))
        except (ZoneInfoNotFoundError, ValueError):
            self.err((*path, "tz"), f"unknown time zone {value.get('tz')!r}")
            return None
        span: tuple[int, int] | None = None
        if "between" in value:
            between = value["between"]
            start = _minutes(between[0]) if isinstance(between, list) and len(between) == 2 else None
            end = _minutes(between[1]) if isinstance(between, list) and len(between) == 2 else None
            if start is None or end is None:
                self.err((*path, "between"), "between takes two times of day, e.g. ['22:00', '06:00'] (quote them)")
                return None
            span = (start, end)
        days = None
        if "days" in value:
            items = value["days"] if isinstance(value["days"], list) else [value["days"]]
            lowered = [str(d).lower()[:3] for d in items]
            if not items or any(d not in DAYS for d in lowered):
                self.err((*path, "days"), f"days takes names from {', '.join(DAYS)}")
                return None
            days = frozenset(DAYS.index(d) for d in lowered)

        def cond(c: CallContext, a: dict[str, Any], h: SessionHistory) -> bool:
            moment = datetime.fromtimestamp(c.now, zone)
            if days is not None and moment.weekday() not in days:
                return False
            if span is None:
                return True
            minute = moment.hour * 60 + moment.minute
            start, end = span
            return start <= minute < end if start <= end else (minute >= start or minute < end)

        return cond


def _minutes(value: Any) -> int | None:
    """'22:30' -> 1350. YAML 1.1 reads an unquoted 22:30 as the base-60 integer 1350 (= minutes)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value <= 24 * 60 else None
    if isinstance(value, str):
        m = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip())
        if m and int(m[1]) <= 24 and int(m[2]) < 60:
            return min(int(m[1]) * 60 + int(m[2]), 24 * 60)
    return None


KINDS = {
    "time": Kind(CHECK, TimeConditions.check_time),
}
