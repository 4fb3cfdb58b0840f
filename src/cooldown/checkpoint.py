"""Checkpoints: atomic save, verified load, safe deserialisation and the keep policy.

A checkpoint is a folder `RUN/checkpoints/step_NNNNNNN/` (the step, zero padded to 7 digits):

- `model.safetensors`: the weights, a flat name -> tensor dict, contiguous and on CPU;
- `<name>.safetensors`: optional extra weight sets stored beside them (e.g. `swa`, `ema`);
- `state.pt`: everything else (optimizer, sampler, averager and RNG states, the step), a nested
  dict of tensors, numbers, strings, lists, tuples and dicts, read back only with
  `torch.load(weights_only=True)` so that loading a checkpoint never runs code;
- `dcp/`: only in a distributed run's checkpoint (`train.parallelism` ddp or fsdp): the model,
  optimizer and weight averages as `torch.distributed.checkpoint` wrote them, one file per rank
  plus `.metadata`, loadable at any world size (DCP reshards on load); `model.safetensors` and the
  `<name>.safetensors` averages then hold the FULL weights as well (gathered at save time), so
  export, interpolation and branching read such a checkpoint from one process like any other, and
  `state.pt` holds the rest (no optimizer: that is in `dcp/`);
- `checksum.json`: `{"files": {name: sha256}, "step": N, "format": 1}`, written last; `dcp/`
  files are listed as `dcp/<file>`.

A checkpoint is complete iff its folder has the final name and checksum.json exists and matches.
A save writes everything into a temporary sibling folder, fsyncs it and renames it into place, so
a process killed at any moment leaves either a complete checkpoint or a dot-folder that listing
ignores. `list_checkpoints` checks structure only (cheap); `load_checkpoint` and
`verify_checkpoint` hash every file first.

A distributed save (`cooldown.sharded_checkpoint`, called by every rank) keeps that contract:
rank 0 makes the scratch folder, every rank writes its DCP shards into it, and after a barrier
rank 0 writes the full weights and state, hashes every file (all ranks' shards included) and
renames the folder into place. A job killed half-way leaves a scratch folder without
checksum.json, never a checkpoint that lists as complete.

Ownership: one process owns a run directory (the trainer; rank 0 of a distributed run).
`apply_keep_policy` is that process's housekeeping: besides deleting old checkpoints it removes
every scratch folder (`.tmp-*`, `.old-*`, `.del-*`) that another process id left behind, and
promotes a scratch folder that holds a finished save when its step has no checkpoint (a save
killed between its last write and its rename). The owner calls it at start-up and after each save.

This module knows nothing of what the weights and state mean: the trainer builds and applies them.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import json
import numbers
import os
import pickle
import re
import shutil
import sys
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from cooldown.errors import CooldownError
from cooldown.fileio import atomic_write_json, default_file_mode, fsync_dir

__all__ = [
    "Checkpoint",
    "CorruptCheckpoint",
    "apply_keep_policy",
    "check_weights_fit",
    "checkpoint_path",
    "find_checkpoint",
    "is_sharded",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "read_checkpoint_state",
    "save_checkpoint",
    "skipped_checkpoints",
    "verify_checkpoint",
    "weight_shapes",
]

FORMAT = 1
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
CHECKSUM_FILE = "checksum.json"
SHARDED_DIR = "dcp"  # torch.distributed.checkpoint files of a distributed run's checkpoint
_ALIASES_KEY = "cooldown.aliases"  # safetensors metadata: {alias name: stored name}
_CORRUPT = "checksum mismatch (checkpoint corrupt or partially written)"
_STEP_DIR = re.compile(r"step_(\d{7,})")
_SCRATCH_DIR = re.compile(r"\.(tmp|old|del)-step_(\d{7,})-(\d+)")
_EXTRA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Exact types, not isinstance: numpy.float64 subclasses float and IntEnum subclasses int, yet
# torch.load(weights_only=True) refuses both.
_STATE_SCALARS = (type(None), bool, int, float, str, bytes, torch.dtype, torch.device, torch.Size)


class CorruptCheckpoint(CooldownError):
    """A checkpoint's bytes are damaged: a file fails its checksum or cannot be decoded."""


