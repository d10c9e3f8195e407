"""The embeddable HTML form of a web form connection (``crmhub forms snippet FORM``).

One labelled input per field of the form's ``submissions`` mapping (in mapping order), the
consent checkbox, the honeypot (a text input hidden with CSS, labelled "leave this field
empty", ``autocomplete="off"``, ``tabindex="-1"``), and the signed issue time as a hidden
input. The issue time in the snippet is the one of its making; a small script replaces it
with a fresh one from ``/forms/<key>/token`` when the page loads (that fetch needs the page's
origin in ``allowed_origins``). The form posts to ``hub_url`` (default: the hub's own address).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import mappings
from connectors.webforms.guard import TOKEN_FIELD, issue_token
from connectors.webforms.settings import WebFormsSettings
from hub.config import Config
from hub.mapping import load_mapping

STREAM = "submissions"
DEFAULT_HUB_URL = "http://127.0.0.1:8750"
# canonical field -> (input type, autocomplete token)
_INPUTS: dict[str, tuple[str, str]] = {
    "email": ("email", "email"),
    "first_name": ("text", "given-name"),
    "last_name": ("text", "family-name"),
    "phone": ("tel", "tel"),
    "company": ("text", "organization"),
    "job_title": ("text", "organization-title"),
    "street": ("text", "street-address"),
    "city": ("text", "address-level2"),
    "postal_code": ("text", "postal-code"),
    "country": ("text", "country-name"),
    "birthday": ("date", "bday"),
}
_LONG_TEXT = frozenset({"message", "comments", "comment", "enquiry", "inquiry", "notes"})


def mapping_file(config: Config, connection: str) -> Path:
    """The connection's ``submissions`` mapping: its ``mapping`` setting, else the default."""
    chosen = config.connection(connection).hub.mapping
    if isinstance(chosen, dict):
        chosen = chosen.get(STREAM)
    if chosen:
        return config.resolve(chosen)
    return Path(mappings.__file__).parent / "webforms" / f"{STREAM}.toml"


def form_fields(config: Config, connection: str) -> list[tuple[str, str]]:
    """``(form field name, hub field)`` of every top-level field the mapping reads."""
    mapping = load_mapping(mapping_file(config, connection), phone_region=config.hub.phone_region)
    out: list[tuple[str, str]] = []
    for rule in mapping.rules:
        if not rule.pulls or len(rule.canonical) != 1:
            continue
        for path in rule.paths:
            name = path.text
            if "." not in name and '"' not in name and not name.startswith("_"):
                out.append((name, rule.canonical[0]))
    return out


def hub_url(config: Config, settings: WebFormsSettings) -> str:
    if settings.hub_url:
        return settings.hub_url.rstrip("/")
    host, port = config.hub.http_host, config.hub.http_port
    if not port:
        return DEFAULT_HUB_URL
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{host}:{port}"


def _label(name: str, canonical: str, settings: WebFormsSettings) -> str:
    if name in settings.labels:
        return settings.labels[name]
    base = canonical.removeprefix("custom.") if canonical.startswith("custom.") else canonical
    return base.replace("_", " ").capitalize()


def _field(name: str, canonical: str, settings: WebFormsSettings, form_id: str) -> str:
    ident = html.escape(f"{form_id}-{name}")
    attr = html.escape(name)
    label = html.escape(_label(name, canonical, settings))
    required = name in settings.required_fields
    req = ' required aria-required="true"' if required else ""
    mark = ' <span aria-hidden="true">*</span>' if required else ""
    if canonical == "consent":
        text = html.escape(settings.labels.get(name, settings.consent_label))
        return (
            f'  <p><input type="checkbox" id="{ident}" name="{attr}" value="yes"{req}>\n'
            f'  <label for="{ident}">{text}{mark}</label></p>\n'
        )
    if name in _LONG_TEXT or canonical.removeprefix("custom.") in _LONG_TEXT:
        return (
            f'  <p><label for="{ident}">{label}{mark}</label><br>\n'
            f'  <textarea id="{ident}" name="{attr}" rows="5"{req}></textarea></p>\n'
        )
    kind, auto = _INPUTS.get(canonical, ("text", "on"))
    return (
        f'  <p><label for="{ident}">{label}{mark}</label><br>\n'
        f'  <input type="{kind}" id="{ident}" name="{attr}" autocomplete="{auto}"{req}></p>\n'
    )


def render_snippet(
    config: Config, connection: str, settings: WebFormsSettings, now: float | None = None
) -> str:
    """The HTML to paste into a page for the form of ``connection``."""
    base = hub_url(config, settings)
    key = settings.key.get_secret_value()
    action = f"{base}/forms/{key}"
    form_id = f"crmhub-form-{connection}"
    token = ""
    if settings.form_secret is not None:
        token = issue_token(settings.form_secret.get_secret_value(), connection, now)
    honeypot = html.escape(settings.honeypot_field)
    enctype = (
        "multipart/form-data" if settings.max_file_bytes else "application/x-www-form-urlencoded"
    )
    parts = [
        f"<!-- crmhub web form {html.escape(connection)} -->\n",
        f"<style>#{form_id} .crmhub-hp {{position:absolute;left:-10000px;top:auto;"
        "width:1px;height:1px;overflow:hidden;}</style>\n",
        f'<form id="{form_id}" action="{html.escape(action)}" method="post" '
        f'enctype="{enctype}" accept-charset="utf-8">\n',
    ]
    parts += [
        _field(name, canon, settings, form_id) for name, canon in form_fields(config, connection)
    ]
    parts += [
        f'  <div class="crmhub-hp" aria-hidden="true">\n'
        f'    <label for="{form_id}-{honeypot}">Leave this field empty</label>\n'
        f'    <input type="text" id="{form_id}-{honeypot}" name="{honeypot}" value="" '
        'autocomplete="off" tabindex="-1">\n'
        "  </div>\n",
        f'  <input type="hidden" name="{TOKEN_FIELD}" value="{html.escape(token)}">\n',
        f'  <p><button type="submit">{html.escape(settings.submit_label)}</button></p>\n',
        "</form>\n",
    ]
    if settings.form_secret is not None:
        parts.append(
            "<script>\n(function () {\n"
            f"  var form = document.getElementById({json.dumps(form_id)});\n"
            f"  fetch({json.dumps(action + '/token')}, {{mode: 'cors', cache: 'no-store'}})\n"
            "    .then(function (r) { return r.ok ? r.json() : null; })\n"
            "    .then(function (d) { if (d && d.token) "
            f"form.elements[{json.dumps(TOKEN_FIELD)}].value = d.token; }})\n"
            "    .catch(function () {});\n"
            "})();\n</script>\n"
        )
    return "".join(parts)
