"""Face values: what each class of coin is worth, parsed from its label or display name.

Common forms are understood: ``50c``, ``2e``, ``1 Cent``, ``2 Euro``, ``50 Euro Cent``,
``10 Kroner``, ``5 Kurus``, and the "denomination,currency,country" display names of
``cat_to_name.json`` (``"10 Kroner,Danish krone,denmark"``), whose currency part wins over a
guess from the unit word. A ``--values`` file overrides both. Classes whose value cannot be
read are listed by the caller, never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.runtime import read_json_object

EUR = "EUR"

MAJOR_UNITS = {
    "e": EUR, "€": EUR, "eur": EUR, "euro": EUR, "euros": EUR,
    "pound": "GBP", "pounds": "GBP", "£": "GBP", "lira": "TRY", "yen": "JPY", "rand": "ZAR",
    "zloty": "PLN", "złoty": "PLN", "forint": "HUF", "ruble": "RUB", "rouble": "RUB", "rubles": "RUB",
    "yuan": "CNY", "rupee": "INR", "rupees": "INR",
    "dollar": "dollar", "dollars": "dollar", "$": "dollar",
    "krone": "krone", "kroner": "krone", "krona": "krona", "kronor": "krona", "kr": "krone",
    "franc": "franc", "francs": "franc", "peso": "peso", "pesos": "peso", "shilling": "shilling",
}  # fmt: skip
"""Unit word -> currency (an ISO code where the word names one currency, else the word)."""

MINOR_UNITS = {
    "c": EUR, "ct": EUR, "cent": EUR, "cents": EUR, "euro cent": EUR, "euro cents": EUR,
    "p": "GBP", "pence": "GBP", "penny": "GBP", "kurus": "TRY", "kuruş": "TRY",
    "kopek": "RUB", "kopeks": "RUB", "grosz": "PLN", "groszy": "PLN", "paisa": "INR", "paise": "INR",
    "øre": "krone", "ore": "krone", "öre": "krona", "centime": "franc", "centimes": "franc",
    "centavo": "peso", "centavos": "peso",
}  # fmt: skip
"""Hundredth-unit word -> currency. A bare "cent" is read as a euro cent unless the display name
names another currency (``"1 Cent,Australian dollar,australia"``)."""

_AMOUNT = re.compile(r"^\s*([€$£]?)\s*(\d+(?:[.,]\d+)?)\s*([^\d]*?)\s*$")


@dataclass(frozen=True)
class FaceValue:
    value: float
    """In the currency's main unit: 0.5 for a 50 cent coin."""
    currency: str

    @property
    def short(self) -> str:
        """``50c`` / ``2e`` for euro coins (the keys of the built-in size table)."""
        cents = round(self.value * 100)
        return f"{cents}c" if cents < 100 else f"{self.value:g}e"


def parse_denomination(text: str, currency: str | None = None) -> FaceValue | None:
    """``"50c"`` -> 0.5 EUR, ``"10 Kroner"`` -> 10 krone; None when the text is not an amount."""
    match = _AMOUNT.match(text.strip().lower())
    if not match:
        return None
    symbol, number, unit = match.groups()
    amount = float(number.replace(",", "."))
    unit = (symbol or unit).strip()
    if unit in MINOR_UNITS:
        return FaceValue(round(amount / 100, 4), currency or MINOR_UNITS[unit])
    if unit in MAJOR_UNITS:
        return FaceValue(amount, currency or MAJOR_UNITS[unit])
    return None


def face_value(label: str, name: str | None = None) -> FaceValue | None:
    """A class's face value from its display name (``denomination,currency,country``) or label."""
    for text in (name, label):
        if not text:
            continue
        parts = [p.strip() for p in text.split(",")]
        currency = parts[1] if len(parts) == 3 else None
        currency = MAJOR_UNITS.get(currency.lower(), currency) if currency else None
        found = parse_denomination(parts[0], currency)
        if found is not None:
            return found
    return None


def load_values(path: str | Path) -> dict[str, FaceValue]:
    """A ``{"label": {"value": 0.5, "currency": "EUR"}}`` JSON file (a bare number means euro)."""
    values = {}
    for label, entry in read_json_object(path, "values").items():
        if isinstance(entry, (int, float)):
            entry = {"value": entry, "currency": EUR}
        if not isinstance(entry, dict) or not isinstance(entry.get("value"), (int, float)):
            raise CoinfeatError(
                f'values file {path}: {label!r} needs a number or {{"value": 0.5, "currency": "EUR"}}'
            )
        values[str(label)] = FaceValue(float(entry["value"]), str(entry.get("currency", EUR)))
    return values


def class_values(
    classes: list[str], names: dict[str, str], values: dict[str, FaceValue] | None = None
) -> dict[str, FaceValue | None]:
    """Face value per class: the ``values`` file by label or display name, else parsed."""
    table = values or {}
    found = {}
    for label in classes:
        name = names.get(label)
        found[label] = table.get(label) or table.get(name or "") or face_value(label, name)
    return found


def totals(amounts: list[FaceValue]) -> dict[str, float]:
    """Sum per currency, rounded to hundredths."""
    summed: dict[str, float] = {}
    for amount in amounts:
        summed[amount.currency] = summed.get(amount.currency, 0.0) + amount.value
    return {currency: round(value, 2) for currency, value in sorted(summed.items())}


def format_total(total: dict[str, float]) -> str:
    """``"12.34 EUR + 10.00 krone"``; "nothing" for an empty total."""
    return " + ".join(f"{value:.2f} {currency}" for currency, value in total.items()) or "nothing"


@dataclass(frozen=True)
class Doubt:
    """A counted coin whose answer set holds more than one class: its number, the value counted and
    the values it could have instead (same currency; other currencies are not mixed in)."""

    number: int
    counted: FaceValue
    instead: list[tuple[str, FaceValue]]


def total_range(total: dict[str, float], doubts: list[Doubt]) -> tuple[dict[str, float], dict[str, float]]:
    """The lowest and highest totals the doubtful coins allow, per currency: each doubtful coin
    moves the total by its cheapest and its dearest alternative."""
    low, high = dict(total), dict(total)
    for doubt in doubts:
        currency = doubt.counted.currency
        changes = [v.value - doubt.counted.value for _, v in doubt.instead if v.currency == currency]
        low[currency] = round(low.get(currency, 0.0) + min([0.0, *changes]), 2)
        high[currency] = round(high.get(currency, 0.0) + max([0.0, *changes]), 2)
    return low, high


def format_range(total: dict[str, float], doubts: list[Doubt]) -> str:
    """``"3.45 EUR, up to 3.65 EUR if coin 7 is 20c"``: the total, and how far the doubtful coins
    could move it; just the total when there is no doubt."""
    text = format_total(total)
    low, high = total_range(total, doubts)
    if not doubts or (low == total and high == total):
        return text
    if low == total:
        span = f"up to {format_total(high)}"
    elif high == total:
        span = f"down to {format_total(low)}"
    else:
        span = f"{format_total(low)} to {format_total(high)}"
    reasons = " or ".join(f"coin {d.number} is {' or '.join(name for name, _ in d.instead)}" for d in doubts)
    return f"{text}, {span} if {reasons}"
