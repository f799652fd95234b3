"""ServeOptions: the server's options, checked once; serve()'s (and so the CLI's) defaults are its own."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from ov_causal import OptionError
from ov_causal.serving.options import ServeOptions, check_grace
from ov_causal.serving.ray_serve import serve


@pytest.mark.parametrize("bad, match", [
    ({"replicas": 0}, r"replicas=0 is not valid"),
    ({"replicas": 1.5}, r"replicas=1.5 is not valid"),
    ({"max_batch": 0}, r"max_batch=0 is not valid"),
    ({"max_batch": True}, r"max_batch=True is not valid"),
    ({"max_queue": -1}, r"max_queue=-1 is not valid"),
    ({"max_body_bytes": "4M"}, r"max_body_bytes='4M' is not valid"),
    ({"kv_cache_gb": 0}, r"kv_cache_gb=0 is not valid"),
    ({"port": 0}, r"port=0 is not valid"),
    ({"port": 70000}, r"port=70000 is not valid"),
    ({"body_timeout": 0}, r"body_timeout=0 is not valid"),
    ({"grace": -1}, r"grace=-1 is not valid"),
    ({"grace": float("nan")}, r"grace=nan is not valid"),
    ({"grace": "5"}, r"grace='5' is not valid"),
    ({"num_cpus": -1}, r"num_cpus=-1 is not valid"),
    ({"ray": False, "replicas": 2}, r"replicas=2 needs Ray Serve.*replicas=1"),
    ({"ray": False, "num_cpus": 1.0}, r"num_cpus=1.0 reserves Ray CPUs"),
])
def test_bad_options_are_refused(bad, match):
    with pytest.raises(OptionError, match=match):
        ServeOptions(**bad)


def test_options_are_frozen_and_checked_again_when_replaced():
    options = ServeOptions(max_batch=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.max_batch = 8  # type: ignore[misc]
    with pytest.raises(OptionError, match="max_batch=0"):
        dataclasses.replace(options, max_batch=0)
    assert check_grace(5) == 5.0 and isinstance(check_grace(5), float)


def test_serve_defaults_are_the_options_defaults():
    parameters = inspect.signature(serve).parameters
    fields = dataclasses.fields(ServeOptions)
    assert {f.name for f in fields} <= set(parameters)
    for field in fields:
        assert parameters[field.name].default == field.default, field.name
        assert parameters[field.name].kind is inspect.Parameter.KEYWORD_ONLY


def test_serve_refuses_bad_options_before_loading(tmp_path):
    with pytest.raises(OptionError, match="max_queue=-1"):
        serve(str(tmp_path / "missing"), max_queue=-1, blocking=False)
