"""Precision paths: one module per family (torch, bitsandbytes, onnxruntime).

Each path class declares what it is (devices, method, runtime, precision, math class, cost,
display order, baseline ...; `PathFacts`) and which options its family takes (`PathOptions`);
everything else reads those facts through `path_facts` / `paths_where` and checks options with
`check_path_options`.
"""

from kit.paths.base import (
    PathFacts,
    PathOptions,
    PrecisionPath,
    PrepareContext,
    PreparedModel,
    check_path_options,
    get_path,
    path_facts,
    path_names,
    paths_where,
)

__all__ = [
    "PathFacts",
    "PathOptions",
    "PrecisionPath",
    "PrepareContext",
    "PreparedModel",
    "check_path_options",
    "get_path",
    "path_facts",
    "path_names",
    "paths_where",
]
