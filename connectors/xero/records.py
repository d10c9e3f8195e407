"""Xero contacts and invoices as the hub's records, and back.

A Xero contact is an organisation or a person. It is a **person** when it has no contact
persons and its ``Name`` is its ``FirstName`` and ``LastName`` (case and spacing aside);
every other contact is an **organisation** (a company). An organisation's contact persons
are people too: records of the ``contacts`` stream with the organisation's name in
``Company`` and its id in ``CompanyID``, their ids ``<ContactID>#<email>`` (or ``#<n>``, the
position, for a person without address).

Records are flat (``Phone``, ``Street``, ``City``... picked from Xero's typed phone and
address lists) so mappings stay simple; :func:`to_xero` turns a flat record back into
Xero's shape. Dates are ISO (``2024-05-01``) both ways; Xero reads them as they are.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from hub.connector import RemoteRecord

__all__ = [
    "GONE_CONTACT",
    "GONE_INVOICE",
    "XERO_ID",
    "company_record",
    "invoice_record",
    "is_organisation",
    "ms_date",
    "person_id",
    "person_records",
    "to_xero",
]

GONE_CONTACT = frozenset({"ARCHIVED", "GDPRREQUEST"})
GONE_INVOICE = frozenset({"VOIDED", "DELETED"})
_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_SPACES = re.compile(r"\s+")
XERO_ID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}(#.*)?$")
"""A Xero id (a UUID), or a contact person's ``<ContactID>#...``."""
PHONE_TYPES = ("DEFAULT", "MOBILE", "DDI")
ADDRESS_TYPES = ("STREET", "POBOX")


def ms_date(value: Any) -> datetime | None:
    """Xero's ``/Date(1551399321043+0000)/`` (or ISO text) as an aware UTC datetime."""
    if not isinstance(value, str) or not value:
        return None
    found = _MS_DATE.match(value)
    if found:
        return datetime.fromtimestamp(int(found.group(1)) / 1000, UTC)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def to_ms_date(moment: datetime) -> str:
    return f"/Date({int(moment.timestamp() * 1000)}+0000)/"


def _iso_day(value: Any) -> str | None:
    moment = ms_date(value)
    return moment.date().isoformat() if moment else None


def _norm(text: Any) -> str:
    return _SPACES.sub(" ", str(text or "")).strip().lower()


def is_organisation(contact: dict[str, Any]) -> bool:
    """Whether a Xero contact is an organisation (see the module's rule)."""
    if contact.get("ContactPersons"):
        return True
    first, last = contact.get("FirstName"), contact.get("LastName")
    if not first and not last:
        return True
    return _norm(contact.get("Name")) != _norm(f"{first or ''} {last or ''}")


def _phone(contact: dict[str, Any], kind: str) -> str | None:
    for phone in contact.get("Phones") or []:
        if phone.get("PhoneType") == kind and phone.get("PhoneNumber"):
            parts = (phone.get(k) for k in ("PhoneCountryCode", "PhoneAreaCode", "PhoneNumber"))
            text = " ".join(str(p).strip() for p in parts if p)
            country = str(phone.get("PhoneCountryCode") or "")
            return f"+{text.lstrip('+')}" if country and not text.startswith("+") else text
    return None


def _address(contact: dict[str, Any]) -> dict[str, Any]:
    for kind in ADDRESS_TYPES:
        for address in contact.get("Addresses") or []:
            if address.get("AddressType") == kind and any(
                address.get(k) for k in ("AddressLine1", "City", "PostalCode", "Country")
            ):
                return address
    return {}


def _flat(contact: dict[str, Any]) -> dict[str, Any]:
    address = _address(contact)
    data = {
        "ContactID": contact.get("ContactID"),
        "Name": contact.get("Name"),
        "EmailAddress": contact.get("EmailAddress") or None,
        "Phone": _phone(contact, "DEFAULT") or _phone(contact, "DDI"),
        "Mobile": _phone(contact, "MOBILE"),
        "Street": address.get("AddressLine1") or None,
        "City": address.get("City") or None,
        "PostalCode": address.get("PostalCode") or None,
        "Country": address.get("Country") or None,
        "IsCustomer": bool(contact.get("IsCustomer")),
        "IsSupplier": bool(contact.get("IsSupplier")),
        "ContactStatus": contact.get("ContactStatus") or "ACTIVE",
        "AccountNumber": contact.get("AccountNumber") or None,
    }
    return data


def _version(item: dict[str, Any]) -> str | None:
    moment = ms_date(item.get("UpdatedDateUTC"))
    return str(int(moment.timestamp() * 1000)) if moment else None


def company_record(contact: dict[str, Any]) -> RemoteRecord:
    """An organisation as a record of the ``companies`` stream."""
    data = _flat(contact)
    website = str(contact.get("Website") or "")
    domain = re.sub(r"^(https?://)?(www\.)?", "", website.strip().lower()).split("/")[0]
    data.update(Website=website or None, Domain=domain or None)
    data["CompanyNumber"] = contact.get("CompanyNumber") or None
    data["TaxNumber"] = contact.get("TaxNumber") or None
    return RemoteRecord(
        str(contact["ContactID"]), data, _version(contact), ms_date(contact.get("UpdatedDateUTC"))
    )


