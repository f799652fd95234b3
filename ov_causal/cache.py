"""``ov_causal.cache`` moved to ``ov_causal.build.cache`` and ``ov_causal.build.cache_entries``; this path keeps
code written for 0.1 working."""

from .build.cache import CACHE_ENV, Hit, cache_root, compiling, folder_fingerprint, get_or_build, make_key, quick_hash  # noqa: F401
from .build.cache_entries import Entry, cache_table, clear, list_entries, parse_age, verify_cache  # noqa: F401
