"""Load a matrix file. (Minimal bootstrap version; the full loader maps errors to FILE:LINE:COL.)"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

from matrix_config.schema import Matrix


class MatrixInvalid(Exception):
    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class LoadedMatrix:
    matrix: Matrix
    version: str
    path: str


def load_matrix(path: str | Path) -> LoadedMatrix:
    text = Path(path).read_text(encoding="utf-8")
    data = YAML(typ="safe", pure=True).load(text)
    matrix = Matrix.model_validate(data)
    return LoadedMatrix(matrix=matrix, version=matrix.version(), path=str(path))
