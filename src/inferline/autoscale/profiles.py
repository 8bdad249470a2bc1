"""Engine profiles by name (inferline.sim's) or from a YAML/JSON file of Profile fields (custom or measured).

A profile file holds the fields of inferline.sim.profiles.Profile:

    name: my-a10g-llama8b
    description: measured with inferline bench on ...
    max_model_len: 8192
    max_num_seqs: 64
    kv_blocks: 4000
    max_num_batched_tokens: 2048
    step_base_s: 0.012
    decode_seq_s: 0.0002
    kv_token_s: 0.0
    prefill_token_s: 0.0001
`inferline advise --profile-from bench.json --write-profile FILE` writes one from a benchmark.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson
import yaml

from inferline.sim.profiles import PROFILES, Profile

__all__ = ["ProfileError", "load_profile", "profile_to_dict", "time_scaled"]

_REQUIRED = ("max_model_len", "max_num_seqs", "kv_blocks", "max_num_batched_tokens", "step_base_s", "decode_seq_s")
_INT_FIELDS = {"max_model_len", "max_num_seqs", "kv_blocks", "max_num_batched_tokens", "block_size"}


class ProfileError(ValueError):
    """A profile name or file that cannot be used."""


def load_profile(spec: str) -> Profile:
    """A built-in profile name, or a path to a YAML/JSON profile file."""
    if spec in PROFILES:
        return PROFILES[spec]
    path = Path(spec)
    if not path.suffix or not path.exists():
        raise ProfileError(f"unknown profile {spec!r}: not one of {', '.join(sorted(PROFILES))} and no such file")
    try:
        text = path.read_text(encoding="utf-8")
        data = orjson.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, orjson.JSONDecodeError, yaml.YAMLError) as exc:
        raise ProfileError(f"{path}: cannot read the profile ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a profile is a mapping of Profile fields")
    return profile_from_dict(data, str(path))


def profile_from_dict(data: dict[str, Any], where: str = "profile") -> Profile:
    fields = {f.name for f in dataclasses.fields(Profile)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ProfileError(f"{where}: unknown field {unknown[0]!r}; fields: {', '.join(sorted(fields))}")
    for key in _REQUIRED:
        if key not in data:
            raise ProfileError(f"{where}: missing field {key!r}")
    values: dict[str, Any] = {
        "name": str(data.get("name", Path(where).stem)),
        "description": str(data.get("description", where)),
    }
    for key in fields - {"name", "description"}:
        if key not in data:
            continue
        v = data[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ProfileError(f"{where}: {key} must be a number; got {v!r}")
        if key in _INT_FIELDS:
            if int(v) != v or v < 1:
                raise ProfileError(f"{where}: {key} must be a whole number >= 1; got {v!r}")
            v = int(v)
        elif v < 0:
            raise ProfileError(f"{where}: {key} must be >= 0; got {v!r}")
        values[key] = v
    values.setdefault("kv_token_s", 0.0)
    values.setdefault("prefill_token_s", 0.0)
    profile = Profile(**values)
    if profile.step_s(1, 0, 0) <= 0:
        raise ProfileError(f"{where}: step_base_s + decode_seq_s must be > 0 (a step cannot take no time)")
    return profile


def profile_to_dict(p: Profile) -> dict[str, Any]:
    return dataclasses.asdict(p)


def time_scaled(p: Profile, scale: float) -> Profile:
    """P with every modelled duration multiplied by SCALE: what `inferline sim --time-scale SCALE` runs."""
    if scale <= 0:
        raise ProfileError(f"time scale must be > 0; got {scale:g}")
    if scale == 1:
        return p
    return dataclasses.replace(
        p,
        name=f"{p.name}-x{scale:g}",
        description=f"{p.description}; every duration x {scale:g} (inferline sim --time-scale {scale:g})",
        step_base_s=p.step_base_s * scale,
        decode_seq_s=p.decode_seq_s * scale,
        kv_token_s=p.kv_token_s * scale,
        prefill_token_s=p.prefill_token_s * scale,
    )
