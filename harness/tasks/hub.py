"""Data read with the ``datasets`` library: a Hugging Face Hub dataset named in the task,
or a folder written by ``Dataset.save_to_disk``.

A task's ``data`` (or ``fewshot``) may be a mapping instead of a path::

    data:
      dataset: skt/kobest_v1     # the Hub name
      config: copa               # its configuration (subset), where it has several
      split: test
      revision: main             # a branch, tag or commit; default the newest
      columns:                   # optional: columns made from each row with Jinja
        text: "{{ premise }}"

or ``path:`` in place of ``dataset:`` (a data file or a datasets folder, relative to the
task file), with the same ``columns``. Rows come out as the same items a JSONL file gives:
a mapping of column to value, values keeping their types (a list column stays a list).

Where the Hub cannot be reached, ``datasets`` reads its local cache (``HF_HUB_OFFLINE=1``
says so at once); a dataset missing there is one line saying what is missing. A folder of
saved datasets named by ``HARNESS_DATASETS`` is read before the Hub: its
``<dataset>/<config>`` folder (``default`` without a config), written by
``DatasetDict.save_to_disk``, stands for the Hub's copy. That is how the tests and CI, which
have no Hub, run the shipped benchmarks.

``datasets`` is large (pyarrow, multiprocess): it is imported only when such data is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.errors import HarnessError

Item = dict[str, Any]
MIRROR_ENV = "HARNESS_DATASETS"


class DataSource(BaseModel):
    """The mapping form of ``data`` / ``fewshot``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str | None = Field(None, description="a Hugging Face Hub dataset, e.g. skt/kobest_v1")
    path: str | None = Field(
        None, description="or a data file or datasets folder, relative to the task file"
    )
    config: str | None = Field(None, description="the dataset's configuration (subset)")
    split: str | None = Field(None, description="the split to read: train, validation, test, ...")
    revision: str | None = Field(None, description="a branch, tag or commit of the dataset")
    columns: dict[str, str] = Field(
        default_factory=dict, description="columns made from each row: name -> Jinja template"
    )

    @model_validator(mode="after")
    def _one_place(self) -> DataSource:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give either dataset (a Hub name) or path (a file or folder)")
        if self.dataset is not None and not self.split:
            raise ValueError(f"dataset {self.dataset}: give its split (e.g. split: test)")
        if self.path is not None and self.revision is not None:
            raise ValueError("revision is for a Hub dataset, not a path")
        return self


@dataclass(frozen=True)
class Read:
    items: list[Item]
    provenance: dict[str, Any] = field(default_factory=dict)  # what run.json records


def read_source(source: DataSource, base: Path, where: str) -> Read:
    """The items a mapping-form ``data`` names, with its ``columns`` made."""
    if source.path is not None:
        path = Path(os.path.abspath(base / source.path))
        if path.is_dir():
            read = read_folder(path, source.split, where)
        else:
            from harness.tasks.data import read_table

            read = Read(read_table(path), {"path": str(path)})
    else:
        read = read_hub(source, where)
    if source.columns:
        read = Read(made_columns(read.items, source.columns, where), read.provenance
                    | {"columns": dict(source.columns)})
    return read


def read_folder(folder: Path, split: str | None, where: str) -> Read:
    """A folder written by ``Dataset.save_to_disk`` (one split) or
    ``DatasetDict.save_to_disk`` (``split`` picks one; a folder of one split needs none)."""
    datasets = _datasets(where)
    try:
        loaded = datasets.load_from_disk(str(folder))
    except (FileNotFoundError, ValueError) as exc:
        raise HarnessError(
            f"{where}: {folder} is a folder, read as one written by datasets' save_to_disk, "
            f"and it is not one ({exc.__class__.__name__}); name a data file instead"
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded)
        if split is None and len(names) == 1:
            split = names[0]
        if split not in loaded:
            raise HarnessError(
                f"{where}: {folder} holds the splits {', '.join(names)}; name one with "
                "split: (in the mapping form of data)"
            )
        loaded = loaded[split]
    if len(loaded) == 0:
        raise HarnessError(f"{where}: {folder}: no items in the dataset")
    return Read(loaded.to_list(), {"path": str(folder), "split": split,
                                   "fingerprint": loaded._fingerprint, "rows": len(loaded)})


