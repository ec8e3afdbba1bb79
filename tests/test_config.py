"""Hydra composition and validation: every mistake is one line naming the key and the fix."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import zoo
from zoo.arguments import check_overrides
from zoo.config import OPTIMIZERS, compose, make_config, plan_run
from zoo.registry import get_registry

from conftest import entries, error_lines, run_zoo, tiny_overrides


def test_default_config_composes_to_a_plan():
    plan = plan_run(compose([]))
    assert (plan.model.name, plan.dataset.name) == ("cnn_classifier", "digits")
    # metrics=auto: every default metric for classification.
    assert {entry.name for entry, _ in plan.metrics} == {"accuracy", "precision", "recall", "f1", "auc"}
    assert plan.spec.num_classes == 10


@pytest.mark.parametrize(
    "override, line",
    [  # Hydra's three numbered options ("To use it as a list ... add --multirun to your command line") had been the line
        ("trainer.learning_rate=0,001", "a comma separates a sweep's values (add -m to train one run each); a number takes a "
                                        "decimal point: trainer.learning_rate=0.001"),
        ("trainer.epochs=1,000", "a number takes a decimal point: trainer.epochs=1.000, and no thousands separator: trainer.epochs=1000"),
        ("trainer.learning_rate=1,5e-3", "a number takes a decimal point: trainer.learning_rate=1.5e-3"),
        ("model=mlp_classifier,cnn_classifier", "a comma separates a sweep's values (add -m to train one run each); a list is "
                                                "[a,b], and text holding a comma is quoted: \"model='mlp_classifier,cnn_classifier'\""),
        # full-width digits, as an East Asian input method types them, and a typeset minus sign (a paper's, a web
        # page's) or an autocorrected dash: the advice had been to quote them, which leaves no number
        ("trainer.learning_rate=１e-3", "it holds U+FF11 (fullwidth digit one) where a number has '1'; type trainer.learning_rate=1e-3"),
        ("trainer.learning_rate=1e−3", "it holds U+2212 (minus sign) where a number has '-'; type trainer.learning_rate=1e-3"),
        ("trainer.learning_rate=–0.1", "it holds U+2013 (en dash) where a number has '-'; type trainer.learning_rate=-0.1"),
    ],
)  # fmt: skip
def test_numbers_as_other_locales_and_keyboards_write_them_are_answered_with_the_spelling_the_zoo_reads(override, line):
    with pytest.raises(zoo.ZooError) as refused:
        check_overrides([override])
    assert str(refused.value).startswith(override) and str(refused.value).endswith(line), str(refused.value)


@pytest.mark.parametrize("path", ["/data/it's", "/data/a,b", "/data/[x]", "/data/my pets's", "/data/l'été"])
def test_a_path_hydra_cannot_read_is_answered_with_a_spelling_that_reads_it_back(path):
    """The advice had been "quoted: key='...'", which a path holding an apostrophe cannot be,
    and which the shell takes off again."""
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser

    with pytest.raises(zoo.ZooError) as refused:
        check_overrides([f"dataset.path={path}"])
    typed = re.split(r" quoted(?: value)?: ", str(refused.value))[-1]
    [argument] = shlex.split(typed)  # as the shell, then Hydra, read it
    override = OverridesParser.create().parse_override(argument)
    assert (override.key_or_group, override.value()) == ("dataset.path", path)


def test_compose_given_one_string_says_it_takes_a_list():
    """A string is a sequence too: its characters had been read as overrides ("Error parsing
    override 's'")."""
    with pytest.raises(TypeError, match=re.escape("compose takes a list of overrides, e.g. compose(['seed=1']), not one string")):
        compose("seed=1")


def test_default_metrics_follow_the_model_objective():
    plan = plan_run(compose(["model=conv_autoencoder"]))
    assert {entry.name for entry, _ in plan.metrics} == {"mse", "mae", "reconstruction_error"}
    with pytest.raises(zoo.ZooError, match="metric 'accuracy' scores classification, but model 'autoencoder' learns reconstruction; choose from: mae, mse, reconstruction_error"):
        plan_run(compose(["model=autoencoder", "metrics=[accuracy]"]))
    assert [e.name for e, _ in plan_run(compose(["model=gru_text_generator", "dataset=text"])).metrics] == ["perplexity"]
    assert plan_run(compose(["model=gan"])).metrics == []  # a GAN reports its own two losses


def test_mismatched_choices_fail_before_any_tensorflow_work():
    with pytest.raises(zoo.ZooError, match="model 'gru_text_generator' trains on sequence datasets but dataset 'digits' is a classification dataset"):
        plan_run(compose(["model=gru_text_generator", "dataset=digits"]))
    with pytest.raises(zoo.ZooError, match="model 'cnn_classifier' trains on classification datasets but dataset 'text' is a sequence dataset"):
        plan_run(compose(["model=cnn_classifier", "dataset=text"]))
    with pytest.raises(zoo.ZooError, match="model 'vae' trains on classification datasets but dataset 'text'"):  # "learns classification"
        plan_run(compose(["model=vae", "dataset=text"]))
    with pytest.raises(zoo.ZooError, match="metric 'auc' scores classification, but model 'gan' learns generation; choose from: \\(none registered\\)"):
        plan_run(compose(["model=gan", "metrics=[auc]"]))
    with pytest.raises(zoo.ZooError, match="metric 'perplexity' scores language_modeling, but model 'vae' learns reconstruction"):
        plan_run(compose(["model=vae", "metrics=[perplexity]"]))


def test_a_model_can_refuse_data_it_cannot_learn():
    with pytest.raises(zoo.ZooError, match="cannot learn from dataset 'breast_cancer'.*values are unbounded"):
        plan_run(compose(["model=autoencoder", "dataset=breast_cancer"]))
    with pytest.raises(zoo.ZooError, match="needs examples of rank 3"):
        plan_run(compose(["model=cnn_classifier", "dataset=breast_cancer"]))


def test_public_keys_override():
    plan = plan_run(
        compose(
            [
                "seed=7",
                "trainer.epochs=3",
                "trainer.batch_size=16",
                "trainer.optimizer=sgd",
                "trainer.learning_rate=0.01",
                "metrics=[accuracy,auc]",
                "metrics.auc.num_bins=1024",
                "device=cpu",
                "model.filters=8",
            ]
        )
    )
    assert plan.seed == 7
    assert (plan.trainer.epochs, plan.trainer.batch_size, plan.trainer.optimizer) == (3, 16, "sgd")
    assert plan.trainer.learning_rate == 0.01
    assert [entry.name for entry, _ in plan.metrics] == ["accuracy", "auc"]
    assert plan.metrics[1][1].num_bins == 1024
    assert plan.device.kind == "cpu"
    assert plan.model_config.filters == 8


def test_config_files_set_every_field_of_their_schema():
    import dataclasses

    from zoo.config import DeviceConfig, TrainerConfig

    assert set(compose([]).trainer) == {f.name for f in dataclasses.fields(TrainerConfig)}
    for device in ("auto", "cpu", "gpu", "multi_gpu"):
        keys = set(compose([f"device={device}"]).device)
        assert keys <= {f.name for f in dataclasses.fields(DeviceConfig)}
        assert compose([f"device={device}"]).device.kind == device


APP = """
import hydra
from hydra.core.hydra_config import HydraConfig


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg):
    from zoo.config import compose, plan_run

    before = HydraConfig.get().job.override_dirname
    run = compose([f"model.filters={cfg.filters}", "+experiment=digits_cnn"])
    assert HydraConfig.get().job.override_dirname == before, "the application's HydraConfig was replaced"
    print("composed", run.model.name, run.model.filters, plan_run(run).trainer.epochs, before)


main()
"""


def test_a_hydra_application_of_your_own_composes_zoo_runs(tmp_path):
    """People composing experiments call zoo.config.compose from their own @hydra.main: it
    failed on "GlobalHydra is already initialized". Hydra's state is set aside and put back."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text("filters: 8\n")
    (tmp_path / "app.py").write_text(APP)
    for args, filters in (([], ["8"]), (["-m", "filters=4,16"], ["4", "16"])):
        result = subprocess.run([sys.executable, "app.py", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        composed = [line.split() for line in result.stdout.splitlines() if line.startswith("composed")]
        assert [line[2] for line in composed] == filters and all(line[1] == "cnn_classifier" for line in composed), result.stdout
        assert [line[4:] for line in composed] == ([[]] if not args else [["filters=4"], ["filters=16"]]), result.stdout


def test_experiment_presets_compose():
    from importlib.resources import files

    presets = [p.name.removesuffix(".yaml") for p in files("zoo.conf").joinpath("experiment").iterdir() if p.name.endswith(".yaml")]
    assert presets
    for preset in presets:
        plan_run(compose([f"+experiment={preset}"]))


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["model=no_such_model"], "unknown model 'no_such_model'"),
        (["model=cnn_clasifier"], "did you mean 'cnn_classifier'"),
        (["dataset=digit"], "did you mean 'digits'"),
        (["metrics=[accuracy,f2]"], "unknown metric 'f2'"),
        (["trainer.epoch=3"], "did you mean 'trainer.epochs'"),
        (["+trainer.epoch=3"], "did you mean 'trainer.epochs'"),
        (["+model.filterz=3"], "unknown key 'model.filterz' for model 'cnn_classifier'; did you mean 'model.filters'"),
        (["+seeed=3"], "did you mean 'seed'"),
        (["trainer.lr=0.1"], "trainer's keys are: epochs, batch_size, optimizer, learning_rate"),  # not "did you mean 'trainer'"
        (["device.replicas=2"], "device.replicas is a key of device=cpu: choose that as well (device=cpu device.replicas=...)"),
        (["device.replica=2"], "did you mean 'device.replicas'? device.replicas is a key of device=cpu"),
        (["device.gpu=[0]"], "did you mean 'device.gpus'? device.gpus is a key of device=multi_gpu"),
        (["device=multi_worker", "device.workers=['[::1]:2222']", "device.rank=0"], "not IPv6 ones"),
        (["dataset=image_folder", "dataset.path=/data/猫"], "Hydra reads letters beyond ASCII only in a quoted value: \"dataset.path='/data/猫'\""),
        (["trainer.epochs=abc"], "trainer.epochs must be a whole number, got 'abc'"),  # not OmegaConf's class names
        (["experiment=digits_cnn"], "experiment is a group of presets, added with a plus: +experiment=NAME"),
        (["+experiment=digits_cnn", "+experiment=digits_vae"], "experiment is chosen more than once; choose it once"),  # not YAML advice
        (["+experiment="], "experiment= needs a name: breast_cancer_mlp, cats_cnn"),  # not Hydra's search path
        (["trainer.deterministic=maybe"], "trainer.deterministic must be true or false, got 'maybe'"),
        (["trainer.freeze=conv"], "trainer.freeze must be a list, in brackets ([a,b])"),  # had said "AnyNode is not a ListConfig"
        (["dataset=image_folder", "dataset.image_size=16"], "dataset.image_size=16: give a list, in brackets ([a,b])"),
        (["model.filters=many"], "model.filters=many"),
        (["trainer.epochs=0"], "epochs must be at least 1"),
        (["trainer.optimizer=adm"], "did you mean 'adam'"),
        (["metrics=[f1]", "metrics.f1.average=macroo"], "average='macroo' is not supported"),
        (["metrics.f1.average=micro"], "metric 'f1' is not among those chosen; to set its options, list it"),
        (["dataset.test_fraction=1.5"], "between 0 and 1"),
        (["dataset=image_folder"], "no value for 'dataset.path'; set it on the command line"),
        (["dataset=image_folder", "dataset.path=/no/such/folder"], "dataset.path=/no/such/folder is not a folder"),
        (["trainer.resume=sometimes"], "resume='sometimes' is not supported"),
        (["device=tpu9"], "unknown device 'tpu9'"),
        (["-m", "model.filters=8,many"], "model.filters=many"),
        (["seed=-1"], "seed must be a whole number from 0 to 4294967295, got -1"),
        (["seed=4294967296"], "got 4294967296"),
        (["seed=abc"], "got 'abc'"),
        (["seed=1.5"], "got 1.5"),
        (["cv.folds=1"], "folds must be 0 (off) or at least 2"),
        (["trainer.keep_checkpoints=some"], "keep_checkpoints='some' is not supported"),
        (["trainer.learning_rate=nan"], "trainer.learning_rate=nan must be a finite number"),  # nan <= 0 is false
        (["trainer.clipnorm=inf"], "trainer.clipnorm=inf must be a finite number"),
        (["metrics=[f1]", "metrics.f1.threshold=-inf"], "metrics.f1.threshold=-inf must be a finite number"),
        (["trainer.steps_per_execution=40"], "steps_per_execution must be at most 32"),  # TensorFlow refused it mid-run
        (["seed=" + "1" * 5000], "a number of 5000 digits is beyond any setting; give a smaller one"),  # not Python's advice
        (["loggers=[tensorboard]", "loggers.tensorboard.folder=/tmp"], "it names a folder inside the run directory"),
        # A folder named model.keras (of snapshots) left no room for the model: the run could never finish.
        (["callbacks=[snapshots]", "callbacks.snapshots.folder=model.keras"], "the run keeps its own model.keras there"),
        (["loggers=[tensorboard]", "loggers.tensorboard.folder=checkpoints/tb"], "the run keeps its own checkpoints there"),
        (["callbacks=[snapshots]", "callbacks.snapshots.folder=."], "that is the run directory itself"),  # "its own . there"
        (["model=gan", "model.adam_beta_1=2"], "adam_beta_1 must be in [0, 1) (or null), got 2.0"),  # trained, exit 0
        (["model=gan", "model.generator_learning_rate=-1"], "generator_learning_rate must be a positive number"),
        # Trained quietly wrong: a cosine "down" to 1 diverged, a plateau "lowered" the rate to 0.1, nothing learnt.
        (["trainer.lr_schedule=cosine", "trainer.min_learning_rate=1"], "min_learning_rate=1.0 must be below learning_rate=0.001"),
        (["trainer.lr_schedule=plateau", "trainer.plateau.min_learning_rate=0.1"], "a plateau would raise the rate to it"),
        (["dataset=breast_cancer", "model=mlp_classifier", "trainer.class_weight=[0,0]"], "weighs every class 0: nothing would train"),
        (["trainer.plateau.min_delta=-1"], "plateau.min_delta and plateau.min_learning_rate cannot be negative"),
        # A typo had been blamed on a metric plugin declaring no greater_is_better.
        (["trainer.early_stopping.patience=2", "trainer.early_stopping.monitor=val_acc"],
         "trainer.early_stopping.monitor='val_acc' is none of the run's losses and metrics (loss, val_loss, accuracy, val_accuracy"),
        (["trainer.lr_schedule=plateau", "trainer.plateau.monitor=acc"], "trainer.plateau.monitor='acc' is none of the run's losses"),
        # Devices known wrong before TensorFlow starts (a port no socket can have had waited out device.timeout).
        (["device=gpu", "device.index=-1"], "device.index must be a GPU's number (0, 1, ...), got -1"),
        (["device=multi_gpu", "device.gpus=[0,0]"], "device.gpus must list distinct GPU numbers"),
        (["device=multi_gpu", "device.gpus=[]"], "or be unset for all of them, got []"),
        (["device=multi_worker", "device.port=70000"], "device.port must be from 1 to 65535, got 70000"),
        (["device=multi_worker", "device.port=0"], "device.port must be from 1 to 65535, got 0"),
        (["device=tpu", "device.address=grpc://10.0.0.2:99999"], "ports are from 1 to 65535 (a TPU's is 8470)"),
        # Copied from a web page or a chat: "token recognition error at: ' '", and advice to quote it (keeping the character).
        (["model=cnn_classifier\u00a0"], "model=cnn_classifier\\u00a0: it holds a no-break space (U+00A0), which text copied"),
        (["trainer.epochs\u200b=1"], "trainer.epochs\\u200b=1: it holds a zero width space (U+200B)"),
        # A port longer than Python reads: "device.Exceeds the limit (4300 digits) for integer string conversion".
        (["device=tpu", "device.address=grpc://10.0.0.2:" + "9" * 5000], "device.address=grpc://10.0.0.2:99999"),
        (["device=multi_worker", f"device.workers=[127.0.0.1:{'9' * 5000},127.0.0.1:2]"], "workers must be a list of host:port"),
    ],
)
def test_mistakes_are_reported_with_the_key_and_a_fix(overrides, expected):
    with pytest.raises(zoo.ZooError, match=None) as info:
        check_overrides(overrides)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_numbers_longer_than_python_reads_are_named_as_such_wherever_they_come_from(monkeypatch):
    """Text from the environment (a job array's task number, TensorFlow's settings) read as a
    number: past 4,300 digits Python refuses it, and "zoo failed: ValueError: Exceeds the
    limit ... use sys.set_int_max_str_digits()" had been the line."""
    from zoo.cli import describe_failure
    from zoo.limits import threads_tensorflow_starts

    monkeypatch.setenv("ZOO_TEST_SEED", "9" * 5000)
    with pytest.raises(zoo.ZooError, match=r"seed must be a whole number from 0 to 4294967295, got '9{30,}…; e.g. seed=0$"):
        check_overrides(["seed=${oc.env:ZOO_TEST_SEED}"])
    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "9" * 5000)
    assert threads_tensorflow_starts(2) > 10**17  # refused as too many threads to start, as 5,000,000 is
    try:
        int("9" * 5000)
    except ValueError as exc:  # what any library reading such a number raises
        line = describe_failure(exc)
    assert "failed on a number of 5,000 digits, more than Python reads as one (4,300)" in line and "set_int_max_str_digits" not in line


