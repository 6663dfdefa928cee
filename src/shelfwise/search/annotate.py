"""Product attribute annotation: brand, colour, material, size and gender from titles and descriptions.

Rules over the catalogue's own vocabulary (brands other items carry) and fixed word lists, so the
output is explainable and needs no training. ``annotation_precision`` measures each attribute
against items whose specifications state it (e.g. Flipkart's ``color``, ``ideal for``, ``fabric``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from shelfwise.data.schemas import Item
from shelfwise.data.vocabulary import COLOURS, GENDERS, MATERIALS

_WORD: Final = re.compile(r"[a-z0-9\u4e00-\u9fff]+(?:'s)?")
_SIZE: Final = re.compile(
    r"\b(?:size[:\s]+)?(xxs|xs|s|m|l|xl|xxl|xxxl|[2-5]xl|free size|"
    r"\d+(?:\.\d+)?\s?(?:gb|tb|ml|ltr|kg|mm|cm|inch|inches))\b"
)
_COLOUR_SPEC: Final = re.compile(r"\bcolou?r[:\s]+([a-z]+)")
_MATERIAL_SPEC: Final = re.compile(r"\b(?:fabric|material)[:\s]+(?:100% )?([a-z]+)")
# Truth keys in catalogue specifications, per attribute.
TRUTH_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "colour": ("color", "colour"),
    "material": ("fabric", "material", "outer material"),
    "gender": ("ideal for",),
    "brand": ("brand",),
}
_GENDER_WORDS: Final = {**GENDERS, "men's": "men", "women's": "women", "boy's": "boys", "girl's": "girls"}


class Annotator:
    """``annotate(item)`` → ``{"brand": …, "colour": …, "material": …, "size": …, "gender": …}``."""

    def __init__(self, brands: Iterable[str] = ()) -> None:
        self.brands = {b.lower().strip() for b in brands if b and len(b.strip()) >= 2}
        self._max_brand_words = max((len(b.split()) for b in self.brands), default=1)

    @classmethod
    def from_items(cls, items: Iterable[Item]) -> Annotator:
        return cls(it.brand for it in items if it.brand)

    def annotate(self, item: Item) -> dict[str, str]:
        title = (item.title or "").lower()
        description = (item.description or "").lower()[:2000]
        words = _WORD.findall(title)
        out: dict[str, str] = {}
        # brand: the longest leading phrase of the title that some item carries as its brand
        for n in range(min(self._max_brand_words, len(words)), 0, -1):
            phrase = " ".join(words[:n])
            if phrase in self.brands:
                out["brand"] = phrase
                break
        colour = next((w for w in words if w in COLOURS), None)
        if colour is None:
            m = _COLOUR_SPEC.search(description)
            colour = m.group(1) if m and m.group(1) in COLOURS else None
        if colour:
            out["colour"] = "grey" if colour == "gray" else colour
        material = next((w for w in words if w in MATERIALS), None)
        if material is None:
            m = _MATERIAL_SPEC.search(description)
            material = m.group(1) if m and m.group(1) in MATERIALS else None
        if material:
            out["material"] = material
        genders = sorted({_GENDER_WORDS[w] for w in words if w in _GENDER_WORDS})
        if genders:
            out["gender"] = ", ".join(genders)
        m = _SIZE.search(title)
        if m:
            out["size"] = m.group(1)
        return out

    def annotate_all(self, items: Iterable[Item]) -> list[dict[str, str]]:
        return [self.annotate(it) for it in items]


def _truth(item: Item, attribute: str) -> str | None:
    for key in TRUTH_KEYS.get(attribute, ()):
        value = item.attributes.get(key)
        if value:
            return str(value).lower()
    if attribute == "brand" and item.brand:
        return item.brand.lower()
    return None


def _agrees(attribute: str, predicted: str, truth: str) -> bool:
    if attribute == "gender":
        said = {_GENDER_WORDS.get(w.strip(), w.strip()) for w in re.split(r"[,&/]| and ", truth) if w.strip()}
        return set(predicted.split(", ")) <= said
    if attribute == "brand":
        return predicted == truth or truth.startswith(predicted) or predicted.startswith(truth)
    return predicted in _WORD.findall(truth) or predicted == truth


def annotation_precision(
    items: Sequence[Item], annotator: Annotator | None = None
) -> dict[str, dict[str, Any]]:
    """Per attribute: how many items have a known value, how many got a prediction, and the
    precision and coverage of those predictions. The brand vocabulary leaves each item's own brand
    out unless another item carries it too, so a brand is never "found" only because it was given."""
    brand_counts: Counter[str] = Counter(it.brand.lower() for it in items if it.brand)
    results: dict[str, dict[str, Any]] = {}
    counts: dict[str, list[int]] = {a: [0, 0, 0] for a in ("brand", "colour", "material", "gender")}
    base = annotator or Annotator(b for b, c in brand_counts.items())
    for item in items:
        own = (item.brand or "").lower()
        if annotator is None and own and brand_counts[own] == 1:
            ann = Annotator(b for b, c in brand_counts.items() if b != own).annotate(item)
        else:
            ann = base.annotate(item)
        for attribute, slot in counts.items():
            truth = _truth(item, attribute)
            if truth is None:
                continue
            slot[0] += 1
            if attribute in ann:
                slot[1] += 1
                slot[2] += _agrees(attribute, ann[attribute], truth)
    for attribute, (known, predicted, right) in counts.items():
        results[attribute] = {
            "items_with_truth": known,
            "predicted": predicted,
            "precision": round(right / predicted, 3) if predicted else None,
            "coverage": round(predicted / known, 3) if known else None,
        }
    return results


def apply_annotations(items: Iterable[Item], annotator: Annotator) -> list[Item]:
    """Copies of ``items`` with annotated values added to ``attributes`` (existing values are kept)."""
    import dataclasses

    out = []
    for item in items:
        found: Mapping[str, str] = annotator.annotate(item)
        extra = {k: v for k, v in found.items() if k not in item.attributes and k != "brand"}
        brand = item.brand or found.get("brand")
        out.append(dataclasses.replace(item, attributes={**item.attributes, **extra}, brand=brand))
    return out