@dataclass
class Checkpoint:
    """A loaded checkpoint. `weights` load into the model with `load_state_dict(strict=True)`."""

    step: int
    weights: dict[str, torch.Tensor]
    state: dict[str, Any]
    extra_weights: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    path: Path | None = None


# --- paths and listing ----------------------------------------------------------------------------


def _check_step(step: Any, what: str = "checkpoint step") -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise CooldownError(f"{what} must be a non-negative integer (got {step!r})")
    return int(step)


def _step_dir_name(step: int) -> str:
    return f"step_{step:07d}"


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    """Where the checkpoint of `step` lives (whether or not it exists)."""
    return Path(run_dir) / "checkpoints" / _step_dir_name(_check_step(step))


def list_checkpoints(run_dir: str | os.PathLike, *, verify: bool = False) -> list[int]:
    """Steps of the complete checkpoints in `run_dir`, ascending.

    Scratch folders and folders without a valid checksum.json or with a listed file missing are
    left out. `verify=True` also hashes every file (slow for big runs; loading verifies anyway).
    """
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir():
        return []
    steps = []
    for entry in ckpt_dir.iterdir():
        m = _STEP_DIR.fullmatch(entry.name)
        if m is None or entry.name != _step_dir_name(int(m.group(1))):
            continue
        try:
            _check_files(entry, _read_manifest(entry), hash_files=verify)
        except CooldownError:
            continue
        steps.append(int(m.group(1)))
    return sorted(steps)


def skipped_checkpoints(run_dir: str | os.PathLike) -> list[tuple[Path, str]]:
    """(folder, why) of every `step_N` folder `list_checkpoints` leaves out: a save never leaves
    one (it renames a finished folder into place), so each is damage a user should hear of."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir():
        return []
    out = []
    for entry in sorted(ckpt_dir.iterdir()):
        m = _STEP_DIR.fullmatch(entry.name)
        if m is None or entry.name != _step_dir_name(int(m.group(1))):
            continue
        try:
            _check_files(entry, _read_manifest(entry), hash_files=False)
        except CooldownError as e:
            out.append((entry, str(e)))
    return out


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step, or None when there is none."""
    steps = list_checkpoints(run_dir)
    return checkpoint_path(run_dir, steps[-1]) if steps else None


def find_checkpoint(run_dir: str | os.PathLike, step: int) -> Path:
    """The complete checkpoint at `step`; the error names the nearest steps there are."""
    step = _check_step(step)
    steps = list_checkpoints(run_dir)
    path = checkpoint_path(run_dir, step)
    if step in steps:
        return path
    below = [s for s in steps if s < step]
    above = [s for s in steps if s > step]
    nearest = [str(s) for s in ([max(below)] if below else []) + ([min(above)] if above else [])]
    incomplete = f" ({path} exists but is incomplete)" if path.exists() else ""
    where = f"; nearest: {', '.join(nearest)}" if nearest else "; it has no complete checkpoints"
    raise CooldownError(f"no checkpoint at step {step} in {run_dir}{incomplete}{where}")


# --- save -----------------------------------------------------------------------------------------


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    weights: Mapping[str, torch.Tensor],
    state: Mapping[str, Any],
    *,
    extra_weights: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
) -> Path:
    """Write the checkpoint of `step` atomically and return its folder.

    Tensors that share memory (tied embeddings) are stored once and restored under every name.
    A complete checkpoint of the same step is replaced atomically where the OS allows it.
    """
    step = _check_step(step)
    extra_weights = dict(extra_weights or {})
    _check_extra_names(extra_weights)
    if not isinstance(state, Mapping):
        raise TypeError(f"checkpoint state must be a dict, got {type(state).__name__}")
    state = _portable_state(dict(state), "state")
    final = checkpoint_path(run_dir, step)
    tmp = _new_scratch(final)
    try:
        _complete(tmp, final, step, weights, state, extra_weights)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _check_extra_names(extra_weights: Mapping[str, Any]) -> None:
    for name in extra_weights:
        if not isinstance(name, str) or not _EXTRA_NAME.fullmatch(name) or name == "model":
            raise CooldownError(
                f"extra_weights name {name!r} must be letters, digits, '_' or '-' and not "
                "'model' (it becomes the file name <name>.safetensors)"
            )


