"""The trust server's encrypted keys in storage: is the passphrase the right one, and re-keying.

    trust/<repository>/_keys/<role>/<key id>.pem    PKCS#8 PEM, encrypted with the passphrase

A wrong passphrase must stop the server at start (otherwise every trust-key request fails later), and
keys made under the public development passphrase (`./scripts/serve.sh`) must be re-encrypted before
the data is served with a real one: `trustreg trust rekey` does that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from config.loader import ConfigError
from storage.base import StorageDriver
from trust.signing import encrypt_private_key, load_private_key_pem

INSECURE_DEV_PASSPHRASE = "trustreg-insecure-development-passphrase"  # public: development only
TRUST_PREFIX = "trust"


def is_key_file(key: str) -> bool:
    parts = key.split("/")
    return (len(parts) >= 5 and parts[0] == TRUST_PREFIX and parts[-3] == "_keys" and key.endswith(".pem")
            and not any(p.startswith(".tmp-") for p in parts))


async def key_files(driver: StorageDriver) -> AsyncIterator[str]:
    """Every stored server key (storage keys)."""
    async for key in driver.walk(f"{TRUST_PREFIX}/"):
        if is_key_file(key):
            yield key


def decrypts(pem: bytes, passphrase: str) -> bool:
    """Whether `passphrase` opens this encrypted key."""
    try:
        load_private_key_pem(pem, passphrase.encode())
    except (ValueError, TypeError):
        return False
    return True


def dev_passphrase_message(env: str) -> str:
    return (
        f"the trust server's keys in storage were encrypted with the public development passphrase (data made "
        f"by ./scripts/serve.sh or `trustreg serve` without --config), not with {env}. Re-encrypt them once "
        f"with the passphrase in {env}: `trustreg trust rekey --config <this config> --from-dev`"
    )


async def verify_passphrase(driver: StorageDriver, passphrase: str, env: str) -> None:
    """ConfigError unless `passphrase` opens the stored keys (checked on the first one found)."""
    async for key in key_files(driver):
        pem = await driver.get(key)
        if decrypts(pem, passphrase):
            return
        if passphrase != INSECURE_DEV_PASSPHRASE and decrypts(pem, INSECURE_DEV_PASSPHRASE):
            raise ConfigError(f"config error at trust.keys.passphrase_env: {dev_passphrase_message(env)}")
        raise ConfigError(
            f"config error at trust.keys.passphrase_env: the passphrase in {env} does not decrypt the trust "
            f"server's keys (e.g. {key}): wrong passphrase. Start with the passphrase the data was created with "
            f"(to change it: `trustreg trust rekey`, old passphrase in TRUSTREG_OLD_TRUST_PASSPHRASE)"
        )


async def rekey(driver: StorageDriver, old: str, new: str) -> tuple[int, int]:
    """Re-encrypt every key `old` opens under `new`; (re-keyed, already under `new`). ConfigError names
    a key neither opens (nothing after it is changed; re-running is safe)."""
    done = same = 0
    async for key in key_files(driver):
        pem = await driver.get(key)
        if decrypts(pem, new):
            same += 1
            continue
        try:
            private = load_private_key_pem(pem, old.encode())
        except (ValueError, TypeError):
            raise ConfigError(f"{key}: neither the old nor the new passphrase decrypts it") from None
        await driver.put(key, encrypt_private_key(private, new.encode()))
        done += 1
    return done, same
