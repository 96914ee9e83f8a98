"""Known datasets: where they live on disk, what they must contain, how to download and verify them.

- :mod:`~srtool.datasets.registry` — the datasets by name, the data root, lookup;
- :mod:`~srtool.datasets.checksums` — reference MD5 lists (package data) and ``verify``;
- :mod:`~srtool.datasets.fetch` — download, check, extract and install in one rename.
"""

from __future__ import annotations

from srtool.datasets.checksums import VerifyResult, md5_list, verify
from srtool.datasets.fetch import fetch
from srtool.datasets.registry import (
    DATASETS,
    Dataset,
    DatasetMissingError,
    Source,
    default_data_root,
    get,
    locate,
    resolve,
    resolve_root,
)

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetMissingError",
    "Source",
    "VerifyResult",
    "default_data_root",
    "fetch",
    "get",
    "locate",
    "md5_list",
    "resolve",
    "resolve_root",
    "verify",
]
