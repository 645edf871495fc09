"""Files, vector stores and container files, with their server-side state.

What the backends upload (images for Assistants' ``image_file``, documents for
file_search, ``input_file`` and the code interpreter) is kept with its SHA-256, so the
model's context can name each attachment by the hash of its bytes however it was sent
(a data URL, a file id, a vector store), and replay can match a turn by it. Vector
stores hold file ids; a container holds the files code interpreter was given or made.
A file a tool produced is served from the script that produced it (``Script.files``)
or from the source (``file_content``: a recording's ``file`` lines).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .base import Reply, error

if TYPE_CHECKING:
    from . import ReplayAPI


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes = field(repr=False)
    sha256: str = ""
    container_id: str | None = None

    def as_object(self) -> dict[str, Any]:
        if self.container_id is not None:
            return {
                "id": self.id,
                "object": "container.file",
                "bytes": len(self.data),
                "container_id": self.container_id,
                "created_at": int(time.time()),
                "path": f"/mnt/data/{self.filename}",
                "source": "user",
            }
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": int(time.time()),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


def upload_of(body: Any) -> tuple[str, bytes, str] | None:
    """``(filename, bytes, content type)`` of a multipart body's ``file`` field."""
    part = body.get("file") if isinstance(body, dict) else None
    if not isinstance(part, dict) or not isinstance(part.get("data"), bytes):
        return None
    return str(part.get("filename") or "upload"), part["data"], str(part.get("content_type") or "")


def _page(items: list[dict[str, Any]]) -> dict[str, Any]:
    first, last = (items[0]["id"], items[-1]["id"]) if items else (None, None)
    return {"object": "list", "data": items, "first_id": first, "last_id": last, "has_more": False}


