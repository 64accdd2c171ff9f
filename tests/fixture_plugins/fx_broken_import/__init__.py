"""Test-only plugin package whose import fails (a missing third-party dependency)."""

from __future__ import annotations

import fx_dependency_that_is_not_installed  # noqa: F401
