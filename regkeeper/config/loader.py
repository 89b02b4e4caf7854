"""Loading a config file: YAML -> :class:`.root.Config`, with errors that name the file, the
line, the key path (``mirrorRepositories[1].url``) and, for an unknown key, the nearest valid one.

Secret references are attached to the key they came from (so a resolution error names it);
:func:`check_secrets` resolves them all up front, before a run does any work.
"""

import difflib
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..errors import ConfigError
from .root import Config


def _line_map(text: str) -> dict[tuple, int]:
    """Map key paths (('mirrorRepositories', 1, 'url')) to 1-based line numbers."""
    out: dict[tuple, int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return out

    def walk(node, path):
        out.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value
                out[path + (key,)] = k.start_mark.line + 1
                walk(v, path + (key,))
                out[path + (key,)] = k.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, path + (i,))

    if root is not None:
        walk(root, ())
    return out


def _fmt_path(loc: tuple) -> str:
    s = ""
    for p in loc:
        if isinstance(p, int):
            s += f"[{p}]"
        else:
            s += ("." if s else "") + str(p)
    return s


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model whose fields are valid at a key path (for 'did you mean')."""
    model: Any = Config
    for p in loc:
        if isinstance(p, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = None
        for name, f in model.model_fields.items():
            if p in (name, f.alias):
                field = f
                break
        if field is None:
            return None
        ann = field.annotation
        model = _unwrap_model(ann)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap_model(ann):
    import typing

    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for a in typing.get_args(ann):
        m = _unwrap_model(a)
        if m is not None:
            return m
    return None


def _valid_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items() if n != "source"]


def _error_loc(err: ErrorDetails) -> tuple:
    """The key path of a pydantic error, without pydantic's validator and union-branch labels."""
    loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-")))
    # drop pydantic's union-branch labels
    return tuple(x for x in loc if not (isinstance(x, str) and ("[" in x and "]" in x)))


def _nearest_line(loc: tuple, lines: dict[tuple, int]) -> int | None:
    """The line of ``loc``, else of its nearest parent present in the file."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _unknown_key_hint(loc: tuple) -> str:
    """`` (did you mean 'keepLast'?)``, or the valid keys when none is close."""
    parent = _model_at(loc[:-1])
    if parent is None:
        return ""
    valid = _valid_keys(parent)
    close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid keys: {', '.join(valid)})"


def _format_error(err: ErrorDetails, source: str, lines: dict[tuple, int]) -> str:
    """One ``file:line: key.path: message`` line for one pydantic error."""
    loc = _error_loc(err)
    path = _fmt_path(loc) or "(top level)"
    line = _nearest_line(loc, lines)
    where = f"{source}:{line}" if line else source
    if err["type"] == "extra_forbidden":
        return f"{where}: {path}: unknown key{_unknown_key_hint(loc)}"
    if err["type"] == "missing":
        return f"{where}: {path}: required key is missing"
    msg = err["msg"]
    msg = re.sub(r"^(Value error|Assertion failed), ", "", msg)
    # model-level checks name their key as "key: message"
    m = re.match(r"^([A-Za-z][A-Za-z0-9]*): (.*)$", msg, re.S)
    model = _model_at(loc)
    if m and model is not None and m.group(1) in _valid_keys(model):
        path = _fmt_path(loc + (m.group(1),))
        msg = m.group(2)
        if loc + (m.group(1),) in lines:
            where = f"{source}:{lines[loc + (m.group(1),)]}"
    elif m is None and (k := _KEY_PATH.match(msg)):  # a cross-reference: "gc.registry: ..."
        sub = _parse_path(k.group(1))
        path, msg = _fmt_path(loc + sub), k.group(2)
        line = _nearest_line(loc + sub, lines)
        where = f"{source}:{line}" if line else source
    if err["type"] in ("literal_error", "enum"):
        msg = f"{msg} (got {err.get('input')!r})"
    return f"{where}: {path}: {msg}"


# a key path a model-level check names first: ``replication[0].to``, ``tiers[1].rules[0].keep``
_KEY_PATH = re.compile(
    r"^([A-Za-z][A-Za-z0-9]*(?:\[\d+\])*(?:\.[A-Za-z][A-Za-z0-9]*(?:\[\d+\])*)+|"
    r"[A-Za-z][A-Za-z0-9]*(?:\[\d+\])+): (.*)$",
    re.S,
)


def _parse_path(text: str) -> tuple:
    """``replication[0].to`` -> ``('replication', 0, 'to')``."""
    return tuple(int(p) if p.isdigit() else p for p in re.findall(r"[A-Za-z][A-Za-z0-9]*|\d+", text))


def _error_lines(e: ValidationError, source: str, lines: dict[tuple, int]) -> list[str]:
    return [_format_error(err, source, lines) for err in e.errors()]


def _read_yaml(text: str, source: str) -> dict:
    """The YAML document as a mapping (an empty file is an empty mapping)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with mirrorRepositories")
    return data


def _name_secrets(obj, prefix: str, attrs: tuple[tuple[str, str], ...]) -> None:
    for attr, key in attrs:
        s = getattr(obj, attr)
        if s is not None:
            s.key = f"{prefix}.{key}"


def _attach_secret_keys(cfg: Config, source: str) -> None:
    """Attach key paths to secrets so resolution errors name the key."""
    s3_keys = (("access_key", "accessKey"), ("secret_key", "secretKey"))
    for i, r in enumerate(cfg.mirror_repositories):
        _name_secrets(r, f"{source}: mirrorRepositories[{i}]", s3_keys)
        if r.auth:
            _name_secrets(
                r.auth,
                f"{source}: mirrorRepositories[{i}].auth",
                tuple((a, a) for a in ("username", "password", "token")),
            )
    if cfg.capacity:
        for i, n in enumerate(cfg.capacity.notify):
            n.webhook.key = f"{source}: capacity.notify[{i}].webhook"
    if cfg.backup:
        _name_secrets(cfg.backup, f"{source}: backup", s3_keys)


def parse_config(text: str, source: str = "<config>") -> Config:
    data = _read_yaml(text, source)
    lines = _line_map(text)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        msgs = _error_lines(e, source, lines)
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(msgs)) from None
    cfg.source = source
    _attach_secret_keys(cfg, source)
    return cfg


def load_config(path: str | os.PathLike) -> Config:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config file: {e.strerror}") from None
    return parse_config(text, str(p))


def check_secrets(cfg: Config, registry: str | None = None) -> None:
    """Resolve every secret a run will use now, so a missing one fails before any work."""
    regs = [cfg.registry(registry)] if registry else cfg.mirror_repositories
    for r in regs:
        for s in (r.access_key, r.secret_key):
            if s is not None:
                s.check()
        if r.auth:
            for s in (r.auth.username, r.auth.password, r.auth.token):
                if s is not None:
                    s.check()
