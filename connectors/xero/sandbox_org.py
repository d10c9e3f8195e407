"""The sandbox's organisations: contacts, invoices, credit notes, as Xero keeps them.

State only (no HTTP): listing with ``If-Modified-Since``, ``IDs``, ``where`` by name,
``order`` and pages of 100; ``POST /Contacts`` update-or-create with Xero's validation
(a name is required and unique among active contacts, e-mail addresses must be valid),
per item when ``summarizeErrors=false``; draft invoices; payments and credit notes that
lower an invoice's amount due. Times come from ``clock`` (shiftable by tests).
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connectors.xero.records import GONE_CONTACT, to_ms_date
from hub.sandbox import fake_people

__all__ = ["Organisation", "XeroError", "valid_email"]

PAGE = 100
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_WHERE_NAME = re.compile(r'^\s*Name\s*==\s*"(.*)"\s*$')


class XeroError(Exception):
    """An answer other than 200: ``status`` and Xero's body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


def valid_email(value: Any) -> bool:
    return not value or bool(_EMAIL.match(str(value)))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def not_found() -> XeroError:
    return XeroError(
        404,
        {
            "Title": "Not Found",
            "Status": 404,
            "Detail": "The resource you're looking for cannot be found",
        },
    )


@dataclass
class Organisation:
    """One Xero organisation (tenant)."""

    tenant_id: str
    name: str
    seed: int = 0
    clock: Callable[[], float] = time.time
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    credit_notes: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.seed}:{self.tenant_id}")
        self._last = 0.0

    # -- times ----------------------------------------------------------------------------

    def now_ms(self) -> int:
        """Strictly increasing milliseconds (two changes never share a time)."""
        now = max(self.clock() * 1000, self._last + 1)
        self._last = now
        return int(now)

    def touch(self, item: dict[str, Any]) -> None:
        item["_updated"] = self.now_ms()

    @staticmethod
    def render(item: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in item.items() if not k.startswith("_")}
        out["UpdatedDateUTC"] = f"/Date({item['_updated']}+0000)/"
        return out

    # -- seeding --------------------------------------------------------------------------

    def seed_records(self, contacts: int, invoices: int) -> None:
        people = list(fake_people(self.seed, contacts * 2))
        for n in range(contacts):
            person = people[n]
            if n % 4 == 3:  # every fourth contact an organisation with contact persons
                extra = people[contacts + n]
                domain = person.domain.replace(".", f"-{n}.", 1)  # one organisation each
                self.add_contact(
                    Name=f"{person.company} {n}",
                    EmailAddress=f"accounts@{domain}",
                    Website=f"https://www.{domain}",
                    IsCustomer=True,
                    ContactPersons=[
                        {
                            "FirstName": p.first_name,
                            "LastName": p.last_name,
                            "EmailAddress": p.email,
                            "IncludeInEmails": True,
                        }
                        for p in (person, extra)
                    ],
                )
            else:
                self.add_contact(
                    Name=f"{person.first_name} {person.last_name}",
                    FirstName=person.first_name,
                    LastName=person.last_name,
                    EmailAddress=person.email,
                    Phones=[{"PhoneType": "DEFAULT", "PhoneNumber": person.phone or ""}],
                    Addresses=[
                        {"AddressType": "STREET", "City": person.city, "Country": person.country}
                    ],
                    IsCustomer=n % 3 == 0,
                )
        ids = list(self.contacts)
        for n in range(invoices):
            contact = self.contacts[ids[n % len(ids)]] if ids else None
            if contact is None:
                break
            status = ("AUTHORISED", "PAID", "DRAFT", "AUTHORISED", "SUBMITTED")[n % 5]
            self.add_invoice(
                contact["ContactID"],
                status=status,
                number=f"INV-{n + 1:05d}",
                amount=float(100 + (n * 37) % 900),
            )

    # -- contacts -------------------------------------------------------------------------

    def add_contact(self, **fields: Any) -> dict[str, Any]:
        with self.lock:
            contact: dict[str, Any] = {
                "ContactID": _uuid(self.rng),
                "ContactStatus": "ACTIVE",
                "Name": "",
                "FirstName": "",
                "LastName": "",
                "EmailAddress": "",
                "Addresses": [],
                "Phones": [],
                "ContactGroups": [],
                "ContactPersons": [],
                "IsSupplier": False,
                "IsCustomer": False,
                "HasAttachments": False,
            }
            contact.update(fields)
            self.touch(contact)
            self.contacts[contact["ContactID"]] = contact
            return contact

    def list_contacts(self, params: dict[str, str], since: float | None) -> list[dict[str, Any]]:
        with self.lock:
            found = list(self.contacts.values())
            if params.get("includeArchived", "").lower() != "true":
                found = [c for c in found if c["ContactStatus"] not in GONE_CONTACT]
            return self._filter(found, params, since, "ContactID")

    def _filter(
        self, found: list[dict[str, Any]], params: dict[str, str], since: float | None, key: str
    ) -> list[dict[str, Any]]:
        if since is not None:
            found = [c for c in found if c["_updated"] >= since]
        if params.get("IDs"):
            ids = {i.strip().lower() for i in params["IDs"].split(",")}
            found = [c for c in found if c[key].lower() in ids]
        where = params.get("where")
        if where:
            match = _WHERE_NAME.match(where)
            if not match:
                raise XeroError(
                    400,
                    {
                        "ErrorNumber": 16,
                        "Type": "QueryParseException",
                        "Message": f'the sandbox reads only Name=="...", not {where!r}',
                    },
                )
            found = [c for c in found if c.get("Name", "").lower() == match.group(1).lower()]
        order = params.get("order", "")
        if order.replace(" ", "").lower().startswith("updateddateutc"):
            found.sort(key=lambda c: c["_updated"], reverse=order.strip().lower().endswith("desc"))
        else:
            found.sort(key=lambda c: (str(c.get("Name") or c.get("InvoiceNumber") or ""), c[key]))
        return found

    def _active_named(self, name: str, other_than: str | None) -> bool:
        low = name.strip().lower()
        return any(
            c["Name"].strip().lower() == low
            and c["ContactID"] != other_than
            and c["ContactStatus"] == "ACTIVE"
            for c in self.contacts.values()
        )

    def write_contact(self, item: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Update or create one contact; returns it (with errors: unchanged) and the errors."""
        with self.lock:
            contact_id = item.get("ContactID")
            current = self.contacts.get(str(contact_id)) if contact_id else None
            errors: list[str] = []
            if contact_id and current is None:
                errors.append(f"Contact with ContactID {contact_id} could not be found")
            name = item.get("Name", current["Name"] if current else None)
            if not name or not str(name).strip():
                errors.append("The contact name must be specified.")
            elif self._active_named(str(name), current["ContactID"] if current else None) and (
                item.get("ContactStatus", "ACTIVE") == "ACTIVE"
            ):
                errors.append(
                    f"The contact name {name} is already assigned to another contact. "
                    "The contact name must be unique across all active contacts."
                )
            if not valid_email(item.get("EmailAddress")):
                errors.append("Email address must be valid.")
            for person in item.get("ContactPersons") or []:
                if not valid_email(person.get("EmailAddress")):
                    errors.append("Email address must be valid.")
            if errors:
                failed = {
                    **item,
                    "ValidationErrors": [{"Message": e} for e in errors],
                    "HasValidationErrors": True,
                    "StatusAttributeString": "ERROR",
                }
                return failed, errors
            if current is None:
                current = self.add_contact(**{k: v for k, v in item.items() if k != "ContactID"})
            else:
                self._merge(current, item)
                self.touch(current)
            return current, []

    @staticmethod
    def _merge(contact: dict[str, Any], item: dict[str, Any]) -> None:
        for key, value in item.items():
            if key == "Phones":
                kept = [
                    p
                    for p in contact["Phones"]
                    if p["PhoneType"] not in {v["PhoneType"] for v in value}
                ]
                contact["Phones"] = kept + list(value)
            elif key == "Addresses":
                kept = [
                    a
                    for a in contact["Addresses"]
                    if a["AddressType"] not in {v["AddressType"] for v in value}
                ]
                contact["Addresses"] = kept + list(value)
            elif key != "ContactID":
                contact[key] = value

    def edit_contact(self, contact_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """A change made in Xero's web app."""
        with self.lock:
            contact = self.contacts.get(contact_id)
            if contact is None:
                raise KeyError(contact_id)
            self._merge(contact, changes)
            self.touch(contact)
            return contact

    # -- invoices -------------------------------------------------------------------------

    def add_invoice(
        self,
        contact_id: str,
        *,
        status: str = "AUTHORISED",
        number: str | None = None,
        amount: float = 100.0,
        currency: str = "NZD",
        lines: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            contact = self.contacts[contact_id]
            items = lines or [{"Description": "Consulting", "Quantity": 1.0, "UnitAmount": amount}]
            for line in items:
                line["LineAmount"] = round(
                    float(line.get("Quantity", 1)) * float(line.get("UnitAmount", 0)), 2
                )
                line.setdefault("LineItemID", _uuid(self.rng))
            sub = round(sum(line["LineAmount"] for line in items), 2)
            tax = round(sub * 0.15, 2)
            day = int(self.clock() // 86400) * 86400
            invoice: dict[str, Any] = {
                "Type": "ACCREC",
                "InvoiceID": _uuid(self.rng),
                "InvoiceNumber": number or f"INV-{len(self.invoices) + 1:05d}",
                "Reference": "",
                "Contact": {"ContactID": contact_id, "Name": contact["Name"]},
                "Date": to_ms_date_s(day),
                "DueDate": to_ms_date_s(day + 30 * 86400),
                "Status": status,
                "LineAmountTypes": "Exclusive",
                "LineItems": items,
                "SubTotal": sub,
                "TotalTax": tax,
                "Total": round(sub + tax, 2),
                "AmountDue": 0.0 if status == "PAID" else round(sub + tax, 2),
                "AmountPaid": round(sub + tax, 2) if status == "PAID" else 0.0,
                "AmountCredited": 0.0,
                "CurrencyCode": currency,
                "HasAttachments": False,
            }
            self.touch(invoice)
            self.invoices[invoice["InvoiceID"]] = invoice
            if status != "DRAFT":
                contact["IsCustomer"] = True
            return invoice

    def list_invoices(self, params: dict[str, str], since: float | None) -> list[dict[str, Any]]:
        with self.lock:
            found = list(self.invoices.values())
            if params.get("Statuses"):
                wanted = set(params["Statuses"].split(","))
                found = [i for i in found if i["Status"] in wanted]
            return self._filter(found, params, since, "InvoiceID")

    def pay(self, invoice_id: str, amount: float) -> dict[str, Any]:
        with self.lock:
            invoice = self.invoices[invoice_id]
            paid = min(amount, invoice["AmountDue"])
            invoice["AmountPaid"] = round(invoice["AmountPaid"] + paid, 2)
            invoice["AmountDue"] = round(invoice["AmountDue"] - paid, 2)
            if invoice["AmountDue"] == 0:
                invoice["Status"] = "PAID"
            self.touch(invoice)
            return invoice

    def credit(self, invoice_id: str, amount: float) -> dict[str, Any]:
        """An authorised credit note allocated to the invoice; returns the credit note."""
        with self.lock:
            invoice = self.invoices[invoice_id]
            credited = min(amount, invoice["AmountDue"])
            note: dict[str, Any] = {
                "Type": "ACCRECCREDIT",
                "CreditNoteID": _uuid(self.rng),
                "CreditNoteNumber": f"CN-{len(self.credit_notes) + 1:04d}",
                "Contact": dict(invoice["Contact"]),
                "Status": "PAID",
                "Total": credited,
                "RemainingCredit": 0.0,
                "CurrencyCode": invoice["CurrencyCode"],
                "Allocations": [
                    {
                        "Amount": credited,
                        "Date": to_ms_date_s(self.clock()),
                        "Invoice": {
                            "InvoiceID": invoice_id,
                            "InvoiceNumber": invoice["InvoiceNumber"],
                        },
                    }
                ],
            }
            self.touch(note)
            self.credit_notes[note["CreditNoteID"]] = note
            invoice["AmountCredited"] = round(invoice["AmountCredited"] + credited, 2)
            invoice["AmountDue"] = round(invoice["AmountDue"] - credited, 2)
            if invoice["AmountDue"] == 0:
                invoice["Status"] = "PAID"
            self.touch(invoice)
            return note

    def write_invoice(self, item: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        with self.lock:
            errors = []
            contact_id = str((item.get("Contact") or {}).get("ContactID") or "")
            if contact_id not in self.contacts:
                errors.append("A Contact must be specified for this type of transaction")
            if item.get("InvoiceID"):
                errors.append("the sandbox creates invoices only")
            if item.get("Status", "DRAFT") != "DRAFT":
                errors.append("the sandbox creates DRAFT invoices only")
            if errors:
                failed = {
                    **item,
                    "ValidationErrors": [{"Message": e} for e in errors],
                    "HasErrors": True,
                    "StatusAttributeString": "ERROR",
                }
                return failed, errors
            lines = [dict(line) for line in item.get("LineItems") or []]
            invoice = self.add_invoice(
                contact_id,
                status="DRAFT",
                number=item.get("InvoiceNumber"),
                currency=item.get("CurrencyCode") or "NZD",
                lines=lines or None,
            )
            invoice["Reference"] = item.get("Reference") or ""
            return invoice, []


def to_ms_date_s(seconds: float) -> str:
    return f"/Date({int(seconds * 1000)}+0000)/"


__all__ += ["to_ms_date", "to_ms_date_s"]
