"""Deterministic fake people for sandboxes: realistic, unique, cheap enough for millions.

Person ``i`` of seed ``s`` is always the same, whatever else was generated, so a sandbox can
serve page 5000 of a huge list without holding the list: ``fake_person(seed, i)``.
Emails and phone numbers are unique within a seed; people share companies (and so email
domains), as in a real CRM. Domains use the reserved ``.example`` top-level domain.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Person", "fake_people", "fake_person"]


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST = _words(
    "Anna Ben Chloe David Emma Farid Grace Hiro Isla Jonas Kate Liam Maria Noah Olivia "
    "Pedro Quinn Rosa Sam Tara Umar Vera Will Xena Yusuf Zoe Aisha Bruno Carmen Dmitri "
    "Elena Felix Greta Hugo Ines Jakub Leila Marco Nina Oscar Priya Rahul Sofia Tomas "
    "Ursula Viktor Wen Yara Zain Alice Chen Diego Freya Ivan Julia Kenji Lucia Mateo"
)
LAST = _words(
    "Smith Jones Garcia Muller Rossi Dubois Kowalski Nakamura Silva Andersen Novak Murphy "
    "Okafor Patel Kim Nguyen Cohen Fischer Larsen Moreau Costa Ivanova Santos Weber "
    "Hansen Romano Brown Wilson Taylor Clarke Walsh Byrne Berg Lindqvist Horvat Popescu "
    "Yilmaz Haddad Mendes Ortiz Schmidt Wagner Becker Hoffmann Schulz Koch Richter Klein"
)
ADJECTIVES = _words(
    "Northwind Blue Bright Silver Green Rapid Summit Harbor Maple Granite Cedar Aurora "
    "Pioneer Atlas Golden Crescent Evergreen Copper Lighthouse Horizon Orchard Falcon"
)
NOUNS = _words(
    "Traders Logistics Labs Foods Analytics Dental Studios Partners Systems Bakery "
    "Consulting Outfitters Robotics Energy Media Health Freight Software Designs Works"
)
TITLES = (
    "", "", "CEO", "Office Manager", "Head of Sales", "Accountant", "Engineer",
    "Marketing Lead", "Operations Manager", "Support Agent", "Buyer", "Founder",
)  # fmt: skip
CITIES = (
    ("US", "San Francisco"), ("US", "Chicago"), ("US", "Austin"), ("GB", "London"),
    ("GB", "Manchester"), ("DE", "Berlin"), ("FR", "Lyon"), ("NL", "Utrecht"),
)  # fmt: skip
US_AREAS = ("415", "312", "512", "206", "617", "303", "646", "503")
EMAIL_FORMS = ("{f}.{l}", "{f}{l}", "{fi}{l}", "{f}_{l}", "{f}")


@dataclass(frozen=True)
class Person:
    index: int
    first_name: str
    last_name: str
    email: str
    phone: str | None
    """E.164; about one in five people has none."""
    company: str
    domain: str
    title: str
    city: str
    country: str

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


_MASK = (1 << 64) - 1


class _Draws:
    """Choices drawn from one splitmix64 hash of (seed, index): fast, and enough entropy
    for every field (``random.Random`` is slow to seed once per person)."""

    def __init__(self, seed: int, index: int) -> None:
        z = (seed * 0x9E3779B97F4A7C15 + (index + 1) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        self.bits = z ^ (z >> 31)

    def next(self, n: int) -> int:
        self.bits, choice = divmod(self.bits, n)
        return choice


def fake_person(seed: int, index: int) -> Person:
    """Person ``index`` (0-based) of ``seed``."""
    d = _Draws(seed, index)
    first, last = FIRST[d.next(len(FIRST))], LAST[d.next(len(LAST))]
    company = f"{ADJECTIVES[d.next(len(ADJECTIVES))]} {NOUNS[d.next(len(NOUNS))]}"
    domain = company.lower().replace(" ", "-") + ".example"
    form = EMAIL_FORMS[d.next(len(EMAIL_FORMS))]
    local = form.format(f=first.lower(), l=last.lower(), fi=first[0].lower())
    # The index keeps every address unique, however many people are made.
    email = f"{local}{index}@{domain}" if index else f"{local}@{domain}"
    country, city = CITIES[d.next(len(CITIES))]
    phone = _phone(index, country) if d.next(5) else None
    return Person(
        index=index,
        first_name=first,
        last_name=last,
        email=email,
        phone=phone,
        company=company,
        domain=domain,
        title=TITLES[d.next(len(TITLES))],
        city=city,
        country=country,
    )


def fake_people(seed: int, n: int, start: int = 0) -> Iterator[Person]:
    """People ``start`` .. ``start + n - 1`` of ``seed``, made one at a time."""
    for index in range(start, start + n):
        yield fake_person(seed, index)


def _phone(index: int, country: str) -> str:
    """A valid mobile or local number of ``country`` derived from ``index`` (so unique)."""
    if country == "GB":
        return f"+447{400 + index // 1_000_000 % 600}{index % 1_000_000:06d}"
    if country == "DE":
        return f"+49151{index % 100_000_000:08d}"
    if country == "FR":
        return f"+336{index % 100_000_000:08d}"
    if country == "NL":
        return f"+3161{index % 10_000_000:07d}"
    area = US_AREAS[index // 8_000_000 % len(US_AREAS)]
    return f"+1{area}{200 + index // 10_000 % 800}{index % 10_000:04d}"
