"""Shared test setup: quick mode for every notebook, and small fixtures."""

from __future__ import annotations

import os

# nbval starts its kernels from this process's environment, so this also puts the chapters in
# quick mode when pytest is called directly instead of through `make test`.
os.environ.setdefault("GAN_BOOK_QUICK", "1")
