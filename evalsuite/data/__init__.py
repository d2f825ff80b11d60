"""Where evaluation data comes from: the task registry (tasks/*.yaml), local BEIR folders, mteb's loaders."""

from evalsuite.data.loading import LoadedTask, data_fingerprint, load_task, task_unavailable
from evalsuite.data.tasks import TaskSpec, default_tasks, find_task, registry

__all__ = ["LoadedTask", "TaskSpec", "data_fingerprint", "default_tasks", "find_task", "load_task", "registry",
           "task_unavailable"]
