"""Build the configured storage driver by name; the registry core never names a concrete driver."""

from __future__ import annotations

from typing import Any

from storage.base import StorageDriver


def create_driver(storage_config: dict[str, Any]) -> StorageDriver:
    """Create the driver selected by the `storage` config section (filesystem is the default)."""
    if "s3" in storage_config:
        from storage.s3 import S3Driver

        return S3Driver.from_config(storage_config["s3"])
    from storage.filesystem import FilesystemDriver

    root = (storage_config.get("filesystem") or {}).get("root", "./data")
    return FilesystemDriver(root)
