"""--init_from in the recipes (spgm_lobes.recipe.run_recipe -> spgm_lobes.finetune.init_from): a --debug run of the
WSJ0Mix recipe starts its first training step from the pretrained weights."""

import json

import pytest
import torch
from safetensors.torch import load_file

from spgm_lobes.pretrained import import_model
from spgm_lobes.recipe import load_script
from spgm_lobes.separation import SeparationBrain
from spgm_lobes.testing import REPO_ROOT, TINY_ARCH, TINY_SPGM_CONFIG, write_hub_mixin_folder

RECIPE = REPO_ROOT / "recipes" / "WSJ0Mix" / "separation"
CONFIG = {**TINY_SPGM_CONFIG, "masknet_numlayers": 4}  # recipes/WSJ0Mix's spgm.yaml: SPGM-AP, 4 blocks


class FirstStepBrain(SeparationBrain):
    """Records the parameters the first training step starts from (before any update)."""

    first_step = None

    def fit_batch(self, batch):
        if FirstStepBrain.first_step is None:
            FirstStepBrain.first_step = {
                name: {k: v.detach().cpu().clone() for k, v in self.modules[name].state_dict().items()}
                for name in ("encoder", "masknet", "decoder")
            }
        return super().fit_batch(batch)


@pytest.mark.slow
@pytest.mark.parametrize("source_kind", ["imported", "published"])
def test_debug_run_starts_from_the_pretrained_weights(source_kind, wsj0mix_corpus, tmp_path):
    published = write_hub_mixin_folder(tmp_path / "spgm-tiny", CONFIG, seed=3)
    source = published
    if source_kind == "imported":  # spgm-import first; "published": run_recipe converts it itself
        source = tmp_path / "imported"
        import_model(published, source, log=lambda msg: None)
    out = tmp_path / "run"
    recipe = load_script(RECIPE / "train.py", "wsj0mix_train_init_from")
    argv = [
        str(RECIPE / "hparams" / "spgm.yaml"),
        "--data_folder", str(wsj0mix_corpus),
        "--output_folder", str(out),
        "--arch", TINY_ARCH,
        "--num_workers", "0",
        "--training_signal_len", "1600",
        "--init_from", str(source),
        "--debug",
    ]  # fmt: skip
    FirstStepBrain.first_step = None
    recipe.run_recipe(argv, recipe.prepare_data, recipe.build_datasets, brain_class=FirstStepBrain)
    weights = load_file(str(published / "model.safetensors"))
    first = FirstStepBrain.first_step
    assert first is not None
    for name, state in first.items():
        expected = {k.split(".", 1)[1]: v for k, v in weights.items() if k.startswith(name + ".")}
        assert set(state) == set(expected)
        for key, value in state.items():
            torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=f"{name}.{key}")
    record = json.loads((out / "init_from.json").read_text())
    assert record["source"] == str(source) and record["fresh"] == {} and record["ignored"] == []
    assert sorted(record["loaded"]) == ["decoder", "encoder", "masknet"] + [
        f"masknet.dual_mdl.{i}.{part}" for i in range(4) for part in ("inter", "intra")
    ] + ["masknet.output"]
    if source_kind == "published":
        assert (out / "init_from" / "spgm_import.json").is_file()  # converted once, into the run's folder
    assert (out / "test_results.csv").is_file()


def test_init_from_needs_a_value():
    from spgm_lobes.finetune import split_init_from

    with pytest.raises(ValueError, match="--init_from needs a model folder or a Hub repo id"):
        split_init_from(["hparams.yaml", "--init_from", "--debug"])
