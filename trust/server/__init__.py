"""The Notary v1 trust server's logic (no HTTP): validate and store updates, sign timestamp/snapshot."""

from trust.server.errors import NotaryError
from trust.server.keystore import SERVER_ROLES, ServerKeyStore
from trust.server.service import NotaryService, key_json
from trust.server.store import CurrentState, MetadataStore, StoredFile

__all__ = [
    "SERVER_ROLES",
    "CurrentState",
    "MetadataStore",
    "NotaryError",
    "NotaryService",
    "ServerKeyStore",
    "StoredFile",
    "key_json",
]
