"""The options of a server (``serve()``'s keywords but the model and its loading), checked once, in one object.

``serve()`` builds one ``ServeOptions`` and hands it down unchanged: to ``serving.direct.start`` (``ray=False``)
or to every Ray Serve replica. Its defaults are ``serve()``'s (and so the CLI's).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import OptionError
from ..model.tool_calls import check_format


@dataclass(frozen=True)
class ServeOptions:
    """How a server listens, what it answers to, and the limits of each replica (see ``serve()`` for each)."""

    preset: str | None = None
    replicas: int = 1
    host: str = "127.0.0.1"
    port: int = 8000
    name: str | None = None
    device: str = "CPU"
    chat_template: str | None = None
    num_cpus: float | None = None
    max_batch: int = 16
    max_queue: int = 64
    kv_cache_gb: int | None = None
    max_body_bytes: int = 4 * 1024 * 1024
    body_timeout: float = 10.0
    grace: float = 30.0
    ray: bool = True
    lora: tuple[tuple[str, str], ...] = ()  # (name, adapter folder) served beside the base, picked by ``model``
    tool_parser: str | None = None  # the tool call format (``model.tool_calls.FORMATS``); None: from the template

    def __post_init__(self) -> None:
        check_lora(self.lora, self.name)
        if self.tool_parser is not None:
            check_format(self.tool_parser)
        for key, least in (("replicas", 1), ("max_batch", 1), ("max_queue", 0), ("max_body_bytes", 1)):
            _whole(key, getattr(self, key), least)
        if self.kv_cache_gb is not None:
            _whole("kv_cache_gb", self.kv_cache_gb, 1)
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise OptionError(f"port={self.port!r} is not valid: pass a number from 1 to 65535.")
        if not _number(self.body_timeout) or not self.body_timeout > 0:
            raise OptionError(f"body_timeout={self.body_timeout!r} is not valid: pass a number of seconds above 0.")
        if not _number(self.grace) or not 0 <= self.grace < float("inf"):
            raise OptionError(f"grace={self.grace!r} is not valid: pass the seconds (0 or more) that requests in "
                              "flight get to finish when the server stops.")
        if self.num_cpus is not None and (not _number(self.num_cpus) or not 0 <= self.num_cpus < float("inf")):
            raise OptionError(f"num_cpus={self.num_cpus!r} is not valid: pass the Ray CPUs (0 or more) a replica "
                              "reserves, or leave it out.")
        if not self.ray:
            self._check_direct()

    def _check_direct(self) -> None:
        """Refuse what the single-process server (``ray=False``) cannot do: several replicas, Ray CPUs."""
        if self.replicas != 1:
            raise OptionError(f"replicas={self.replicas} needs Ray Serve: ray=False (--no-ray) serves one replica in "
                              "this process. Pass replicas=1, or leave ray out to serve several replicas on Ray.")
        if self.num_cpus is not None:
            raise OptionError(f"num_cpus={self.num_cpus!r} reserves Ray CPUs, and ray=False (--no-ray) runs without "
                              "Ray. Leave num_cpus out (OpenVINO's threads are set with ov_config), or serve on Ray.")


def served_lora(lora: object) -> tuple[tuple[tuple[str, str], ...], object]:
    """``serve(lora=)`` split: ``{name: adapter folder}`` -> the options' ``(name, folder)`` pairs, served at run
    time; anything else (a folder, ``{folder: weight}``) is ``from_pretrained``'s ``lora=``, fused at export."""
    import os
    from collections.abc import Mapping

    if not lora:
        return (), None
    if isinstance(lora, Mapping) and all(isinstance(p, (str, os.PathLike)) for p in lora.values()):
        return tuple((name, os.fspath(path)) for name, path in lora.items()), None
    return (), lora


def check_lora(lora: tuple[tuple[str, str], ...], base: str | None) -> None:
    """Adapter names: non-empty strings, each once, none the base model's name."""
    names = [name for name, _ in lora]
    for name in names:
        if not isinstance(name, str) or not name.strip() or name == base or names.count(name) > 1:
            raise OptionError(f"LoRA adapter name {name!r} is not valid: each adapter needs its own non-empty name, "
                              f"other than the base model's ({base!r}); clients send it as the request's model.")


def check_grace(grace: float) -> float:
    """``grace`` as seconds (``shutdown(grace)``); OptionError unless it is a number of at least 0."""
    return float(ServeOptions(grace=grace).grace)


def _whole(key: str, value: object, least: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise OptionError(f"{key}={value!r} is not valid: pass a whole number of at least {least}.")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
