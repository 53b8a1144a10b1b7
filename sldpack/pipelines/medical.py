"""The medical pipeline in one import (kept for existing code): patch task, data selection, evaluation and
baseline models now live in their own modules:

* :mod:`sldpack.pipelines.patch_source`: :class:`PatchTask`, :class:`PatchSource` (numpy only);
* :mod:`sldpack.pipelines.datasets`: :func:`load_data`, :func:`select_split`, :class:`DataSelection`;
* :mod:`sldpack.pipelines.inputs`: the data options of every command and the ``--source`` plug-ins;
* :mod:`sldpack.pipelines.evaluate`: patch-level and image-level evaluation (torch);
* :mod:`sldpack.pipelines.models`: normally trained baselines (torch).
"""

from __future__ import annotations

from sldpack.pipelines.datasets import SPLITS, DataSelection, load_data, phantom_data, select_split
from sldpack.pipelines.evaluate import (
    EvalProgress,
    MedicalEvaluation,
    evaluate,
    evaluate_patches,
    evaluate_whole_images,
    softmax,
)
from sldpack.pipelines.inputs import npz_patch_source, phantom_patch_source
from sldpack.pipelines.models import TrainedModel, load_trained_model, save_trained_model, train_model
from sldpack.pipelines.patch_source import (
    PATCH_TASK,
    PatchSource,
    PatchTask,
    is_patch_model,
    patch_task_from_manifest,
)

__all__ = [
    "PATCH_TASK",
    "SPLITS",
    "DataSelection",
    "EvalProgress",
    "MedicalEvaluation",
    "PatchSource",
    "PatchTask",
    "TrainedModel",
    "evaluate",
    "evaluate_patches",
    "evaluate_whole_images",
    "is_patch_model",
    "load_data",
    "load_trained_model",
    "npz_patch_source",
    "patch_task_from_manifest",
    "phantom_data",
    "phantom_patch_source",
    "save_trained_model",
    "select_split",
    "softmax",
    "train_model",
]
