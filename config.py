"""The one configuration object of unsup3dmm.

Every hyperparameter lives in a section dataclass next to the code that uses it
(``model/config.py``, ``renderer/config.py``, ``losses/config.py``,
``training/config.py``); :class:`Config` composes the sections.  Each field
documents its unit and source.  Command-line flags only override fields
(``train.py --set losses.identity_weight=2``), and the resolved config is written
as JSON next to the checkpoints (:meth:`Config.save`).
"""
import dataclasses
import json
import os
import typing

from unsup3dmm.losses.config import LossConfig
from unsup3dmm.model.config import ModelConfig
from unsup3dmm.renderer.config import RendererConfig
from unsup3dmm.training.config import TrainingConfig

CONFIG_FILENAME = "config.json"


@dataclasses.dataclass
class Config:
  """All hyperparameters of a training or evaluation run."""
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  renderer: RendererConfig = dataclasses.field(default_factory=RendererConfig)
  losses: LossConfig = dataclasses.field(default_factory=LossConfig)
  training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  def save(self, directory: str) -> str:
    """Writes ``directory/config.json`` and returns its path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, CONFIG_FILENAME)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      f.write(self.to_json() + "\n")
    os.replace(tmp, path)
    return path

  @classmethod
  def from_dict(cls, values: dict, source: str = "config") -> "Config":
    """Builds a config from a (possibly partial) nested dict.

    Raises:
      ValueError: naming ``source`` and the offending key for an unknown key.
    """
    return _from_dict(cls, values, source)

  @classmethod
  def load(cls, path: str) -> "Config":
    """Reads a config written by :meth:`save` (file or directory path)."""
    if os.path.isdir(path):
      path = os.path.join(path, CONFIG_FILENAME)
    try:
      with open(path) as f:
        values = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
      raise ValueError(f"Cannot read config file {path!r}: {e}") from e
    return cls.from_dict(values, source=path)

  def override(self, assignments: typing.Iterable[str],
               source: str = "--set") -> "Config":
    """Returns a copy with ``section.field=value`` assignments applied.

    Values are parsed as JSON when possible (numbers, booleans, lists), else
    taken as strings.

    Raises:
      ValueError: naming ``source`` and the assignment that is malformed,
        names an unknown field or has a value of the wrong type.
    """
    values = self.to_dict()
    for assignment in assignments:
      key, sep, raw = assignment.partition("=")
      parts = key.strip().split(".")
      if not sep or len(parts) != 2:
        raise ValueError(f"{source}: expected 'section.field=value', got "
                         f"{assignment!r}")
      section, name = parts
      if section not in values or name not in values[section]:
        raise ValueError(f"{source}: unknown config field {key!r}; sections "
                         f"are {sorted(values)}")
      try:
        value = json.loads(raw)
      except json.JSONDecodeError:
        value = raw
      values[section][name] = value
    return Config.from_dict(values, source=source)


def _from_dict(cls, values, source):
  if not isinstance(values, dict):
    raise ValueError(f"{source}: expected a mapping for {cls.__name__}, got "
                     f"{type(values).__name__}")
  fields = {f.name: f for f in dataclasses.fields(cls)}
  kwargs = {}
  hints = typing.get_type_hints(cls)
  for key, value in values.items():
    if key not in fields:
      raise ValueError(f"{source}: unknown field {key!r} in {cls.__name__}; "
                       f"expected one of {sorted(fields)}")
    hint = hints[key]
    if dataclasses.is_dataclass(hint):
      kwargs[key] = _from_dict(hint, value, f"{source}:{key}")
    else:
      kwargs[key] = _coerce(hint, value, f"{source}:{cls.__name__}.{key}")
  return cls(**kwargs)


def _coerce(hint, value, where):
  """Checks/coerces a JSON value to a field's annotated type."""
  origin = typing.get_origin(hint)
  if origin is typing.Union:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if value is None:
      return None
    return _coerce(args[0], value, where)
  if origin in (tuple, list):
    if not isinstance(value, (list, tuple)):
      raise ValueError(f"{where}: expected a list, got {value!r}")
    args = typing.get_args(hint)
    if origin is tuple and args and args[-1] is not Ellipsis:
      if len(args) != len(value):
        raise ValueError(f"{where}: expected {len(args)} values, got {value!r}")
      return tuple(_coerce(a, v, where) for a, v in zip(args, value))
    item = args[0] if args else typing.Any
    return origin(_coerce(item, v, where) for v in value)
  if hint is float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ValueError(f"{where}: expected a number, got {value!r}")
    return float(value)
  if hint is int:
    if isinstance(value, bool) or not isinstance(value, int):
      raise ValueError(f"{where}: expected an integer, got {value!r}")
    return value
  if hint is bool:
    if not isinstance(value, bool):
      raise ValueError(f"{where}: expected true or false, got {value!r}")
    return value
  if hint is str:
    if not isinstance(value, str):
      raise ValueError(f"{where}: expected a string, got {value!r}")
    return value
  return value
