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
