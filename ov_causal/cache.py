"""``ov_causal.cache`` moved to ``ov_causal.build.cache``; this path keeps code written for 0.1 working."""

from .build.cache import (  # noqa: F401
    CACHE_ENV,
    Entry,
    Hit,
    cache_root,
    cache_table,
    clear,
    compiling,
    folder_fingerprint,
    get_or_build,
    list_entries,
    make_key,
    parse_age,
    quick_hash,
    verify_cache,
)
