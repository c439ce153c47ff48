"""The server's own private keys (timestamp and snapshot roles), encrypted at rest.

    trust/<repository>/_keys/<role>/<key id>.pem    PKCS#8 PEM, encrypted with the passphrase

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
