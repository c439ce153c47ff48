"""The server's own private keys (timestamp and snapshot roles), encrypted at rest.

    trust/<repository>/_keys/<role>/<key id>.pem    PKCS#8 PEM, encrypted with the passphrase
    trust/<repository>/_keys/<role>/created/<slot>  the key ID created for that slot (root version)

Creating keys is bounded: `create_once` makes at most one key per role and slot (the service uses the
current root's version, so a new key per role needs a newly published root), create-only across
processes; a caller asking again gets the same key.

Keys are ECDSA P-256 (`keytype` "ecdsa", signatures "ecdsa"). Every key ever created is kept: a root
may name any of them. Decrypted keys are cached in memory.
"""

from __future__ import annotations

from storage.base import PathNotFoundError, StorageDriver
from trust.keys import PublicKey
from trust.signing import PrivateKeyObject, encrypt_private_key, generate_ecdsa_key, load_private_key_pem

SERVER_ROLES = ("timestamp", "snapshot")


class ServerKeyStore:
    """Per-repository server keys for the timestamp and snapshot roles."""

    def __init__(self, driver: StorageDriver, passphrase: str | bytes, prefix: str = "trust") -> None:
        if not passphrase:
            raise ValueError("the trust key passphrase must not be empty")
        self.driver = driver
        self.prefix = prefix.strip("/")
        self._passphrase = passphrase.encode() if isinstance(passphrase, str) else passphrase
        self._cache: dict[tuple[str, str, str], PrivateKeyObject] = {}

    def _dir(self, repository: str, role: str) -> str:
        return f"{self.prefix}/{repository}/_keys/{role}"

    async def create(self, repository: str, role: str) -> PublicKey:
        """Make, encrypt and store a new key for `role`; returns its public key."""
        if role not in SERVER_ROLES:
            raise ValueError(f"the server holds no keys for role {role!r}")
        private = generate_ecdsa_key()
        public = PublicKey.from_crypto(private.public_key())
        pem = encrypt_private_key(private, self._passphrase)
        await self.driver.put(f"{self._dir(repository, role)}/{public.keyid}.pem", pem)
        self._cache[(repository, role, public.keyid)] = private
        return public

    def _slot_key(self, repository: str, role: str, slot: str) -> str:
        return f"{self._dir(repository, role)}/created/{slot}"

    async def created_for(self, repository: str, role: str, slot: str) -> PublicKey | None:
        """The key created for `slot`, if one was (and the server still holds it)."""
        try:
            keyid = (await self.driver.get(self._slot_key(repository, role, slot))).decode("ascii", "replace")
        except PathNotFoundError:
            return None
        private = await self.private_key(repository, role, keyid)
        return PublicKey.from_crypto(private.public_key()) if private is not None else None

    async def create_once(self, repository: str, role: str, slot: str) -> PublicKey:
        """The key of `slot`, created now if none was: one key per role and slot, even when processes
        sharing the storage race (the slot is claimed create-only; a loser discards its key)."""
        existing = await self.created_for(repository, role, slot)
        if existing is not None:
            return existing
        key = await self.create(repository, role)
        slot_key = self._slot_key(repository, role, slot)
        if await self.driver.put_if_absent(slot_key, key.keyid.encode()):
            return key
        winner = await self.created_for(repository, role, slot)
        if winner is None:  # the slot names a key that is gone: this one takes its place
            await self.driver.put(slot_key, key.keyid.encode())
            return key
        await self.driver.delete(f"{self._dir(repository, role)}/{key.keyid}.pem")
        self._cache.pop((repository, role, key.keyid), None)
        return winner

    async def private_key(self, repository: str, role: str, keyid: str) -> PrivateKeyObject | None:
        """The private key with ID `keyid` for `role`, or None if the server does not hold it."""
        cached = self._cache.get((repository, role, keyid))
        if cached is not None:
            return cached
        if not all(c in "0123456789abcdef" for c in keyid) or not keyid:
            return None
        try:
            pem = await self.driver.get(f"{self._dir(repository, role)}/{keyid}.pem")
        except PathNotFoundError:
            return None
        private = load_private_key_pem(pem, self._passphrase)
        self._cache[(repository, role, keyid)] = private
        return private

    async def signers(self, repository: str, role: str, keyids: tuple[str, ...]) -> list[tuple[str, PrivateKeyObject]]:
        """(key ID, private key) for each of `keyids` the server holds for `role`."""
        held = []
        for keyid in dict.fromkeys(keyids):
            private = await self.private_key(repository, role, keyid)
            if private is not None:
                held.append((keyid, private))
        return held
