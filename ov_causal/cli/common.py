"""What every ``ov-causal`` command shares: exit statuses, help texts, and the checks run before any heavy import."""

from __future__ import annotations

import argparse
import inspect
from argparse import ArgumentParser
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..config.presets import PRESETS, RUNTIMES, get_preset, get_runtime
from ..convert.sources import find_local
from ..errors import OptionError, PresetError, suggest

EXIT_OK = 0
EXIT_DAMAGED = 1
EXIT_FAILED = 1  # 'ov-causal serve' stopped on its own: its engine stalled (a supervisor should start it again)
EXIT_ERROR = 2  # argparse's own status for a usage error; ov_causal's reported errors share it
EXIT_NO_CHOICE = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C ended
EXIT_STATUS = "\n".join((
    "exit status:",
    f"  {EXIT_OK}  done",
    f"  {EXIT_DAMAGED}  'ov-causal cache verify' found a damaged entry; 'ov-causal serve --no-ray' stopped because "
    "its engine stalled (start it again)",
    f"  {EXIT_ERROR}  a usage error, or an error ov_causal reports as 'ov-causal: error: ...' (a misspelt preset, "
    "a wrong model path)",
    f"  {EXIT_NO_CHOICE}  'ov-causal tune' found no preset within the budget",
    f"  {EXIT_INTERRUPTED}  interrupted (Ctrl-C): nothing half-written is left in the cache or the output folder",
))

AUTO = "auto"
MODEL_HELP = ("Hub id (org/name) or local folder: a Hugging Face checkpoint or an OpenVINO export; or a llama.cpp "
              ".gguf file (kept with its own quantization unless --preset is given)")
PRESET_HELP = (
    f"weight compression preset: {', '.join(PRESETS)}, or auto (the choice 'ov-causal tune' saved for this model, "
    "else a rule by model size and CPU) (default: int8 above 1B parameters, none below; an export keeps its weights)"
)
RUNTIME_HELP = (
    f"runtime preset (OpenVINO compile options): {', '.join(RUNTIMES)} (default: the one an export folder was "
    "saved with, else the default for the model's weights, as in from_pretrained)"
)
DEVICE_HELP = "OpenVINO device, e.g. CPU or GPU (default: %(default)s)"



class Subparsers(Protocol):
    """What ``ArgumentParser.add_subparsers()`` returns, as far as the commands use it."""

    def add_parser(self, name: str, **kwargs: Any) -> ArgumentParser: ...


class CommandParser(ArgumentParser):
    """A command's parser: an option it does not know is reported with this command's usage and the closest
    option it has, rather than by the top-level parser with the top-level usage."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}.{self._closest_option(extras)}")
        return namespace, extras

    def _closest_option(self, extras: list[str]) -> str:
        given = next((e.partition("=")[0] for e in extras if e.startswith("--")), None)
        if given is None:
            return ""
        options = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
        return suggest(given, options)


Run = Callable[[argparse.Namespace], int]
Check = Callable[[argparse.Namespace], None]


def command(sub: Subparsers, name: str, summary: str, run: Run, check: Check, epilog: str | None = None,
            ) -> ArgumentParser:
    """A subcommand whose --help opens with its summary (the same line 'ov-causal --help' lists).

    ``check(args)`` validates what was typed before anything heavy is imported; ``run(args)`` does the work and
    returns the exit status. ``main`` calls them in that order.
    """
    parser = sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".", epilog=epilog)
    parser.set_defaults(run=run, check=check)
    return parser


def default_of(function: Callable[..., Any], keyword: str) -> Any:
    """The default of ``function``'s ``keyword``: a flag's default is read from the API, never written twice."""
    return inspect.signature(function).parameters[keyword].default


def keywords(args: argparse.Namespace, function: Callable[..., Any]) -> dict[str, Any]:
    """The parsed flags that are keywords of ``function``, leaving out those not given (None: the API's default)."""
    given = vars(args)
    return {name: given[name] for name in inspect.signature(function).parameters
            if given.get(name) is not None}


def split_names(names: str) -> list[str]:
    """``"int8, int4_asym_g64"`` -> ``["int8", "int4_asym_g64"]``."""
    return [name.strip() for name in names.split(",")]


def check_preset(flag: str, name: str, allow_auto: bool) -> None:
    """The API's message (with its did-you-mean) for an unknown name, naming the flag it came with."""
    if name == AUTO:
        if allow_auto:
            return
        raise PresetError(f"{flag}: {AUTO!r} picks one preset when a model is loaded; here name the presets to "
                          "compare, e.g. int8,int4_asym_g128 (or leave the option out for the default list).")
    try:
        get_preset(name)
    except PresetError as exc:
        also = f" {flag} also takes {AUTO!r}." if allow_auto else ""
        raise PresetError(f"{flag}: {exc}{also}") from None


def check_runtime(name: str) -> None:
    """The API's message for an unknown runtime preset, naming --runtime."""
    try:
        get_runtime(name)
    except PresetError as exc:
        raise PresetError(f"--runtime: {exc}") from None


def check_names(args: argparse.Namespace, presets_allow_auto: bool = False) -> None:
    """--preset, --runtime and the --presets list, if the command has them and they were given."""
    if getattr(args, "preset", None) is not None:
        check_preset("--preset", args.preset, allow_auto=True)
    if getattr(args, "runtime", None) is not None:
        check_runtime(args.runtime)
    if getattr(args, "presets", None):
        for name in split_names(args.presets):
            check_preset("--presets", name, allow_auto=presets_allow_auto)


def check_model(model: str | None) -> None:
    """A path that names no model folder is reported here; a Hub id (org/name) is left to the API."""
    if model is not None:
        find_local(model)


INPUT_FILES = ("text", "calibration", "chat_template")  # flags naming a file the command reads
OUTPUT_FILES = ("json", "plot")  # flags naming a file the command writes once its work is done


def check_paths(args: argparse.Namespace) -> None:
    """Files the command reads exist; files it writes at the end have a folder to go to (so that a long run does
    not end in a refusal)."""
    for keyword in INPUT_FILES:
        path = getattr(args, keyword, None)
        if path is not None and not Path(path).is_file():
            what = "is a folder" if Path(path).is_dir() else "does not exist"
            raise OptionError(f"--{keyword.replace('_', '-')} {path!r} {what}: pass a text file.")
    for keyword in OUTPUT_FILES:
        path = getattr(args, keyword, None)
        if path is None:
            continue
        folder = Path(path).expanduser().absolute().parent
        if Path(path).is_dir() or not folder.is_dir():
            problem = "is a folder" if Path(path).is_dir() else f"cannot be written: {str(folder)!r} is no folder"
            raise OptionError(f"--{keyword} {path!r} {problem}. Pass a file path in an existing folder.")


def check_model_and_names(args: argparse.Namespace) -> None:
    """The checks of a command whose only typed names are MODEL, --preset/--runtime and --presets (and files)."""
    check_names(args)
    check_paths(args)
    check_model(args.model)
