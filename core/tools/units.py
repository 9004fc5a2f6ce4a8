"""`unit_converter`: convert a value between units of length, mass, time, volume, speed, data size, temperature."""
from __future__ import annotations

import math

from core.tools.registry import Tool, ToolError

# unit -> (dimension, size in the dimension's base unit)
FACTORS = {
    "m": ("length", 1.0), "km": ("length", 1000.0), "cm": ("length", 0.01), "mm": ("length", 0.001),
    "mi": ("length", 1609.344), "yd": ("length", 0.9144), "ft": ("length", 0.3048), "in": ("length", 0.0254),
    "kg": ("mass", 1.0), "g": ("mass", 0.001), "mg": ("mass", 1e-6), "t": ("mass", 1000.0),
    "lb": ("mass", 0.45359237), "oz": ("mass", 0.028349523125),
    "s": ("time", 1.0), "ms": ("time", 0.001), "min": ("time", 60.0), "h": ("time", 3600.0),
    "day": ("time", 86400.0), "week": ("time", 604800.0),
    "l": ("volume", 1.0), "ml": ("volume", 0.001), "m3": ("volume", 1000.0), "gal": ("volume", 3.785411784),
    "m/s": ("speed", 1.0), "km/h": ("speed", 1 / 3.6), "mph": ("speed", 0.44704), "kn": ("speed", 1852 / 3600),
    "b": ("data", 1.0), "kb": ("data", 1e3), "mb": ("data", 1e6), "gb": ("data", 1e9), "tb": ("data", 1e12),
    "kib": ("data", 1024.0), "mib": ("data", 1024.0 ** 2), "gib": ("data", 1024.0 ** 3),
}
ALIASES = {"meter": "m", "meters": "m", "metre": "m", "kilometer": "km", "kilometers": "km", "mile": "mi",
           "miles": "mi", "foot": "ft", "feet": "ft", "inch": "in", "inches": "in", "kilogram": "kg",
           "kilograms": "kg", "gram": "g", "grams": "g", "pound": "lb", "pounds": "lb", "lbs": "lb",
           "ounce": "oz", "second": "s", "seconds": "s", "minute": "min", "minutes": "min", "hour": "h",
           "hours": "h", "days": "day", "weeks": "week", "liter": "l", "litre": "l", "liters": "l",
           "celsius": "c", "°c": "c", "fahrenheit": "f", "°f": "f", "kelvin": "k", "kmh": "km/h", "kph": "km/h",
           "byte": "b", "bytes": "b", "千米": "km", "公里": "km", "米": "m", "厘米": "cm", "千克": "kg", "公斤": "kg",
           "克": "g", "斤": "jin", "摄氏度": "c", "华氏度": "f"}
FACTORS["jin"] = ("mass", 0.5)
TEMPERATURE = {"c": (1.0, 0.0), "f": (5 / 9, -32.0), "k": (1.0, -273.15)}  # to celsius: (x + offset) * scale


def _unit(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in FACTORS and key not in TEMPERATURE:
        raise ToolError(f"unknown unit {name!r}; known: {', '.join(sorted(FACTORS) + ['c', 'f', 'k'])}")
    return key


def convert(value: float, from_unit: str, to_unit: str) -> float:
    if not math.isfinite(value):
        raise ToolError("value must be a finite number")
    src, dst = _unit(from_unit), _unit(to_unit)
    if src in TEMPERATURE or dst in TEMPERATURE:
        if not (src in TEMPERATURE and dst in TEMPERATURE):
            raise ToolError(f"cannot convert {from_unit} to {to_unit}: different quantities")
        scale, offset = TEMPERATURE[src]
        celsius = (value + offset) * scale
        scale, offset = TEMPERATURE[dst]
        return round(celsius / scale - offset, 10)
    (dim_a, fa), (dim_b, fb) = FACTORS[src], FACTORS[dst]
    if dim_a != dim_b:
        raise ToolError(f"cannot convert {from_unit} ({dim_a}) to {to_unit} ({dim_b})")
    result = value * fa / fb
    if not math.isfinite(result):
        raise ToolError("the result is too large")
    return float(f"{result:.12g}")


def unit_converter(value: float, from_unit: str, to_unit: str) -> dict:
    return {"value": convert(float(value), from_unit, to_unit), "unit": to_unit}


TOOL = Tool("unit_converter", "Convert a value between units (length, mass, time, volume, speed, data size, "
            "temperature C/F/K).",
            {"type": "object", "properties": {
                "value": {"type": "number", "description": "the amount to convert"},
                "from_unit": {"type": "string", "description": "unit of the value, e.g. km, lb, C"},
                "to_unit": {"type": "string", "description": "unit wanted, e.g. mi, kg, F"}},
             "required": ["value", "from_unit", "to_unit"]}, unit_converter, isolated=True)
