"""Catalogue facts read from a product title: product type (and from it a category), colour,
material, size and pack size.

Rules over fixed word lists, so every value can be explained ("'holder' is in the title") and
nothing is trained. The product type is the title's rightmost product noun phrase (English puts
the head noun last: "white hanging heart t-light holder" is a holder), the longest phrase winning
where several end at the same word ("cake tins" is a cake tin, not a tin). The lexicon holds
general retail nouns grouped into departments, not one shop's vocabulary.

>>> annotate_title("WHITE HANGING HEART T-LIGHT HOLDER")["product_type"]
't-light holder'
>>> annotate_title("PACK OF 72 RETROSPOT CAKE CASES")["pack_size"]
72
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Final

from shelfwise.data.schemas import Item
from shelfwise.data.vocabulary import COLOURS, MATERIALS

ANNOTATED: Final = "annotated"  # attribute listing which facts the annotator (not the shop) supplied
ATTRIBUTE_KEYS: Final = ("product_type", "colour", "material", "size", "pack_size")

# department -> product nouns, comma-separated (singular; a phrase is matched as whole words)
_DEPARTMENTS: Final[dict[str, str]] = {
    "lighting": (
        "t-light holder, tealight holder, candle holder, lantern, lamp, lampshade, light, lights, "
        "fairy lights, candle, t-light, tealight, night light, torch, bulb"
    ),
    "kitchen & dining": (
        "mug, cup, saucer, teacup, plate, bowl, dish, jug, teapot, cake stand, cakestand, cake case, "
        "cake tin, tin, jar, jam jar, bottle, water bottle, beaker, glass, tumbler, cutlery, spoon, "
        "fork, knife, napkin, paper napkin, placemat, coaster, tray, lunch box, lunch bag, tea towel, "
        "apron, oven glove, baking set, mould, cake mould, chopping board, board, pan, frying pan, "
        "egg cup, egg, tea set, tea cosy, mug cosy, storage jar, container, straw, doily, cake, "
        "measuring spoon, pot, kettle, grater, whisk, rolling pin"
    ),
    "home decor": (
        "clock, alarm clock, wall clock, frame, photo frame, mirror, sign, wall art, plaque, "
        "ornament, decoration, hanging decoration, wreath, garland, bunting, vase, doorstop, door "
        "stop, doormat, cushion, cushion cover, cover, curtain, knob, drawer knob, hook, coat hook, "
        "hanger, coat hanger, wall sticker, chalkboard, blackboard, tile, incense, diffuser, bird "
        "house, windmill, mobile, wind chime, bell, figure, statue, throw, rug, blanket"
    ),
    "storage & furniture": (
        "box, trinket box, storage box, jewellery box, basket, drawer, cabinet, shelf, rack, stool, "
        "chair, table, crate, bin, storage bag, chest, case"
    ),
    "bags & accessories": (
        "bag, shopper, tote, tote bag, handbag, purse, wallet, washbag, umbrella, parasol, passport "
        "cover, luggage tag, tag, hand warmer, scarf, hat, glove, gloves, sunglasses, keyring, key "
        "ring, backpack, rucksack, hair clip, hairband, hair slide, belt"
    ),
    "jewellery": (
        "necklace, bracelet, earrings, earring, ring, charm, brooch, pendant, bangle, anklet, chain, "
        "bead, beads, watch"
    ),
    "stationery & gifts": (
        "card, greeting card, birthday card, christmas card, gift wrap, wrap, wrapping paper, gift "
        "tag, notebook, sketchbook, journal, diary, calendar, pencil, pen, crayon, eraser, rubber, "
        "ruler, sticker, stickers, tape, ribbon, ribbons, envelope, notepad, pad, book, magnet, "
        "fridge magnet, stamp, postcard, gift bag, gift box, tissues, tissue"
    ),
    "toys & games": (
        "toy, game, jigsaw, puzzle, doll, teddy, soft toy, ball, marble, marbles, kit, craft kit, "
        "skipping rope, spinning top, playhouse, domino, dominoes, playing cards, kite, bubbles, "
        "puppet, rattle, money bank, money box"
    ),
    "party & seasonal": (
        "party bag, balloon, cracker, bauble, christmas tree, advent calendar, party cup, party "
        "plate, candy, bunting flag, flag, banner, confetti, paper chain, paper chain kit, hat, mask"
    ),
    "garden": (
        "watering can, plant pot, planter, flower pot, seed, seeds, bird feeder, feeder, gnome, "
        "trowel, windchime, parasol base, herb marker, marker"
    ),
    "bath & body": (
        "soap, soap dish, towel, bath, sponge, toothbrush holder, lip balm, hand cream, toiletry bag, "
        "flannel, hot water bottle"
    ),
    "clothing & footwear": (
        "shirt, t-shirt, tshirt, dress, skirt, trousers, jeans, jacket, coat, sweater, jumper, "
        "hoodie, sock, socks, shoe, shoes, boot, boots, sandal, sandals, slipper, slippers, kurta, "
        "saree, top, shorts, pyjamas, legging, leggings, bra, vest"
    ),
    "electronics": (
        "phone case, phone charm, charger, cable, headphones, earphones, speaker, mouse, keyboard, "
        "usb, adapter, battery, power bank"
    ),
}
# when a phrase sits in two departments, the first listed above wins
_TYPES: Final[dict[tuple[str, ...], str]] = {}
for _dept, _phrases in _DEPARTMENTS.items():
    for _p in _phrases.split(","):
        _TYPES.setdefault(tuple(_p.split()), _dept)
_MAX_WORDS: Final = max(len(k) for k in _TYPES)

_EXTRA_COLOURS: Final = frozenset({"ivory", "aqua", "lilac", "mint", "charcoal", "burgundy", "coral"})
_EXTRA_MATERIALS: Final = frozenset(
    {
        "zinc",
        "enamel",
        "metal",
        "felt",
        "wicker",
        "porcelain",
        "lace",
        "acrylic",
        "velvet",
        "pewter",
        "iron",
        "slate",
        "resin",
        "paper",
        "card",
        "cardboard",
        "straw",
        "tin",
        "crystal",
        "china",
    }
)
_TYPE_MATERIAL_CLASH: Final = frozenset({"tin", "card", "glass", "paper", "straw"})  # also a product noun
_WORD: Final = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_SIZE_WORDS: Final = {
    "xxs": "xxs",
    "xs": "xs",
    "xl": "xl",
    "xxl": "xxl",
    "xxxl": "xxxl",
    "small": "small",
    "mini": "small",
    "medium": "medium",
    "large": "large",
    "big": "large",
    "jumbo": "jumbo",
    "giant": "jumbo",
}
_SIZE_UNIT: Final = re.compile(r"\b(\d+(?:\.\d+)?\s?(?:gb|tb|ml|l|ltr|g|kg|mm|cm|m|inch|inches|in))\b")
_PACK: Final = [
    re.compile(r"\b(?:set|pack|box|bag|tube|tin|jar|bundle|lot)\s*(?:of\s*|/\s*)?(\d{1,4})\b"),
    re.compile(r"\b(\d{1,4})\s*(?:pc|pcs|piece|pieces|pk|count|ct)\b"),
    re.compile(r"^(\d{1,4})\s+(?!\d)(?=[a-z-]+s\b)"),  # "12 pencils …", "60 cake cases"
]


def _singular(word: str) -> str:
    if len(word) <= 3 or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


def _product_type(words: list[str]) -> str | None:
    forms = [_singular(w) for w in words]
    best: tuple[int, int] | None = None  # (end, length)
    found = None
    for end in range(len(words), 0, -1):
        for n in range(min(_MAX_WORDS, end), 0, -1):
            for seq in (tuple(words[end - n : end]), tuple(forms[end - n : end])):
                if seq in _TYPES and (best is None or (end, n) > best):
                    best, found = (end, n), " ".join(seq)
        if found is not None:
            return found
    return None


def annotate_title(title: str | None) -> dict[str, Any]:
    """Facts in one title: any of ``product_type``, ``department``, ``colour``, ``material``,
    ``size``, ``pack_size`` (an int) that the title states."""
    text = (title or "").lower()
    words = _WORD.findall(text)
    out: dict[str, Any] = {}
    kind = _product_type(words)
    if kind is not None:
        out["product_type"] = kind
        out["department"] = _TYPES[tuple(kind.split())]
    colour = next((w for w in words if w in COLOURS or w in _EXTRA_COLOURS), None)
    if colour:
        out["colour"] = "grey" if colour == "gray" else colour
    kind_words = set(kind.split()) if kind else set()
    material = next(
        (
            w
            for w in words
            if (w in MATERIALS or w in _EXTRA_MATERIALS)
            and not (w in _TYPE_MATERIAL_CLASH and (w in kind_words or _singular(w) in kind_words))
        ),
        None,
    )
    if material:
        out["material"] = "wood" if material == "wooden" else material
    size = next((_SIZE_WORDS[w] for w in words if w in _SIZE_WORDS), None)
    if size is None and (m := _SIZE_UNIT.search(text)):
        size = m.group(1).replace(" ", "")
    if size:
        out["size"] = size
    for pattern in _PACK:
        m = pattern.search(text)
        if m and 1 < int(m.group(1)) <= 1000:
            out["pack_size"] = int(m.group(1))
            break
    return out


def annotate_item(item: Item) -> Item:
    """A copy of ``item`` with the facts its title states added to ``attributes`` (values the shop
    gave are kept) and, when it has none, a category ``department > product type``. The keys the
    annotator supplied are listed under ``attributes["annotated"]``."""
    found = annotate_title(item.title)
    added: dict[str, Any] = {}
    for key in ATTRIBUTE_KEYS:
        if key in found and item.attributes.get(key) in (None, ""):
            added[key] = found[key]
    category = item.category
    if category is None and "product_type" in found:
        category = f"{found['department']} > {found['product_type']}"
        added_keys = [*added, "category"]
    else:
        added_keys = list(added)
    if not added_keys:
        return item
    previous = item.attributes.get(ANNOTATED) or []
    attributes = {**item.attributes, **added, ANNOTATED: sorted({*previous, *added_keys})}
    return replace(item, attributes=attributes, category=category)


def annotate_items(items: Iterable[Item]) -> list[Item]:
    return [annotate_item(it) for it in items]
