"""Demo tools for `assistant_config.yaml`: no network, deterministic where they can be."""

from __future__ import annotations

import random
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_UNITS: dict[str, tuple[str, float]] = {
    # unit: (dimension, factor to the base unit)
    "m": ("length", 1.0),
    "km": ("length", 1000.0),
    "cm": ("length", 0.01),
    "mi": ("length", 1609.344),
    "ft": ("length", 0.3048),
    "in": ("length", 0.0254),
    "kg": ("mass", 1.0),
    "g": ("mass", 0.001),
    "lb": ("mass", 0.45359237),
    "oz": ("mass", 0.028349523125),
    "l": ("volume", 1.0),
    "ml": ("volume", 0.001),
    "gal": ("volume", 3.785411784),
}


def get_time(timezone: str, now: str | None = None) -> dict[str, str]:
    """The current time in an IANA time zone (``now``, ISO 8601 UTC, fixes the clock)."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {timezone!r}") from None
    moment = datetime.fromisoformat(now) if now else datetime.now(ZoneInfo("UTC"))
    if moment.tzinfo is None:  # a naive time means UTC, not this machine's zone
        moment = moment.replace(tzinfo=ZoneInfo("UTC"))
    local = moment.astimezone(zone)
    return {
        "timezone": timezone,
        "time": local.strftime("%H:%M"),
        "date": local.strftime("%Y-%m-%d"),
        "utc_offset": local.strftime("%z"),
    }


def convert_units(value: float, from_unit: str, to_unit: str) -> dict[str, float | str]:
    """Convert between units of length, mass, volume, or °C/°F/K."""
    temps = {"c", "f", "k"}
    a, b = from_unit.lower(), to_unit.lower()
    if a in temps and b in temps:
        celsius = {"c": value, "f": (value - 32) * 5 / 9, "k": value - 273.15}[a]
        result = {"c": celsius, "f": celsius * 9 / 5 + 32, "k": celsius + 273.15}[b]
    else:
        if a not in _UNITS or b not in _UNITS:
            raise ValueError(f"unknown unit: {from_unit if a not in _UNITS else to_unit}")
        if _UNITS[a][0] != _UNITS[b][0]:
            raise ValueError(f"cannot convert {_UNITS[a][0]} to {_UNITS[b][0]}")
        result = value * _UNITS[a][1] / _UNITS[b][1]
    return {"value": round(result, 6), "unit": to_unit}


def roll_dice(sides: int = 6, count: int = 1, seed: int | None = None) -> dict[str, object]:
    """Roll ``count`` dice with ``sides`` sides; a ``seed`` makes the roll repeatable."""
    rng = random.Random(seed)
    rolls = [rng.randint(1, sides) for _ in range(count)]
    return {"rolls": rolls, "total": sum(rolls)}
