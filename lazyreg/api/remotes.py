"""`remotes/`: where and how to reach an upstream repository.

Secrets are write-only and stored encrypted: the password, and the
`user:password` of the proxy URL. Credentials written into `url`
(`https://user:pw@host`) become the username and password; the URL is kept
without them. A PATCH changes a secret only when it names its field.
"""

from __future__ import annotations

from typing import Any, cast

from aiohttp import web
from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session, aliased

from lazyreg.api import paging
from lazyreg.api.http import (
    json_object,
    no_content,
    path_name,
    query_choice,
    read,
    respond,
    write,
)
from lazyreg.api.lookup import by_name, ensure_unique
from lazyreg.api.schemas import Page, Policy, Prefetch, RemoteIn, RemoteOut
from lazyreg.auth.secrets import SecretBox
from lazyreg.db.models import (
    Artifact,
    Blob,
    BlobSource,
    Distribution,
    Remote,
    Repository,
    RepositoryContent,
    RepositoryVersion,
)
from lazyreg.errors import Conflict, InvalidField
from lazyreg.redact import decode_userinfo, split_userinfo
from lazyreg.state import state

SECRETS = ("password",)
FIELDS = tuple(f for f in RemoteIn.model_fields if f not in SECRETS)


def to_out(remote: Remote) -> RemoteOut:
    return RemoteOut(
        name=remote.name, url=remote.url, upstream_name=remote.upstream_name or None,
        policy=cast(Policy, remote.policy),  # the column is text; the API wrote it
        include_tags=remote.include_tags, exclude_tags=remote.exclude_tags,
        platforms=remote.platforms, prefetch=cast(Prefetch, remote.prefetch),
        username=remote.username, has_password=remote.password_secret is not None,
        tls_verify=remote.tls_verify, ca_cert=remote.ca_cert, proxy_url=remote.proxy_url,
        has_proxy_credentials=remote.proxy_secret is not None,
        download_concurrency=remote.download_concurrency,
        allow_private_redirects=remote.allow_private_redirects,
        include_referrers=remote.include_referrers, max_tags=remote.max_tags,
        tag_ttl=remote.tag_ttl, negative_ttl=remote.negative_ttl,
        include_names=remote.include_names, exclude_names=remote.exclude_names,
        created=remote.created)


def _current(remote: Remote) -> dict[str, Any]:
    current = {f: getattr(remote, f) for f in FIELDS}
    current["upstream_name"] = remote.upstream_name or None
    return current


def _assign(session: Session, remote: Remote, values: RemoteIn, given: set[str],
            secrets: SecretBox, replace: bool = True) -> None:
    """Set the remote's fields; its secrets all (`replace`) or where `given` names them."""
    ensure_unique(session, Remote, values.name, remote.id)
    fields = values.model_dump(exclude=set(SECRETS))
    fields["upstream_name"] = values.upstream_name or ""  # none: pull-through only
    password, set_password = values.password, replace or "password" in given
    fields["url"], userinfo = split_userinfo(values.url)
    if userinfo:
        if given & {"username", "password"}:
            raise InvalidField("url", "holds credentials, and username or password is given"
                               " too: give them once")
        fields["username"], password = decode_userinfo(userinfo)
        set_password = True
    if set_password:
        remote.password_secret = secrets.encrypt(password) if password is not None else None
    if replace or "proxy_url" in given:
        proxy_userinfo = None
        if values.proxy_url:
            fields["proxy_url"], proxy_userinfo = split_userinfo(values.proxy_url)
        remote.proxy_secret = secrets.encrypt(proxy_userinfo) if proxy_userinfo else None
    for field, value in fields.items():
        setattr(remote, field, value)
    session.flush()


async def create(request: web.Request) -> web.Response:
    given = await json_object(request)
    body = RemoteIn.model_validate(given)
    secrets = state(request).services.secrets

    def insert(session: Session) -> RemoteOut:
        ensure_unique(session, Remote, body.name)
        remote = Remote()
        _assign(session, remote, body, set(given), secrets)
        session.add(remote)
        session.flush()
        return to_out(remote)
    return respond(await write(request, insert), status=201)


