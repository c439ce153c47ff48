"""The hygiene tests use the end-to-end fixtures (real server process, real clients) too."""

from tests.e2e.conftest import dockerd, image, test_image, trustreg  # noqa: F401  (fixtures)