@pytest.mark.parametrize(
    "override,expected",
    [
        ("~model", "~model: model cannot be deleted; choose one instead (model=NAME;"),
        ("~metrics", "choose one instead (metrics=NAME, or none;"),
        ("model=null", "model takes one name (model=NAME"),
        ("metrics={a: 1}", "metrics takes a name or a list of names"),
        ("~hydra.run.dir", "Hydra's settings cannot be deleted; set hydra.run.dir=... instead"),  # failed inside Hydra
        ("~hydra/job_logging", "Hydra's choices cannot be deleted; choose another (hydra/job_logging=NAME; 'none'"),
        # names Hydra looks up as files: "File name too long", naming a file in Hydra's package
        ("trainer." + "x" * 300 + "=1", "is 308 characters long: no config key or choice has such a name"),
        ("+experiment=" + "x" * 251, "is 251 characters long"),
        ("+" + "x" * 300 + "=1", "is 300 characters long"),
        ("metrics=[accuracy," + "x" * 300 + "]", "is 300 characters long"),
        ("hydra/launcher=" + "x" * 300, "is 300 characters long"),
    ],
)
def test_group_choices_hydra_would_fail_on_are_one_line(override, expected):
    from zoo.arguments import check_group_choices

    with pytest.raises(zoo.ZooError) as info:
        check_group_choices([override])
    assert expected in str(info.value)