def person_id(contact_id: str, person: dict[str, Any], position: int) -> str:
    email = str(person.get("EmailAddress") or "").strip().lower()
    return f"{contact_id}#{email or position}"


def person_records(contact: dict[str, Any]) -> list[RemoteRecord]:
    """The people of a contact: itself when it is a person, else its contact persons."""
    changed = ms_date(contact.get("UpdatedDateUTC"))
    version = _version(contact)
    contact_id = str(contact["ContactID"])
    if not is_organisation(contact):
        data = _flat(contact)
        data.update(FirstName=contact.get("FirstName"), LastName=contact.get("LastName"))
        return [RemoteRecord(contact_id, data, version, changed)]
    found = []
    for position, person in enumerate(contact.get("ContactPersons") or []):
        data = {
            "FirstName": person.get("FirstName"),
            "LastName": person.get("LastName"),
            "EmailAddress": person.get("EmailAddress") or None,
            "Company": contact.get("Name"),
            "CompanyID": contact_id,
            "IncludeInEmails": bool(person.get("IncludeInEmails")),
        }
        found.append(RemoteRecord(person_id(contact_id, person, position), data, version, changed))
    return found


def _summary(items: list[dict[str, Any]]) -> str | None:
    parts = []
    for item in items:
        text = str(item.get("Description") or item.get("ItemCode") or "item").splitlines()[0]
        quantity = item.get("Quantity")
        amount = item.get("LineAmount")
        head = f"{quantity:g} x {text}" if isinstance(quantity, int | float) else text
        parts.append(f"{head} ({amount:.2f})" if isinstance(amount, int | float) else head)
    summary = "; ".join(parts)
    return (summary[:497] + "...") if len(summary) > 500 else (summary or None)


def _money(value: Any) -> str | None:
    return f"{value:.2f}" if isinstance(value, int | float) else None


def invoice_record(invoice: dict[str, Any]) -> RemoteRecord:
    """An invoice as a record of the ``invoices`` stream (amounts as decimal text)."""
    contact = invoice.get("Contact") or {}
    data = {
        "InvoiceID": invoice.get("InvoiceID"),
        "InvoiceNumber": invoice.get("InvoiceNumber") or None,
        "Type": invoice.get("Type"),
        "Status": invoice.get("Status"),
        "Reference": invoice.get("Reference") or None,
        "ContactID": contact.get("ContactID"),
        "ContactName": contact.get("Name"),
        "ContactEmail": contact.get("EmailAddress") or None,
        "Date": _iso_day(invoice.get("Date")),
        "DueDate": _iso_day(invoice.get("DueDate")),
        "CurrencyCode": invoice.get("CurrencyCode"),
        "SubTotal": _money(invoice.get("SubTotal")),
        "TotalTax": _money(invoice.get("TotalTax")),
        "Total": _money(invoice.get("Total")),
        "AmountDue": _money(invoice.get("AmountDue")),
        "AmountPaid": _money(invoice.get("AmountPaid")),
        "AmountCredited": _money(invoice.get("AmountCredited")),
        "LineItems": _summary(invoice.get("LineItems") or []),
    }
    return RemoteRecord(
        str(invoice["InvoiceID"]), data, _version(invoice), ms_date(invoice.get("UpdatedDateUTC"))
    )


def to_xero(data: dict[str, Any], record: dict[str, Any] | None = None) -> dict[str, Any]:
    """A flat contact (``data``: the fields to send) in Xero's shape. Phones and the
    address are sent whole, from ``record`` (the contact with the change applied)."""
    full = {**(record or {}), **data}
    body: dict[str, Any] = {}
    for key in (
        "Name",
        "FirstName",
        "LastName",
        "EmailAddress",
        "Website",
        "AccountNumber",
        "CompanyNumber",
        "TaxNumber",
    ):
        if key in data:
            body[key] = data[key] if data[key] is not None else ""
    for key in ("IsCustomer", "IsSupplier"):
        if key in data and data[key] is not None:
            body[key] = bool(data[key])
    phones = []
    for key, kind in (("Phone", "DEFAULT"), ("Mobile", "MOBILE")):
        if key in data:
            phones.append({"PhoneType": kind, "PhoneNumber": str(data[key] or "")})
    if phones:
        body["Phones"] = phones
    if any(k in data for k in ("Street", "City", "PostalCode", "Country")):
        body["Addresses"] = [
            {
                "AddressType": "STREET",
                "AddressLine1": str(full.get("Street") or ""),
                "City": str(full.get("City") or ""),
                "PostalCode": str(full.get("PostalCode") or ""),
                "Country": str(full.get("Country") or ""),
            }
        ]
    return body


def today() -> date:
    return datetime.now(UTC).date()
