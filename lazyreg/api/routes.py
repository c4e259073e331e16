"""The one route table: `setup_routes` registers it and `openapi.json` documents it."""

from __future__ import annotations

from lazyreg.api import (
    artifacts,
    content,
    distributions,
    openapi,
    remotes,
    repositories,
    status,
    tasks,
)
from lazyreg.api.routing import PAGING, PREFIX, Query, Route
from lazyreg.api.schemas import (
    ArtifactPage,
    BlobOut,
    CheckOut,
    DistributionIn,
    DistributionOut,
    ManifestOut,
    Page,
    RemoteIn,
    RemoteOut,
    RepositoryIn,
    RepositoryOut,
    StatusOut,
    SyncIn,
    TagOut,
    TaskOut,
    VersionOut,
)

P = PREFIX
DIGEST = Query("digest", "string", "Only the content with this digest")

ROUTES: list[Route] = [
    # remotes
    Route("POST", f"{P}/remotes/", remotes.create, "Create a remote", "remotes",
          body=RemoteIn, response=RemoteOut, status=201),
    Route("GET", f"{P}/remotes/", remotes.list_, "List remotes", "remotes",
          response=Page[RemoteOut], query=PAGING),
    Route("GET", f"{P}/remotes/{{name}}/", remotes.show, "Show a remote", "remotes",
          response=RemoteOut),
    Route("PATCH", f"{P}/remotes/{{name}}/", remotes.update, "Change some fields of a remote",
          "remotes", body=RemoteIn, response=RemoteOut),
    Route("PUT", f"{P}/remotes/{{name}}/", remotes.replace, "Replace a remote", "remotes",
          body=RemoteIn, response=RemoteOut),
    Route("DELETE", f"{P}/remotes/{{name}}/", remotes.delete,
          "Delete a remote (409 while a repository still needs it)", "remotes", status=204,
          query=(Query("force", "boolean",
                       "Delete even if repositories need it: their blobs not stored become"
                       " unavailable"),)),
    # repositories
    Route("POST", f"{P}/repositories/", repositories.create, "Create a repository",
          "repositories", body=RepositoryIn, response=RepositoryOut, status=201),
    Route("GET", f"{P}/repositories/", repositories.list_, "List repositories",
          "repositories", response=Page[RepositoryOut], query=PAGING),
    Route("GET", f"{P}/repositories/{{name}}/", repositories.show, "Show a repository",
          "repositories", response=RepositoryOut),
    Route("PATCH", f"{P}/repositories/{{name}}/", repositories.update,
          "Rename or describe a repository", "repositories", body=RepositoryIn,
          response=RepositoryOut),
    Route("DELETE", f"{P}/repositories/{{name}}/", repositories.delete,
          "Delete a repository, its versions and the distributions serving it",
          "repositories", status=204),
    Route("GET", f"{P}/repositories/{{name}}/versions/", repositories.versions,
          "List the versions of a repository, newest first", "repositories",
          response=Page[VersionOut], query=PAGING),
    Route("GET", f"{P}/repositories/{{name}}/versions/{{number}}/", repositories.version,
          "Show a repository version", "repositories", response=VersionOut),
    Route("POST", f"{P}/repositories/{{name}}/sync/", repositories.sync,
          "Sync a repository from a remote (starts a task)", "repositories",
          body=SyncIn, response=TaskOut, status=202),
    # distributions
    Route("POST", f"{P}/distributions/", distributions.create, "Create a distribution",
          "distributions", body=DistributionIn, response=DistributionOut, status=201),
    Route("GET", f"{P}/distributions/", distributions.list_, "List distributions",
          "distributions", response=Page[DistributionOut], query=PAGING),
    Route("GET", f"{P}/distributions/{{name}}/", distributions.show, "Show a distribution",
          "distributions", response=DistributionOut),
    Route("PATCH", f"{P}/distributions/{{name}}/", distributions.update,
          "Change some fields of a distribution", "distributions", body=DistributionIn,
          response=DistributionOut),
    Route("DELETE", f"{P}/distributions/{{name}}/", distributions.delete,
          "Delete a distribution", "distributions", status=204),
    # content
    Route("GET", f"{P}/content/tags/", content.tags, "List tags", "content",
          response=Page[TagOut],
          query=(*PAGING, *content.SCOPE, Query("name", "string", "Only tags with this name"))),
    Route("GET", f"{P}/content/manifests/", content.manifests, "List manifests", "content",
          response=Page[ManifestOut], query=(*PAGING, *content.SCOPE, DIGEST, content.STORED)),
    Route("GET", f"{P}/content/blobs/", content.blobs, "List blobs", "content",
          response=Page[BlobOut], query=(*PAGING, *content.SCOPE, DIGEST, content.STORED)),
    # artifacts, tasks, status
    Route("GET", f"{P}/artifacts/", artifacts.list_,
          "List stored artifacts, with counts and bytes by kind", "artifacts",
          response=ArtifactPage,
          query=(*PAGING, Query("kind", "string", "manifest, config, layer or blob",
                                choices=artifacts.FILTER_KINDS), DIGEST)),
    Route("GET", f"{P}/tasks/", tasks.list_, "List tasks, newest first", "tasks",
          response=Page[TaskOut],
          query=(*PAGING, Query("state", "string",
                                "waiting, running, completed, failed or canceled",
                                choices=tasks.STATES))),
    Route("GET", f"{P}/tasks/{{id}}/", tasks.show, "Show a task", "tasks", response=TaskOut),
    Route("GET", f"{P}/status/", status.show, "Server status", "status", response=StatusOut),
    Route("GET", f"{P}/check/", status.check,
          "Compare database and storage: artifacts without files, files without artifacts,"
          " unfinished versions", "status", response=CheckOut,
          query=(Query("verify", "boolean", "Also hash every stored file"),)),
]
ROUTES.append(Route("GET", f"{P}/openapi.json", openapi.handler(ROUTES),
                    "This OpenAPI document", "status"))