def _new_scratch(final: Path) -> Path:
    """An empty scratch folder beside `final`, named for this process (see the module docstring)."""
    ckpt_dir = final.parent
    if not ckpt_dir.is_dir():
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        fsync_dir(ckpt_dir.parent)
    tmp = ckpt_dir / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():  # this process's own leftover from a save that raised half-way
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def _complete(
    tmp: Path,
    final: Path,
    step: int,
    weights: Mapping[str, torch.Tensor],
    state: Mapping[str, Any],
    extra_weights: Mapping[str, Mapping[str, torch.Tensor]],
) -> None:
    """Write weights and state into `tmp`, hash every file in it, write checksum.json, rename."""
    weight_files = {MODEL_FILE: weights}
    weight_files.update({f"{n}.safetensors": w for n, w in extra_weights.items()})
    for file_name, tensors in weight_files.items():
        _write_weights(tmp / file_name, tensors)
    with open(tmp / STATE_FILE, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    names = [*weight_files, STATE_FILE]
    sharded = tmp / SHARDED_DIR
    if sharded.is_dir():
        fsync_dir(sharded)
        names += [f"{SHARDED_DIR}/{p.name}" for p in sharded.iterdir() if p.is_file()]
    digests = {name: _sha256(tmp / name) for name in sorted(names)}
    # Written last: its presence is what makes the folder a complete checkpoint.
    atomic_write_json(tmp / CHECKSUM_FILE, {"files": digests, "step": step, "format": FORMAT})
    fsync_dir(tmp)
    _move_into_place(tmp, final)
    fsync_dir(final.parent)


def _portable_state(obj: Any, where: str) -> Any:
    """`obj` with tensors detached and on CPU; refuses what weights_only loading would refuse.

    Refusing at save time means a run never writes a checkpoint it cannot resume from.
    """
    if isinstance(obj, torch.Tensor) and type(obj) in (torch.Tensor, torch.nn.Parameter):
        return obj.detach().cpu()
    if type(obj) in _STATE_SCALARS:
        return obj
    if type(obj) in (dict, OrderedDict):
        out = type(obj)()
        for key, value in obj.items():
            _portable_state(key, f"{where} key {key!r}")
            out[key] = _portable_state(value, f"{where}[{key!r}]")
        return out
    if type(obj) in (list, tuple):
        items = [_portable_state(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if type(obj) is list else tuple(items)
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    raise TypeError(
        f"{where} is a {kind}; a checkpoint state may hold only tensors, numbers, strings, lists, "
        "tuples and dicts because it is loaded with torch.load(weights_only=True): convert it"
    )


def _weights_to_store(weights: Mapping[str, torch.Tensor]) -> tuple[dict, dict[str, str]]:
    """(tensors to write, aliases): a tensor that is the very same view as an earlier one (tied
    weights) becomes an alias of it; one that merely overlaps another gets a private copy.
    safetensors refuses tensors that share memory, and a copy would untie them on load."""
    stored: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first_on_storage: dict[tuple, str] = {}
    for name, tensor in weights.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise TypeError(f"weights[{name!r}] must map a str to a torch.Tensor")
        t = tensor.detach()
        if t.numel() > 0:
            key = (t.device, t.untyped_storage().data_ptr())
            first = first_on_storage.setdefault(key, name)
            if first != name:
                o = weights[first].detach()
                if (t.dtype, t.shape, t.stride(), t.storage_offset()) == (
                    o.dtype,
                    o.shape,
                    o.stride(),
                    o.storage_offset(),
                ):
                    aliases[name] = first
                    continue
                t = t.clone()
        stored[name] = t.to("cpu").contiguous()
    return stored, aliases


def _write_weights(path: Path, weights: Mapping[str, torch.Tensor]) -> None:
    stored, aliases = _weights_to_store(weights)
    metadata = {"format": "pt", _ALIASES_KEY: json.dumps(aliases, sort_keys=True)}
    save_file(stored, path, metadata=metadata)
    os.chmod(path, default_file_mode())  # safetensors creates its files 0600
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move_into_place(tmp: Path, final: Path) -> None:
    if not final.exists():
        os.rename(tmp, final)
        return
    # Replacing a checkpoint of the same step: swap atomically where the OS can, so that some
    # complete checkpoint of this step exists at every moment; `tmp` then holds the old one.
    if _rename_exchange(tmp, final):
        fsync_dir(final.parent)
        _remove(tmp)
        return
    # Elsewhere two renames; a kill between them is repaired by apply_keep_policy (see the top).
    old = final.with_name(f".old-{final.name}-{os.getpid()}")
    if old.exists():
        shutil.rmtree(old)
    os.rename(final, old)
    os.rename(tmp, final)
    fsync_dir(final.parent)
    _remove(old)


def _remove(path: Path) -> None:
    """Delete a folder this module wrote; a symbolic link (a user's) loses only the link."""
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path)


@functools.lru_cache(maxsize=1)
def _renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _rename_exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    fn = _renameat2()
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False  # a kernel or file system without the flag
    raise OSError(err, os.strerror(err), os.fspath(b))


# --- load and verify ------------------------------------------------------------------------------


def load_checkpoint(
    path: str | os.PathLike, *, map_location: str | torch.device = "cpu"
) -> Checkpoint:
    """Verify every file's checksum, then load weights (safetensors) and state (weights_only)."""
    path = Path(path)
    manifest = _read_manifest(path)
    _check_files(path, manifest, hash_files=True)
    device = str(map_location)
    extra = {
        name.removesuffix(".safetensors"): _read_weights(path / name, device)
        for name in manifest["files"]
        if name.endswith(".safetensors") and name != MODEL_FILE
    }
    return Checkpoint(
        step=manifest["step"],
        weights=_read_weights(path / MODEL_FILE, device),
        state=_read_state(path / STATE_FILE, map_location),
        extra_weights=extra,
        path=path,
    )


def is_sharded(path: str | os.PathLike) -> bool:
    """Whether a complete checkpoint holds its model and optimizer in `dcp/` (a distributed
    run's); its checksum.json says so."""
    return any(n.startswith(SHARDED_DIR + "/") for n in _read_manifest(Path(path))["files"])


def weight_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the checkpoint's model.safetensors, read from its header only."""
    file = Path(path) / MODEL_FILE
    try:
        with safe_open(file, framework="pt", device="cpu") as f:
            aliases = json.loads((f.metadata() or {}).get(_ALIASES_KEY, "{}"))
            shapes = {n: tuple(f.get_slice(n).get_shape()) for n in f.keys()}  # noqa: SIM118
    except (SafetensorError, json.JSONDecodeError, OSError) as exc:
        raise CooldownError(f"checkpoint file {file} cannot be read: {exc}") from exc
    shapes.update({alias: shapes[target] for alias, target in aliases.items() if target in shapes})
    return shapes


def read_checkpoint_state(
    path: str | os.PathLike, *, verify: bool = True
) -> tuple[int, dict[str, Any]]:
    """(step, state.pt's dict) without reading the weights; `verify` hashes every file first."""
    path = Path(path)
    manifest = _read_manifest(path)
    _check_files(path, manifest, hash_files=verify)
    return manifest["step"], _read_state(path / STATE_FILE, "cpu")


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Raise a one-line CooldownError unless every file of the checkpoint matches its checksum."""
    path = Path(path)
    _check_files(path, _read_manifest(path), hash_files=True)


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise CooldownError(f"checkpoint {path} does not exist")
    file = path / CHECKSUM_FILE
    if not file.is_file():
        raise CooldownError(
            f"checkpoint {path} is incomplete: {CHECKSUM_FILE} is missing (the save did not finish)"
        )
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CooldownError(f"checkpoint file {file} is not valid JSON: {exc}") from exc
    files = manifest.get("files") if isinstance(manifest, dict) else None
    step = manifest.get("step") if isinstance(manifest, dict) else None
    if (
        not isinstance(files, dict)
        or isinstance(step, bool)
        or not isinstance(step, int)
        or manifest.get("format") != FORMAT
        or not all(isinstance(d, str) and _SHA256.fullmatch(d) for d in files.values())
        # Plain names (or dcp/<name>) only: a checksum.json must not point outside its folder.
        or not all(isinstance(n, str) and _listed_name_ok(n) for n in files)
    ):
        raise CooldownError(
            f"checkpoint file {file} is malformed: expected "
            f'{{"files": {{name: sha256}}, "step": N, "format": {FORMAT}}}'
        )
    missing = [n for n in (MODEL_FILE, STATE_FILE) if n not in files]
    if missing:
        raise CooldownError(f"checkpoint file {file} does not list {', '.join(missing)}")
    m = _STEP_DIR.fullmatch(path.name)
    if m and int(m.group(1)) != step:
        raise CooldownError(f"checkpoint {path} holds step {step} according to {CHECKSUM_FILE}")
    return manifest


def _listed_name_ok(name: str) -> bool:
    if name == Path(name).name:
        return name[:1] != "."
    folder, _, file = name.partition("/")
    # DCP's own index is `.metadata`; nothing else may hide or climb out.
    return folder == SHARDED_DIR and file == Path(file).name and file not in ("", ".", "..")


def _check_files(path: Path, manifest: dict[str, Any], *, hash_files: bool) -> None:
    files: dict[str, str] = manifest["files"]
    missing = [name for name in files if not (path / name).is_file()]
    if missing:
        raise CooldownError(f"checkpoint {path} is missing {', '.join(missing)}")
    if not hash_files:
        return
    bad = [name for name, digest in files.items() if _sha256(path / name) != digest]
    if bad:
        also = f" (also {', '.join(bad[1:])})" if len(bad) > 1 else ""
        raise CorruptCheckpoint(f"checkpoint file {path / bad[0]}: {_CORRUPT}{also}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_weights(file: Path, device: str) -> dict[str, torch.Tensor]:
    try:
        with safe_open(file, framework="pt", device=device) as f:
            aliases = json.loads((f.metadata() or {}).get(_ALIASES_KEY, "{}"))
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except (SafetensorError, json.JSONDecodeError) as exc:
        raise CorruptCheckpoint(f"checkpoint file {file} cannot be read: {exc}") from exc
    for alias, target in aliases.items():
        if target not in tensors:
            raise CooldownError(f"checkpoint file {file}: alias {alias!r} names {target!r}, absent")
        tensors[alias] = tensors[target]  # the same tensor, so a tied pair stays tied
    return tensors


def _read_state(file: Path, map_location: str | torch.device) -> dict[str, Any]:
    try:
        state = torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        m = re.search(r"GLOBAL (\S+)", str(exc))
        what = f" ({m.group(1)})" if m else ""
        raise CooldownError(
            f"checkpoint file {file} holds a Python object{what} that torch.load(weights_only=True) "
            "refuses to load: a checkpoint state may hold only tensors, numbers, strings, lists, "
            "tuples and dicts, so that loading it runs no code"
        ) from exc
    except (RuntimeError, EOFError) as exc:
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CorruptCheckpoint(f"checkpoint file {file} cannot be read: {first_line}") from exc
    if not isinstance(state, dict):
        raise CooldownError(f"checkpoint file {file} holds a {type(state).__name__}, not a dict")
    return state


# --- fitting a model ------------------------------------------------------------------------------


def check_weights_fit(
    model_state_dict_shapes: Mapping[str, tuple[int, ...]],
    weights: Mapping[str, Any],
    *,
    source: str | os.PathLike = "weights",
) -> None:
    """Raise one line naming the first mismatch (and how many more) unless `weights` has exactly
    the model's names with the model's shapes. `source` is the file named in the message."""
    problems = []
    for name, shape in model_state_dict_shapes.items():
        expected = tuple(shape)
        if name not in weights:
            problems.append(f"model expects {name} with shape {expected}, which is missing")
            continue
        got = tuple(getattr(weights[name], "shape", weights[name]))
        if got != expected:
            problems.append(f"{name} has shape {got}, model expects {expected}")
    for name in weights:
        if name not in model_state_dict_shapes:
            problems.append(f"{name} is in the checkpoint but not in the model")
    if problems:
        n = len(problems) - 1
        more = f" (and {n} more mismatch{'es' if n > 1 else ''})" if n else ""
        raise CooldownError(f"checkpoint {source} does not fit the model: {problems[0]}{more}")


# --- keep policy ----------------------------------------------------------------------------------


def apply_keep_policy(
    run_dir: str | os.PathLike, keep_last: int, permanent: Iterable[int] = ()
) -> list[int]:
    """Delete complete checkpoints that are neither among the last `keep_last` nor `permanent`;
    return their steps. Also tidies scratch folders left by killed processes (see the top)."""
    if isinstance(keep_last, bool) or not isinstance(keep_last, numbers.Integral) or keep_last < 1:
        raise CooldownError(
            f"keep_last must be an integer of at least 1 (got {keep_last!r}): the latest "
            "checkpoint is what a resumed run starts from"
        )
    keep = {_check_step(s, "permanent checkpoint step") for s in permanent}
    ckpt_dir = Path(run_dir) / "checkpoints"
    _tidy_scratch(ckpt_dir)
    steps = list_checkpoints(run_dir)
    keep.update(steps[-int(keep_last) :])
    deleted = []
    for step in steps:
        if step not in keep:
            path = checkpoint_path(run_dir, step)
            if path.is_symlink():
                # A link a user put there points at a checkpoint kept elsewhere: not the run's
                # to delete (nor to unlink: it is theirs).
                continue
            # Renamed away first, so a kill mid-delete never leaves a half-deleted checkpoint.
            doomed = ckpt_dir / f".del-{path.name}-{os.getpid()}"
            os.rename(path, doomed)
            shutil.rmtree(doomed)
            deleted.append(step)
    if deleted:
        fsync_dir(ckpt_dir)
    return deleted


def _tidy_scratch(ckpt_dir: Path) -> None:
    if not ckpt_dir.is_dir():
        return
    scratch = []
    for entry in ckpt_dir.iterdir():
        m = _SCRATCH_DIR.fullmatch(entry.name)
        if m and int(m.group(3)) != os.getpid():  # our own may be a save in flight
            scratch.append((m.group(1), int(m.group(2)), entry))
    # A finished save that only missed its rename (.tmp), or the checkpoint a replace had moved
    # away (.old), becomes the checkpoint of its step if that step has none; the newer .tmp first.
    order = {"tmp": 0, "old": 1, "del": 2}
    for kind, step, entry in sorted(scratch, key=lambda s: (order[s[0]], s[2].name)):
        final = ckpt_dir / _step_dir_name(step)
        if entry.is_symlink():
            continue  # never a save's own folder: not ours to promote or delete
        if kind != "del" and not final.exists() and _is_finished_save(entry, step):
            os.rename(entry, final)
            fsync_dir(ckpt_dir)
        else:
            shutil.rmtree(entry, ignore_errors=True)


def _is_finished_save(folder: Path, step: int) -> bool:
    try:
        manifest = _read_manifest(folder)
        _check_files(folder, manifest, hash_files=True)
    except CooldownError:
        return False
    return manifest["step"] == step


RAW_WEIGHTS = "raw"


def select_weights(ckpt: Checkpoint, name: str) -> dict[str, torch.Tensor]:
    """A checkpoint's raw weights (`name` = "raw") or an averaged set stored beside them."""
    if name == RAW_WEIGHTS:
        return dict(ckpt.weights)
    if name not in ckpt.extra_weights:
        have = ", ".join([RAW_WEIGHTS, *sorted(ckpt.extra_weights)])
        raise CooldownError(
            f"checkpoint {ckpt.path} has no {name!r} weights; --weights must be one of: {have}"
        )
    return dict(ckpt.extra_weights[name])