def mirror_folder(source: DataSource) -> Path | None:
    """Where ``HARNESS_DATASETS`` keeps a saved copy of the Hub dataset, if it does."""
    root = os.environ.get(MIRROR_ENV)
    if not root or source.dataset is None:
        return None
    folder = Path(root, *source.dataset.split("/"), source.config or "default")
    return folder if folder.is_dir() else None


def read_hub(source: DataSource, where: str) -> Read:
    """A Hub dataset's split: from the ``HARNESS_DATASETS`` folder where it is there, else
    with ``datasets.load_dataset`` (its local cache when offline)."""
    assert source.dataset is not None
    named = {"dataset": source.dataset, "config": source.config, "split": source.split,
             "revision": source.revision}
    mirrored = mirror_folder(source)
    if mirrored is not None:
        read = read_folder(mirrored, source.split, where)
        return Read(read.items, named | {"from": f"${MIRROR_ENV}",
                                         "fingerprint": read.provenance["fingerprint"],
                                         "rows": read.provenance["rows"]})
    datasets = _datasets(where)
    what = f"{source.dataset} ({', '.join(p for p in (source.config, source.split) if p)})"
    try:
        loaded = datasets.load_dataset(source.dataset, source.config, split=source.split,
                                       revision=source.revision)
    except Exception as exc:  # datasets raises many kinds for "not there"
        raise HarnessError(f"{where}: {_missing(what, source, exc)}") from None
    return Read(loaded.to_list(), named | {"from": "hub", "fingerprint": loaded._fingerprint,
                                           "rows": len(loaded)})


def _missing(what: str, source: DataSource, exc: Exception) -> str:
    """One line: the dataset is not at hand, why, and how to get it."""
    from datasets import config

    offline = bool(config.HF_HUB_OFFLINE)
    reason = ("HF_HUB_OFFLINE is set" if offline
              else f"the Hub did not give it ({type(exc).__name__}: {str(exc).splitlines()[0]})"
              if str(exc) else f"the Hub did not give it ({type(exc).__name__})")
    saved = f"${MIRROR_ENV}/{source.dataset}/{source.config or 'default'}"
    return (f"dataset {what} is not in the local datasets cache ({config.HF_DATASETS_CACHE}) "
            f"and {reason}; load it once where the Hub can be reached, or put a copy saved "
            f"with save_to_disk in {saved}")


def made_columns(items: list[Item], columns: dict[str, str], where: str) -> list[Item]:
    """Each item with ``columns`` added (or replaced), rendered from the item itself."""
    from harness.tasks import sandbox

    compiled = {name: sandbox.compile_template(text, f"{where}: columns.{name}")
                for name, text in columns.items()}
    made = []
    for number, item in enumerate(items, start=1):
        new = dict(item)
        for name, template in compiled.items():
            missing = template.variables - item.keys()
            if missing:
                raise HarnessError(
                    f"{where}: columns.{name} uses {', '.join(sorted(missing))}, missing from "
                    f"item {number}, which has columns {', '.join(sorted(map(str, item)))}"
                )
            new[name] = sandbox.render(template, item, f"{where}: columns.{name}")
        made.append(new)
    return made


def _datasets(where: str) -> Any:
    try:
        import datasets
    except ImportError:
        raise HarnessError(
            f"{where}: reading Hub datasets and datasets folders needs the datasets package: "
            "pip install 'harness[hub]' (or pip install datasets)"
        ) from None
    datasets.disable_progress_bars()
    return datasets
