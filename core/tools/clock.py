"""`get_current_time`: the date and time now in a time zone (IANA name such as Asia/Shanghai, or UTC±HH:MM)."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone as dt_timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.tools.registry import Tool, ToolError

OFFSET = re.compile(r"^(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?$", re.IGNORECASE)


def _zone(name: str):
    name = name.strip() or "UTC"
    if name.upper() in ("UTC", "GMT", "Z"):
        return dt_timezone.utc
    match = OFFSET.match(name)
    if match:
        sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
        if hours > 14 or minutes >= 60:
            raise ToolError(f"offset out of range: {name!r}")
        delta = timedelta(hours=hours, minutes=minutes)
        return dt_timezone(delta if sign == "+" else -delta)
    if len(name) > 64 or ".." in name or name.startswith("/"):
        raise ToolError(f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"unknown time zone {name!r}; use an IANA name such as Asia/Shanghai or an offset "
                        "such as UTC+08:00") from None


def get_current_time(timezone: str = "UTC", now: datetime | None = None) -> dict:
    moment = (now or datetime.now(dt_timezone.utc)).astimezone(_zone(timezone))
    return {"timezone": timezone, "datetime": moment.isoformat(timespec="seconds"),
            "date": moment.date().isoformat(), "time": moment.strftime("%H:%M:%S"), "weekday": moment.strftime("%A")}


def current_time(timezone: str = "UTC") -> dict:
    """The tool's function: the time now (``get_current_time`` with no ``now`` to pass)."""
    return get_current_time(timezone)


TOOL = Tool("get_current_time", "The current date, time and weekday in a time zone.",
            {"type": "object", "properties": {"timezone": {
                "type": "string", "description": "IANA time zone (e.g. Asia/Shanghai, Europe/Paris) or UTC+08:00"}},
             "required": []}, current_time, isolated=True)