class FilesHandler:
    """``/files``, ``/vector_stores`` and ``/containers``."""

    def __init__(self, core: ReplayAPI) -> None:
        self.core = core
        self.files: dict[str, StoredFile] = {}
        self.stores: dict[str, list[str]] = {}
        """Vector store id → its file ids."""
        self.containers: dict[str, list[str]] = {}

    # -- what handlers and tests ask -------------------------------------------------

    def sha256(self, file_id: str) -> str | None:
        stored = self.files.get(file_id)
        return stored.sha256 if stored is not None else None

    def store_files(self, store_id: str) -> list[str]:
        """The SHA-256s of a vector store's files (empty for an unknown store)."""
        return [self.files[f].sha256 for f in self.stores.get(store_id, []) if f in self.files]

    def produced(self, file_id: str, filename: str, data: bytes, container_id: str | None = None) -> None:
        """A file a served stream produced (code interpreter), for its download."""
        self.files[file_id] = StoredFile(
            file_id, filename, "assistants_output", data, hashlib.sha256(data).hexdigest(), container_id
        )

    def _content(self, file_id: str) -> StoredFile | None:
        stored = self.files.get(file_id)
        if stored is not None:
            return stored
        lookup = getattr(self.core.source, "file_content", None)
        found = lookup(file_id) if lookup is not None else None
        if found is None:
            return None
        name, data = found
        self.produced(file_id, name, data)
        return self.files[file_id]

    # -- routes ----------------------------------------------------------------------

    def route(self, method: str, parts: list[str], body: dict[str, Any], query: dict[str, str]) -> Reply | None:
        head = parts[0]
        if head == "files":
            return self._files(method, parts, body)
        if head == "vector_stores":
            return self._stores(method, parts, body)
        if head == "containers":
            return self._containers(method, parts, body)
        return None

    def _new_file(self, body: dict[str, Any], prefix: str, container_id: str | None = None) -> StoredFile | Reply:
        upload = upload_of(body)
        if upload is None:
            return error(400, "file: expected a file in a multipart/form-data body.", "missing_file")
        filename, data, _ = upload
        purpose = str(body.get("purpose") or "")
        if container_id is None and not purpose:
            return error(400, "purpose: required.", "missing_purpose")
        stored = StoredFile(self.core.new_id(prefix), filename, purpose, data, hashlib.sha256(data).hexdigest(), container_id)
        self.files[stored.id] = stored
        return stored

    def _files(self, method: str, parts: list[str], body: dict[str, Any]) -> Reply | None:
        n = len(parts)
        if method == "POST" and n == 1:
            made = self._new_file(body, "file")
            return made if isinstance(made, Reply) else Reply(200, made.as_object())
        if method == "GET" and n == 1:
            return Reply(200, _page([f.as_object() for f in self.files.values() if f.container_id is None]))
        if n < 2:
            return None
        stored = self._content(parts[1]) if n == 3 else self.files.get(parts[1])
        if stored is None:
            return error(404, f"No such File object: {parts[1]}", "not_found")
        if method == "GET" and n == 2:
            return Reply(200, stored.as_object())
        if method == "GET" and n == 3 and parts[2] == "content":
            return Reply(200, raw=stored.data, headers={"content-type": "application/octet-stream"})
        if method == "DELETE" and n == 2:
            del self.files[parts[1]]
            return Reply(200, {"id": parts[1], "object": "file", "deleted": True})
        return None

    def _store_object(self, store_id: str) -> dict[str, Any]:
        obj = self.core.objects[store_id]
        count = len(self.stores[store_id])
        counts = {"in_progress": 0, "completed": count, "failed": 0, "cancelled": 0, "total": count}
        return {**obj, "status": "completed", "file_counts": counts, "usage_bytes": 0}

    def _store_file(self, store_id: str, file_id: str) -> dict[str, Any]:
        return {
            "id": file_id,
            "object": "vector_store.file",
            "created_at": int(time.time()),
            "vector_store_id": store_id,
            "status": "completed",
            "last_error": None,
            "usage_bytes": len(self.files[file_id].data) if file_id in self.files else 0,
        }

    def _stores(self, method: str, parts: list[str], body: dict[str, Any]) -> Reply | None:
        n = len(parts)
        if method == "POST" and n == 1:
            file_ids = [str(f) for f in body.get("file_ids") or []]
            missing = [f for f in file_ids if f not in self.files]
            if missing:
                return error(400, f"No such File object: {missing[0]}", "not_found")
            store = self.core.create("vector_store", "vs", name=body.get("name"), expires_after=body.get("expires_after"))
            self.stores[store["id"]] = file_ids
            return Reply(200, self._store_object(store["id"]))
        store_id = parts[1] if n >= 2 else ""
        if store_id not in self.stores or store_id not in self.core.objects:
            return error(404, f"No vector store found with id '{store_id}'.", "not_found")
        files = self.stores[store_id]
        if method == "GET" and n == 2:
            return Reply(200, self._store_object(store_id))
        if method == "DELETE" and n == 2:
            del self.stores[store_id]
            reply = self.core.delete(store_id, "vector_store")
            reply.body = {**reply.body, "object": "vector_store.deleted"}
            return reply
        if n >= 3 and parts[2] == "files":
            if method == "POST" and n == 3:
                file_id = str(body.get("file_id") or "")
                if file_id not in self.files:
                    return error(400, f"No such File object: {file_id}", "not_found")
                if file_id not in files:
                    files.append(file_id)
                return Reply(200, self._store_file(store_id, file_id))
            if method == "GET" and n == 3:
                return Reply(200, _page([self._store_file(store_id, f) for f in files]))
            if n == 4 and parts[3] in files:
                if method == "GET":
                    return Reply(200, self._store_file(store_id, parts[3]))
                if method == "DELETE":
                    files.remove(parts[3])
                    return Reply(200, {"id": parts[3], "object": "vector_store.file.deleted", "deleted": True})
            if n == 4:
                return error(404, f"No file {parts[3]} in vector store {store_id}.", "not_found")
        if n >= 3 and parts[2] == "file_batches":
            if method == "POST" and n == 3:
                ids = [str(f) for f in body.get("file_ids") or []]
                missing = [f for f in ids if f not in self.files]
                if missing:
                    return error(400, f"No such File object: {missing[0]}", "not_found")
                files += [f for f in ids if f not in files]
            if method in ("POST", "GET") and n in (3, 4):
                batch_id = parts[3] if n == 4 else self.core.new_id("vsfb")
                counts = {"in_progress": 0, "completed": len(files), "failed": 0, "cancelled": 0, "total": len(files)}
                batch = {"id": batch_id, "object": "vector_store.files_batch", "vector_store_id": store_id}
                return Reply(200, {**batch, "status": "completed", "file_counts": counts, "created_at": int(time.time())})
        return None

    def _containers(self, method: str, parts: list[str], body: dict[str, Any]) -> Reply | None:
        n = len(parts)
        if method == "POST" and n == 1:
            file_ids = [str(f) for f in body.get("file_ids") or []]
            container = self.core.create("container", "cntr", name=body.get("name") or "", status="running")
            self.containers[container["id"]] = file_ids
            return Reply(200, container)
        container_id = parts[1] if n >= 2 else ""
        if container_id not in self.containers:
            self.containers[container_id] = []  # made by a response's `container: {type: auto}`
        if method == "DELETE" and n == 2:
            self.containers.pop(container_id, None)
            return self.core.delete(container_id, "container") if container_id in self.core.objects else Reply(200, {})
        if n >= 3 and parts[2] == "files":
            if method == "POST" and n == 3:
                stored = self._new_file(body, "cfile", container_id)
                if isinstance(stored, Reply):
                    return stored
                self.containers[container_id].append(stored.id)
                return Reply(200, stored.as_object())
            if n >= 4:
                stored_or_none = self._content(parts[3])
                if stored_or_none is None:
                    return error(404, f"No file {parts[3]} in container {container_id}.", "not_found")
                if method == "GET" and n == 5 and parts[4] == "content":
                    return Reply(200, raw=stored_or_none.data, headers={"content-type": "application/octet-stream"})
                if method == "GET" and n == 4:
                    return Reply(200, {**stored_or_none.as_object(), "container_id": container_id})
        return None
