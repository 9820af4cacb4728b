"""Optional experiment tracking in Weights & Biases.

With ``train.wandb_project`` set and the ``wandb`` package installed, the run's writer
logs every epoch's row of ``history.csv`` (at step = epoch, from 0) and the TensorBoard
prediction panels (``predictions``) to a W&B run whose config is the resolved tfseg
config. Its files go to ``RUN_DIR/wandb``; its id is kept in ``RUN_DIR/wandb_run_id``, so a
resumed training goes on in the same W&B run. ``train.wandb_mode`` is passed to
``wandb.init`` ("offline" writes locally for a later ``wandb sync``; "" leaves it to wandb,
which reads ``WANDB_MODE``, and falls back to offline, saying so in one line, where W&B
cannot start a run: no login, no network). Without ``wandb`` installed the run says so
once and trains as usual: tracking is never required.
"""

from __future__ import annotations

import importlib.util
import secrets
from pathlib import Path

import numpy as np

from tfseg.errors import UserError
from tfseg.fileio import write_text
from tfseg.runs import WANDB_DIR, WANDB_RUN_ID_FILE


class WandbTracker:
    """One W&B run: ``log`` an epoch's scalars, ``images`` its panels, ``finish`` at the end."""

    def __init__(self, wandb_module, run):
        self._wandb, self._run = wandb_module, run

    def log(self, epoch: int, logs: dict[str, float]) -> None:
        self._run.log({key: float(value) for key, value in logs.items()}, step=epoch)

    def images(self, epoch: int, panels: np.ndarray) -> None:
        """``panels`` ``[N, H, W, 3]`` uint8: image | truth | prediction, side by side."""
        self._run.log({"predictions": [self._wandb.Image(panel) for panel in panels]}, step=epoch)

    def finish(self) -> None:
        self._run.finish()


def open_tracker(project: str, mode: str, run_name: str, config: dict, run_dir: Path) -> WandbTracker | None:
    """A tracker for ``project``, or None when no project is set or wandb is not installed."""
    if not project:
        return None
    if importlib.util.find_spec("wandb") is None:
        print(f"train.wandb_project {project}: wandb is not installed (pip install wandb); "
              "logging to history.csv and TensorBoard only")
        return None
    import wandb

    id_path = run_dir / WANDB_RUN_ID_FILE
    if id_path.is_file():
        run_id = id_path.read_text().strip()
    else:
        run_id = secrets.token_hex(6)
        write_text(id_path, run_id + "\n")
    settings = dict(project=project, name=run_name, id=run_id, resume="allow", config=config, dir=str(run_dir))
    try:
        run = wandb.init(**settings, mode=mode or None)
    except wandb.errors.Error as err:  # e.g. no API key, no network
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        if mode:  # asked for explicitly: not ours to change
            raise UserError(f"wandb could not start a run in project {project} ({first_line}); "
                            "log in with `wandb login`, or --set train.wandb_mode=offline") from None
        # Tracking never needs an account: without a login, W&B keeps the run on disk.
        print(f"train.wandb_project {project}: W&B is not reachable or not logged in ({first_line}); "
              f"logging offline to {run_dir / WANDB_DIR} (upload later with `wandb sync`)")
        run = wandb.init(**settings, mode="offline")
    return WandbTracker(wandb, run)
