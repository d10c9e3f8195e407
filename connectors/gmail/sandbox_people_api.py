"""The People API routes of the Gmail sandbox: connections (with sync tokens), reads and
writes of contacts, one at a time and in batches (200 a call, 500 for deletes).

Writes need the ``contacts`` scope; an update names the contact's current etag (the
contact source's ``metadata.sources[].etag``, or the person's ``etag``) and is refused with
``400 FAILED_PRECONDITION`` when it is stale; in a batch update that refusal is the item's
``status``, the other items are written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.gmail.sandbox_people import PeopleBook, SandboxPerson, StaleEtag
from connectors.gmail.sandbox_spec import google_error

if TYPE_CHECKING:
    from connectors.gmail.sandbox import Account, GmailSandbox

__all__ = ["people_routes"]

BATCH_MAX = 200
DELETE_MAX = 500
EXPIRED: dict[str, object] = {
    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
    "reason": "EXPIRED_SYNC_TOKEN",
    "domain": "people.googleapis.com",
}


def _mask(value: str | None) -> set[str]:
    return {part.strip() for part in (value or "").split(",") if part.strip()}


def _page_token(offset: int, snapshot: int, since: int | None) -> str:
    return f"p{offset}.{snapshot}.{-1 if since is None else since}"


def _read_page_token(token: str) -> tuple[int, int, int | None] | None:
    try:
        offset, snapshot, since = (int(x) for x in token[1:].split("."))
    except ValueError:
        return None
    return offset, snapshot, None if since < 0 else since


def _etag(person: dict[str, Any]) -> str | None:
    sources = (person.get("metadata") or {}).get("sources") or []
    for source in sources:
        if isinstance(source, dict) and source.get("type") == "CONTACT" and source.get("etag"):
            return str(source["etag"])
    return person.get("etag")


class PeopleApi:
    def __init__(self, state: GmailSandbox) -> None:
        self.state = state

    def route(self, handler: Callable[[Request, PeopleBook], Awaitable[Response]]) -> Any:
        async def endpoint(request: Request) -> Response:
            account = self.state.account(request)
            if isinstance(account, Response):
                return account
            if not account.contacts:
                return google_error(
                    403,
                    "Request had insufficient authentication scopes.",
                    "insufficientPermissions",
                )
            if request.path_params.get("peopleId", "me") != "me" and request.url.path.endswith(
                "/connections"
            ):
                return google_error(400, "Only people/me has connections.")
            return await handler(request, self.state.book(account_address(account)))

        return endpoint

    async def connections(self, request: Request, book: PeopleBook) -> Response:
        q = request.query_params
        fields = _mask(q.get("personFields"))
        if not fields:
            return google_error(400, "personFields mask is required. Please specify one or more "
                                "valid paths.", "invalidArgument")  # fmt: skip
        size = int(q.get("pageSize") or 100)
        if not 1 <= size <= 1000:
            return google_error(400, "pageSize must be between 1 and 1000", "invalidArgument")
        since: int | None = None
        if q.get("syncToken"):
            token = q["syncToken"]
            if not token.startswith("s") or not token[1:].isdigit():
                return google_error(400, "Invalid sync token", "invalidArgument")
            since = int(token[1:])
            if since < book.expired_before:
                return google_error(
                    410,
                    "Sync token is expired. Clear local cache and retry call without the "
                    "sync token.",
                    status="FAILED_PRECONDITION",
                    details=[EXPIRED],
                )
        offset, snapshot = 0, book.seq
        if q.get("pageToken"):
            read = _read_page_token(q["pageToken"])
            if read is None:
                return google_error(400, "Invalid pageToken", "invalidArgument")
            offset, snapshot, since = read
        people = book.listing(since)
        page = people[offset : offset + size]
        body: dict[str, Any] = {
            "connections": [p.render(fields) for p in page],
            "totalPeople": book.live(),
            "totalItems": len(people),
        }
        if offset + size < len(people):
            body["nextPageToken"] = _page_token(offset + size, snapshot, since)
        elif q.get("requestSyncToken") == "true" or since is not None:
            body["nextSyncToken"] = f"s{snapshot}"
        if not page:
            del body["connections"]
        return JSONResponse(body)

    async def batch_get(self, request: Request, book: PeopleBook) -> Response:
        names = request.query_params.getlist("resourceNames")
        fields = _mask(request.query_params.get("personFields"))
        if not names or len(names) > BATCH_MAX or not fields:
            return google_error(400, "resourceNames (1-200) and personFields are required")
        responses = []
        for name in names:
            found = book.get(name)
            item: dict[str, Any] = {"requestedResourceName": name}
            if found is None:
                item.update(httpStatusCode=404, status={"code": 5, "message": "Not found"})
            else:
                item.update(httpStatusCode=200, person=found.render(fields))
            responses.append(item)
        return JSONResponse({"responses": responses})

    async def create(self, request: Request, book: PeopleBook) -> Response:
        fields = _mask(request.query_params.get("personFields")) or {"names", "emailAddresses"}
        person = book.create(await request.json())
        return JSONResponse(person.render(fields | {"metadata"}))

    async def update(self, request: Request, book: PeopleBook) -> Response:
        mask = _mask(request.query_params.get("updatePersonFields"))
        fields = _mask(request.query_params.get("personFields")) or mask
        if not mask:
            return google_error(400, "updatePersonFields mask is required.", "invalidArgument")
        body = await request.json()
        resource = "people/" + request.path_params["peopleId"]
        answer = self._update_one(book, resource, body, mask)
        if isinstance(answer, SandboxPerson):
            return JSONResponse(answer.render(fields | {"metadata"}))
        return google_error(*answer)

    def _update_one(
        self, book: PeopleBook, resource: str, body: dict[str, Any], mask: set[str]
    ) -> SandboxPerson | tuple[int, str, str]:
        etag = _etag(body)
        if not etag:
            return (400, "Request must set person.etag or person.metadata.sources.etag for the "
                    "source that is being updated.", "invalidArgument")  # fmt: skip
        try:
            return book.update(resource, body, mask, etag)
        except KeyError:
            return 404, "Requested entity was not found.", "notFound"
        except StaleEtag:
            return (400, "person.metadata.sources.etag is different than the current etag "
                    "of the contact; read it again", "failedPrecondition")  # fmt: skip

    async def delete(self, request: Request, book: PeopleBook) -> Response:
        if not book.delete("people/" + request.path_params["peopleId"]):
            return google_error(404, "Requested entity was not found.", "notFound")
        return JSONResponse({})

    async def batch_create(self, request: Request, book: PeopleBook) -> Response:
        body = await request.json()
        contacts = body.get("contacts") or []
        if not contacts or len(contacts) > BATCH_MAX:
            return google_error(400, f"contacts: 1 to {BATCH_MAX} per request", "invalidArgument")
        fields = _mask(body.get("readMask")) or {"names", "emailAddresses"}
        created = []
        for item in contacts:
            person = book.create(item.get("contactPerson") or {})
            created.append({"person": person.render(fields | {"metadata"}), "httpStatusCode": 200})
        return JSONResponse({"createdPeople": created})

    async def batch_update(self, request: Request, book: PeopleBook) -> Response:
        body = await request.json()
        contacts = body.get("contacts") or {}
        mask = _mask(body.get("updateMask"))
        fields = _mask(body.get("readMask")) or mask
        if not contacts or len(contacts) > BATCH_MAX or not mask:
            return google_error(
                400, f"contacts (1 to {BATCH_MAX}) and updateMask are required", "invalidArgument"
            )
        results: dict[str, Any] = {}
        for resource, person in contacts.items():
            answer = self._update_one(book, resource, person, mask)
            if isinstance(answer, SandboxPerson):
                results[resource] = {
                    "person": answer.render(fields | {"metadata"}),
                    "httpStatusCode": 200,
                    "requestedResourceName": resource,
                }
            else:
                code = 9 if answer[2] == "failedPrecondition" else 5 if answer[0] == 404 else 3
                results[resource] = {
                    "httpStatusCode": answer[0],
                    "requestedResourceName": resource,
                    "status": {"code": code, "message": answer[1]},
                }
        return JSONResponse({"updateResult": results})

    async def batch_delete(self, request: Request, book: PeopleBook) -> Response:
        names = (await request.json()).get("resourceNames") or []
        if not names or len(names) > DELETE_MAX:
            return google_error(400, f"resourceNames: 1 to {DELETE_MAX}", "invalidArgument")
        for name in names:
            book.delete(name)
        return JSONResponse({})


def account_address(account: Account) -> str:
    return account.address


def people_routes(state: GmailSandbox) -> list[Route]:
    api = PeopleApi(state)
    r = api.route
    return [
        Route("/v1/people/{peopleId}/connections", r(api.connections)),
        Route("/v1/people:batchGet", r(api.batch_get)),
        Route("/v1/people:createContact", r(api.create), methods=["POST"]),
        Route("/v1/people/{peopleId}:updateContact", r(api.update), methods=["PATCH"]),
        Route("/v1/people/{peopleId}:deleteContact", r(api.delete), methods=["DELETE"]),
        Route("/v1/people:batchCreateContacts", r(api.batch_create), methods=["POST"]),
        Route("/v1/people:batchUpdateContacts", r(api.batch_update), methods=["POST"]),
        Route("/v1/people:batchDeleteContacts", r(api.batch_delete), methods=["POST"]),
    ]
