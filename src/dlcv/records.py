"""The JSON files dlcv's commands write, typed as they are read back.

A fit's and ``sam masks``' ``summary.json``, ``sam refine``'s ``refine.json`` and ``ssl table``'s ``table.json``: every
reader goes through its record here, so a bad field (an edited or foreign file) is one line naming the file and field.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from dlcv.errors import DlcvError
from dlcv.io import read_json

UNION_TAGS = ("int", "float", "str", "bool", "list", "dict", "none")  # what pydantic calls a union's members


class Record(BaseModel):
    """A JSON file a command wrote, read back: known fields strictly typed, any other field kept as it is."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    @classmethod
    def read(cls, path: Path):
        """Read the JSON file ``path`` as this record.

        Raises:
            DlcvError: the file is not readable JSON or not an object, or a field is not what it must be (naming the
                file and the field).
        """
        return cls.of(read_json(path), path)

    @classmethod
    def of(cls, data: dict, path: Path):
        """``data``, already read from ``path``, as this record.

        Raises:
            DlcvError: a field is not what it must be, naming ``path`` and the field.
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            # pydantic names the member of a union it tried (epochs.int): the file's reader wants the key alone
            where = ".".join(str(p) for p in error["loc"] if not (isinstance(p, str) and (p in UNION_TAGS or "[" in p)))
            kind = "a number" if error["type"] in ("float_type", "int_type") else f"valid ({error['msg']})"
            raise DlcvError(f"{path}: {where} is not {kind}: {error['input']!r}") from None


class FinalScore(Record):
    """The best checkpoint's one score on the validation folder, when a held-out part of train chose it."""

    folder: str
    accuracy: float | None = None
    top5_accuracy: float | None = None
    mean_iou: float | None = None
    iou: list[float] | None = None


class BudgetUse(Record):
    """A budgeted run's time (``TimeBudget.summary``): seconds its earlier commands spent, and the rest."""

    spent_before: float | None = None


class RunSummary(Record):
    """A fit's ``summary.json`` (``dlcv.fitting`` and each command's additions); None until the run ends."""

    name: str | None = None
    epochs: int | float | None = None  # whole epochs stay ints (as the report shows them)
    fit_seconds: float | None = None
    model: str | None = None
    selected_on: str | None = None  # the split the checkpoints were chosen on (a holdout of train, or validation)
    monitor: str | None = None  # the metric they were chosen by, as Lightning's ModelCheckpoint names it
    best_model_score: float | None = None  # the best checkpoint's value of ``monitor`` on ``selected_on``
    best_val_acc: float | None = None  # deprecated: ``best_model_score`` (still written for one release)
    best_val_miou: float | None = None  # deprecated: ``best_model_score`` (still written for one release)
    best_checkpoint: str | None = None
    final_validation: FinalScore | None = None
    budget: BudgetUse | None = None
    train_size: int | None = None
    eval_size: int | None = None
    knn_acc_at_init: float | None = None
    knn_acc: list[float] | None = None  # BYOL's monitor, per epoch
    final_knn_acc: float | None = None
    knn_figure: str | None = None

    @property
    def selection_score(self) -> float | None:
        """``best_model_score``, or the name it had before (``best_val_acc``, ``best_val_miou``) in older runs."""
        for score in (self.best_model_score, self.best_val_acc, self.best_val_miou):
            if score is not None:
                return score
        return None


class SamMasks(Record):
    """``summary.json`` of ``dlcv sam masks``."""

    model_type: str
    device: str | None = None
    prefilter: bool | None = None
    generator: dict = {}
    images: int | None = None
    seconds_per_image: float | None = None
    masks_per_image: float | None = None
    figure_images: list[str] = []
    figure: str = "figure.png"


class RefinedImage(Record):
    """One image's entry in ``refine.json``: SAM regions found and used, and pixels whose class changed."""

    regions: int = 0
    regions_used: int = 0
    pixels_changed: int = 0


class Refinement(Record):
    """``dlcv sam refine``'s ``refine.json``: the changes per image and, with labels, IoU before and after."""

    min_predicted_iou: float | None = None
    min_area: int | None = None
    order: str = "as written"
    images: int | None = None
    per_image: dict[str, RefinedImage] = {}
    mean_iou_before: float | None = None
    mean_iou_after: float | None = None
    iou_before: list[float] = []
    iou_after: list[float] = []


class SettingRow(Record):
    """One setting's row of ``table.json``."""

    setting: str
    pretraining: str | None = None
    finetuning: str | None = None
    accuracy: float | None = None
    selection_accuracy: float | None = None
    epochs: int | float | None = None
    fit_seconds: float | None = None
    notes: str | None = None


class SettingsTable(Record):
    """``table.json`` of ``dlcv ssl table``: the A-E settings' rows."""

    name: str | None = None
    arch: str | None = None
    note: str | None = None
    rows: list[SettingRow] = []
