"""The VKD student (aimagelab/VKD tools/train_distill.py): generations of distillation on the
shared loop. Split from ``common/recipes/vkd.py`` (its recipe) to keep files small.

Generation g (0-based) covers epochs ``g·E .. (g+1)·E - 1`` (E = ``schedule.epochs``, VKD's
``--num_epochs`` per generation); it starts with a fresh Adam at ``max(lr · lr_decay^g, 1e-5)``
(VKD ``LearningRateGenDecayer``) and its own MultiStepLR milestones. At the end of generation
g the student is evaluated and written as ``chk/chk_di_<g+1>``; it becomes the teacher of the
next generation, and a copy of it, reset as at the start (layer4 to ImageNet, fresh
classifier), the next student. A resumed run in generation g > 0 reads its teacher from
``chk/chk_di_<g>`` of the run folder it resumes from.
"""
import os

from common.backbones import backbone_facts, rename_legacy_densenet_keys
from common.recipes import vkd_folders
from common.recipes.vkd import _VKDRun, _optimizer
from common.schedule import multistep_lr


def _build(cfg: dict, B, arch: str, num_classes: int):
    """TriNet of backbone ``arch`` with the run's other model settings."""
    return B.vkd.build_model(dict(cfg, model=dict(cfg["model"], arch=arch)), num_classes)


def reinit(cfg: dict, B, student, num_classes: int, log) -> None:
    """VKD ``TriNet.reinit_layers(reinit_l4=True)``: a fresh classifier and layer4
    (denseblock4; nothing for MobileNet) from the ImageNet file ``--pretrain``; without the file
    those layers are re-initialised at random (with a warning)."""
    if not cfg["vkd"]["reinit_l4"]:
        return
    state = B.weights.state_to_numpy(student)
    fresh = B.weights.state_to_numpy(B.vkd.build_model(cfg, num_classes))
    state.update({k: v for k, v in fresh.items() if k.startswith("classifier.")})
    prefix = backbone_facts(cfg["model"]["arch"]).reinit_prefix
    if prefix:
        keys = [k for k in state if k.startswith(f"backbone.{prefix}")]
        if cfg["model"]["pretrain"]:
            imagenet = rename_legacy_densenet_keys(B.weights.read_weights_file(cfg["model"]["pretrain"]))
            state.update({k: imagenet[k[len("backbone."):]] for k in keys if k[len("backbone."):] in imagenet})
        else:
            log.line(f"warning: no --pretrain file: the student's {prefix.rstrip('.')} is re-initialised at random "
                     "instead of from ImageNet (VKD reinit_layers)")
            state.update({k: fresh[k] for k in keys})
    B.weights.load_numpy_state(student, state)


class StudentRun(_VKDRun):
    """See the module docstring."""

    @classmethod
    def create(cls, cfg, B, log, loader, evaluator, num_classes, description):
        v, wanted = cfg["vkd"], cfg["model"]["arch"]
        # --backbone names the network trained: the teacher's copy, or the --student folder's
        dataset = cfg["data"]["dataset"]
        path, arch = vkd_folders.locate(v["teacher"], v["teacher_chk_name"], "" if v["student"] else wanted,
                                        num_classes, "teacher", dataset)
        teacher = _build(cfg, B, arch, num_classes)
        B.weights.load_numpy_state(teacher, vkd_folders.load_state(path, arch))
        if v["student"]:
            s_path, s_arch = vkd_folders.locate(v["student"], v["student_chk_name"], wanted, num_classes, "student",
                                                  dataset)
            student = _build(cfg, B, s_arch, num_classes)
            B.weights.load_numpy_state(student, vkd_folders.load_state(s_path, s_arch))
        else:
            s_arch = arch
            student = _build(cfg, B, arch, num_classes)
            B.weights.load_numpy_state(student, B.weights.state_to_numpy(teacher))
        cfg["model"]["arch"] = s_arch
        description = description.replace("()", f"({s_arch})", 1)
        reinit(cfg, B, student, num_classes, log)
        run = cls(cfg, B, student, None, loader, evaluator, num_classes,
                  f"{description}; teacher {path}")
        run.teacher, run.log = teacher, log
        run._new_optimizer(0)
        return run

    def _new_optimizer(self, generation: int) -> None:
        self.base_lr = max(self.cfg["optim"]["lr"] * self.cfg["vkd"]["lr_decay"] ** generation, 1e-5)
        self.optimizer = _optimizer(self.cfg, self.B, self.model, self.base_lr)
        self._new_trainer()

    def _new_trainer(self) -> None:
        self.trainer = self.B.vkd.StudentTrainer(self.model, self.teacher, self.optimizer, self.cfg["vkd"],
                                                 self.cfg["runtime"]["ms_mode"])

    @property
    def epochs_per_generation(self) -> int:
        return int(self.cfg["schedule"]["epochs"])

    def num_epochs(self, cfg):
        return self.epochs_per_generation * int(cfg["vkd"]["num_generations"])

    def lrs(self, epoch):
        s = self.cfg["schedule"]
        lr = multistep_lr(epoch % self.epochs_per_generation, self.base_lr, s["milestones"], s["gamma"])
        return [lr, lr]

    def train_step(self, batch):
        from common.data.video import student_views
        frames, pids, student_idx = batch[0], batch[1], batch[3]
        return self.trainer.train_step(frames, student_views(frames, student_idx), pids)

    def eval_due(self, epoch):
        return (epoch + 1) % self.epochs_per_generation == 0

    def stage_epoch(self, epoch):
        """train_distill.py evaluates before its epoch ``e`` of a generation when ``e > 0`` and
        ``e % eval_epoch_interval == 0``: the cadence restarts with every generation."""
        return epoch % self.epochs_per_generation

    def begin_epoch(self, epoch):
        E = self.epochs_per_generation
        if epoch == 0 or epoch % E:
            return
        g = epoch // E  # generation g - 1 just ended
        vkd_folders.write_run_folder(self.run_dir, self.B, self.model, self.cfg, self.num_classes, f"chk_di_{g}")
        self._student_becomes_teacher(self.B.weights.state_to_numpy(self.model))
        reinit(self.cfg, self.B, self.model, self.num_classes, self.log)
        self._new_optimizer(g)
        self.log.line(f"generation {g + 1}: the student of generation {g} is the teacher (chk_di_{g})")

    def on_resume(self, extra):
        start = int(extra["epoch"]) + 1
        g = start // self.epochs_per_generation
        if g > 0:
            self.base_lr = max(self.cfg["optim"]["lr"] * self.cfg["vkd"]["lr_decay"] ** g, 1e-5)
        if g > 0 and start % self.epochs_per_generation:
            folder = os.path.dirname(os.path.abspath(self.cfg["train"]["resume"]))
            path = vkd_folders.checkpoint_in(folder, f"chk_di_{g}")
            self._student_becomes_teacher(vkd_folders.load_state(path, self.cfg["model"]["arch"]))
            self._new_trainer()  # the optimizer keeps the state just loaded

    def _student_becomes_teacher(self, state) -> None:
        """From generation 2 on the teacher is a student of the previous generation, with the
        student's backbone (cross-distillation: no longer the first teacher's)."""
        self.teacher = _build(self.cfg, self.B, self.cfg["model"]["arch"], self.num_classes)
        self.B.weights.load_numpy_state(self.teacher, state)

    def finish(self):
        g = int(self.cfg["vkd"]["num_generations"])
        vkd_folders.write_run_folder(self.run_dir, self.B, self.model, self.cfg, self.num_classes, f"chk_di_{g}")