def test_sweeps_are_checked_job_by_job():
    check_overrides(["-m", "model.filters=8,16", "trainer.epochs=1"])


def test_optimizer_names_are_keras_optimizers():
    import keras

    for name in OPTIMIZERS:
        assert isinstance(keras.optimizers.get(name), keras.optimizers.Optimizer)


@pytest.mark.parametrize(
    "args",
    [["model=no_such_model"], ["trainer.epochs=abc"], ["+model.filterz=3"], ["device=gpuu"], ["-cn", "nope"],
     ["--config-dir", "/no/such/folder"], ["--config-name=nope"],
     # sizes no machine holds, before TensorFlow tries (the kernel would kill it, or it would take minutes)
     ["model=mlp_classifier", "dataset=synthetic_cats", "dataset.num_images=100000000"],
     ["trainer.batch_size=100000000000"], ["device=cpu", "device.replicas=100000"],
     ["device=multi_worker", "device.workers=[127.0.0.1:99999]", "device.rank=0"],
     # past the parser's recursion, Python's integer digits, the file system's name length
     ["metrics=" + "[" * 3000 + "]" * 3000], ["seed=" + "1" * 5000], ["-m", "seed=1,2", "hydra.sweep.dir=" + "a" * 300]],
    ids=lambda args: " ".join(args)[:50],
)  # fmt: skip
def test_zoo_train_mistakes_exit_non_zero_with_one_line(args, tmp_path):
    result = run_zoo("train", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2
    assert error_lines(result.stderr) == [result.stderr.strip()], result.stderr
    assert not (tmp_path / "run").exists(), "nothing is written for a rejected config"


def test_unknown_model_names_the_closest():
    result = run_zoo("train", "model=cnn_clasifer")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("zoo: error: unknown model 'cnn_clasifer'; did you mean 'cnn_classifier'")  # closest first
    assert line.endswith("(see 'zoo list model')")


@pytest.mark.parametrize(
    "args",
    [
        ["+hydra.callbacks.evil._target_=sentinel.Callback"],
        ["hydra.job_logging.handlers.console.class=sentinel.Handler"],
        ["+hydra.job_logging.handlers.evil={class:sentinel.Handler}"],
        ["+model.x={_target_:sentinel.build}"],
        ["-m", "hydra.launcher._target_=sentinel.Launcher,sentinel.Other"],
        ["--experimental-rerun", "config.pickle"],
        ["--experimental-rerun=config.pickle"],
        ["--experimental-r=config.pickle"],
        ["--exp", "config.pickle"],
        ["hydra.job_logging.handlers.console.stream=ext://sentinel.stream"],
        ["+hydra.job_logging.handlers.x='${oc.create:\"{class: sentinel.Nope}\"}'"],
        ["+model.y=${oc.decode:'{_target_: sentinel.build}'}"],
        # ext:// built by an interpolation, after the value was looked at
        ["hydra.job_logging.handlers.console.stream=e${oc.select:nope,x}t://sentinel.stream"],
        ["hydra.job_logging.handlers.console.stream=${oc.env:SENTINEL_STREAM}"],
        ["hydra.job_logging={handlers: {console: {stream: '${oc.env:SENTINEL_STREAM}'}}}"],
        # Hydra imports a pkg:// search path or config path to find its files
        ["hydra.searchpath=[pkg://sentinel]"],
        ["-cp", "pkg://sentinel"],
        ["--config-p=pkg://sentinel"],
        # launchers' code: Ray's setup hook and runtime environment, submitit's shell lines
        ["-m", "+hydra.launcher.ray.init.runtime_env.worker_process_setup_hook=sentinel.setup", "seed=1,2"],
        ["-m", "+hydra.launcher.setup=['python -m sentinel']", "seed=1,2"],
        # what submitit hands sbatch and srun as it is: srun's --prolog runs a program
        ["-m", "hydra/launcher=slurm", "hydra.launcher.srun_args=['--prolog=./sentinel.sh']", "seed=1,2"],
        ["-m", "hydra/launcher=slurm", "hydra.launcher.additional_parameters={export: 'LD_PRELOAD=sentinel.so'}", "seed=1,2"],
        # any environment variable for the job: a preloaded library, a module path, a library
        # TensorFlow loads at import, a git config (or where git looks for one) naming a command
        ["+hydra.job.env_set.LD_PRELOAD=sentinel.so"],
        ["hydra.job={env_set: {PYTHONPATH: .}}"],
        ["+hydra.job.env_set.TF_PLUGGABLE_DEVICE_LIBRARY_PATH=sentinel.so"],
        ["+hydra.job.env_set.GIT_CONFIG_COUNT=1", "+hydra.job.env_set.GIT_CONFIG_KEY_0=core.fsmonitor"],
        ["hydra.job={env_set: {HOME: .}}"],
        ["-m", "+hydra.job.env_set.XDG_CONFIG_HOME=a,b"],
        # a node brought in or built by an interpolation, out of sight of the key checks: a
        # resolver's name spelt by another (oc.create), a node of Hydra's settings set aside
        ["-m", "hydra.job.name=create", "hydra.launcher=\"${oc.${hydra.job.name}:{_target_: sentinel.Launcher}}\"", "seed=1,2"],
        ["-m", "hydra/launcher=ray", "+hydra.x={runtime_env: {worker_process_setup_hook: sentinel.setup}}",
         "hydra.launcher.ray.init=${hydra.x}", "seed=1,2"],
        ["+hydra.x={env_set: {LD_PRELOAD: sentinel.so}}", "hydra.job=${hydra.x}"],
        # a config of the zoo's put where Hydra instantiates what it holds (a launcher as a callback)
        ["+hydra/launcher@hydra.callbacks.x=joblib"],
        ["+hydra/sweeper/sampler@hydra.callbacks.x=tpe"],
        ["+model@hydra.job_logging.handlers=cnn_classifier"],
        # a newline in what submitit writes into the batch script as "#SBATCH --comment='...'"
        ["-m", "hydra/launcher=slurm", "hydra.launcher.comment='x\npython -m sentinel'", "seed=1,2"],
        ["-m", "hydra/launcher=slurm", "hydra.job.name='x\npython -m sentinel'", "seed=1,2"],
        ["-m", "hydra/launcher=slurm", "hydra.sweep.dir='s\npython -m sentinel'", "seed=1,2"],
        # a Ray cluster elsewhere: it runs the jobs and Ray unpickles what it sends back
        ["-m", "hydra/launcher=ray_cluster", "hydra.launcher.ray.init.address=ray://10.1.2.3:10001", "seed=1,2"],
        ["-m", "hydra/launcher=ray", "hydra.launcher.ray={init: {address: '127.0.0.1.example.com:6379'}}", "seed=1,2"],
    ],
    ids=lambda args: " ".join(args)[:40],
)
def test_nothing_on_the_command_line_imports_a_module(args, tmp_path):
    """A module that would leave a file behind if anything imported it."""
    (tmp_path / "sentinel.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\n")
    env = {"PYTHONPATH": str(tmp_path), "SENTINEL_STREAM": "ext://sentinel.stream"}
    result = run_zoo("train", *args, "--cfg", "job", cwd=tmp_path, env=env)
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    refusals = ("no module to import from the command line", "loads a pickle, which can run code", "not interpolations",
                "makes Hydra import that package", "can run code; put them in a launcher config", "sets no environment variable from the command line",
                "sends back pickles, which Ray unpickles here", "no config moves into Hydra's settings", "take no control characters")  # fmt: skip
    assert any(refusal in line for refusal in refusals), line
    assert not (tmp_path / "imported").exists()


@pytest.mark.parametrize(
    "args",
    [["+experiment=../{evil}"], ["+experiment={evil}"], ["-m", "hydra/launcher=../{evil}", "seed=1,2"],
     ["-m", "hparams_search=../{evil}"], ["-m", "hydra/sweeper=../{evil}", "seed=1,2"],
     ["model=../{evil}"], ["metrics=[accuracy,../{evil}]"], ["--config-name=../{evil}"],
     ["-cn", "{evil}"], ["--config-n", "../{evil}"],
     # an interpolation resolved by Hydra after the checks: the same path, out of their sight
     ["+experiment=${{oc.env:EVIL}}"], ["-m", "hydra/launcher=${{oc.env:EVIL}}", "seed=1,2"]],
    ids=lambda args: " ".join(args)[:40],
)  # fmt: skip
def test_a_config_choice_is_a_name_not_a_path_to_any_yaml_file(args, tmp_path):
    """Hydra reads a group's option or the primary config's name as a path under its search
    path: ``..`` or ``/`` would have it read any YAML file, whose Hydra callbacks it imports."""
    (tmp_path / "sentinel.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\nclass Callback: ...\n")
    (tmp_path / "evil.yaml").write_text("# @package _global_\nhydra:\n  callbacks:\n    x:\n      _target_: sentinel.Callback\n")
    evil = str(tmp_path / "evil")  # ../ climbs to the root from wherever the zoo's configs are installed
    args = [arg.replace("../{evil}", "../" * 20 + evil.lstrip("/")).replace("{evil}", evil).format() for arg in args]
    run_dir = tmp_path / "run"
    result = run_zoo("train", *args, "trainer.epochs=1", f"hydra.run.dir={run_dir}", f"hydra.sweep.dir={run_dir}",
                     cwd=tmp_path, env={"PYTHONPATH": str(tmp_path), "EVIL": "../" * 20 + evil.lstrip("/")})  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert "a config choice is a name in its group, not a path" in line or "a config name, not a path" in line, line
    assert not (tmp_path / "imported").exists() and not run_dir.exists()


def test_hydras_own_values_resolve_in_the_zoos_checks_as_in_the_job():
    """``${hydra:job.num}`` (a seed per sweep job) had failed the check every job gets before
    the sweep starts: "HydraConfig was not set", or job.num unset; a Hydra value of the wrong
    type was "omegaconf failed: InterpolationValidationError"."""
    from zoo.config import compose_job

    check_overrides(["-m", "seed=${hydra:job.num}", "model.filters=4,8", "trainer.epochs=1"])
    assert [plan_run(compose_job(["seed=${hydra:job.num}"], number=n)).seed for n in (0, 1)] == [0, 1]
    with pytest.raises(zoo.ZooError) as info:
        check_overrides(["trainer.learning_rate=${hydra:job.name}"])
    assert str(info.value) == "trainer.learning_rate must be a number, got 'train'"


def test_a_value_from_the_environment_sets_a_key_that_is_no_group(tmp_path, monkeypatch):
    """A job array's task as the seed (``seed=${oc.env:SLURM_ARRAY_TASK_ID}``) had been refused
    as "a config choice is a name in its group", and its text "3" as no whole number. A
    group's choice (here a group of the user's own named seed) stays a name."""
    from zoo.arguments import refuse_code_from_the_command_line

    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    refuse_code_from_the_command_line(["seed=${oc.env:SLURM_ARRAY_TASK_ID}"])
    assert plan_run(compose(["seed=${oc.env:SLURM_ARRAY_TASK_ID}"])).seed == 3
    (tmp_path / "mine" / "seed").mkdir(parents=True)
    (tmp_path / "mine" / "seed" / "three.yaml").write_text("seed: 3\n")
    with pytest.raises(zoo.ZooError, match="a config choice is a name in its group"):
        refuse_code_from_the_command_line(["--config-dir", str(tmp_path / "mine"), "seed=${oc.env:SLURM_ARRAY_TASK_ID}"])


@pytest.mark.parametrize(
    "args", [["callbacks=[snapshots]", "callbacks.snapshots.folder={victim}"], ["loggers.tensorboard.folder=../victim"]]
)
def test_a_plugins_folder_inside_the_run_stays_inside_it(args, tmp_path):
    """Fields declared with zoo.run_subfolder (the snapshots' folder, TensorBoard's) take a
    relative name without '..': a snapshot would replace a file of the same name elsewhere."""
    run_dir = tmp_path / "run"
    result = run_zoo("train", *[a.format(victim=tmp_path / "victim") for a in args], f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2 and not run_dir.exists()
    [line] = error_lines(result.stderr)
    assert "it names a folder inside the run directory; give a relative name without '..'" in line, line


def test_what_a_launcher_refuses_and_what_hydra_cannot_parse_is_one_line(tmp_path):
    result = run_zoo("train", "-m", "hydra/launcher=joblib", "hydra.launcher.prefer=nope", "seed=1,2",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert line.startswith("zoo: error: joblib failed: ValueError: prefer=nope") and line.endswith("; ZOO_TRACEBACK=1 shows where")
    result = run_zoo("train", "-m", "hydra/launcher=joblib", "hydra.launcher.pre_dispatch='2*n_jobs+os.getpid()'", "seed=1,2",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result.stderr)  # joblib's arithmetic, read before it starts: no call
    assert line.startswith("zoo: error: hydra.launcher.pre_dispatch=2*n_jobs+os.getpid(): give how many jobs")
    result = run_zoo("train", "hydra.launcher.pre_dispatch=f(x).y", cwd=tmp_path)
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert line.startswith("zoo: error: hydra.launcher.pre_dispatch=f(x).y: Hydra cannot read it (")


BOMB = "".join(f"{a}: &{a} [{', '.join([f'*{b}'] * 10) if b else '1'}]\n" for a, b in zip("abcdefg", ["", *"abcdef"]))


@pytest.mark.parametrize(
    "preset, args, expected",
    [  # a preset of the user's, as people composing experiments write them, slips included
        ("trainer: 5", [], "trainer must hold its settings (trainer.KEY=VALUE), got 5; a config file (an experiment's"),
        ("metrics: 5", [], "metrics takes names (metrics=[a,b]), got 5"),  # had been "zoo failed: AttributeError"
        ("model: null", [], "model must be one chosen by name (model=NAME), got None"),
        ("objective: 3", [], "objective must be the name of one of the run's values"),  # had failed after training
        ("trainer: null", ["trainer.epochs=1"], "unknown config key 'trainer.epochs'; a config file chosen with it"),  # "did you mean 'trainer.epochs'?"
        (None, [], "the experiment preset's keys landed under 'experiment': its file must start with the line '# @package _global_'"),
        ("defaults:\n  - /model: mlp_classifier", [], "model is chosen by the primary config already: choose another with model=NAME (no +), "
         "and in a preset's defaults list with 'override /model: NAME'"),  # fmt: skip
        ("defaults:\n  - /experiment/mine", [], "a config's defaults list leads back to itself"),  # "nested too deeply"
        ("trainer:\n  epochs: 1\n  epochs: 2", [], "mine.yaml line 4: found duplicate key epochs; correct the YAML there"),
        ("trainer:\n  epochs: 1\n batch_size: 3", [], "mine.yaml line 4: expected <block end>, but found '<block mapping start>'"),
        (BOMB, [], "mine.yaml: its aliases (*name) spell out 2,345,670 copies of values, more than a config holds (100,000)"),  # a hang
        (b"\xff\xfe", [], "mine.yaml is not UTF-8 text (byte 0); save it as UTF-8"),  # UnicodeDecodeError, no file named
        # Notepad's "UTF-8 with BOM", PowerShell 5's utf8: Hydra missed the header; "its file must start with '# @package'"
        ("\ufeff# @package _global_\ntrainer:\n  epochs: 1".encode(), [], "mine.yaml starts with a byte order mark (EF BB BF), "
         "which hides its '# @package' line from Hydra (its keys would land elsewhere); save it as UTF-8 without BOM"),
        # "yaml failed: ValueError: Exceeds the limit (4300 digits) ...; use sys.set_int_max_str_digits()", no file named
        ("seed: " + "9" * 5000, [], "mine.yaml line 2: a number of 5,000 digits, more than Python reads as one (4,300); write"),
        ("model:\n  filters: " + "1_" * 4400, [], "mine.yaml line 3: a number of 4,400 digits"),  # YAML 1.1's 1_000
        ("model:\n  filters: " + "1" * 4000, [], "model.filters=11111111"),  # read, and refused shortened:
        ("seed: '" + "9" * 5000 + "'", [], "seed must be a whole number from 0 to 4294967295, got '99999"),  # text: read
        # a plugin's typed field given another type: OmegaConf's ValidationError had come through whole
        ("model:\n  filters: abc", [], "model.filters (set by the config 'experiment/mine') must be a whole number, got 'abc'"),
        ("model:\n  dropout: [1]", [], "model.dropout (set by the config 'experiment/mine') must be a number, got '[1]'"),
        ("model:\n  filters: null", [], "model.filters (set by the config 'experiment/mine') must be a whole number, got null"),
        ("metrics: [accuracy, f1]", [], "the config 'experiment/mine' sets a list where the zoo keeps a section: a list of metrics, "
                                        "callbacks, loggers is chosen in its defaults list ('- override /metrics: [accuracy, f1]')"),
    ],
)
def test_mistakes_in_a_preset_of_your_own_are_one_line_naming_it(preset, args, expected, tmp_path, capsys):
    from zoo.cli import main

    (tmp_path / "mine" / "experiment").mkdir(parents=True)
    text = preset if isinstance(preset, bytes) else ("trainer:\n  epochs: 1\n" if preset is None else f"# @package _global_\n{preset}\n")
    (tmp_path / "mine" / "experiment" / "mine.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SystemExit) as exited:
        main(["train", "--config-dir", str(tmp_path / "mine"), "+experiment=mine", *args, f"hydra.run.dir={tmp_path / 'run'}"])
    [line] = error_lines(capsys.readouterr().err)
    assert exited.value.code == 2 and expected in line and len(line) < 500, line
    assert not (tmp_path / "run").exists()


def test_copying_a_variable_this_environment_lacks_is_one_line(capsys):
    """Hydra copies each of hydra.job.env_copy from the environment: "os failed: KeyError"."""
    from zoo.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["train", "hydra.job.env_copy=[HOME,ZOO_SURELY_UNSET]", "--cfg", "job"])
    [line] = error_lines(capsys.readouterr().err)
    assert exited.value.code == 2 and line.endswith("names ZOO_SURELY_UNSET, which is not set in this environment; set it "
                                                    "(export ZOO_SURELY_UNSET=...) or leave it out"), line  # fmt: skip


def test_the_primary_configs_choice_is_changed_without_a_plus(capsys):
    from zoo.cli import main

    with pytest.raises(SystemExit):
        main(["train", "+model=mlp_classifier", "--cfg", "job"])  # "presets combine as a list: +model=[a,b]" had been the advice
    assert "model is chosen by the primary config already: choose another with model=NAME (no +)" in capsys.readouterr().err


def test_own_config_folder_experiments_are_checked_and_used(tmp_path):
    """--config-dir adds the user's configs before Hydra starts: the zoo's own check finds
    an experiment there too, and reports a mistake in it in one line."""
    (tmp_path / "mine" / "experiment").mkdir(parents=True)
    (tmp_path / "mine" / "experiment" / "quick.yaml").write_text("# @package _global_\ntrainer:\n  epochs: 3\n")
    (tmp_path / "mine" / "experiment" / "wrong.yaml").write_text("# @package _global_\ntrainer:\n  epochz: 3\n")
    result = run_zoo("train", "--config-dir", str(tmp_path / "mine"), "+experiment=quick", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["trainer"]["epochs"] == 3
    result = run_zoo("train", "--config-dir", str(tmp_path / "mine"), "+experiment=wrong", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2 and "epochz" in error_lines(result.stderr)[0], result.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def test_long_files_of_values_in_your_config_folder_are_not_taken_for_alias_bombs(tmp_path):
    """The config folder is read for aliases spelling out too many copies before Hydra reads
    it; 150,000 values written out (a data file named .yaml) had been refused as an alias
    bomb, and each such file cost seconds of parsing on every run (a file without aliases
    is not parsed now)."""
    (tmp_path / "mine" / "experiment").mkdir(parents=True)
    (tmp_path / "mine" / "experiment" / "quick.yaml").write_text("# @package _global_\ntrainer:\n  epochs: 3\n")
    values = "".join(f"  - {n}\n" for n in range(150_000))
    for n in range(5):
        (tmp_path / "mine" / f"values{n}.yaml").write_text(f"values:\n{values}")
    result = run_zoo("train", "--config-dir", str(tmp_path / "mine"), "+experiment=quick", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["trainer"]["epochs"] == 3


@pytest.mark.parametrize(
    "override",
    ["hydra.output_subdir={victim}", "hydra.output_subdir=../victim", "hydra.output_subdir=${{oc.env:VICTIM}}",
     "hydra.job.name=../victim/config", "hydra.job_logging.handlers.file.filename={victim}/config.yaml",
     "hydra.job_logging.handlers.file.mode=w", "hydra.sweep.subdir=../victim", "hydra.sweep.subdir=${{oc.env:VICTIM}}",
     # the same settings spelt as dicts; Hydra's records in the run's own folder, over its config.yaml
     "hydra.job_logging.handlers.file={{filename: {victim}/config.yaml}}", "hydra={{output_subdir: {victim}}}",
     "hydra.job={{name: ../victim/config}}", "hydra.output_subdir=.",
     # launchers' own files: submitit's pickles and logs, joblib's and Ray's temporary files
     "+hydra.launcher.submitit_folder={victim}", "+hydra.launcher.temp_folder={victim}",
     "hydra.launcher={{ray: {{init: {{_temp_dir: {victim}}}}}}}",
     # the job in the run's folder would look there for the paths typed beside it
     "hydra.job.chdir=true", "hydra.job={{chdir: 1}}"],
)  # fmt: skip
def test_nothing_on_the_command_line_makes_hydra_write_outside_the_run(override, tmp_path):
    """Hydra would write its records (config.yaml, hydra.yaml) or append its log there."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "config.yaml").write_text("mine: 1\n")
    run_dir = tmp_path / "runs" / "run"
    args = ["-m", "seed=1,2", f"hydra.sweep.dir={run_dir}"] if "sweep" in override else [f"hydra.run.dir={run_dir}"]
    result = run_zoo("train", *args, override.format(victim=victim), "trainer.epochs=1", cwd=run_dir.parent.parent,
                     env={"VICTIM": str(victim)})  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert any(refusal in line for refusal in ("it must stay inside the run's folder", "the log is RUN_DIR/train.log", "not interpolations",
                                               "a launcher's own files go where its config puts them", "keeps the working directory",
                                               "not a sub-folder of the sweep's"))  # fmt: skip
    assert [p.name for p in victim.iterdir()] == ["config.yaml"] and (victim / "config.yaml").read_text() == "mine: 1\n"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args", [["device.replicas=3"], ["device.replicas=16", "trainer.batch_size=8"]])
def test_a_global_batch_that_does_not_split_over_the_replicas_is_refused_before_tensorflow(args, tmp_path):
    result = run_zoo("train", "device=cpu", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2 and not (tmp_path / "run").exists()
    [line] = error_lines(result.stderr)
    assert "does not split over device.replicas" in line and "choose a multiple of" in line


def test_zoo_alone_prints_its_help():
    result = run_zoo()
    assert result.returncode == 0 and "zoo list" in result.stdout and not result.stderr.strip()


def test_numbers_with_an_exponent_read_as_numbers_as_hydra_reads_them(tmp_path):
    """YAML 1.1 (PyYAML) reads 1e-3 and 1.0e5 as strings: `zoo generate temperature=1e-3` was
    refused as not a number, and a run's learning_rate: 1.0e-05 compared as text."""
    from zoo.artifacts import command_line_value, read_yaml

    for text, value in (("1e-3", 1e-3), ("1.0e5", 1e5), ("-2E+2", -200.0), (".5e1", 5.0), ("[1e3, 2]", [1000.0, 2]), ("3", 3)):
        assert command_line_value(f"x={text}", text) == value
    for text in ("1e", "e5", "1e-3x"):
        assert command_line_value(f"x={text}", text) == text
    (tmp_path / "config.yaml").write_text("trainer:\n  learning_rate: 1.0e-05\n")
    assert read_yaml(tmp_path / "config.yaml") == {"trainer": {"learning_rate": 1e-05}}


@pytest.mark.parametrize("folder", ["/runs/a,b", "/runs/it's", "/runs/x${y}", "/runs/s p ", "/runs/b\\", "/runs/é", "/runs/[1]", "/runs/a=b", "runs/x"])
def test_a_folder_is_spelt_so_that_hydra_reads_it_back(folder):
    """The command the zoo prints to continue a run names its folder: ``a,b`` had been read as
    a list, ``it's`` failed to parse, ``${y}`` was an interpolation."""
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from zoo.arguments import hydra_quoted, shell_quoted

    [typed] = shlex.split(shell_quoted(f"hydra.run.dir={hydra_quoted(folder)}"))
    value = OverridesParser.create().parse_override(typed).value()
    assert OmegaConf.create({"dir": value}).dir == folder


def test_a_folder_named_with_an_interpolation_is_refused(tmp_path):
    """An escaped ``\\${`` leaves ``${`` in the folder's name, which Hydra resolves again in
    the log file's name: the run failed on "Interpolation key 'y' not found", a folder made."""
    with pytest.raises(zoo.ZooError, match=r"Hydra would read the '\$\{' in this folder's name as an interpolation"):
        check_overrides([f"hydra.run.dir='{tmp_path}/x\\${{y}}'"])
    assert list(tmp_path.iterdir()) == []


def test_text_once_resolved_is_never_resolved_again(default_run, tmp_path):
    """A value holding ``${`` once Hydra has resolved it (a folder named ``a${b}``, given
    escaped) had been resolved a second time: "Interpolation key 'b' not found". And a run
    folder from elsewhere whose config.yaml holds ``${oc.env:...}`` read this machine's
    environment when evaluated. Both are text."""
    import shutil

    from zoo.config import make_config
    from zoo.registry import get_registry

    corpus = tmp_path / "a${b}" / "corpus.txt"
    corpus.parent.mkdir()
    corpus.write_text("some text " * 100)
    for path in (str(corpus), str(tmp_path / "x\\${oc.env:HOME}")):
        assert make_config(get_registry().get("dataset", "text"), {"path": path}).path == path

    run_dir = tmp_path / "from-elsewhere"
    shutil.copytree(default_run[0], run_dir, ignore=shutil.ignore_patterns("tensorboard", "checkpoints", "plots"))
    config = (run_dir / "config.yaml").read_text()
    filters = yaml.safe_load(config)["model"]["filters"]
    (run_dir / "config.yaml").write_text(config.replace(f"filters: {filters}", "filters: ${oc.env:ZOO_RECORDED}", 1))
    result = run_zoo("evaluate", str(run_dir), env={"ZOO_RECORDED": str(filters)})  # resolved, it evaluated
    assert result.returncode == 2, result.stdout
    [line] = error_lines(result.stderr)
    assert "model.filters must be a whole number, got '${oc.env:ZOO_RECORDED}'" in line, line


@pytest.mark.parametrize("key", ["hydra.run.dir", "hydra.sweep.dir"])
def test_an_output_folder_through_a_link_to_nowhere_is_named_as_such(key, tmp_path):
    """Hydra's makedirs failed on it as "dl: File exists", which names neither link nor fix."""
    (tmp_path / "dl").symlink_to(tmp_path / "moved")
    with pytest.raises(zoo.ZooError) as info:
        check_overrides([*(["-m", "seed=1,2"] if key == "hydra.sweep.dir" else []), f"{key}={tmp_path / 'dl' / 'run'}"])
    assert f"{tmp_path / 'dl'} is a link to {tmp_path / 'moved'}, which does not exist; make that folder" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dl"]


@pytest.mark.parametrize(
    "override,setting",
    [("hydra.sweeper.params.model.dropout='interval(0.5,0.1)'", "model.dropout"), ("+hydra.sweeper.params.model.nope='choice(1,2)'", "model.nope"),
     ("hydra.sweeper.params.model.dropout=interval(0.1,0.5)", "model.dropout")],  # unquoted: "Sweeping over Hydra's configuration"
)
def test_a_search_range_is_given_as_a_swept_override(override, setting, tmp_path):
    """A search's space is keyed by whole names, which a key path splits: it had failed as
    "unknown config key", or "no viable alternative at input '{'nope''"."""
    result = run_zoo("train", "-m", "hparams_search=digits_cnn", override, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert f"a search's space is keyed by whole names ('{setting}')" in line and f"-m '{setting}=interval(0.1,0.5)'" in line, line
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("dataset", [entry.name for entry in entries("dataset")])
def test_a_run_records_its_data_as_absolute_paths(dataset, tmp_path, monkeypatch):
    """A relative data path was read again from wherever a later command started: `zoo
    evaluate RUN` one folder over evaluated other data of the same name, quietly. Every
    dataset field declared with zoo.data_path is recorded absolute; as given, a relative one
    resolves from the folder the run starts in."""
    import dataclasses

    from zoo.hookspecs import DATA_PATH, PATH_KEYWORDS
    from zoo.run import claim_run_dir, recorded_config

    config_type = get_registry().get("dataset", dataset).item.config
    fields = {f.name: f.metadata[PATH_KEYWORDS] for f in dataclasses.fields(config_type) if f.metadata.get(DATA_PATH)}
    overrides = dict(tiny_overrides(dataset))
    for name, keywords in fields.items():
        if overrides.get(name) is None or overrides[name] in keywords:  # the tiny example's files, made relative
            continue
        absolute = Path(overrides[name])
        monkeypatch.chdir(absolute.parent)
        overrides[name] = absolute.name
        plan_args = [f"dataset={dataset}", *(f"dataset.{k}={v}" for k, v in overrides.items())]
        cfg = compose(plan_args)
        plan = plan_run(cfg)
        recorded = recorded_config(cfg, plan)
        assert recorded["dataset"][name] == str(absolute.resolve())
        # A run recorded before, with the path as given, is the same run from where it was given.
        run_dir = tmp_path / name
        run_dir.mkdir()
        (run_dir / "config.yaml").write_text(yaml.safe_dump({**recorded, "dataset": {**recorded["dataset"], name: absolute.name}}))
        (run_dir / "checkpoints").mkdir()  # it trained: a run that kept nothing would start anew
        (run_dir / "checkpoints" / "step-000000001.npz").write_bytes(b"")
        assert claim_run_dir(run_dir, recorded, plan) is None
        monkeypatch.chdir(tmp_path)  # from elsewhere, the same words name other data
        with pytest.raises(zoo.ZooError, match=f"holds a run with dataset.{name}='{absolute.name}'"):
            claim_run_dir(run_dir, recorded, plan)
    first_party = {"image_folder": ["path", "cache"], "text": ["path"], "cifar10": ["path"]}  # those that read the user's files
    assert list(fields) == first_party.get(dataset, list(fields))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["dataset=image_folder", "dataset.path=''"], "dataset.path is empty; give a path"),
        (["dataset=image_folder", "dataset.path=/x", "dataset.cache=''"], "dataset.cache is empty; give a path (or memory, off)"),
        (["model=gru_text_generator", "dataset=text", "dataset.path=' '"], "dataset.path is empty; give a path (or null)"),
        (["dataset=cifar10", "dataset.path=''"], "dataset.path is empty; give a path (or null)"),
        (["model=pretrained_classifier", "dataset=synthetic_cats", "model.weights=''"], "model.weights is empty; give a path (or imagenet, none)"),
        (["trainer.init_from=''"], "trainer.init_from is empty; give a path (or null)"),
        (["trainer.distillation.teacher=''"], "trainer.distillation.teacher is empty; give a path (or null)"),
    ],
)
def test_an_empty_path_is_refused_not_read_as_the_working_folder(overrides, message):
    """`dataset.path=''` was read as '.': the image folder took the project's sub-folders
    (src/, tests/) for its classes, the CIFAR loader looked for batches there."""
    with pytest.raises(zoo.ZooError) as raised:
        plan_run(compose(overrides))
    assert str(raised.value) == message


def test_a_home_folder_in_hydras_own_folders_is_the_home_folder(tmp_path, monkeypatch):
    """`hydra.run.dir=~/runs/x` (bash leaves a ~ after `key.with.dots=` alone) put the run in
    a folder named "~" in the working folder, while the zoo's checks looked at the home
    folder; `--config-dir=~/conf` passed the zoo's check and Hydra then found no such folder.
    A `~user` this machine lacks had been "pathlib failed: RuntimeError"."""
    from zoo.arguments import quote_home_paths

    monkeypatch.setenv("HOME", str(tmp_path))
    assert quote_home_paths(["hydra.run.dir=~/runs/x", "-m", "hydra.sweep.dir=~/s", "--config-dir=~/conf", "-cd", "~/more",
                             "dataset.path=~/pets", "trainer.epochs=3"]) == [  # fmt: skip
        f"hydra.run.dir={tmp_path}/runs/x", "-m", f"hydra.sweep.dir={tmp_path}/s", f"--config-dir={tmp_path}/conf", "-cd",
        f"{tmp_path}/more", "dataset.path='~/pets'", "trainer.epochs=3",
    ]  # fmt: skip
    for arg in ("hydra.run.dir=~no_such_user_here/x", "dataset.path=~no_such_user_here/x"):
        result = run_zoo("train", "dataset=image_folder", arg, "trainer.epochs=1", cwd=tmp_path, timeout=60)
        assert result.returncode == 2
        assert error_lines(result.stderr) == [
            f"zoo: error: {arg}: this machine has no user 'no_such_user_here' whose home ~no_such_user_here names; give the path in full"
        ]


def number_settings():
    """(kind, name, key) of every integer and float setting of every registered item, and of
    the trainer, device and cross-validation sections."""
    import dataclasses

    from zoo.config import CrossValidationConfig, DeviceConfig, TrainerConfig

    def walk(config_cls, prefix=""):
        for f in dataclasses.fields(config_cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(default):
                yield from walk(type(default), f"{prefix}{f.name}.")
            elif type(default) in (int, float):
                yield f"{prefix}{f.name}", type(default)

    sections = [("trainer", TrainerConfig), ("device", DeviceConfig), ("cv", CrossValidationConfig)]
    cases = [pytest.param(kind, None, key, type_, id=f"{kind}.{key}") for kind, cls in sections for key, type_ in walk(cls)]
    for kind in ("model", "dataset", "metric", "callback", "logger"):
        for entry in entries(kind):
            cases += [pytest.param(kind, entry.name, key, type_, id=f"{entry.name}.{key}") for key, type_ in walk(entry.item.config)]
    return cases


@pytest.mark.parametrize("kind,name,key,type_", number_settings())
def test_no_setting_takes_a_number_tensorflow_cannot_hold(kind, name, key, type_):
    """An integer past 64 bits (model.filters=10**20) had failed in Keras as "Can't convert
    Python sequence with out-of-range integer to Tensor", a float past float32 (model.l1=1e308)
    as "... out of range for a double-precision float": one line naming the key, before TF."""
    from zoo.config import CrossValidationConfig, DeviceConfig, TrainerConfig, typed_config
    from zoo.errors import ZooError

    def make(overrides):
        if name is None:
            cls = {"trainer": TrainerConfig, "device": DeviceConfig, "cv": CrossValidationConfig}[kind]
            return typed_config(cls, overrides, kind, f"{kind}.")
        return make_config(get_registry().get(kind, name), overrides)

    def nested(value):
        *parents, leaf = key.split(".")
        overrides = {leaf: value}
        for parent in reversed(parents):
            overrides = {parent: overrides}
        return overrides

    with pytest.raises(ZooError, match=r"beyond the (64-bit integers|float32 range)"):
        make(nested(10**20 if type_ is int else 1e39))
    if type_ is float:  # below float32's smallest, 0 to TensorFlow: learning_rate=1e-320 had trained nothing, unsaid
        with pytest.raises(ZooError, match=r"=1e-320 is 0 in the float32 TensorFlow computes in"):
            make(nested(1e-320))


def test_a_plugins_own_default_past_float32_is_its_authors_and_not_refused():
    """A plugin may hold a Python-side bound past what TensorFlow computes with as its default;
    the user's own value past it is refused."""
    from dataclasses import dataclass

    from zoo.config import typed_config
    from zoo.errors import ZooError

    @dataclass
    class Bounds:
        ceiling: float = 1e100
        steps: int = 2**70

    assert typed_config(Bounds, {}, "model 'bounded'", "model.") == Bounds()
    with pytest.raises(ZooError, match="model.ceiling=1e\\+101 is beyond the float32 range"):
        typed_config(Bounds, {"ceiling": 1e101}, "model 'bounded'", "model.")
