import pytest

from spgm_lobes.architectures import architecture_path
from spgm_lobes.profile import main


def test_profile_cli_reports_params_and_macs(capsys, tmp_path):
    report = main([str(architecture_path("spgm-ap-s")), "--seconds", "0.1"])
    out = capsys.readouterr().out
    assert "total" in out and "SPGM blocks: 2" in out
    assert abs(report["params"] / 1e6 - 13.3) < 0.05
    # MACs grow with the input; attention is quadratic only within chunks.
    assert report["macs"] > 0 and report["macs_per_spgm_block"] > 0
    assert report["macs_per_spgm_block"] * 100 < report["macs"]


def test_profile_takes_an_architecture_name(capsys):
    by_name = main(["spgm-ap-s", "--seconds", "0.1"])
    assert by_name["params"] == main([str(architecture_path("spgm-ap-s")), "--seconds", "0.1"])["params"]
    assert capsys.readouterr().out.startswith("spgm-ap-s: 0.1 s")


def test_profile_names_an_unknown_architecture(tmp_path):
    with pytest.raises(SystemExit, match="nor a file"):
        main([str(tmp_path / "missing.yaml")])
