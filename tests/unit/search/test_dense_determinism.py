"""Two processes loading the same saved dense index answer every query alike.

hnswlib inserting on several threads links the graph in whatever order the threads run, so a graph
rebuilt on load differed from process to process (32 of 532 served hybrid queries answered differently
with bit-identical query vectors). A saved index now carries its graph; one saved without it is rebuilt
on one thread (hnswlib's fixed seed). Each load runs in its own Python process, as two servers would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shelfwise.search.dense import DenseIndex

# a small ef makes the walk approximate, so a differently linked graph shows in the answers
_ANSWER = """
import hashlib, json, sys
from pathlib import Path
import numpy as np
from shelfwise.search.dense import DenseIndex
index = DenseIndex.load(Path(sys.argv[1]))
index.ef_search = 10
rng = np.random.default_rng(7)
queries = rng.standard_normal((1500, index.dim)).astype(np.float32)
answers = [index.search(q / np.linalg.norm(q), 10)[0].tolist() for q in queries]
print(json.dumps(answers))
"""


def _answers(directory: Path) -> list[list[int]]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run(
        [sys.executable, "-c", _ANSWER, str(directory)], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def _vectors(n: int = 6000, dim: int = 48) -> np.ndarray:
    vectors = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.mark.parametrize("graph", [True, False], ids=["graph-saved", "graph-rebuilt"])
def test_two_processes_loading_one_saved_index_answer_alike(tmp_path: Path, graph: bool) -> None:
    index = DenseIndex(ef_search=10)
    index.build(_vectors())  # two hnswlib threads, as an engine build uses
    index.save(tmp_path, graph=graph)
    assert (tmp_path / "hnsw.bin").is_file() is graph
    first, second = _answers(tmp_path), _answers(tmp_path)
    assert len(first) == 1500 and all(len(a) == 10 for a in first)
    differing = sum(a != b for a, b in zip(first, second, strict=True))
    assert differing == 0, f"{differing} of 1500 queries answered differently by two loads"
