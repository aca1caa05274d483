"""The key constants of each reference recipe, written down from the reference code and
compared with what our command line resolves to when no flag is given. A one-line change of
a default (a loss weight, a temperature, a milestone, a frame count, a learning rate) fails
here even where every backend and the numpy spec would still agree with each other
(tests/test_defaults_parity.py checks that agreement).

Sources (facts read from the references, not their code):
* VKD teacher: aimagelab/VKD tools/train_v2v.py (``Adam(lr=1e-4, weight_decay=args.wd)``,
  argparse defaults) and utils/conf.py ``add_default_args``;
* VKD student: tools/train_distill.py (argparse defaults; ``Adam(..., weight_decay=1e-5)``;
  ``args.use_random_erasing = True``).
* KD-REID: fremigereau/MTDA_KD_REID's training scripts and engines (torchreid's optimizer
  and loss defaults: Adam 3e-4, weight decay 5e-4, betas 0.9/0.99, label smoothing 0.1,
  triplet margin 0.3; the MMD terms from the engine's ``epoch > 24``; the KD script's SGD at
  0.01 with StepLR every 5 epochs and the target relation-KD term alone by default).
"""
import pytest
import yaml

import train as train_cli

SHARED_VKD = {  # utils/conf.py add_default_args
    "model.last_stride": 1, "data.num_ids": 18, "data.num_pos": 4, "data.test_batch": 32,
    "vkd.img_test_batch": 512, "vkd.num_test_images": 8, "vkd.pretrained": True, "vkd.set_determinism": False,
}
REFERENCE = {
    "vkd-teacher": {  # tools/train_v2v.py
        **SHARED_VKD, "model.arch": "resnet50", "optim.name": "adam", "optim.lr": 1e-4, "optim.weight_decay": 1e-5,
        "schedule.epochs": 300, "schedule.gamma": 0.1, "schedule.milestones": [200, 250],
        "train.eval_every": 50, "vkd.num_train_images": 8, "vkd.train_strategy": "chunk",
        "vkd.use_random_erasing": True, "vkd.metric": "euclidean", "vkd.first_milestone": 200,
        "vkd.step_milestone": 50, "vkd.print_epoch_interval": 5,
    },
    "vkd-student": {  # tools/train_distill.py
        **SHARED_VKD, "optim.name": "adam", "optim.lr": 1e-4, "optim.weight_decay": 1e-5, "schedule.epochs": 400,
        "schedule.gamma": 0.1, "schedule.milestones": [300, 350], "train.eval_every": 50,
        "vkd.num_train_images": 8, "vkd.num_student_images": 2, "vkd.train_strategy": "multiview",
        "vkd.use_random_erasing": True, "vkd.first_milestone": 300, "vkd.step_milestone": 50,
        "vkd.lr_decay": 0.1, "vkd.temp": 10.0, "vkd.lambda_coeff": 1e-4, "vkd.kl_coeff": 0.1,
        "vkd.logits_dist": "kl", "vkd.reinit_l4": True, "vkd.reinit_l3": False, "vkd.num_generations": 1,
        "vkd.teacher_chk_name": "chk_end", "vkd.student_chk_name": "chk_end",
    },
}
KDREID_SOURCE = {
    "model.last_stride": 2, "data.height": 256, "data.width": 128, "data.num_pos": 4, "data.test_batch": 100,
    "optim.name": "adam", "optim.lr": 3e-4, "optim.weight_decay": 5e-4, "optim.betas": [0.9, 0.99],
    "kdreid.batch_size": 32, "kdreid.label_smooth": 0.1, "kdreid.margin": 0.3, "kdreid.random_erasing": True,
    "kdreid.cuhk03_labeled": True, "kdreid.new_cuhk": False,
}
REFERENCE.update({
    "source": {**KDREID_SOURCE, "kdreid.arch": "resnet50", "kdreid.step_size": 50, "schedule.epochs": 100},
    "dmmd": {**KDREID_SOURCE, "kdreid.arch": "resnet50", "kdreid.mmd_start_epoch": 25, "schedule.epochs": 200,
             "kdreid.global_source_grad": True},
    "kd-reid": {**KDREID_SOURCE, "optim.name": "sgd", "optim.lr": 0.01, "optim.momentum": 0.9,
                "optim.weight_decay": 5e-4, "schedule.epochs": 50, "kdreid.step_size": 5,
                "kdreid.arch_student": "osnet_x0_25", "kdreid.arch_teacher": "resnet50",
                "kdreid.kd_style": "only_outputs", "kdreid.target_alt": "batch", "kdreid.target_order": "random",
                "kdreid.lkdt_weight": 1.0, "kdreid.lkds_weight": 0.0, "kdreid.lda_weight": 0.0},
})
ARGV = {"vkd-teacher": ["--method", "vkd-teacher", "mars"],
        "vkd-student": ["--method", "vkd-student", "mars", "./logs/teacher"],
        "source": ["--method", "source", "-ds", "msmt17"],
        "dmmd": ["--method", "dmmd", "-ds", "msmt17", "-dt", "market1501"],
        "kd-reid": ["--method", "kd-reid", "-ds", "msmt17", "-dt", "market1501"]}


def _get(cfg, dotted):
    section, key = dotted.split(".", 1)
    return cfg[section][key]


@pytest.mark.parametrize("method", sorted(REFERENCE))
def test_a_bare_command_line_resolves_to_the_reference_defaults(method, capsys):
    assert train_cli.main(ARGV[method] + ["--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    wrong = {k: (_get(cfg, k), v) for k, v in REFERENCE[method].items() if _get(cfg, k) != v}
    assert not wrong, f"{method}: ours vs the reference's: {wrong}"