async def list_(request: web.Request) -> web.Response:
    window = paging.Window.of(request)

    def query(session: Session) -> tuple[int, list[RemoteOut]]:
        count, rows = paging.fetch(session, select(Remote).order_by(Remote.name), window)
        return count, [to_out(row[0]) for row in rows]
    count, results = await read(request, query)
    return respond(Page[RemoteOut](**paging.envelope(request, window, count), results=results))


async def show(request: web.Request) -> web.Response:
    name = path_name(request)
    return respond(await read(request, lambda s: to_out(by_name(s, Remote, name))))


async def _change(request: web.Request, replace: bool) -> web.Response:
    name = path_name(request)
    given = await json_object(request)
    secrets = state(request).services.secrets

    def apply(session: Session) -> tuple[int, RemoteOut]:
        remote = by_name(session, Remote, name)
        # A PATCH is validated as the whole remote it produces, so that every
        # rule (and every field name in an error) is the same as for a create.
        values = RemoteIn.model_validate(given if replace else {**_current(remote), **given})
        # A PUT replaces the secrets too (absent: none); a PATCH only those it names.
        _assign(session, remote, values, set(given), secrets, replace)
        return remote.id, to_out(remote)
    remote_id, out = await write(request, apply)
    # The pooled upstream client holds the old URL, credentials and token cache.
    state(request).services.upstreams.forget(remote_id)
    return respond(out)


async def update(request: web.Request) -> web.Response:
    return await _change(request, replace=False)


async def replace(request: web.Request) -> web.Response:
    return await _change(request, replace=True)


def _pulling_through(session: Session, remote: Remote) -> list[str]:
    """The pull-through distributions that fetch from `remote`: names, sorted."""
    return list(session.scalars(select(Distribution.name).where(
        Distribution.remote_id == remote.id).order_by(Distribution.name)))


def _needing(session: Session, remote: Remote) -> list[str]:
    """Repositories that would lose content if `remote` went: names, sorted.

    A repository needs the remote when a blob of its latest version, or of a
    version a distribution serves, is not stored and has no other source.
    """
    other = aliased(BlobSource)
    orphaned = (select(BlobSource.blob_id)
                .join(Blob, Blob.id == BlobSource.blob_id)
                .where(BlobSource.remote_id == remote.id,
                       ~exists().where(Artifact.digest == Blob.digest),
                       ~exists().where(other.blob_id == BlobSource.blob_id,
                                       other.remote_id != remote.id)))
    rc = RepositoryContent
    served = (select(RepositoryVersion.number)
              .join(Distribution, Distribution.repository_version_id == RepositoryVersion.id)
              .where(RepositoryVersion.repository_id == Repository.id))
    latest = rc.version_removed.is_(None)
    # in_version's range test, for every pinned version at once.
    pinned = exists(served.where(RepositoryVersion.number >= rc.version_added,
                                 or_(rc.version_removed.is_(None),
                                     rc.version_removed > RepositoryVersion.number)))
    stmt = (select(Repository.name).distinct()
            .join(rc, rc.repository_id == Repository.id)
            .where(rc.content_id.in_(orphaned), or_(latest, pinned))
            .order_by(Repository.name))
    return list(session.scalars(stmt))


async def delete(request: web.Request) -> web.Response:
    name = path_name(request)
    force = query_choice(request, "force", ("true", "false")) == "true"

    def remove(session: Session) -> int:
        remote = by_name(session, Remote, name)
        if not force:
            serving = _pulling_through(session, remote)
            if serving:
                raise Conflict(f"remote {name!r} is the upstream of pull-through distributions:"
                               f" {', '.join(serving[:20])}; delete them first, or delete with"
                               " ?force=true (they then serve only what is stored)")
            needing = _needing(session, remote)
            if needing:
                shown = ", ".join(needing[:20])
                if len(needing) > 20:
                    shown += f" and {len(needing) - 20} more"
                raise Conflict(f"remote {name!r} is the only source of blobs, not stored, that"
                               f" these repositories need: {shown}; sync them with the"
                               " immediate policy first, or delete with ?force=true")
        session.delete(remote)
        return remote.id
    state(request).services.upstreams.forget(await write(request, remove))
    return no_content()
